"""Training and prediction speed of nncli beside PyTorch, scikit-learn and Keras, in one run.

    pip install -e . -r benchmarks/requirements.txt
    python benchmarks/bench.py                      # full table, ~15 minutes on 2 cores
    python benchmarks/bench.py --nets A --peers nncli,torch --threads 2   # a quick look

Data: synthetic MNIST-shaped 60000 x 784 float32 (standard normal, fixed seed), 10 classes that
can be learned (argmax of X @ M for a fixed random M). Networks (hidden relu, logits out, sparse
cross-entropy from logits, Adam lr 1e-3, Glorot init, shuffled every epoch):
A 25relu-15relu-10linear, B 128relu-10linear, C 512relu-512relu-10linear.

Every measurement runs in a fresh subprocess with its thread count fixed before any library
loads. Training: samples/s as the median of 3 epochs after a warm-up epoch. Prediction: samples/s
over the 60000 rows (best of 3). A peer that is not installed is reported as skipped.
The machine's limit: NumPy float32 matmul GFLOP/s at 2048^3 and at each network's largest
training product, and the samples/s that peak allows (6 x sum(in x out) FLOPs per sample).
The limit is measured with OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE unset (where the environment
sets them) so that OpenBLAS runs the kernel it picks for this CPU; the table's first line names
it (threadpoolctl). Every other figure runs in the environment as users have it.
Beside it a memory roof: the samples/s a copy bandwidth measured in the same run allows at the
bytes a step must move (traffic.py: weights, gradients, Adam's moments, activations). The copy is
measured at 1 MiB, 8 MiB, half the last-level cache and main memory (bandwidth.py); each cell
takes the fastest of those that hold its working set (parameters, gradients, moments, a batch's
activations), so a network whose state sits in the cache is held to the cache's speed.
"of limit" is against the smaller roof, and "bound by" names it. "cross-core ns" is the round trip
of a cache line between two threads (placement.py) in nncli's and PyTorch's processes, before
the warm-up epoch / after the last: on a VM it tells where the host put the vCPUs.
Nothing here asserts anything: it measures and prints a table (stdout) and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bandwidth import choose, describe
from placement import bracketed, column
from startup import describe_startup, startup_figures
from torch_loop import torch_epochs
from traffic import traffic_bound, working_set_bytes

NETS = {"A": [25, 15], "B": [128], "C": [512, 512]}
ARCH = {k: "-".join(f"{u}relu" for u in v) + "-10linear" for k, v in NETS.items()}
ROWS, FEATURES, CLASSES = 60000, 784, 10
PEERS = ("nncli", "torch", "sklearn", "keras")
HERE = Path(__file__).resolve().parent


# --------------------------------------------------------------------------- data

def make_data(folder: Path, rows: int) -> tuple[Path, Path]:
    import numpy as np

    rng = np.random.default_rng(0)
    X = rng.standard_normal((rows, FEATURES), dtype=np.float32)
    M = rng.standard_normal((FEATURES, CLASSES)).astype(np.float32)
    y = (X @ M).argmax(axis=1).astype(np.int64)
    np.save(folder / "X.npy", X)
    np.save(folder / "y.npy", y)
    return folder / "X.npy", folder / "y.npy"


def layer_sizes(net: str) -> list[int]:
    """Widths from the input to the logits of network ``net``."""
    return [FEATURES] + NETS[net] + [CLASSES]


def flops_per_sample(net: str) -> int:
    sizes = layer_sizes(net)
    return 6 * sum(a * b for a, b in zip(sizes[:-1], sizes[1:]))


# --------------------------------------------------------------------------- workers
# Each returns {"train": [seconds per epoch...], "predict": seconds, "loss": final loss}; nncli's
# and torch's also "cross_core_ns" (placement.py: [before the warm-up, after the last epoch]).

def run_nncli(X, y, net, batch, epochs):
    import numba
    import numpy as np

    from nncli.data import Dataset
    from nncli.train import TrainConfig, fit, prepare, warm_up

    cfg = TrainConfig(arch=ARCH[net], loss="sparse_cce", logits=True, epochs=epochs,
                      batch_size=batch, normalize=False)
    run = prepare(cfg, Dataset.from_arrays(X, y.astype(np.float32)[:, None], "synthetic"),
                  own_data=True)
    warm_up(run.config, run.X.shape[1], run.X_val is not None)
    seconds, cross = bracketed(numba.get_num_threads(), lambda: [r.seconds for r in fit(run)])
    run.model.outputs(X[:10])
    predict = _best_of(3, lambda: run.model.outputs(X))
    return {"train": seconds, "predict": predict, "loss": run.history[-1].loss,
            "cross_core_ns": cross}


def run_torch(X, y, net, batch, epochs):
    """cross_core_ns is read in Numba's pool, not torch's: the VM's state, not torch's threads'."""
    import torch

    torch.manual_seed(0)
    sizes = layer_sizes(net)
    layers = []
    for a, b in zip(sizes[:-1], sizes[1:]):
        linear = torch.nn.Linear(a, b)
        torch.nn.init.xavier_uniform_(linear.weight)   # Glorot, as Keras and nncli
        torch.nn.init.zeros_(linear.bias)
        layers += [linear, torch.nn.ReLU()]
    model = torch.nn.Sequential(*layers[:-1])
    Xt, yt = torch.from_numpy(X), torch.from_numpy(y)
    (seconds, loss), cross = bracketed(torch.get_num_threads(),
                                       lambda: torch_epochs(model, Xt, yt, batch, epochs))

    def predict():
        with torch.inference_mode():
            model(Xt)

    return {"train": seconds, "predict": _best_of(3, predict), "loss": loss,
            "cross_core_ns": cross}


