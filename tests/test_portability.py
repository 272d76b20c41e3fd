"""The same seed gives the same model on any x86-64 CPU with AVX2 or AVX-512, at any thread
count: each network is trained through the real command line twice, once in a process whose
kernels are compiled for a Haswell (AVX2, 256-bit vectors, the 6 x 16 tile) on one thread and
once compiled for this machine (AVX-512 where it has it) on two threads, and the two model
files must hold the same bits.

Each target has one kernel cache folder for the whole module, so the Haswell kernels compile
once (the first test) and the host's come from the cache the other tests use."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

try:
    from clirun import tensors_equal
except ImportError:                       # tests/ imported as a package
    from tests.clirun import tensors_equal

DATASETS = Path(__file__).resolve().parent.parent / "datasets"


@pytest.fixture(scope="module")
def targets(tmp_path_factory) -> dict[str, tuple[dict[str, str], int]]:
    """(environment, threads) of each target: Haswell on one thread with a cache folder of its
    own, and this machine on two threads with the settings conftest gave this process."""
    haswell = {**os.environ, "NUMBA_CPU_NAME": "haswell", "NUMBA_CPU_FEATURES": "",
               "NNCLI_CACHE_DIR": str(tmp_path_factory.mktemp("haswell_cache")),
               "NUMBA_NUM_THREADS": "1"}
    haswell.pop("NUMBA_CACHE_DIR", None)
    host = {**os.environ, "NUMBA_NUM_THREADS": "2"}
    return {"haswell": (haswell, 1), "host": (host, 2)}


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict[str, Path]:
    """Small generated sets: 320 rows of 100 features in 10 classes; 200 signals of 40 samples
    labelled by whether a bump sits in their first half."""
    folder = tmp_path_factory.mktemp("portability_data")
    rng = np.random.default_rng(7)
    X = rng.standard_normal((320, 100)).astype(np.float32)
    y = np.argmax(X[:, :10] + 0.5 * rng.standard_normal((320, 10)), axis=1)
    np.savez(folder / "dense.npz", X=X, y=y)
    t = np.arange(40)
    centre = rng.uniform(4, 36, 200)
    S = np.exp(-0.5 * ((t - centre[:, None]) / 2.0) ** 2) + 0.3 * rng.standard_normal((200, 40))
    np.savez(folder / "signals.npz", X=S.astype(np.float32), y=(centre < 20).astype(np.float32))
    return {"dense": folder / "dense.npz", "signals": folder / "signals.npz",
            "digits": DATASETS / "digits.csv"}


# name -> (data set, train options): the benchmark's network C with a tanh layer at batch 32,
# a conv net ending in one sigmoid unit, and the digits network
MODELS = {
    "512relu-100tanh-10linear": ("dense", ["--loss", "sparse_cce", "--logits", "--epochs", "3",
                                           "--batch-size", "32"]),
    "8conv5relu-8conv3s2relu-1sigmoid": ("signals", ["--loss", "bce", "--epochs", "3",
                                                     "--batch-size", "16"]),
    "25relu-15relu-10linear": ("digits", ["--loss", "sparse_cce", "--logits", "--epochs", "3"]),
}


def train(target: tuple[dict[str, str], int], data: Path, arch: str, options: list[str],
          out: Path) -> Path:
    env, threads = target
    proc = subprocess.run([sys.executable, "-m", "nncli", "train", str(data), "--arch", arch,
                           *options, "--seed", "3", "--threads", str(threads), "--quiet",
                           "-o", str(out)], capture_output=True, text=True, env=env,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


@pytest.mark.parametrize("arch", list(MODELS))
def test_the_same_model_on_avx2_one_thread_and_avx512_two_threads(arch, targets, data,
                                                                   tmp_path):
    name, options = MODELS[arch]
    models = [train(targets[t], data[name], arch, options, tmp_path / f"{t}.safetensors")
              for t in ("haswell", "host")]
    tensors_equal(*models)
