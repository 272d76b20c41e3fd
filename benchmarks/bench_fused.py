"""The optimizer step fused into the weight gradient's tiles against the plain step, in one process.

    python benchmarks/bench_fused.py                      # B/32, C/32, C/256; 1 and 2 threads
    python benchmarks/bench_fused.py --cells C/32 --threads 1 --rounds 11

For each cell, kernels.train_batches runs an epoch of 8192 synthetic rows with ``fused`` True
(the wide dense kernels stepped inside their tiles, nncli.kernels_update.dense_weight_step) and
with ``fused`` None (the whole backward pass, then the step), alternately, in rounds; both
variants are compiled before timing and keep their own weights. Rounds are paired, so a noisy
host slows both sides of a round alike: the ratio is given per round (median and range). Each
thread count runs in a fresh process (NUMBA_NUM_THREADS is read at import). It measures and
prints; it asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

NETS = {"A": "25relu-15relu-10linear", "B": "128relu-10linear", "C": "512relu-512relu-10linear"}
ROWS = 8192


def worker(cell: str, rounds: int) -> dict:
    """Samples/s of each variant per round, in this process."""
    import numpy as np

    import nncli.model as M
    from nncli import kernels as K
    from nncli.arch import parse_arch
    from nncli.optim import hyper_vector, settings

    net, batch = cell.split("/")
    batch = int(batch)
    model = M.Model.create(parse_arch(NETS[net]), 784, "sparse_cce", True, seed=0)
    rng = np.random.default_rng(0)
    X = rng.standard_normal((ROWS, 784)).astype(np.float32)
    Y = np.eye(10, dtype=np.float32)[rng.integers(0, 10, ROWS)]
    ws = M.Workspace(model.layer_table(), batch, np.float32)
    hyper = hyper_vector(settings("adam", None, 0.0))
    steps = ROWS // batch
    perm = rng.permutation(ROWS)
    Xb, Yb = np.zeros((batch, 784), np.float32), np.zeros((batch, 10), np.float32)
    states = {}
    for fused in (True, None):
        params = model.params.astype(np.float32)
        states[fused] = (params, *(np.zeros_like(params) for _ in range(3)))

    def epoch(fused) -> float:
        params, grads, m, v = states[fused]
        start = time.perf_counter()
        K.train_batches(params, grads, m, v, None, Xb, Yb, ws.Z, ws.A, ws.dZ, ws.dA, ws.T,
                        ws.table, X, Y, perm, 0, steps * batch, batch, model.kernel_code,
                        1e-7, hyper, np.full(steps, 1e-3), 0, ws.windowed, None, None, fused)
        return steps * batch / (time.perf_counter() - start)

    epoch(True), epoch(None)          # compile both
    fused, plain = [], []
    for _ in range(rounds):
        fused.append(epoch(True))
        plain.append(epoch(None))
    return {"fused": fused, "plain": plain}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cells", default="B/32,C/32,C/256")
    p.add_argument("--threads", default="1,2")
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--worker")
    args = p.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.rounds)))
        return
    print("| cell | threads | fused samples/s | plain samples/s | fused / plain, per round |")
    print("|---|---|---|---|---|")
    for threads in args.threads.split(","):
        env = {**os.environ, "NUMBA_NUM_THREADS": threads}
        for cell in args.cells.split(","):
            out = subprocess.run([sys.executable, __file__, "--worker", cell, "--rounds",
                                  str(args.rounds)], env=env, capture_output=True, text=True,
                                 check=True)
            r = json.loads(out.stdout.strip().splitlines()[-1])
            ratios = [a / b for a, b in zip(r["fused"], r["plain"])]
            print(f"| {cell} | {threads} | {statistics.median(r['fused']) / 1e3:.1f}k "
                  f"| {statistics.median(r['plain']) / 1e3:.1f}k "
                  f"| {statistics.median(ratios):.2f}x ({min(ratios):.2f}-{max(ratios):.2f}) |",
                  flush=True)


if __name__ == "__main__":
    main()
