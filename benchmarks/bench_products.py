"""nncli's matrix products (nncli.kernels_gemm) against NumPy's matmul, at the training shapes.

    python benchmarks/bench_products.py                # 1 and 2 threads, ~1 minute
    python benchmarks/bench_products.py --threads 2 --repeat 3

For each product a dense layer computes in the benchmark's networks (forward X W, weight gradient
X^T dZ; batch 32 and 256), GFLOP/s of nncli's register-tiled kernel and of NumPy's float32
matmul with OpenBLAS choosing its own kernel (OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE unset in
that process only, as in bench.py's limit; threadpoolctl names the kernel), in one run, and their
ratio. Each side runs in a fresh process with its thread count fixed; best of 5 rounds. With
--repeat N the whole comparison runs N times and the table gives the median and the range of the
ratio. It measures and prints (and writes benchmarks/results/products.json); it asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
# (name, m, k, n): C (m, n) = op(A) B with a reduction of k
SHAPES = [(f"{kind} {net}/{batch}", *dims)
          for net, (n_in, n_out) in {"B": (784, 128), "C1": (784, 512), "C2": (512, 512)}.items()
          for batch in (32, 256)
          for kind, dims in (("X W", (batch, n_in, n_out)), ("X^T dZ", (n_in, batch, n_out)))]


def per_call(fn, reps: int) -> float:
    """Seconds per call of fn, best of 5 rounds of reps calls."""
    fn()
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(reps):
            fn()
        best = min(best, (time.perf_counter() - start) / reps)
    return best


def worker(side: str) -> dict:
    """GFLOP/s of each shape on one side ("nncli" or "numpy"), in this process."""
    import numpy as np

    rng = np.random.default_rng(0)
    out: dict = {"gflops": {}}
    if side == "nncli":
        import nncli.model  # noqa: F401 - readies Numba (cache folder, vector width)
        from nncli import kernels_gemm as G
    else:
        from threadpoolctl import threadpool_info

        out["blas"] = sorted({i.get("architecture") or "?" for i in threadpool_info()})
    for name, m, k, n in SHAPES:
        B = rng.standard_normal((k, n), dtype=np.float32)
        C = np.empty((m, n), np.float32)
        if name.startswith("X W"):
            A = rng.standard_normal((m, k), dtype=np.float32)
            fn = (lambda: G.matmul_nn(C, A, B)) if side == "nncli" else (
                lambda: np.matmul(A, B, out=C))
        else:
            A = rng.standard_normal((k, m), dtype=np.float32)
            fn = (lambda: G.matmul_tn(C, A, B)) if side == "nncli" else (
                lambda: np.matmul(A.T, B, out=C))
        reps = max(3, int(2e8 / (2 * m * k * n)))
        out["gflops"][name] = 2 * m * k * n / per_call(fn, reps) / 1e9
    return out


def measure(side: str, threads: int) -> dict:
    env = {**os.environ, "NUMBA_NUM_THREADS": str(threads), "OMP_NUM_THREADS": str(threads),
           "OPENBLAS_NUM_THREADS": str(threads)}
    if side == "numpy":
        env.pop("OPENBLAS_CORETYPE", None)
        env.pop("OPENBLAS_L2_SIZE", None)
    proc = subprocess.run([sys.executable, __file__, "--worker", side], env=env,
                          capture_output=True, text=True, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", default="1,2")
    p.add_argument("--repeat", type=int, default=1)
    p.add_argument("--worker")
    args = p.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker)))
        return
    results: dict = {}
    for threads in (int(t) for t in args.threads.split(",")):
        runs = [(measure("nncli", threads), measure("numpy", threads))
                for _ in range(args.repeat)]
        results[str(threads)] = {"runs": runs}
        print(f"\n{threads} thread(s); NumPy's OpenBLAS kernel: {', '.join(runs[0][1]['blas'])}")
        print("| product | m x k x n | nncli GFLOP/s | NumPy GFLOP/s | nncli / NumPy (range) |")
        print("|---|---|---|---|---|")
        for name, m, k, n in SHAPES:
            ours = [r[0]["gflops"][name] for r in runs]
            theirs = [r[1]["gflops"][name] for r in runs]
            ratios = [a / b for a, b in zip(ours, theirs)]
            spread = f" ({min(ratios):.2f}-{max(ratios):.2f})" if len(runs) > 1 else ""
            print(f"| {name} | {m} x {k} x {n} | {statistics.median(ours):.0f} "
                  f"| {statistics.median(theirs):.0f} | {statistics.median(ratios):.2f}x{spread} |")
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / "products.json").write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
