"""Training speed of a 1-D convolutional network in nncli beside PyTorch's nn.Conv1d.

    pip install -e . -r benchmarks/requirements.txt
    python benchmarks/bench_conv.py                 # 2 batch sizes x 2 thread counts, ~1 minute

Network: the README's MNIST-1D network 32conv5relu-32conv3s2relu-32conv3s2relu-10linear
(40 x 1 -> 36 x 32 -> 17 x 32 -> 8 x 32 -> 10; 8970 parameters), logits out, sparse
cross-entropy from logits, Adam lr 1e-3 (epsilon 1e-7, as Keras), Glorot init, shuffled every
epoch. PyTorch runs the same stack as nn.Conv1d layers, channels first: the (n, L, C) signals
are transposed once to (n, C, L) before timing. (PyTorch flattens the last conv's output
channel-major, nncli position-major: the dense layer's weights are a permutation of each
other, the work is the same.)

Data: datasets/mnist1d_train.csv (4000 signals of 40 samples), standardised once, repeated
``--repeat`` times (default 4, 16000 rows) so that an epoch lasts long enough to time.
Every measurement runs in a fresh subprocess with its thread count fixed before any library
loads: samples/s as the median of 3 epochs after a warm-up epoch (nncli's kernels are compiled,
or loaded from Numba's cache, before that). Nothing here asserts anything: it prints a
markdown table (stdout) and writes benchmarks/results/conv.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from bench import machine as bench_machine
from bench import torch_epochs  # the PyTorch training loop both benchmarks share

HERE = Path(__file__).resolve().parent
DATA = HERE.parent / "datasets" / "mnist1d_train.csv"
ARCH = "32conv5relu-32conv3s2relu-32conv3s2relu-10linear"
# (filters, kernel, stride) of the conv layers of ARCH, for PyTorch
CONVS = [(32, 5, 1), (32, 3, 2), (32, 3, 2)]
LENGTH, CHANNELS, CLASSES = 40, 1, 10
PEERS = ("nncli", "torch")


# --------------------------------------------------------------------------- data

def make_data(folder: Path, repeat: int) -> int:
    """Standardised features and labels as .npy files in ``folder``; returns the row count."""
    import numpy as np

    table = np.loadtxt(DATA, delimiter=",", skiprows=1, dtype=np.float64)
    X, y = table[:, :-1], table[:, -1].astype(np.int64)
    X = ((X - X.mean(axis=0)) / X.std(axis=0)).astype(np.float32)
    X, y = np.tile(X, (repeat, 1)), np.tile(y, repeat)
    np.save(folder / "X.npy", X)
    np.save(folder / "y.npy", y)
    return len(X)


# --------------------------------------------------------------------------- workers
# Each returns {"train": [seconds per epoch, the first a warm-up], "loss": final loss}.

def run_nncli(X, y, batch, epochs):
    import numpy as np

    from nncli.data import Dataset
    from nncli.train import TrainConfig, fit, prepare, warm_up

    cfg = TrainConfig(arch=ARCH, loss="sparse_cce", logits=True, epochs=epochs,
                      batch_size=batch, normalize=False, channels=CHANNELS)
    run = prepare(cfg, Dataset.from_arrays(X, y.astype(np.float32)[:, None], "mnist1d"),
                  own_data=True)
    warm_up(run.config, run.X.shape[1], run.X_val is not None)
    seconds = [r.seconds for r in fit(run)]
    return {"train": seconds, "loss": run.history[-1].loss}


def run_torch(X, y, batch, epochs):
    import torch

    torch.manual_seed(0)
    layers, channels, length = [], CHANNELS, LENGTH
    for filters, kernel, stride in CONVS:
        conv = torch.nn.Conv1d(channels, filters, kernel, stride=stride)
        torch.nn.init.xavier_uniform_(conv.weight)     # Glorot with Keras's fans (k*C, k*F)
        torch.nn.init.zeros_(conv.bias)
        layers += [conv, torch.nn.ReLU()]
        channels, length = filters, (length - kernel) // stride + 1
    linear = torch.nn.Linear(channels * length, CLASSES)
    torch.nn.init.xavier_uniform_(linear.weight)
    torch.nn.init.zeros_(linear.bias)
    model = torch.nn.Sequential(*layers, torch.nn.Flatten(), linear)
    # rows are (L, C) channels last, as nncli reads them; Conv1d wants (C, L)
    Xt = torch.from_numpy(X).reshape(len(X), LENGTH, CHANNELS).permute(0, 2, 1).contiguous()
    seconds, loss = torch_epochs(model, Xt, torch.from_numpy(y), batch, epochs)
    return {"train": seconds, "loss": loss}


WORKERS = {"nncli": run_nncli, "torch": run_torch}


def worker_main(args) -> None:
    import importlib.util

    if importlib.util.find_spec(args.worker) is None:
        print(json.dumps({"skipped": f"{args.worker} is not installed"}))
        return
    if args.worker == "nncli":
        import numba

        numba.set_num_threads(args.threads)
    else:
        import torch

        torch.set_num_threads(args.threads)
        torch.set_num_interop_threads(1)
    import numpy as np

    X = np.load(args.data / "X.npy")
    y = np.load(args.data / "y.npy")
    print(json.dumps(WORKERS[args.worker](X, y, args.batch, args.epochs + 1)))


def measure(worker: str, data: Path, batch: int, threads: int, epochs: int) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads),
           "OPENBLAS_NUM_THREADS": str(threads), "NUMBA_NUM_THREADS": str(max(threads, 2))}
    cmd = [sys.executable, __file__, "--worker", worker, "--data", str(data),
           "--batch", str(batch), "--threads", str(threads), "--epochs", str(epochs)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        return {"error": (proc.stderr.strip().splitlines() or ["no output"])[-1]}
    return json.loads(lines[-1])


# --------------------------------------------------------------------------- report

def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--batches", default="32,256")
    p.add_argument("--threads", default="2,1")
    p.add_argument("--peers", default=",".join(PEERS))
    p.add_argument("--epochs", type=int, default=3, help="timed epochs after one warm-up")
    p.add_argument("--repeat", type=int, default=4, help="copies of the 4000 training rows")
    p.add_argument("--out", type=Path, default=HERE / "results" / "conv.json")
    p.add_argument("--worker", choices=sorted(WORKERS), help=argparse.SUPPRESS)
    p.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--batch", type=int, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        args.threads = int(args.threads)
        worker_main(args)
        return
    batches = [int(b) for b in args.batches.split(",")]
    threads, peers = [int(t) for t in args.threads.split(",")], args.peers.split(",")
    results: dict = {"machine": machine(), "arch": ARCH, "epochs": args.epochs, "cells": []}
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp)
        results["rows"] = rows = make_data(data, args.repeat)
        for batch in batches:
            for t in threads:
                cell = {"batch": batch, "threads": t}
                for peer in peers:
                    cell[peer] = measure(peer, data, batch, t, args.epochs)
                    print(_progress(cell, peer, rows), file=sys.stderr, flush=True)
                results["cells"].append(cell)
    summarise(results)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(render(results))
    print(f"\nwrote {args.out}", file=sys.stderr)


def _rate(result: dict, rows: int) -> float | None:
    return rows / statistics.median(result["train"][1:]) if "train" in result else None


def _progress(cell: dict, peer: str, rows: int) -> str:
    r = cell[peer]
    rate = _rate(r, rows)
    what = f"{rate:,.0f} samples/s" if rate else r.get("skipped") or r.get("error")
    return f"batch {cell['batch']} x{cell['threads']} {peer}: {what}"


def summarise(results: dict) -> None:
    for cell in results["cells"]:
        rates = {peer: _rate(cell[peer], results["rows"]) for peer in PEERS if peer in cell}
        cell["train_samples_per_s"] = {k: v for k, v in rates.items() if v}
        if rates.get("nncli") and rates.get("torch"):
            cell["ratio_vs_torch"] = rates["nncli"] / rates["torch"]


def render(results: dict) -> str:
    lines = [f"Training {results['arch']} on MNIST-1D ({results['rows']} rows of 40 x 1), "
             f"samples/s, median of {results['epochs']} epochs after a warm-up:", "",
             "| batch | threads | nncli | PyTorch Conv1d | nncli / PyTorch |",
             "|---|---|---|---|---|"]
    for c in results["cells"]:
        rate = c["train_samples_per_s"]

        def fmt(peer):
            if peer in rate:
                return f"{rate[peer] / 1000:,.1f}k"
            r = c.get(peer, {})
            return "skipped" if "skipped" in r else ("error" if "error" in r else "-")

        ratio = c.get("ratio_vs_torch")
        lines.append(f"| {c['batch']} | {c['threads']} | {fmt('nncli')} | {fmt('torch')} | "
                     f"{f'{ratio:.2f}x' if ratio else '-'} |")
    lines.append("")
    lines.append(f"machine: {results['machine']}")
    return "\n".join(lines)


def machine() -> str:
    versions = []
    for name in ("numba", "torch"):
        try:
            versions.append(f"{name} {__import__(name).__version__}")
        except ImportError:
            pass
    return ", ".join([bench_machine(), *versions])


if __name__ == "__main__":
    main()
