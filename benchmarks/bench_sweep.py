"""Many trainings at once: a shell loop of ``nncli train``, scikit-learn's ``GridSearchCV`` and
one ``nncli sweep`` on the same grid and data, and what Ray costs by itself, in one run.

    pip install -e '.[sweep]' scikit-learn pandas
    python benchmarks/bench_sweep.py                          # both grids, 3 runs each
    python benchmarks/bench_sweep.py --grid wide4 --repeat 1  # a quick look
    python benchmarks/bench_sweep.py --folds 5                # nncli cv, sweep --folds

The data: the MNIST subset in datasets/ (5000 images of 784 pixels, 10 classes),
--validation-split 0.2 (the last 20% of the rows), seed 0. The grids (``GRIDS``):

- ``small16``: arch {32relu-10linear, 64relu-10linear} x lr {1e-3, 3e-3} x batch size
  {32, 128} x optimizer {adam, sgd}, 5 epochs: 16 trainings of a fraction of a second each.
- ``wide4``: arch 256relu-128relu-10linear x lr {1e-3, 3e-3} x batch size {32, 128}, adam,
  20 epochs: 4 trainings of a few seconds each.

The peers, each a fresh process timed from outside (wall time, start to exit):

- ``loop``: one ``nncli train`` per configuration, one after the other, as a shell script runs
  them (start, read the file, train, write the model); with ``--folds K`` one ``nncli cv``.
- ``gridsearch``: scikit-learn's ``GridSearchCV(Pipeline(StandardScaler, MLPClassifier),
  n_jobs=2)``, as practitioners tune that model: the file read with pandas, the same grid
  (``hidden_layer_sizes``, ``solver`` "adam"/"sgd" with momentum 0 as nncli's SGD,
  ``learning_rate_init``, ``batch_size``, ``max_iter`` = epochs, ``random_state=0``),
  features standardised as nncli does by default, scored by log loss. One split: a
  ``PredefinedSplit`` holding out the last 20% of the rows, as nncli's --validation-split,
  and ``refit=False`` (nncli keeps the best trial's model, trained once); with ``--folds K``
  ``cv=K`` and ``refit=True`` (nncli's -o is then the chosen configuration trained on all rows).
- ``sweep``: one ``nncli sweep`` of the grid (``--folds K`` with --folds) on a local Ray
  instance started by the sweep, one CPU per trial.

Ray's fixed costs are measured beside them: the seconds ``ray.init()`` takes to start a local
instance, and the seconds a trial costs beyond its training (a sweep of the 16 configurations
for one epoch on the digits file, 1797 rows of 64 pixels, whose trainings take milliseconds:
(wall - Ray's start) x parallel slots / trials). Every figure is repeated (--repeat) and
reported as median and range, with the ratios of the loop's time to each peer's in the same
run. Nothing here asserts anything: it prints a table and writes JSON to
results/sweep.json (one entry per grid).
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

from bench import machine  # the CPU's name, as the other benchmarks record it

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
MNIST = ROOT / "datasets" / "mnist5k.csv.gz"
DIGITS = ROOT / "datasets" / "digits.csv"
# Each grid: the options that vary (as nncli spells them), and the epochs.
GRIDS = {
    "small16": ({"arch": ["32relu-10linear", "64relu-10linear"], "lr": ["1e-3", "3e-3"],
                 "batch-size": ["32", "128"], "optimizer": ["adam", "sgd"]}, 5),
    "wide4": ({"arch": ["256relu-128relu-10linear"], "lr": ["1e-3", "3e-3"],
               "batch-size": ["32", "128"]}, 20),
}
SPLIT = 0.2
COMMON = ["--loss", "sparse_cce", "--logits", "-q"]
PEERS = ("loop", "gridsearch", "sweep")
ENV = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled"}


def nncli(*args: str) -> list[str]:
    return [sys.executable, "-m", "nncli", *args]


def timed(argv: list[str], cwd: Path) -> tuple[float, str]:
    """Wall seconds of a fresh process running ``argv``, and what it printed."""
    start = time.perf_counter()
    done = subprocess.run(argv, cwd=cwd, env=ENV, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed:\n{done.stderr[-2000:]}")
    return seconds, done.stdout


def combinations(grid: dict[str, list[str]]) -> list[dict[str, str]]:
    out = [{}]
    for name, values in grid.items():
        out = [{**c, name: v} for c in out for v in values]
    return out


def split_args(folds: int) -> list[str]:
    return ["--folds", str(folds)] if folds else ["--validation-split", str(SPLIT)]


def shell_loop(folder: Path, grid_name: str, folds: int) -> float:
    grid, epochs = GRIDS[grid_name]
    start = time.perf_counter()
    for i, combo in enumerate(combinations(grid)):
        command = "cv" if folds else "train"
        argv = nncli(command, str(MNIST), *COMMON, *split_args(folds), "--epochs", str(epochs),
                     "-o", str(folder / f"m{i}" if folds else folder / f"m{i}.safetensors"))
        for name, value in combo.items():
            argv += [f"--{name}", value]
        timed(argv, folder)
    return time.perf_counter() - start


def grid_search(folder: Path, grid_name: str, folds: int) -> tuple[float, dict]:
    seconds, out = timed([sys.executable, __file__, "--gridsearch-child", grid_name,
                          "--folds", str(folds)], folder)
    return seconds, json.loads(out.strip().splitlines()[-1])


def gridsearch_child(grid_name: str, folds: int) -> None:
    """GridSearchCV on the grid, in this (fresh) process; prints the best as JSON."""
    import warnings

    import numpy as np
    import pandas as pd
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.model_selection import GridSearchCV, PredefinedSplit
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    warnings.simplefilter("ignore", ConvergenceWarning)
    grid, epochs = GRIDS[grid_name]
    frame = pd.read_csv(MNIST)
    y = frame.pop("label").to_numpy()
    X = frame.to_numpy(np.float32)
    hidden = [tuple(int(layer.removesuffix("relu")) for layer in arch.split("-")[:-1])
              for arch in grid["arch"]]
    params = {"mlp__hidden_layer_sizes": hidden,
              "mlp__learning_rate_init": [float(v) for v in grid["lr"]],
              "mlp__batch_size": [int(v) for v in grid["batch-size"]],
              "mlp__solver": grid.get("optimizer", ["adam"])}
    model = Pipeline([("scale", StandardScaler()),
                      ("mlp", MLPClassifier(max_iter=epochs, momentum=0.0, random_state=0))])
    if folds:
        cv, refit = folds, True
    else:
        n_train = int(len(X) * (1 - SPLIT))      # nncli's --validation-split: the last rows
        cv, refit = PredefinedSplit([-1] * n_train + [0] * (len(X) - n_train)), False
    search = GridSearchCV(model, params, scoring="neg_log_loss", cv=cv, n_jobs=2, refit=refit)
    search.fit(X, y)
    best = search.best_params_
    print(json.dumps({"config": {k.removeprefix("mlp__"): v for k, v in best.items()},
                      "val_loss": -float(search.best_score_)}))


def sweep(folder: Path, grid_name: str, folds: int, tag: str) -> tuple[float, dict]:
    grid, epochs = GRIDS[grid_name]
    grid_args = [a for name, values in grid.items() for a in (f"--{name}", ",".join(values))]
    argv = nncli("sweep", str(MNIST), *COMMON, *split_args(folds), *grid_args, "--epochs",
                 str(epochs), "--json", "-o", str(folder / f"{tag}.safetensors"), "--out-dir",
                 str(folder / tag))
    seconds, out = timed(argv, folder)
    return seconds, json.loads(out)


def ray_start() -> float:
    code = ("import time, ray; t = time.perf_counter(); ray.init(include_dashboard=False, "
            "log_to_driver=False, logging_level='ERROR'); print(time.perf_counter() - t); "
            "ray.shutdown()")
    return float(subprocess.run([sys.executable, "-c", code], env=ENV, capture_output=True,
                                text=True, check=True).stdout.strip().splitlines()[-1])


def per_trial_overhead(folder: Path, start: float, tag: str) -> float:
    """Seconds a trial costs beyond its training: 16 one-epoch trials on the digits file."""
    grid, _ = GRIDS["small16"]
    grid_args = [a for name, values in grid.items() for a in (f"--{name}", ",".join(values))]
    argv = nncli("sweep", str(DIGITS), *COMMON, *split_args(0), *grid_args, "--epochs", "1",
                 "--json", "-o", str(folder / f"{tag}.safetensors"), "--out-dir",
                 str(folder / tag))
    seconds, out = timed(argv, folder)
    trials = len(json.loads(out)["trials"])
    return (seconds - start) * min(os.cpu_count() or 1, trials) / trials


def spread(values: list[float]) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values),
            "runs": values}


def bench_grid(folder: Path, grid_name: str, peers: list[str], folds: int, repeat: int,
               overheads: bool) -> dict:
    """Every peer on one grid, ``repeat`` times, interleaved so that a busy moment of the
    machine falls on all of them alike."""
    times: dict[str, list[float]] = {p: [] for p in peers}
    best: dict[str, dict] = {}
    starts, per_trial = [], []
    for r in range(repeat):
        line = []
        for peer in peers:
            if peer == "loop":
                seconds = shell_loop(folder, grid_name, folds)
            elif peer == "gridsearch":
                seconds, best[peer] = grid_search(folder, grid_name, folds)
            else:
                seconds, doc = sweep(folder, grid_name, folds, f"{grid_name}{r}")
                best[peer] = {"config": doc["best"]["config"],
                              "val_loss": doc["best"]["metrics"].get("val_loss")}
            times[peer].append(seconds)
            line.append(f"{peer} {seconds:.1f} s")
        if overheads:
            starts.append(ray_start())
            per_trial.append(per_trial_overhead(folder, starts[-1], f"tiny{r}"))
            line.append(f"ray.init {starts[-1]:.1f} s, per trial {per_trial[-1]:.2f} s")
        print(f"{grid_name} run {r + 1}: " + ", ".join(line), flush=True)
    result = {"configurations": len(combinations(GRIDS[grid_name][0])),
              "epochs": GRIDS[grid_name][1], "folds": folds,
              "seconds": {p: spread(v) for p, v in times.items()}, "best": best}
    if "loop" in peers:
        result["loop_over"] = {p: spread([a / b for a, b in zip(times["loop"], v)])
                               for p, v in times.items() if p != "loop"}
    if overheads:
        result["ray_init_s"] = spread(starts)
        result["seconds_per_trial_beyond_training"] = spread(per_trial)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--grid", choices=[*GRIDS, "all"], default="all")
    parser.add_argument("--peers", default=",".join(PEERS))
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--folds", type=int, default=0, help="K-fold cross-validation "
                        "(0: one split, --validation-split 0.2)")
    parser.add_argument("--no-overheads", action="store_true", help="skip Ray's start and "
                        "per-trial cost")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "sweep.json")
    parser.add_argument("--gridsearch-child", choices=list(GRIDS), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.gridsearch_child:
        gridsearch_child(args.gridsearch_child, args.folds)
        return
    peers = [p for p in args.peers.split(",") if p]
    unknown = set(peers) - set(PEERS)
    if unknown:
        parser.error(f"unknown peers {sorted(unknown)}; choose from {', '.join(PEERS)}")
    grids = list(GRIDS) if args.grid == "all" else [args.grid]
    results = json.loads(args.out.read_text()) if args.out.is_file() else {}
    results = results if "grids" in results else {"grids": {}}
    results["machine"] = machine()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        # compile the kernels once, outside every measurement
        timed(nncli("train", str(DIGITS), *COMMON, "--arch", "16relu-10linear", "--epochs",
                    "1", "-o", str(folder / "warm.safetensors")), folder)
        for i, name in enumerate(grids):
            key = f"{name}-folds{args.folds}" if args.folds else name
            results["grids"][key] = bench_grid(folder, name, peers, args.folds, args.repeat,
                                               overheads=i == 0 and not args.no_overheads
                                               and "sweep" in peers)
    args.out.parent.mkdir(exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\n{results['machine']}; wall seconds, median (range) of {args.repeat}:")
    for name in grids:
        key = f"{name}-folds{args.folds}" if args.folds else name
        r = results["grids"][key]
        print(f"  {key}: {r['configurations']} configurations, {r['epochs']} epochs")
        for peer, s in r["seconds"].items():
            ratio = r.get("loop_over", {}).get(peer)
            shown = f"   loop/{peer} {ratio['median']:.2f}x" if ratio else ""
            print(f"    {peer:11s} {s['median']:6.2f} ({s['min']:.2f}-{s['max']:.2f}){shown}")
        for key2 in ("ray_init_s", "seconds_per_trial_beyond_training"):
            if key2 in r:
                s = r[key2]
                print(f"    {key2:36s} {s['median']:.2f} ({s['min']:.2f}-{s['max']:.2f})")


if __name__ == "__main__":
    main()
