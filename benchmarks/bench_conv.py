"""Training speed of 1-D convolutional networks in nncli beside PyTorch, and against the limit.

    pip install -e . -r benchmarks/requirements.txt
    python benchmarks/bench_conv.py                 # 2 networks x 2 batch sizes x 2 thread counts
    python benchmarks/bench_conv.py --nets mnist1d --threads 1 --runs 5

Networks (``NETS``): the README's MNIST-1D network
32conv5relu-32conv3s2relu-32conv3s2relu-10linear (40 x 1 -> 36 x 32 -> 17 x 32 -> 8 x 32 -> 10;
8970 parameters; logits out, sparse cross-entropy from logits) on datasets/mnist1d_train.csv
(4000 signals of 40 samples, standardised once, repeated ``--repeat`` times), and the lecture's
EKG network 1local20s10relu-1local5s2relu-1sigmoid (100 -> 9 -> 3 -> 1; 211 parameters; binary
cross-entropy on its sigmoid) on synthetic strips (noise, half of them with one narrow beat, as
tests/test_cli_conv.py; 16000 x ``--repeat`` strips). Adam lr 1e-3 (epsilon 1e-7, as Keras),
Glorot init, shuffled every epoch. PyTorch runs the same stacks channels first, eager: conv
layers as nn.Conv1d, local layers (PyTorch has none) as windows cut with Tensor.unfold times a
weight per position in one batched product (torch.baddbmm); the (n, L, C) signals are
transposed once to (n, C, L) before timing. (PyTorch flattens the last conv's output
channel-major, nncli position-major: the dense layer's weights are a permutation of each other,
the work is the same.)

Every measurement runs in a fresh subprocess with its thread count fixed before any library
loads: samples/s as the median of ``--epochs`` epochs after a warm-up epoch (nncli's kernels are
compiled, or loaded from Numba's cache, before that). With ``--runs N`` every cell is measured N
times, the peers one after the other within a run, and the table gives the median and the range
of the N figures and of their ratio. "limit" is bench.py's: the samples/s NumPy's float32 matmul
peak at 2048^3 (OpenBLAS choosing its own kernel; measured once a run, the best run kept) would
allow at 6 x (multiply-adds of a sample's forward pass) FLOPs a sample. "cross-core ns" is
bench.py's: the round trip of a cache line between two threads (placement.py), in each peer's
process before the warm-up epoch / after the last, a pair per run. Nothing here asserts
anything: it prints a markdown table (stdout) and writes benchmarks/results/conv.json.
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

from bench import _measure_env, blas_kernels, real_peak
from bench import machine as bench_machine
from bench import measure as bench_measure
from placement import bracketed, column
from torch_loop import torch_epochs  # the PyTorch training loop both benchmarks share

HERE = Path(__file__).resolve().parent
MNIST1D = HERE.parent / "datasets" / "mnist1d_train.csv"
# name: (arch, signal length, loss, logits); one channel in
NETS = {
    "mnist1d": ("32conv5relu-32conv3s2relu-32conv3s2relu-10linear", 40, "sparse_cce", True),
    "ekg": ("1local20s10relu-1local5s2relu-1sigmoid", 100, "bce", False),
}
PEERS = ("nncli", "torch")


# --------------------------------------------------------------------------- data

def make_data(folder: Path, net: str, repeat: int) -> int:
    """Features and labels of ``net`` as .npy files in ``folder``; returns the row count."""
    import numpy as np

    if net == "mnist1d":
        table = np.loadtxt(MNIST1D, delimiter=",", skiprows=1, dtype=np.float64)
        X, y = table[:, :-1], table[:, -1].astype(np.int64)
        X = ((X - X.mean(axis=0)) / X.std(axis=0)).astype(np.float32)
        X, y = np.tile(X, (repeat, 1)), np.tile(y, repeat)
    else:
        rng = np.random.default_rng(0)
        n = 16000 * repeat
        t = np.arange(100)
        y = rng.integers(0, 2, size=n)
        centre = rng.uniform(8, 92, size=n)
        bump = 1.5 * np.exp(-0.5 * ((t - centre[:, None]) / 2.5) ** 2)
        X = (0.3 * rng.normal(size=(n, 100)) + y[:, None] * bump).astype(np.float32)
    np.save(folder / "X.npy", X)
    np.save(folder / "y.npy", y)
    return len(X)


def multiply_adds(net: str) -> int:
    """Multiply-adds of one sample's forward pass: kernel elements x positions for a conv layer
    (its kernel is shared by every position), kernel elements for a dense or local layer."""
    import math

    from nncli.arch import layer_shapes, param_shapes, parse_arch

    arch, length = NETS[net][:2]
    layers = parse_arch(arch)
    total = 0
    for spec, shape, (w_shape, _) in zip(layers, layer_shapes(layers, length),
                                         param_shapes(layers, length)):
        total += math.prod(w_shape) * (shape.positions if spec.kind == "conv" else 1)
    return total


# --------------------------------------------------------------------------- workers
# Each returns {"train": [seconds per epoch, the first a warm-up], "loss": final loss,
# "cross_core_ns": [round trip before the warm-up, after the last epoch] (placement.py), or None
# on one thread}.

def run_nncli(net, X, y, batch, epochs):
    import numba
    import numpy as np

    from nncli.data import Dataset
    from nncli.train import TrainConfig, fit, prepare, warm_up

    arch, _, loss, logits = NETS[net]
    cfg = TrainConfig(arch=arch, loss=loss, logits=logits, epochs=epochs, batch_size=batch,
                      normalize=False, channels=1)
    run = prepare(cfg, Dataset.from_arrays(X, y.astype(np.float32)[:, None], net), own_data=True)
    warm_up(run.config, run.X.shape[1], run.X_val is not None)
    seconds, cross = bracketed(numba.get_num_threads(), lambda: [r.seconds for r in fit(run)])
    return {"train": seconds, "loss": run.history[-1].loss, "cross_core_ns": cross}


def _torch_local(channels: int, length: int, filters: int, kernel: int, stride: int):
    """A locally connected layer (tf.keras LocallyConnected1D) in PyTorch: the windows of the
    (n, C, L) input cut with unfold, one (kernel x C, F) weight per position, one baddbmm."""
    import torch

    positions = (length - kernel) // stride + 1

    class Local1d(torch.nn.Module):
        def __init__(self):
            super().__init__()
            fan_in, fan_out = kernel * channels, filters
            limit = (6.0 / (fan_in + fan_out)) ** 0.5
            self.weight = torch.nn.Parameter(
                torch.empty(positions, channels * kernel, filters).uniform_(-limit, limit))
            self.bias = torch.nn.Parameter(torch.zeros(positions, 1, filters))

        def forward(self, x):                                      # (n, C, L)
            win = x.unfold(2, kernel, stride)[:, :, :positions]    # (n, C, P, k)
            win = win.permute(2, 0, 1, 3).reshape(positions, x.shape[0], -1)
            return torch.baddbmm(self.bias, win, self.weight).permute(1, 2, 0)  # (n, F, P)

    return Local1d(), positions


def run_torch(net, X, y, batch, epochs):
    """cross_core_ns is read in Numba's pool, not torch's: the VM's state, not torch's threads'."""
    import torch

    from nncli.arch import parse_arch

    torch.manual_seed(0)
    arch, length, loss, _ = NETS[net]
    layers, channels = [], 1
    specs = parse_arch(arch)
    for spec in specs[:-1]:
        stride = spec.effective_stride
        if spec.kind == "conv":
            layer = torch.nn.Conv1d(channels, spec.units, spec.kernel, stride=stride)
            torch.nn.init.xavier_uniform_(layer.weight)     # Glorot with Keras's fans (k*C, k*F)
            torch.nn.init.zeros_(layer.bias)
            length = (length - spec.kernel) // stride + 1
        else:
            layer, length = _torch_local(channels, length, spec.units, spec.kernel, stride)
        layers += [layer, torch.nn.ReLU()]
        channels = spec.units
    linear = torch.nn.Linear(channels * length, specs[-1].units)
    torch.nn.init.xavier_uniform_(linear.weight)
    torch.nn.init.zeros_(linear.bias)
    layers += [torch.nn.Flatten(), linear]
    if loss == "bce":
        layers.append(torch.nn.Sigmoid())
        loss_fn, yt = torch.nn.BCELoss(), torch.from_numpy(y).float()[:, None]
    else:
        loss_fn, yt = None, torch.from_numpy(y)
    model = torch.nn.Sequential(*layers)
    # rows are (L, C) channels last, as nncli reads them; Conv1d wants (C, L)
    Xt = torch.from_numpy(X).reshape(len(X), -1, 1).permute(0, 2, 1).contiguous()
    (seconds, last), cross = bracketed(
        torch.get_num_threads(), lambda: torch_epochs(model, Xt, yt, batch, epochs, loss_fn))
    return {"train": seconds, "loss": last, "cross_core_ns": cross}


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
    print(json.dumps(WORKERS[args.worker](args.net, X, y, args.batch, args.epochs + 1)))


