"""Packed sweeps: tiny trainings of a grid dealt into packs (nncli.sweep.packing), a pack
trained in one Ray Tune trial (nncli.sweep.tuning.packs), each configuration still its own row
and model, bit for bit nncli train's."""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path

import pytest

from nncli.sweep.packing import (PACK_SECONDS, TINY_SECONDS, estimated_seconds, plan_packs)
from nncli.train import TrainConfig

try:
    from clirun import assert_one_line_error, interrupt_after_checkpoint, run, tensors_equal
except ImportError:                       # tests/ imported as a package
    from tests.clirun import (assert_one_line_error, interrupt_after_checkpoint, run,
                               tensors_equal)

ROOT = Path(__file__).resolve().parent.parent
DIGITS = ["--loss", "sparse_cce", "--logits", "--validation-split", "0.2"]


# ------------------------------------------------------------------ dealing into packs

def _dealt(packs: list[list[int]], n: int) -> None:
    everything = sorted(i for p in packs for i in p)
    assert everything == list(range(n))                  # each configuration exactly once
    assert all(p == sorted(p) and p for p in packs)


def test_tiny_trainings_share_one_pack_per_slot():
    seconds = [0.1] * 16
    packs = plan_packs(seconds, slots=2)
    _dealt(packs, 16)
    assert [len(p) for p in packs] == [8, 8]


