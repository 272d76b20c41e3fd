"""nncli's kernels compiled for other CPUs' tuning: speed and the vector width LLVM emits.

    python benchmarks/bench_targets.py                 # ~4 minutes on 2 cores
    python benchmarks/bench_targets.py --cells C/256 --targets host,skylake-avx512

LLVM's tuning for Intel's server parts prefers 256-bit vectors. nncli turns that preference off
on a CPU with AVX-512 (``nncli.kernel_cache.wide_vector_features``). For each target CPU
(``NUMBA_CPU_NAME``: this machine's own, skylake-avx512, icelake-server) this compiles the
kernels twice in fresh caches, with LLVM's preference as it is and with nncli's features, and
measures training samples/s at one thread (median of 3 epochs after a warm-up, synthetic
MNIST-shaped data) and counts the FMA instructions of the training kernel by register width
(zmm: 512-bit, ymm: 256-bit; Numba's ``inspect_asm``), and for the products' kernel
(nncli.kernels_gemm) its register tile, its FMAs by width and its register spills. Run on an AVX-512 machine; nothing here
asserts anything: it prints a table and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ARCH = {"A": "25relu-15relu-10linear", "B": "128relu-10linear", "C": "512relu-512relu-10linear"}


def worker(cells: list[str], rows: int) -> dict:
    """In a process whose Numba settings the parent chose: samples/s per cell, FMA counts."""
    import numba
    import numpy as np

    from nncli.data import Dataset
    from nncli.model import K
    from nncli.train import TrainConfig, fit, prepare, warm_up

    numba.set_num_threads(1)
    rng = np.random.default_rng(0)
    X = rng.standard_normal((rows, 784), dtype=np.float32)
    y = (X @ rng.standard_normal((784, 10)).astype(np.float32)).argmax(axis=1)
    out: dict = {"cells": {}}
    for cell in cells:
        net, batch = cell.split("/")
        config = TrainConfig(arch=ARCH[net], loss="sparse_cce", logits=True, epochs=4,
                             batch_size=int(batch))
        run = prepare(config, Dataset.from_arrays(X, y.astype(np.float32), "synthetic"))
        warm_up(run.config, run.X.shape[1], run.X_val is not None)
        seconds = [r.seconds for r in fit(run)][1:]
        out["cells"][cell] = rows / statistics.median(seconds)
    asm = "\n".join(K.train_batches.inspect_asm().values())
    out["fma"] = fma_widths(asm)
    # the products' kernel (nncli.kernels_gemm): its tile, FMA width, and spills (none wanted)
    from nncli import kernels_gemm as G

    gemm_asm = "\n".join(G._gemm.inspect_asm().values())
    out["products"] = {"tile": list(numba.njit(lambda C: G.tile(C))(np.empty((1, 1), np.float32))),
                       "fma": fma_widths(gemm_asm),
                       "spills": len(re.findall(r"\bSpill\b", gemm_asm))}
    out["cpu"] = os.environ.get("NUMBA_CPU_NAME", "host")
    return out


def fma_widths(asm: str) -> dict[str, int]:
    """FMA instructions in ``asm`` by register width."""
    fmas = [line for line in asm.splitlines() if re.search(r"\bvfn?m(add|sub)\w*ps\b", line)]
    return {width: sum(width in line for line in fmas) for width in ("zmm", "ymm", "xmm")}


def measure(target: str, wide: bool, cells: list[str], rows: int, tmp: Path) -> dict:
    import llvmlite.binding as ll

    host = ll.get_host_cpu_features().flatten()
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp / f"{target}-{wide}"), "NUMBA_OPT": "2",
           "NUMBA_NUM_THREADS": "2",
           "NUMBA_CPU_FEATURES": host + (",-prefer-256-bit" if wide else "")}
    if target != "host":
        env["NUMBA_CPU_NAME"] = target
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, __file__, "--worker", "--cells", ",".join(cells),
                           "--rows", str(rows)], env=env, capture_output=True, text=True)
    if proc.returncode:
        return {"error": proc.stderr.strip().splitlines()[-1:]}
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["seconds_with_compile"] = time.perf_counter() - start
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", default="A/32,B/32,B/256,C/32,C/256")
    parser.add_argument("--targets", default="host,skylake-avx512,icelake-server")
    parser.add_argument("--rows", type=int, default=8192)
    parser.add_argument("--worker", action="store_true")
    args = parser.parse_args()
    cells = args.cells.split(",")
    if args.worker:
        print(json.dumps(worker(cells, args.rows)))
        return
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for target in args.targets.split(","):
            for wide in (False, True):
                key = f"{target}, {'nncli features' if wide else 'LLVM tuning'}"
                results[key] = measure(target, wide, cells, args.rows, Path(tmp))
                print(key, json.dumps(results[key]), file=sys.stderr, flush=True)
    native = results.get("host, nncli features", {}).get("cells", {})
    print("| target | " + " | ".join(cells) + " | FMAs zmm/ymm | products: tile, zmm/ymm FMAs, "
          "spills |")
    print("|---|" + "---|" * (len(cells) + 2))
    for key, r in results.items():
        if "cells" not in r:
            print(f"| {key} | {r.get('error')} |")
            continue
        ratios = [f"{r['cells'][c] / 1000:,.0f}k ({r['cells'][c] / native[c]:.2f}x)"
                  if c in native else f"{r['cells'][c] / 1000:,.0f}k" for c in cells]
        g = r["products"]
        print(f"| {key} | " + " | ".join(ratios) + f" | {r['fma']['zmm']}/{r['fma']['ymm']} | "
              f"{g['tile'][0]} x {g['tile'][1]}, {g['fma']['zmm']}/{g['fma']['ymm']}, "
              f"{g['spills']} |")
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / "targets.json").write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
