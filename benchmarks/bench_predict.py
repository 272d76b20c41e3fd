"""Prediction end to end: ``nncli predict MODEL X.npy`` and ``nncli eval MODEL data.npz`` beside
the network's forward pass alone, and PyTorch's forward pass of the same weights, in one run.

    pip install -e . -r benchmarks/requirements.txt
    python benchmarks/bench_predict.py                      # networks A, B, C at 1 and 2 threads
    python benchmarks/bench_predict.py --nets C --threads 1 --repeats 3   # a quick look

Data and networks are bench.py's: synthetic MNIST-shaped float32 rows (standard normal, fixed
seed) with 10 learnable classes; A 25relu-15relu-10linear, B 128relu-10linear, C
512relu-512relu-10linear, logits out, sparse cross-entropy. Each network is trained for one
epoch on the first 2000 rows (standardised, as by default), so its preprocessing stage is a real
one; the weights do not matter to the timing.

Per network and thread count, each in a fresh subprocess with its thread count fixed before any
library loads (NUMBA_NUM_THREADS, OMP/MKL/OpenBLAS_NUM_THREADS, ``--threads``):

- ``forward``: Model.outputs over the ``--rows`` rows already preprocessed (the network alone);
- ``torch``: PyTorch's eager forward pass (``torch.set_num_threads``, inference mode) of the
  same weights over the same preprocessed rows;
- ``predict``: ``python -m nncli predict MODEL X.npy > /dev/null``, wall time of the process;
  ``predict_1_row``: the same of a 1-row file, the process's start-up (imports, loading the
  cached kernels, the model file);
- ``eval``: ``python -m nncli eval MODEL data.npz --json > /dev/null`` (X and y of the same
  rows), and ``eval_1_row`` likewise on 10 rows;
- ``predict_in_process`` and ``eval_in_process``: what those commands run once started
  (nncli.predict.write_predictions over the NPY's blocks to /dev/null; load_training_data and
  nncli.evaluate.evaluate of the NPZ), timed in the forward pass's process: no start-up to
  subtract, so no start-up's noise either.

Each figure is measured ``--repeats`` times (the commands taking turns), timings kept in the
JSON with the best and the median; a first untimed run of each command warms Numba's cache.
Ratios are taken in the same run: ``predict_over_forward`` = (predict - predict_1_row) /
forward (each the best of the repeats), ``eval_over_forward`` likewise,
``predict_in_process_over_forward`` and ``eval_in_process_over_forward`` the in-process figures
over the forward pass, ``forward_vs_torch`` = torch / forward (above 1: nncli faster).
The load average is recorded before and after (a shared machine shows in it). Nothing here
asserts anything: it prints a markdown table (stdout) and writes benchmarks/results/predict.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench import ARCH, make_data
from bench import machine as bench_machine

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
NNCLI = ROOT   # the checkout measured (--nncli): this one, or another to compare with
TRAIN_ROWS = 2000


# --------------------------------------------------------------------------- set-up

def prepare(folder: Path, nets: list[str], rows: int) -> dict[str, Path]:
    """Data files in ``folder`` and one briefly trained model per network."""
    import numpy as np

    make_data(folder, rows)
    X, y = np.load(folder / "X.npy"), np.load(folder / "y.npy")
    np.save(folder / "X1.npy", X[:1])
    np.savez(folder / "data.npz", X=X, y=y.astype(np.float32))
    np.savez(folder / "data10.npz", X=X[:10], y=y[:10].astype(np.float32))
    np.savez(folder / "train.npz", X=X[:TRAIN_ROWS], y=y[:TRAIN_ROWS].astype(np.float32))
    models = {}
    for net in nets:
        models[net] = folder / f"{net}.safetensors"
        _run([*_nncli(), "train", str(folder / "train.npz"), "--arch", ARCH[net], "--loss",
              "sparse_cce", "--logits", "--epochs", "1", "-q", "-o", str(models[net])],
             _env(2))
    return models


def _nncli() -> list[str]:
    return [sys.executable, "-m", "nncli"]


def _env(threads: int) -> dict:
    path = os.pathsep.join(p for p in (str(NNCLI), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": str(threads),
            "MKL_NUM_THREADS": str(threads), "OPENBLAS_NUM_THREADS": str(threads),
            "NUMBA_NUM_THREADS": str(threads)}


def _run(cmd: list[str], env: dict) -> float:
    """Wall seconds of ``cmd``, its stdout thrown away; CalledProcessError when it fails."""
    start = time.perf_counter()
    # run in the checkout measured: `python -m` looks in the working folder before PYTHONPATH
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env,
                   cwd=NNCLI)
    return time.perf_counter() - start


# --------------------------------------------------------------------------- workers

def worker_main(args) -> None:
    """Time the forward pass (``--worker forward``) or PyTorch's (``torch``) in this process."""
    import numpy as np

    if args.worker == "torch":
        import importlib.util

        if importlib.util.find_spec("torch") is None:
            print(json.dumps({"skipped": "torch is not installed"}))
            return
        import torch

        torch.set_num_threads(args.threads)
        torch.set_num_interop_threads(1)
    from nncli.modelfile import load_model

    model = load_model(args.model)
    X = model.preprocessing.transform(np.load(args.data))
    if args.worker == "forward":
        model.outputs(X[:10])   # compiled, or loaded from the cache, before timing
        result = {"times": _times(args.repeats, lambda: model.outputs(X))}
        for name, fn in library_calls(model, args.data).items():
            fn()
            result[name] = {"times": _times(args.repeats, fn)}
        print(json.dumps(result))
        return
    else:
        net = torch_network(model)
        Xt = torch.from_numpy(X)

        def forward():
            with torch.inference_mode():
                net(Xt)

        forward()
        times = _times(args.repeats, forward)
    print(json.dumps({"times": times}))