def measure(worker: str, net: str, data: Path, batch: int, threads: int, epochs: int) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads),
           "OPENBLAS_NUM_THREADS": str(threads), "NUMBA_NUM_THREADS": str(max(threads, 2))}
    cmd = [sys.executable, __file__, "--worker", worker, "--net", net, "--data", str(data),
           "--batch", str(batch), "--threads", str(threads), "--epochs", str(epochs)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        return {"error": (proc.stderr.strip().splitlines() or ["no output"])[-1]}
    return json.loads(lines[-1])


def measure_peak(data: Path, threads: int) -> dict:
    """bench.py's limit measurements at ``threads`` (see bench.real_peak)."""
    peak = {str(threads): bench_measure("matmul", data, "A", 32, threads, 0)}
    if "OPENBLAS_CORETYPE" in os.environ:
        own = {k: v for k, v in os.environ.items()
               if k not in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")}
        peak[f"{threads}, OPENBLAS_CORETYPE unset"] = _measure_env(data, threads, own)
    return peak


# --------------------------------------------------------------------------- report

def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--nets", default=",".join(NETS))
    p.add_argument("--batches", default="32,256")
    p.add_argument("--threads", default="1,2")
    p.add_argument("--peers", default=",".join(PEERS))
    p.add_argument("--epochs", type=int, default=3, help="timed epochs after one warm-up")
    p.add_argument("--runs", type=int, default=1, help="measurements of every cell")
    p.add_argument("--repeat", type=int, default=4,
                   help="copies of the 4000 MNIST-1D rows (EKG: 4000 x 4 strips a copy)")
    p.add_argument("--out", type=Path, default=HERE / "results" / "conv.json")
    p.add_argument("--worker", choices=sorted(WORKERS), help=argparse.SUPPRESS)
    p.add_argument("--net", choices=sorted(NETS), help=argparse.SUPPRESS)
    p.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--batch", type=int, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        args.threads = int(args.threads)
        worker_main(args)
        return
    nets, batches = args.nets.split(","), [int(b) for b in args.batches.split(",")]
    threads, peers = [int(t) for t in args.threads.split(",")], args.peers.split(",")
    results: dict = {"machine": machine(), "epochs": args.epochs, "runs": args.runs, "peak": {},
                     "nets": {}, "cells": []}
    with tempfile.TemporaryDirectory() as tmp:
        folders = {}
        for net in nets:
            folders[net] = Path(tmp) / net
            folders[net].mkdir()
            results["nets"][net] = {"arch": NETS[net][0],
                                    "rows": make_data(folders[net], net, args.repeat),
                                    "flops_per_sample": 6 * multiply_adds(net)}
        cells = [{"net": net, "batch": batch, "threads": t, **{peer: [] for peer in peers}}
                 for net in nets for batch in batches for t in threads]
        for run in range(args.runs):
            for t in threads:          # the best of the runs' peaks: the least disturbed
                for name, peak in measure_peak(folders[nets[0]], t).items():
                    if peak.get("2048^3", 0) > results["peak"].get(name, {}).get("2048^3", 0):
                        results["peak"][name] = peak
            for cell in cells:
                for peer in peers:
                    cell[peer].append(measure(peer, cell["net"], folders[cell["net"]],
                                              cell["batch"], cell["threads"], args.epochs))
                    rows = results["nets"][cell["net"]]["rows"]
                    print(f"run {run + 1}/{args.runs}: {_progress(cell, peer, rows)}",
                          file=sys.stderr, flush=True)
    results["cells"] = cells
    summarise(results)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(render(results))
    print(f"\nwrote {args.out}", file=sys.stderr)


def _rate(result: dict, rows: int) -> float | None:
    return rows / statistics.median(result["train"][1:]) if "train" in result else None


def _progress(cell: dict, peer: str, rows: int) -> str:
    r = cell[peer][-1]
    rate = _rate(r, rows)
    what = f"{rate:,.0f} samples/s" if rate else r.get("skipped") or r.get("error")
    return f"{cell['net']} batch {cell['batch']} x{cell['threads']} {peer}: {what}"


def _spread(values: list[float]) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def summarise(results: dict) -> None:
    """Per cell: each peer's samples/s and the nncli / PyTorch ratio (median and range over the
    runs, the ratio taken within each run), the limit and the fraction of it reached."""
    for cell in results["cells"]:
        net = results["nets"][cell["net"]]
        rates = {peer: [_rate(r, net["rows"]) for r in cell[peer]] for peer in PEERS
                 if peer in cell}
        cell["train_samples_per_s"] = {peer: _spread(v) for peer, v in rates.items()
                                       if v and all(v)}
        if "nncli" in cell["train_samples_per_s"] and "torch" in cell["train_samples_per_s"]:
            cell["ratio_vs_torch"] = _spread([a / b for a, b in zip(rates["nncli"],
                                                                    rates["torch"])])
        peak = real_peak(results, cell["threads"])
        if peak and "nncli" in cell["train_samples_per_s"]:
            limit = peak * 1e9 / net["flops_per_sample"]
            cell["limit_samples_per_s"] = limit
            cell["fraction_of_limit"] = {k: v / limit for k, v in
                                         cell["train_samples_per_s"]["nncli"].items()}


def _fmt(spread: dict | None, scale: float, unit: str, digits: int) -> str:
    if not spread:
        return "-"
    m, lo, hi = (spread[k] * scale for k in ("median", "min", "max"))
    if lo == hi:
        return f"{m:,.{digits}f}{unit}"
    return f"{m:,.{digits}f}{unit} ({lo:,.{digits}f}-{hi:,.{digits}f})"


def render(results: dict) -> str:
    runs = results["runs"]
    lines = [f"Training samples/s, median of {results['epochs']} epochs after a warm-up"
             + (f"; median (range) of {runs} runs" if runs > 1 else "") + ":", "",
             "| network | batch | threads | nncli | PyTorch | nncli / PyTorch | limit "
             "| of limit | cross-core ns |", "|" + "---|" * 9]
    for c in results["cells"]:
        rate = c["train_samples_per_s"]
        lines.append(
            f"| {results['nets'][c['net']]['arch']} | {c['batch']} | {c['threads']} "
            f"| {_fmt(rate.get('nncli'), 1e-3, 'k', 1)} | {_fmt(rate.get('torch'), 1e-3, 'k', 1)}"
            f" | {_fmt(c.get('ratio_vs_torch'), 1, 'x', 2)} "
            f"| {c.get('limit_samples_per_s', 0) / 1000:,.0f}k "
            f"| {_fmt(c.get('fraction_of_limit'), 100, '%', 1)} "
            f"| {column({p: [r.get('cross_core_ns') for r in c.get(p, [])] for p in PEERS})} |")
    lines.append("")
    lines.append(f"limit: {blas_kernels(results)}; FLOPs a sample: "
                 + ", ".join(f"{k} {v['flops_per_sample']:,}" for k, v in
                             results["nets"].items()))
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