def run_sklearn(X, y, net, batch, epochs):
    import warnings

    import numpy as np
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier

    warnings.simplefilter("ignore", ConvergenceWarning)
    model = MLPClassifier(hidden_layer_sizes=tuple(NETS[net]), batch_size=batch,
                          learning_rate_init=1e-3, shuffle=True, random_state=0)
    classes = np.arange(CLASSES)
    seconds = []
    for _ in range(epochs):
        start = time.perf_counter()
        model.partial_fit(X, y, classes=classes)
        seconds.append(time.perf_counter() - start)
    return {"train": seconds, "predict": _best_of(3, lambda: model.predict_proba(X)),
            "loss": float(model.loss_)}


def run_keras(X, y, net, batch, epochs):
    import keras

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((FEATURES,))]
                             + [keras.layers.Dense(u, activation="relu") for u in NETS[net]]
                             + [keras.layers.Dense(CLASSES)])
    model.compile(optimizer=keras.optimizers.Adam(1e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    seconds, loss = [], float("nan")
    for _ in range(epochs):
        start = time.perf_counter()
        hist = model.fit(X, y, batch_size=batch, epochs=1, shuffle=True, verbose=0)
        seconds.append(time.perf_counter() - start)
        loss = float(hist.history["loss"][-1])
    return {"train": seconds,
            "predict": _best_of(3, lambda: model.predict(X, batch_size=4096, verbose=0)),
            "loss": loss}


def run_matmul(X, y, net, batch, epochs):
    """NumPy float32 GFLOP/s at 2048^3 and at the network's training shapes."""
    import numpy as np

    def gflops(m, k, n):
        a = np.ones((m, k), np.float32)
        b = np.ones((k, n), np.float32)
        reps = max(1, int(2e9 / (2 * m * k * n)))
        a @ b
        best = _best_of(3, lambda: [a @ b for _ in range(reps)])
        return 2 * m * k * n * reps / best / 1e9

    out = {"2048^3": gflops(2048, 2048, 2048)}
    for name in NETS:
        sizes = layer_sizes(name)
        k, n = max(zip(sizes[:-1], sizes[1:]), key=lambda s: s[0] * s[1])
        for b in (32, 256):
            out[f"{name}/{b}"] = gflops(b, k, n)
    try:
        from threadpoolctl import threadpool_info

        out["blas"] = [{k: i.get(k) for k in ("internal_api", "architecture", "num_threads")}
                       for i in threadpool_info()]
    except ImportError:
        pass
    return out


def run_bandwidth(X, y, net, batch, epochs):
    """Copy GB/s (bytes read + written) at each footprint of bandwidth.py's ladder, at Numba's
    thread count, which worker_main sets."""
    from bandwidth import bandwidth_ladder

    return bandwidth_ladder()


WORKERS = {"nncli": run_nncli, "torch": run_torch, "sklearn": run_sklearn, "keras": run_keras,
           "matmul": run_matmul, "bandwidth": run_bandwidth}
MODULES = {"nncli": "nncli", "torch": "torch", "sklearn": "sklearn", "keras": "keras",
           "matmul": "numpy", "bandwidth": "numba"}


def _best_of(n, fn):
    times = []
    for _ in range(n):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def worker_main(args) -> None:
    import importlib.util

    if importlib.util.find_spec(MODULES[args.worker]) is None:
        print(json.dumps({"skipped": f"{MODULES[args.worker]} is not installed"}))
        return
    if args.worker in ("nncli", "bandwidth"):
        import numba

        numba.set_num_threads(args.threads)
    elif args.worker == "torch":
        import torch

        torch.set_num_threads(args.threads)
        torch.set_num_interop_threads(1)
    elif args.worker == "keras":
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    import numpy as np

    X = np.load(args.data / "X.npy")
    y = np.load(args.data / "y.npy")
    if args.worker in ("sklearn", "matmul"):
        from threadpoolctl import threadpool_limits

        with threadpool_limits(args.threads):
            result = WORKERS[args.worker](X, y, args.net, args.batch, args.epochs + 1)
    else:
        result = WORKERS[args.worker](X, y, args.net, args.batch, args.epochs + 1)
    print(json.dumps(result))


def measure(worker: str, data: Path, net: str, batch: int, threads: int, epochs: int,
            extra_env: dict | None = None) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads),
           "OPENBLAS_NUM_THREADS": str(threads), "NUMBA_NUM_THREADS": str(max(threads, 2)),
           "TF_CPP_MIN_LOG_LEVEL": "3", **(extra_env or {})}
    cmd = [sys.executable, __file__, "--worker", worker, "--data", str(data), "--net", net,
           "--batch", str(batch), "--threads", str(threads), "--epochs", str(epochs)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        return {"error": (proc.stderr.strip().splitlines() or ["no output"])[-1]}
    return json.loads(lines[-1])


# --------------------------------------------------------------------------- report

def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--nets", default="A,B,C")
    p.add_argument("--batches", default="32,256")
    p.add_argument("--threads", default="1,2")
    p.add_argument("--peers", default=",".join(PEERS))
    p.add_argument("--epochs", type=int, default=3, help="timed epochs after one warm-up")
    p.add_argument("--rows", type=int, default=ROWS)
    p.add_argument("--out", type=Path, default=HERE / "results" / "latest.json")
    p.add_argument("--no-startup", action="store_true")
    p.add_argument("--worker", choices=sorted(WORKERS), help=argparse.SUPPRESS)
    p.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--net", help=argparse.SUPPRESS)
    p.add_argument("--batch", type=int, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        args.threads = int(args.threads)
        worker_main(args)
        return
    nets, batches = args.nets.split(","), [int(b) for b in args.batches.split(",")]
    threads, peers = [int(t) for t in args.threads.split(",")], args.peers.split(",")
    results: dict = {"machine": machine(), "rows": args.rows, "cells": [], "peak": {},
                     "bandwidth": {}}
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp)
        make_data(data, args.rows)
        for t in threads:
            results["peak"][str(t)] = measure("matmul", data, "A", 32, t, 0)
            if "OPENBLAS_CORETYPE" in os.environ:
                # What OpenBLAS's own kernel choice reaches on this CPU (see README).
                own = {k: v for k, v in os.environ.items()
                       if k not in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")}
                results["peak"][f"{t}, OPENBLAS_CORETYPE unset"] = _measure_env(data, t, own)
            copy = results["bandwidth"][str(t)] = measure("bandwidth", data, "A", 32, t, 0)
            print(f"copy bandwidth x{t}: {describe(copy)}", file=sys.stderr, flush=True)
        for net in nets:
            for batch in batches:
                for t in threads:
                    cell = {"net": net, "arch": ARCH[net], "batch": batch, "threads": t}
                    for peer in peers:
                        cell[peer] = measure(peer, data, net, batch, t, args.epochs)
                        print(_progress(cell, peer, args.rows), file=sys.stderr, flush=True)
                    results["cells"].append(cell)
        summarise(results)
        _save(results, args.out)
        if not args.no_startup:
            try:
                results["startup"] = startup_figures(data, ARCH["A"], ARCH["B"])
            except subprocess.CalledProcessError as e:
                results["startup"] = {"error": f"{e.cmd}: {e.stderr}"}
    _save(results, args.out)
    print(render(results))
    print(f"\nwrote {args.out}", file=sys.stderr)


def _save(results: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2) + "\n")


def _measure_env(data: Path, t: int, env: dict) -> dict:
    cmd = [sys.executable, __file__, "--worker", "matmul", "--data", str(data), "--net", "A",
           "--batch", "32", "--threads", str(t), "--epochs", "0"]
    proc = subprocess.run(cmd, capture_output=True, text=True,
                          env={**env, "OPENBLAS_NUM_THREADS": str(t), "OMP_NUM_THREADS": str(t)})
    lines = proc.stdout.strip().splitlines()
    return json.loads(lines[-1]) if proc.returncode == 0 and lines else {"error": proc.stderr}


def _progress(cell: dict, peer: str, rows: int) -> str:
    r = cell[peer]
    what = (f"{rows / statistics.median(r['train'][1:]):,.0f} samples/s" if "train" in r
            else r.get("skipped") or r.get("error"))
    return f"{cell['net']}/{cell['batch']} x{cell['threads']} {peer}: {what}"


def summarise(results: dict) -> None:
    rows = results["rows"]
    for cell in results["cells"]:
        rates, predict = {}, {}
        for peer in PEERS:
            r = cell.get(peer, {})
            if "train" in r:
                rates[peer] = rows / statistics.median(r["train"][1:])
                predict[peer] = rows / r["predict"]
        cell["train_samples_per_s"] = rates
        cell["predict_samples_per_s"] = predict
        peers = {k: v for k, v in rates.items() if k != "nncli"}
        if "nncli" in rates and peers:
            best = max(peers, key=peers.get)
            cell["best_peer"] = best
            cell["ratio_vs_best_peer"] = rates["nncli"] / peers[best]
        if "nncli" in rates and "torch" in rates:
            cell["ratio_vs_torch"] = rates["nncli"] / rates["torch"]
            cell["predict_ratio_vs_torch"] = predict["nncli"] / predict["torch"]
        bounds = roofs(results, cell)
        if bounds:
            cell["bound_by"] = min(bounds, key=bounds.get)
            if "nncli" in rates:
                cell["fraction_of_limit"] = rates["nncli"] / bounds[cell["bound_by"]]


def roofs(results: dict, cell: dict) -> dict[str, float]:
    """The cell's roofs in samples/s, each where it was measured: "compute" (the real peak over
    the FLOPs a sample) and "traffic" (the copy bandwidth at the cell's working set over the
    bytes a step moves, per sample); also stored in the cell as limit_samples_per_s and
    traffic_bound, with working_set_bytes, bandwidth_gbs and bandwidth_level (the footprint
    that bandwidth was measured at: "1 MiB", ..., "memory")."""
    out = {}
    sizes, batch = layer_sizes(cell["net"]), cell["batch"]
    peak = real_peak(results, cell["threads"])
    if peak:
        out["compute"] = cell["limit_samples_per_s"] = peak * 1e9 / flops_per_sample(cell["net"])
    ladder = results.get("bandwidth", {}).get(str(cell["threads"]), {})
    if ladder.get("sizes"):
        cell["working_set_bytes"] = working_set_bytes(sizes, batch, "adam")
        level = choose(ladder, cell["working_set_bytes"])
        cell["bandwidth_gbs"], cell["bandwidth_level"] = level["gbs"], level["label"]
        out["traffic"] = cell["traffic_bound"] = traffic_bound(level["gbs"], sizes, batch, "adam")
    return out


def real_peak(results: dict, threads: int) -> float | None:
    """The machine's float32 limit at ``threads``: NumPy's 2048^3 matmul with OpenBLAS choosing
    its own kernel (OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE unset for that measurement only:
    forced to Haswell, OpenBLAS runs AVX2 on an AVX-512 CPU and understates the limit), else
    as the environment has it."""
    peaks = results["peak"]
    own = peaks.get(f"{threads}, OPENBLAS_CORETYPE unset", {})
    return own.get("2048^3") or peaks.get(str(threads), {}).get("2048^3")


def blas_kernels(results: dict) -> str:
    """Which OpenBLAS kernel each peak measurement ran (threadpoolctl's 'architecture')."""
    parts = []
    for name, peak in results["peak"].items():
        archs = sorted({b.get("architecture") or "?" for b in peak.get("blas", [])})
        if archs:
            parts.append(f"{name} thread(s): {', '.join(archs)} at {peak.get('2048^3', 0):.0f} "
                         f"GFLOP/s")
    return "; ".join(parts)


def render(results: dict) -> str:
    head = ("| net/batch | threads | nncli | PyTorch | scikit-learn | Keras | nncli / best peer "
            "| nncli / PyTorch | predict nncli / PyTorch | compute limit (2048^3 peak) "
            "| copy GB/s (footprint) | traffic bound | of limit | bound by | cross-core ns |")
    copies = "; ".join(f"{t} thread(s) {describe(r)}"
                       for t, r in results.get("bandwidth", {}).items())
    lines = [f"limit: {blas_kernels(results)}", f"bandwidth: {copies or 'not measured'}", "",
             head, "|" + "---|" * 15]
    for c in results["cells"]:
        rate = c["train_samples_per_s"]

        def fmt(peer):
            if peer in rate:
                return f"{rate[peer] / 1000:,.0f}k"
            r = c.get(peer, {})
            return "skipped" if "skipped" in r else ("error" if "error" in r else "-")

        lines.append(
            f"| {c['arch']} / {c['batch']} | {c['threads']} | {fmt('nncli')} | {fmt('torch')} "
            f"| {fmt('sklearn')} | {fmt('keras')} | {_x(c.get('ratio_vs_best_peer'))} "
            f"({c.get('best_peer', '-')}) | {_x(c.get('ratio_vs_torch'))} "
            f"| {_x(c.get('predict_ratio_vs_torch'))} "
            f"| {_k(c.get('limit_samples_per_s'))} | {_copy(c)} | {_k(c.get('traffic_bound'))} "
            f"| {100 * c.get('fraction_of_limit', 0):.0f}% | {c.get('bound_by', '-')} "
            f"| {column({p: [c.get(p, {}).get('cross_core_ns')] for p in ('nncli', 'torch')})} |")
    peak = results["peak"]
    lines.append("")
    for t, p in peak.items():
        if "2048^3" in p:
            shapes = ", ".join(f"{k} {v:.0f}" for k, v in p.items()
                               if k not in ("2048^3", "blas"))
            lines.append(f"NumPy float32 matmul, {t} thread(s): {p['2048^3']:.0f} GFLOP/s at "
                         f"2048^3; at training shapes: {shapes}")
    if "startup" in results and "error" not in results["startup"]:
        lines.append(describe_startup(results["startup"]))
    lines.append(f"machine: {results['machine']}")
    return "\n".join(lines)


def _x(v):
    return f"{v:.2f}x" if v else "-"


def _k(v):
    return f"{v / 1000:,.0f}k" if v else "-"


def _copy(cell: dict) -> str:
    """The copy bandwidth the cell's traffic bound used and the footprint it was measured at."""
    if "bandwidth_gbs" not in cell:
        return "-"
    return f"{cell['bandwidth_gbs']:.0f} ({cell['bandwidth_level']})"


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}"


if __name__ == "__main__":
    main()