def test_packs_hold_about_pack_seconds_each_when_there_is_more():
    seconds = [0.9] * 16                                 # 14.4 s in all: 8 packs of 1.8 s
    packs = plan_packs(seconds, slots=2)
    _dealt(packs, 16)
    assert len(packs) == int(-(-sum(seconds) // PACK_SECONDS))
    assert all(sum(seconds[i] for i in p) <= PACK_SECONDS for p in packs)


def test_packs_are_balanced_longest_first():
    seconds = [0.5, 0.05, 0.4, 0.1, 0.3, 0.2, 0.02, 0.6]
    packs = plan_packs(seconds, slots=2)
    _dealt(packs, len(seconds))
    loads = [sum(seconds[i] for i in p) for p in packs]
    assert max(loads) - min(loads) <= max(seconds)
    assert plan_packs(seconds, slots=2) == packs         # deterministic


@pytest.mark.parametrize("seconds", [[0.1, 0.1, TINY_SECONDS, 0.1], [0.1, None, 0.1, 0.1],
                                     [0.1, 0.1]])
def test_no_packing_where_it_does_not_pay(seconds):
    # a training that is not tiny, one with no estimate (a conv net), or no more
    # configurations than slots: a trial each
    assert plan_packs(seconds, slots=2) == [[i] for i in range(len(seconds))]


def test_pack_n_deals_n_in_order_and_one_means_none():
    assert plan_packs([5.0] * 7, slots=2, per_trial=3) == [[0, 1, 2], [3, 4, 5], [6]]
    assert plan_packs([0.1] * 4, slots=2, per_trial=1) == [[0], [1], [2], [3]]
    with pytest.raises(ValueError):
        plan_packs([0.1], slots=2, per_trial=-1)


def test_estimate_counts_the_dense_weights_the_rows_and_the_steps():
    config = TrainConfig.from_options(arch="32relu-dropout0.5-10linear", loss="sparse_cce",
                                      logits=True, epochs=5, batch_size=32,
                                      validation_split=0.2)
    # 784 x 32 + 32 x 10 weights; 800 training rows of 1000; 25 steps an epoch
    weights, rows, steps = 784 * 32 + 32 * 10, 800, 25 * 5
    want = 6 * weights * rows * 5 / 20e9 + steps * 20e-6
    assert estimated_seconds(config, 1000, 784) == pytest.approx(want, rel=1e-12)
    conv = TrainConfig.from_options(arch="8conv3relu-10linear", loss="sparse_cce",
                                    logits=True, channels=1)
    assert estimated_seconds(conv, 1000, 64) is None


@pytest.mark.parametrize("extra", [["--scheduler", "asha"], ["--folds", "2"],
                                   ["--lr", "log:1e-3:1e-2"]])
def test_pack_n_with_what_it_cannot_pack_is_one_line_before_ray(capsys, tmp_path, digits_csv,
                                                               monkeypatch, extra):
    monkeypatch.setitem(sys.modules, "ray", None)          # no Ray needed to refuse it
    split = [] if "--folds" in extra else ["--validation-split", "0.2"]
    rc, out, err = run(capsys, "sweep", digits_csv, "--loss", "sparse_cce", "--logits", *split,
                       "--arch", "16relu-10linear,32relu-10linear", "--pack", "2", *extra,
                       "--out-dir", tmp_path / "out", "-o", tmp_path / "best.safetensors")
    line = assert_one_line_error(rc, out, err, "--pack 2")
    assert "pip install" not in line
    assert not (tmp_path / "out").exists()


# -------------------------------------------------------------------- packed sweeps

ray = pytest.importorskip("ray")


@pytest.fixture(scope="module")
def local_ray():
    env = {"RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}
    with pytest.MonkeyPatch.context() as mp:
        for key, value in env.items():
            mp.setenv(key, value)
        from nncli.sweep import tuning

        with tuning.ray_session(None, cpus=2):
            yield


def _train_like(capsys, config: dict, out: Path, **more) -> Path:
    argv = ["train", str(ROOT / "datasets" / "digits.csv"), *DIGITS]
    for name, value in {**config, **more}.items():
        argv += [f"--{name.replace('_', '-')}", str(value)]
    rc, _, err = run(capsys, *argv, "--quiet", "-o", out)
    assert rc == 0, err
    return out


def test_packed_sweep_keeps_a_row_and_nncli_trains_model_per_configuration(capsys, tmp_path,
                                                                           local_ray):
    rc, out, err = run(capsys, "sweep", ROOT / "datasets" / "digits.csv", *DIGITS, "--arch",
                       "16relu-10linear,32relu-10linear", "--lr", "1e-3,1e-2", "--epochs", "2",
                       "--seed", "5", "--pack", "2", "--json", "--out-dir", tmp_path / "out",
                       "-o", tmp_path / "best.safetensors")
    assert rc == 0, err
    doc = json.loads(out)
    trials = doc["trials"]
    assert len(trials) == 4
    assert {(t["config"]["arch"], t["config"]["lr"]) for t in trials} == {
        (a, lr) for a in ("16relu-10linear", "32relu-10linear") for lr in (1e-3, 1e-2)}
    tune_trials = {t["trial_id"].rsplit("-", 1)[0] for t in trials}
    assert len(tune_trials) == 2                          # two packs of two
    losses = [t["metrics"]["val_loss"] for t in trials]
    assert losses == sorted(losses)
    for t in trials:
        assert t["status"] == "finished" and t["epochs"] == 2 and t["seconds"] > 0
        assert Path(t["model"]) == tmp_path / "out" / "trials" / f"{t['trial_id']}.safetensors"
    # the second configuration of a pack trained after the first, in its process: still
    # nncli train's model, bit for bit
    for t in trials:
        if t["trial_id"].endswith("-1"):
            trained = _train_like(capsys, t["config"], tmp_path / f"{t['trial_id']}.st",
                                  epochs=2, seed=5)
            tensors_equal(Path(t["model"]), trained)
    tensors_equal(tmp_path / "best.safetensors", Path(trials[0]["model"]))
    assert json.loads((tmp_path / "out" / "sweep.json").read_text())["packs"] == [[0, 1],
                                                                                  [2, 3]]


def test_killed_pack_goes_on_with_what_it_had_not_checkpointed(capsys, tmp_path, local_ray,
                                                              digits_csv):
    from nncli.sweep.driver import Request, run_sweep
    from nncli.sweep.space import parse_space

    options = {"arch": "32relu-10linear", "loss": "sparse_cce", "logits": True,
               "validation_split": "0.2", "epochs": "15", "batch_size": "4",
               "lr": "1e-3,2e-3,3e-3"}
    request = Request(str(digits_csv), options, out_dir=str(tmp_path / "out"),
                      output=str(tmp_path / "best.safetensors"), max_failures=2,
                      checkpoint_seconds=0, pack=3)
    killed: dict = {}

    def on_event(row) -> None:
        # the second configuration reported: its worker is killed while it trains the third
        # (Tune may not have kept the checkpoint of the report it is telling of yet; the
        # first configuration's, one report earlier, it has)
        if not killed and row.status == "finished" and row.trial_id.endswith("-1"):
            killed.update(pid=row.pid)
            os.kill(row.pid, signal.SIGKILL)

    report = run_sweep(request, parse_space(options), on_event=on_event)
    assert killed, "no second configuration finished"
    assert not report.interrupted
    rows = {r.trial_id.rsplit("-", 1)[1]: r for r in report.rows}
    assert sorted(rows) == ["0", "1", "2"]
    assert all(r.status == "finished" and r.retries >= 1 for r in rows.values()), rows
    assert rows["0"].pid == killed["pid"]             # kept from the checkpoint, not retrained
    assert rows["2"].pid != killed["pid"]             # trained by the pack's new worker
    for j, row in rows.items():
        trained = _train_like(capsys, {"arch": "32relu-10linear", "lr": row.config["lr"]},
                              tmp_path / f"{j}.st", epochs=15, batch_size=4)
        tensors_equal(Path(row.model), trained)


def test_interrupted_packed_sweep_resumes_to_the_end(capsys, tmp_path, digits_csv):
    import subprocess

    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}
    out_dir = tmp_path / "out"
    # one pack of four: after its first checkpoint (the first configuration) three trainings
    # of about a second each remain for Ctrl-C to land in (two packs of two ended first in CI)
    argv = [sys.executable, "-m", "nncli", "sweep", str(digits_csv), *DIGITS, "--arch",
            "32relu-10linear", "--lr", "1e-3,2e-3,3e-3,4e-3", "--epochs", "30", "--batch-size",
            "4", "--pack", "4", "--checkpoint-seconds", "0", "--quiet", "--out-dir",
            str(out_dir), "-o", str(tmp_path / "best.safetensors")]
    returncode, err = interrupt_after_checkpoint(argv, env, tmp_path, out_dir)
    assert returncode == 130, err
    lines = (out_dir / "leaderboard.csv").read_text().splitlines()
    assert len(lines) == 5 and any(",pending," in line for line in lines[1:]), lines
    done = subprocess.run([sys.executable, "-m", "nncli", "sweep", "--resume", str(out_dir),
                           "--quiet", "--json"], env=env, cwd=tmp_path, capture_output=True,
                          text=True, timeout=180)
    assert done.returncode == 0, done.stderr
    trials = json.loads(done.stdout)["trials"]
    assert [t["status"] for t in trials] == ["finished"] * 4, trials
    assert {t["config"]["lr"] for t in trials} == {1e-3, 2e-3, 3e-3, 4e-3}
    for t in trials:
        trained = _train_like(capsys, {"arch": "32relu-10linear", "lr": t["config"]["lr"]},
                              tmp_path / f"{t['trial_id']}.st", epochs=30, batch_size=4)
        tensors_equal(Path(t["model"]), trained)