def library_calls(model, data: Path) -> dict:
    """What ``nncli predict`` and ``nncli eval`` run once their process has started, as
    calls: predict_in_process reads the NPY a block at a time and writes the CSV to /dev/null;
    eval_in_process loads the NPZ and computes the report."""
    from nncli.data import Encoded, iter_features, load_training_data
    from nncli.evaluate import evaluate

    try:
        from nncli.predict import write_predictions
    except ImportError:   # a checkout from before it (--nncli): the command's own helper
        from nncli.cli.using import _write_predictions as write_predictions

    sink = open(os.devnull, "w")   # noqa: SIM115 - the worker's life
    npz = data.with_name("data.npz")

    def predict():
        blocks = iter_features(str(data), model.input_schema(), model.target_columns,
                               encoded=Encoded())
        write_predictions(sink, model, blocks, "proba", None)

    def evaluate_npz():
        ds = load_training_data(str(npz), classes=model.classes, schema=model.input_schema(),
                                model_targets=model.target_lookup())
        evaluate(model, ds.X, ds.Y, ds.source, ds.line_numbers, own_data=True)

    return {"predict_in_process": predict, "eval_in_process": evaluate_npz}


def torch_network(model):
    """An eager torch.nn.Sequential holding ``model``'s dense layers' weights (relu between)."""
    import torch

    layers = []
    for record in model.layer_records():
        linear = torch.nn.Linear(*record.kernel.shape)
        with torch.no_grad():
            linear.weight.copy_(torch.from_numpy(record.kernel.T.copy()))
            linear.bias.copy_(torch.from_numpy(record.bias.copy()))
        layers.append(linear)
        if record.spec.activation == "relu":
            layers.append(torch.nn.ReLU())
    return torch.nn.Sequential(*layers).eval()


def _times(n: int, fn) -> list[float]:
    out = []
    for _ in range(n):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return out


def in_worker(worker: str, model: Path, data: Path, threads: int, repeats: int) -> dict:
    cmd = [sys.executable, __file__, "--worker", worker, "--model", str(model), "--data",
           str(data), "--threads", str(threads), "--repeats", str(repeats)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=_env(threads), cwd=NNCLI)
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        return {"error": (proc.stderr.strip().splitlines() or ["no output"])[-1]}
    return json.loads(lines[-1])


# --------------------------------------------------------------------------- one cell

def measure_cell(folder: Path, model: Path, threads: int, repeats: int) -> dict:
    """Every figure of one network at one thread count (see the module docstring)."""
    env = _env(threads)
    flag = ["--threads", str(threads)]
    commands = {
        "predict": [*_nncli(), "predict", str(model), str(folder / "X.npy"), *flag],
        "predict_1_row": [*_nncli(), "predict", str(model), str(folder / "X1.npy"), *flag],
        "eval": [*_nncli(), "eval", str(model), str(folder / "data.npz"), "--json", *flag],
        "eval_1_row": [*_nncli(), "eval", str(model), str(folder / "data10.npz"), "--json",
                       *flag],
    }
    forward = in_worker("forward", model, folder / "X.npy", threads, repeats)
    cell: dict = {"forward": {"times": forward["times"]} if "times" in forward else forward,
                  **{k: v for k, v in forward.items() if k.endswith("_in_process")},
                  "torch": in_worker("torch", model, folder / "X.npy", threads, repeats)}
    # the commands take turns, repeat after repeat, so that a change in the machine's load
    # falls on a command and its start-up alike
    for name, cmd in commands.items():
        try:
            _run(cmd, env)   # warms Numba's cache and the page cache
            cell[name] = {"times": []}
        except subprocess.CalledProcessError as e:
            cell[name] = {"error": e.stderr.decode(errors="replace").strip()[-300:]}
    for _ in range(repeats):
        for name, cmd in commands.items():
            if "times" in cell[name]:
                cell[name]["times"].append(_run(cmd, env))
    for figure in cell.values():
        if "times" in figure:
            figure["best"] = min(figure["times"])
            figure["median"] = statistics.median(figure["times"])
    return cell


