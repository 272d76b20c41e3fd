"""Many trainings at once: a shell loop of ``nncli train`` against one ``nncli sweep``, and what
Ray costs by itself, in one run.

    pip install -e '.[sweep]'
    python benchmarks/bench_sweep.py              # ~3 minutes on 2 cores
    python benchmarks/bench_sweep.py --repeat 1   # a quick look

The 16 configurations: a small network on the MNIST subset shipped in datasets/ (5000 images of
784 pixels), arch {32relu-10linear, 64relu-10linear} x lr {1e-3, 3e-3} x batch size {32, 128}
x optimizer {adam, sgd}, 5 epochs, --validation-split 0.2, seed 0. The loop runs each as its own
``nncli train`` process (as a shell script would: start, read the file, train, write); the
sweep reads the file once and runs the trials side by side on a local Ray instance, one CPU each.
Ray's fixed costs: the seconds ``ray.init()`` takes to start a local instance, and the seconds a
trial costs beyond its training (a sweep of 16 one-epoch trials on the digits file, 1797 rows
of 64 pixels, whose training takes milliseconds: (wall - start) x parallel slots / trials).
Every figure is a wall time of a fresh process; each is repeated (--repeat) and reported as
median and range. Nothing here asserts anything: it prints a table and writes JSON.
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

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
MNIST = ROOT / "datasets" / "mnist5k.csv.gz"
DIGITS = ROOT / "datasets" / "digits.csv"
GRID = {"arch": ["32relu-10linear", "64relu-10linear"], "lr": ["1e-3", "3e-3"],
        "batch-size": ["32", "128"], "optimizer": ["adam", "sgd"]}
COMMON = ["--loss", "sparse_cce", "--logits", "--validation-split", "0.2", "-q"]
ENV = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled"}


def nncli(*args: str) -> list[str]:
    return [sys.executable, "-m", "nncli", *args]


def timed(argv: list[str], cwd: Path) -> tuple[float, str]:
    start = time.perf_counter()
    done = subprocess.run(argv, cwd=cwd, env=ENV, capture_output=True, text=True, check=True)
    return time.perf_counter() - start, done.stdout


def combinations() -> list[dict[str, str]]:
    out = [{}]
    for name, values in GRID.items():
        out = [{**c, name: v} for c in out for v in values]
    return out


def shell_loop(folder: Path) -> float:
    start = time.perf_counter()
    for i, combo in enumerate(combinations()):
        argv = nncli("train", str(MNIST), *COMMON, "--epochs", "5",
                     "-o", str(folder / f"m{i}.safetensors"))
        for name, value in combo.items():
            argv += [f"--{name}", value]
        subprocess.run(argv, cwd=folder, env=ENV, capture_output=True, check=True)
    return time.perf_counter() - start


def sweep(folder: Path, data: Path, extra: list[str], tag: str) -> tuple[float, dict]:
    argv = nncli("sweep", str(data), *COMMON, "--json", "-o", str(folder / f"{tag}.safetensors"),
                 "--out-dir", str(folder / tag), *extra)
    seconds, out = timed(argv, folder)
    return seconds, json.loads(out)


def ray_start() -> float:
    code = ("import time, ray; t = time.perf_counter(); ray.init(include_dashboard=False, "
            "log_to_driver=False, logging_level='ERROR'); print(time.perf_counter() - t); "
            "ray.shutdown()")
    return float(subprocess.run([sys.executable, "-c", code], env=ENV, capture_output=True,
                                text=True, check=True).stdout.strip().splitlines()[-1])


def spread(values: list[float]) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values),
            "runs": values}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    grid_args = [a for name, values in GRID.items() for a in (f"--{name}", ",".join(values))]
    loops, sweeps, starts, overheads, slots = [], [], [], [], os.cpu_count() or 1
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        # compile the kernels once, outside every measurement
        subprocess.run(nncli("train", str(DIGITS), *COMMON, "--arch", "16relu-10linear",
                             "--epochs", "1", "-o", str(folder / "warm.safetensors")),
                       env=ENV, check=True)
        for r in range(args.repeat):
            loops.append(shell_loop(folder))
            seconds, doc = sweep(folder, MNIST, grid_args + ["--epochs", "5"], f"mnist{r}")
            sweeps.append(seconds)
            starts.append(ray_start())
            seconds, tiny_doc = sweep(folder, DIGITS, grid_args + ["--epochs", "1"], f"tiny{r}")
            overheads.append((seconds - starts[-1]) * min(slots, 16) / len(tiny_doc["trials"]))
            print(f"run {r + 1}: loop {loops[-1]:.1f} s, sweep {sweeps[-1]:.1f} s "
                  f"(best {doc['best']['config']} val_loss "
                  f"{doc['best']['metrics']['val_loss']:.4f}), ray.init {starts[-1]:.1f} s, "
                  f"per trial {overheads[-1]:.2f} s", flush=True)
    result = {"machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
              "configurations": len(combinations()), "shell_loop_s": spread(loops),
              "sweep_s": spread(sweeps), "ray_init_s": spread(starts),
              "seconds_per_trial_beyond_training": spread(overheads),
              "loop_over_sweep": spread([a / b for a, b in zip(loops, sweeps)])}
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / "sweep.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"\n16 configurations, MNIST subset, 5 epochs ({os.cpu_count()} CPUs):")
    for key in ("shell_loop_s", "sweep_s", "loop_over_sweep", "ray_init_s",
                "seconds_per_trial_beyond_training"):
        s = result[key]
        print(f"  {key:36s} median {s['median']:.2f}  range {s['min']:.2f}-{s['max']:.2f}")


if __name__ == "__main__":
    main()
