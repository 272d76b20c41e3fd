"""Where one training step's time goes, kernel by kernel, for the benchmark's networks.

    python benchmarks/profile_step.py              # 1 and 2 threads, B/32, C/32, C/256
    python benchmarks/profile_step.py --threads 2 --cells C/256

Each kernel of a step (each dense layer's forward product with its bias and relu, its backward
products with their transposes and the bias gradient; relu's gradient; Adam; the gather of a
shuffled batch) is timed alone on random data, best of 5 x 20 calls, wall time. The loss and the
Python around the compiled loop are left out, so the samples/s printed is an upper bound on what
`bench.py` measures. Beside the kernels: the bytes a step must move (traffic.py) and the time
that traffic takes at the copy bandwidth measured first at each thread count (bandwidth.py), at
the footprint that holds the step's working set: the memory roof of bench.py's table. It
measures and prints; it asserts nothing.
"""

from __future__ import annotations

import argparse
import itertools
import time

NETS = {"A": [784, 25, 15, 10], "B": [784, 128, 10], "C": [784, 512, 512, 10]}


def per_call(fn, clock, reps: int = 20) -> float:
    """Microseconds per call of fn, best of 5 rounds of reps calls."""
    fn()
    best = float("inf")
    for _ in range(5):
        start = clock()
        for _ in range(reps):
            fn()
        best = min(best, (clock() - start) / reps)
    return best * 1e6


def profile(sizes: list[int], n: int, clock) -> tuple[dict[str, float], float]:
    """(microseconds per part of a step, GFLOP/s of its products) for layer sizes and batch n."""
    import numpy as np

    from nncli.model import K

    rng = np.random.default_rng(0)
    parts = dict.fromkeys(["forward products", "backward products", "activations", "Adam",
                           "gather rows"], 0.0)
    flops = 0
    products = 0.0
    for layer, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        X = rng.standard_normal((n, n_in), dtype=np.float32)
        W = rng.standard_normal((n_in, n_out), dtype=np.float32)
        b = rng.standard_normal(n_out, dtype=np.float32)
        dZ = rng.standard_normal((n, n_out), dtype=np.float32)
        Z = np.empty((n, n_out), np.float32)
        WT, XT, dZT = (np.empty(s, np.float32) for s in ((n_out, n_in), (n_in, n), (n_out, n)))
        dW, db, dX = np.empty_like(W), np.empty_like(b), np.empty_like(X)
        with_dX = layer > 0                # the first layer needs no dX
        A = np.empty_like(Z)
        parts["forward products"] += per_call(lambda: K.dense_forward(Z, A, X, W, b, WT, 1),
                                              clock)
        # the products alone (opt -1): training steps the wide kernels inside the weight
        # gradient's tiles, whose time here is in "backward products" and "Adam"
        parts["backward products"] += per_call(
            lambda: K.dense_backward(dX, dW, db, dZ, X, W, with_dX, WT, XT, dZT, W, W, -1,
                                     None),
            clock)
        flops += (4 + 2 * with_dX) * n * n_in * n_out
        dA = np.empty_like(dZ)       # separate, as in training (in place it runs 30x slower)
        parts["activations"] += per_call(lambda: K.act_backward(dA, dZ, Z, Z, 1), clock)
    products = parts["forward products"] + parts["backward products"]
    size = sum(a * b + b for a, b in zip(sizes[:-1], sizes[1:]))
    p = rng.standard_normal(size).astype(np.float32)
    g, m, v = p.copy(), np.zeros_like(p), np.zeros_like(p)
    parts["Adam"] = per_call(lambda: K.adam_update(p, g, m, v, 1e-3, 0.9, 0.999, 1e-7, 1), clock)
    data = rng.standard_normal((60000, sizes[0]), dtype=np.float32)
    batches = rng.permutation(60000)[:n * 20].reshape(20, n)
    Xb = np.empty((n, sizes[0]), np.float32)
    calls = itertools.count()            # a different batch each call, as in training
    parts["gather rows"] = per_call(
        lambda: K.gather_rows(Xb, data, batches[next(calls) % len(batches)]), clock)
    return parts, flops / products / 1e3


def report(threads: int, cells: list[str]) -> None:
    """Print the split of a step for each cell ("B/32": network B, batch 32) at a thread count."""
    import numba

    from bandwidth import bandwidth_ladder, choose, describe
    from traffic import step_bytes, step_seconds, working_set_bytes

    numba.set_num_threads(threads)
    clock = time.perf_counter
    ladder = bandwidth_ladder(threads)
    print(f"copy bandwidth, {threads} thread(s): {describe(ladder)}")
    for cell in cells:
        net, batch = cell.split("/")
        parts, gflops = profile(NETS[net], int(batch), clock)
        total = sum(parts.values())
        print(f"{cell}, {threads} thread(s): {total:.0f} us a step, at most "
              f"{int(batch) / total * 1e3:.0f}k samples/s; products at {gflops:.0f} GFLOP/s")
        for name, us in parts.items():
            print(f"    {name:16s} {us:8.0f} us  {us / total:6.1%}")
        moved = step_bytes(NETS[net], int(batch), "adam")
        held = working_set_bytes(NETS[net], int(batch), "adam")
        copy = choose(ladder, held)
        us = step_seconds(copy["gbs"], NETS[net], int(batch), "adam") * 1e6
        print(f"  memory traffic, at least {moved / 1e6:.2f} MB a step over a working set of "
              f"{held / 1e6:.2f} MB: {us:.0f} us at {copy['gbs']:.1f} GB/s (the {copy['label']} "
              f"copy; {us / total:.0%} of the kernels' {total:.0f} us), at most "
              f"{int(batch) / us * 1e3:.0f}k samples/s")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", default="1,2")
    p.add_argument("--cells", default="B/32,C/32,C/256")
    args = p.parse_args()
    for threads in args.threads.split(","):
        report(int(threads), args.cells.split(","))


if __name__ == "__main__":
    main()
