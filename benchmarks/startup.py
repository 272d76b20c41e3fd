"""nncli's start-up figures for bench.py: --help, a warm predict, a cold compile, training memory.

Each runs nncli as users do (`python -m nncli`) in a subprocess; nothing here asserts anything.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def startup_figures(data: Path, small_arch: str, medium_arch: str) -> dict:
    """nncli --help, predict of 1000 rows with a warm cache, a cold compile (one epoch of
    ``small_arch``), training memory (two epochs of ``medium_arch``), on the X.npy and y.npy
    in ``data``."""
    import numpy as np

    nncli = [sys.executable, "-m", "nncli"]
    out: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        X = np.load(data / "X.npy")
        y = np.load(data / "y.npy")
        np.savez(tmp / "train.npz", X=X, y=y.astype(np.float32))
        np.save(tmp / "new.npy", X[:1000])
        model = tmp / "m.safetensors"
        out["help_seconds"] = _best_of_3([*nncli, "--help"])
        cold_env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp / "cold-cache")}
        out["cold_train_1_epoch_seconds"] = _seconds(
            [*nncli, "train", str(tmp / "train.npz"), "--arch", small_arch, "--loss",
             "sparse_cce", "--logits", "--epochs", "1", "-q", "-o", str(model)], cold_env)
        _check([*nncli, "predict", str(model), str(tmp / "new.npy")])
        out["predict_1000_rows_warm_seconds"] = _best_of_3(
            [*nncli, "predict", str(model), str(tmp / "new.npy")])
        code = ("import resource, sys; from nncli.cli import main; rc = main(sys.argv[1:]); "
                "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)")
        proc = subprocess.run([sys.executable, "-c", code, "train", str(tmp / "train.npz"),
                               "--arch", medium_arch, "--loss", "sparse_cce", "--logits",
                               "--epochs", "2", "-q", "-o", str(model)],
                              capture_output=True, text=True, check=True)
        peak = int(proc.stdout.strip().splitlines()[-1])
        out["train_peak_rss_bytes"] = peak
        out["data_bytes"] = int(X.nbytes)
        out["train_peak_over_data"] = peak / X.nbytes
    return out


def describe_startup(s: dict) -> str:
    """One line of bench.py's report from `startup_figures`' dict."""
    return (f"nncli --help {s['help_seconds']:.2f} s; predict 1000 rows (cached compile) "
            f"{s['predict_1000_rows_warm_seconds']:.2f} s; first train after install (cold "
            f"compile, 1 epoch of A) {s['cold_train_1_epoch_seconds']:.1f} s; training peak RSS "
            f"{s['train_peak_rss_bytes'] / 2**20:.0f} MiB = {s['train_peak_over_data']:.2f}x the "
            f"data")


def _best_of_3(cmd: list[str]) -> float:
    return min(_seconds(cmd) for _ in range(3))


def _seconds(cmd: list[str], env: dict | None = None) -> float:
    """Wall seconds of one checked run of ``cmd``."""
    start = time.perf_counter()
    _check(cmd, env)
    return time.perf_counter() - start


def _check(cmd, env=None):
    subprocess.run(cmd, check=True, capture_output=True, env=env)