def ratios(cell: dict) -> dict:
    """The cell's ratios from best times (see the module docstring); missing figures left out."""
    best = {k: v["best"] for k, v in cell.items() if isinstance(v, dict) and "best" in v}
    out = {}
    if "forward" not in best:
        return out
    for name in ("predict", "eval"):
        if name in best and f"{name}_1_row" in best:
            out[f"{name}_over_forward"] = (best[name] - best[f"{name}_1_row"]) / best["forward"]
        if f"{name}_in_process" in best:
            out[f"{name}_in_process_over_forward"] = best[f"{name}_in_process"] / best["forward"]
    if "torch" in best:
        out["forward_vs_torch"] = best["torch"] / best["forward"]
    return out


# --------------------------------------------------------------------------- report

def render(results: dict) -> str:
    lines = ["| net | threads | forward | PyTorch forward | forward vs PyTorch | predict (1 row) "
             "| predict / forward (in process) | eval (10 rows) | eval / forward (in process) |",
             "|" + "---|" * 9]

    def t(cell, name):
        f = cell.get(name, {})
        if "best" not in f:
            return "error" if "error" in f else ("skipped" if "skipped" in f else "-")
        return f"{f['best']:.3f} s (median {f['median']:.3f})"

    for c in results["cells"]:
        r = c["ratios"]

        def x(key):
            return f"{r[key]:.2f}x" if key in r else "-"

        lines.append(f"| {c['net']} | {c['threads']} | {t(c, 'forward')} | {t(c, 'torch')} "
                     f"| {x('forward_vs_torch')} | {t(c, 'predict')} ({t(c, 'predict_1_row')}) "
                     f"| {x('predict_over_forward')} ({x('predict_in_process_over_forward')}) "
                     f"| {t(c, 'eval')} ({t(c, 'eval_1_row')}) "
                     f"| {x('eval_over_forward')} ({x('eval_in_process_over_forward')}) |")
    lines.append("")
    lines.append(f"{results['rows']} rows; best of {results['repeats']}; load average "
                 f"{results['load_before']} before, {results['load_after']} after")
    lines.append(f"machine: {results['machine']}; nncli from {results['nncli']}")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--nets", default="A,B,C")
    p.add_argument("--threads", default="1,2")
    p.add_argument("--rows", type=int, default=30000)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--out", type=Path, default=HERE / "results" / "predict.json")
    p.add_argument("--nncli", type=Path, default=ROOT,
                   help="the nncli checkout to measure (default: this one), e.g. a `git "
                        "worktree` of an older commit to compare with")
    p.add_argument("--worker", choices=("forward", "torch"), help=argparse.SUPPRESS)
    p.add_argument("--model", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        args.threads = int(args.threads)
        worker_main(args)
        return
    global NNCLI
    NNCLI = args.nncli.resolve()
    nets, threads = args.nets.split(","), [int(t) for t in args.threads.split(",")]
    results: dict = {"machine": bench_machine(), "nncli": str(NNCLI), "rows": args.rows,
                     "repeats": args.repeats,
                     "load_before": _load(), "cells": []}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        models = prepare(folder, nets, args.rows)
        for net in nets:
            for t in threads:
                cell = {"net": net, "arch": ARCH[net], "threads": t,
                        **measure_cell(folder, models[net], t, args.repeats)}
                cell["ratios"] = ratios(cell)
                results["cells"].append(cell)
                print(f"{net} x{t}: {cell['ratios']}", file=sys.stderr, flush=True)
    results["load_after"] = _load()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(render(results))
    print(f"\nwrote {args.out}", file=sys.stderr)


def _load() -> str:
    try:
        return " ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:
        return "n/a"


if __name__ == "__main__":
    main()
