"""``nncli sweep`` as a process, seen from outside (issue 18): Ray's output kept off stdout,
so ``--json`` stays JSON when a trial's worker is killed, and off the terminal, so the live
table leaves nothing half-drawn. Each sweep starts its own local Ray, in its own process."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

try:
    from terminal import run_on_terminal, screen
    from test_sweep import DIGITS, RAY_TEST_ENV
except ImportError:                       # tests/ imported as a package
    from tests.terminal import run_on_terminal, screen
    from tests.test_sweep import DIGITS, RAY_TEST_ENV

pytest.importorskip("ray")

WORKER = b"ray::ImplicitFunc.train"       # a function trainable's worker process, in ps
BOX = set("┏┳┓┃┡╇┩│└┴┘━─")                # what Rich draws a table with


def sweep_argv(digits_csv: Path, tmp_path: Path, *options: str) -> list[str]:
    return [sys.executable, "-m", "nncli", "sweep", str(digits_csv), "--arch", "32relu-10linear",
            *DIGITS, *options, "--out-dir", str(tmp_path / "out"), "-o",
            str(tmp_path / "best.safetensors")]


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (Ray's raylet is the sweep's child, its workers the
    raylet's), read from /proc: only this sweep's workers, never another Ray's."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def kill_a_worker_once_checkpointed(proc: subprocess.Popen, out_dir: Path,
                                    killed: list[int]) -> None:
    """SIGKILL the sweep's trial worker once the trial has a checkpoint (it is training)."""
    deadline = time.monotonic() + 120
    while proc.poll() is None and time.monotonic() < deadline:
        if list((out_dir / "tune").glob("trial_*/checkpoint_*")):
            for pid in descendants(proc.pid):
                try:
                    if not _trains(pid):
                        continue
                    os.kill(pid, signal.SIGKILL)
                except OSError:           # gone meanwhile
                    continue
                killed.append(pid)
                return
        time.sleep(0.05)


def _trains(pid: int) -> bool:
    """Whether process ``pid`` (one of the sweep's) is a trial's worker: Ray titles it
    WORKER where it can set process titles; everywhere, it is the Python worker that has
    loaded the kernels' compiler (idle workers and Ray's own processes have not)."""
    if Path(f"/proc/{pid}/cmdline").read_bytes().startswith(WORKER):
        return True
    return b"llvmlite" in Path(f"/proc/{pid}/maps").read_bytes()


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="finds workers in /proc")
def test_json_stays_json_when_a_trial_worker_is_killed(tmp_path, digits_csv):
    out_dir = tmp_path / "out"
    proc = subprocess.Popen(sweep_argv(digits_csv, tmp_path, "--lr", "1e-3", "--epochs", "10",
                                       "--batch-size", "4", "--checkpoint-seconds", "0",
                                       "--quiet", "--json"),
                            env={**os.environ, **RAY_TEST_ENV}, cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    killed: list[int] = []
    killer = threading.Thread(target=kill_a_worker_once_checkpointed,
                              args=(proc, out_dir, killed), daemon=True)
    killer.start()
    try:
        out, err = proc.communicate(timeout=240)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    killer.join()
    assert proc.returncode == 0, err
    assert killed, "no trial worker found to kill"
    doc = json.loads(out)                  # stdout holds nncli's document and nothing else
    [trial] = doc["trials"]
    assert trial["status"] == "finished" and trial["retries"] >= 1, trial
    log = (out_dir / "ray.log").read_text()
    assert "A worker died or was killed" in log and f"Worker PID: {killed[0]}" in log
    assert "logging.cc" in log             # Ray's C++ core wrote to descriptor 2
    assert "A worker died" not in err and "logging.cc" not in err and "Traceback" not in err
    assert err.strip().splitlines()[-1] == (
        f"nncli: note: Ray's messages about the trials that failed or were restarted are in "
        f"{out_dir / 'ray.log'}")


def test_live_table_leaves_nothing_half_drawn_on_a_terminal(tmp_path, digits_csv):
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES", "NO_COLOR")}
    env.update(RAY_TEST_ENV, TERM="xterm-256color")
    rc, text = run_on_terminal(sweep_argv(digits_csv, tmp_path, "--lr", "1e-3,3e-3",
                                          "--epochs", "1"), env, columns=120)
    lines = screen(text, columns=120)
    shown = "\n".join(lines)
    assert rc == 0, shown
    title = next(i for i, line in enumerate(lines) if "leaderboard (by val_loss" in line)
    # the live table went away whole (it is transient): above the leaderboard, no title and
    # no border of it, and nothing of Ray's
    left = [line for line in lines[:title] if line.strip() == "trials" or BOX & set(line)]
    assert not left, shown
    assert [line for line in lines if line.lstrip().startswith("┏")] == [lines[title + 1]]
    assert "logging.cc" not in text and "(raylet)" not in text
    assert len([line for line in lines[title:] if line.startswith("│")]) == 2, shown
