"""``nncli sweep`` (issue 11): grids checked before Ray starts, local sweeps through the real
entry point, ASHA, a killed worker retried from its checkpoint, a two-node cluster on one
machine, Ctrl-C and --resume, and Ray kept out of every other command.

Ray starts once for the local sweeps (``local_ray``, two CPUs) and is reused by the sweeps
through ``tuning.ray_session``; the tests that must see no Ray run before it starts, and the
cluster test runs last, after shutting it down. A trial's model must equal ``nncli train``'s
of the same options bit for bit, so models are compared tensor by tensor, exactly.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

try:
    from clirun import assert_one_line_error, interrupt_after_checkpoint, run, tensors_equal
except ImportError:                       # tests/ imported as a package
    from tests.clirun import (assert_one_line_error, interrupt_after_checkpoint, run,
                               tensors_equal)

ray = pytest.importorskip("ray")

ROOT = Path(__file__).resolve().parent.parent
DIGITS = ["--loss", "sparse_cce", "--logits", "--validation-split", "0.2"]
# What Ray needs on these machines (see shared/reference/ray-notes.md): no token auth on
# 127.0.0.1, no usage reports, and the settings tuning.ray_session gives its own instance.
RAY_TEST_ENV = {"RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0",
                "RAY_CHDIR_TO_TRIAL_DIR": "0", "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS": "1",
                "RAY_AIR_NEW_OUTPUT": "0"}
TRIAL_KEYS = {"trial_id", "config", "metrics", "epochs", "status", "node", "retries",
              "seconds", "model"}


@pytest.fixture(scope="module")
def ray_env():
    with pytest.MonkeyPatch.context() as mp:
        for key, value in RAY_TEST_ENV.items():
            mp.setenv(key, value)
        yield


@pytest.fixture(scope="module")
def local_ray(ray_env):
    """One local Ray instance (two CPUs) for every local sweep of this module."""
    from nncli.sweep import tuning

    with tuning.ray_session(None, cpus=2):
        yield


@pytest.fixture
def no_ray(monkeypatch):
    """Ray as if not installed: ``import ray`` fails, and nncli.sweep.tuning is imported
    again (a package keeps its imported submodules as attributes too)."""
    import nncli.sweep

    monkeypatch.setitem(sys.modules, "ray", None)
    monkeypatch.delitem(sys.modules, "nncli.sweep.tuning", raising=False)
    monkeypatch.delattr(nncli.sweep, "tuning", raising=False)


def sweep(capsys, *argv) -> tuple[int, str, str]:
    return run(capsys, "sweep", *argv)


def train_like(capsys, trial_config: dict, fixed: list[str], out: Path) -> Path:
    """``nncli train`` with a trial's options: what the trial must have computed."""
    argv = ["train", str(ROOT / "datasets" / "digits.csv"), *fixed]
    for name, value in trial_config.items():
        argv += [f"--{name.replace('_', '-')}", str(value)]
    rc, _, err = run(capsys, *argv, "--quiet", "-o", out)
    assert rc == 0, err
    return out


FOLDED = ["--loss", "sparse_cce", "--logits"]   # a cross-validated sweep: no validation split


def cv_like(capsys, trial_config: dict, fixed: list[str], folds: int, out: Path) -> dict:
    """``nncli cv`` with a trial's options: the folds' models in ``out`` and its document."""
    argv = ["cv", str(ROOT / "datasets" / "digits.csv"), *fixed, "--folds", str(folds)]
    for name, value in trial_config.items():
        argv += [f"--{name.replace('_', '-')}", str(value)]
    rc, out_text, err = run(capsys, *argv, "--quiet", "--json", "-o", out)
    assert rc == 0, err
    return json.loads(out_text)


def folds_equal(trial_folder: Path, cv_folder: Path, folds: int) -> None:
    """A cross-validated trial's fold models are ``nncli cv``'s, bit for bit."""
    for i in range(1, folds + 1):
        tensors_equal(trial_folder / f"fold{i}.safetensors", cv_folder / f"fold{i}.safetensors")


# ------------------------------------------------- refused before Ray: no Ray, no folder

@pytest.mark.parametrize("argv, needle", [
    (["--arch", "16relu-10linear,16relux-10linear", *DIGITS], "16relux-10linear"),
    (["--arch", "16relu-10linear,16relu-10softmax", *DIGITS], "--arch 16relu-10softmax"),
    (["--arch", "16relu-10linear", "--lr", "log:0:1", *DIGITS], "--lr log:0:1"),
    (["--arch", "16relu-10linear", "--missing", "mean,drop", *DIGITS], "--missing"),
    (["--arch", "16relu-10linear", "--lernrate", "0.1", *DIGITS], "--lernrate"),
    (["--arch", "16relu-10linear", "--loss", "sparse_cce", "--logits"], "--metric val_loss"),
    (["--arch", "16relu-10linear", "--history", "h.csv", *DIGITS], "--history"),
    (["--arch", "16relu-10linear", "--init-from", "a.safetensors,b.safetensors", *DIGITS],
     "--init-from"),
], ids=["activation", "loss-vs-last-layer", "log-range", "varying-missing", "unknown-option",
        "val-metric-without-validation", "history", "varying-init-from"])
def test_bad_grid_is_one_line_before_ray(capsys, tmp_path, no_ray, digits_csv, argv, needle):
    # with Ray unimportable, reaching the point where Ray starts would say "pip install"
    out_dir = tmp_path / "out"
    started = time.monotonic()
    rc, out, err = sweep(capsys, digits_csv, *argv, "--out-dir", out_dir, "-o",
                         tmp_path / "best.safetensors")
    line = assert_one_line_error(rc, out, err, needle)
    assert "pip install" not in line
    assert time.monotonic() - started < 5
    assert not out_dir.exists()
    assert not (tmp_path / "best.safetensors").exists()


def test_bad_grid_leaves_ray_uninitialised(capsys, tmp_path, digits_csv):
    rc, out, err = sweep(capsys, digits_csv, "--arch", "16relu-10linear,16relux-10linear",
                         *DIGITS, "--out-dir", tmp_path / "out")
    assert_one_line_error(rc, out, err, "relux")
    assert not ray.is_initialized()
    assert not (tmp_path / "out").exists()


def test_without_ray_one_line_names_the_extra(capsys, tmp_path, no_ray, digits_csv):
    rc, out, err = sweep(capsys, digits_csv, "--arch", "16relu-10linear", *DIGITS,
                         "--epochs", "1", "--out-dir", tmp_path / "out")
    assert_one_line_error(rc, out, err, "pip install 'nncli[sweep]'")


def _sweep_folder(tmp_path: Path, digits_csv: Path) -> tuple[Path, dict]:
    """A sweep's folder with the sweep.json that nncli sweep writes, and that document."""
    from nncli.sweep.driver import Request

    folder = tmp_path / "sweep"
    folder.mkdir()
    request = Request(str(digits_csv), {"arch": "16relu-10linear", "loss": "sparse_cce",
                                        "logits": True, "validation_split": "0.2",
                                        "lr": "0.01,0.1", "epochs": "1"},
                      output=str(tmp_path / "best.safetensors"), out_dir=str(folder))
    request.save()
    return folder, json.loads((folder / "sweep.json").read_text())


@pytest.mark.parametrize("change, needle", [
    (lambda doc: "[" * 200_000 + "]" * 200_000, "(JSON nested more than 64 levels deep)"),
    (lambda doc: "{not json", "damaged sweep request (Expecting property name"),
    (lambda doc: [1, 2], "damaged sweep request: not a JSON object, found [1, 2]"),
    (lambda doc: {**doc, "samples": "x"}, "'samples' must be a whole number, found \"x\""),
    (lambda doc: {**doc, "address": 3}, "'address' must be text or null, found 3"),
    (lambda doc: {**doc, "options": [1]}, "'options' must be an object, found [1]"),
    (lambda doc: {**doc, "options": {**doc["options"], "lr": 0.1}},
     "'options': 'lr' must be text, found 0.1"),
    (lambda doc: {**doc, "options": {**doc["options"], "logits": "yes"}},
     "'options': 'logits' must be true, found \"yes\""),
    (lambda doc: {**doc, "options": {**doc["options"], "history": "h.csv"}},
     "'options': \"history\" is not an option of a sweep"),
    (lambda doc: {**doc, "options": {"arch": "16relu-10linear"}}, "'options' lacks 'loss'"),
    (lambda doc: {k: v for k, v in doc.items() if k != "data"}, "'data' is missing"),
    (lambda doc: {**doc, "colour": "red"}, "unknown key 'colour'"),
    (lambda doc: {**doc, "checkpoint_seconds": "5"},
     "'checkpoint_seconds' must be a number, found \"5\""),
], ids=["deep", "not-json", "a-list", "samples-text", "address-number", "options-list",
        "option-number", "flag-text", "not-swept-option", "no-loss", "no-data", "unknown-key",
        "seconds-text"])
def test_damaged_sweep_json_is_one_line_before_ray(capsys, tmp_path, no_ray, digits_csv,
                                                   change, needle):
    # with Ray unimportable, reaching the point where Ray starts would say "pip install"
    folder, doc = _sweep_folder(tmp_path, digits_csv)
    damaged = change(doc)
    (folder / "sweep.json").write_text(damaged if isinstance(damaged, str)
                                       else json.dumps(damaged))
    rc, out, err = sweep(capsys, "--resume", folder)
    line = assert_one_line_error(rc, out, err, needle)
    assert f"{folder / 'sweep.json'}: damaged sweep request" in line
    assert not (tmp_path / "best.safetensors").exists()


@pytest.mark.parametrize("seconds", [2, 0.5, None])
def test_sound_sweep_json_is_read_as_written(capsys, tmp_path, no_ray, digits_csv, seconds):
    # the same folder, undamaged, gets as far as starting Ray; a whole number of seconds is a
    # number too, and a request written before --checkpoint-seconds existed takes its default
    from nncli.sweep.driver import Request

    folder, doc = _sweep_folder(tmp_path, digits_csv)
    if seconds is None:
        del doc["checkpoint_seconds"]
    else:
        doc["checkpoint_seconds"] = seconds
    (folder / "sweep.json").write_text(json.dumps(doc))
    assert Request.load(str(folder)).checkpoint_seconds == (
        Request.checkpoint_seconds if seconds is None else seconds)
    rc, out, err = sweep(capsys, "--resume", folder)
    assert_one_line_error(rc, out, err, "pip install 'nncli[sweep]'")


def test_grace_beyond_the_epochs_is_one_line_before_ray(capsys, tmp_path, no_ray, digits_csv):
    rc, out, err = sweep(capsys, digits_csv, "--arch", "16relu-10linear", *DIGITS, "--epochs",
                         "2,4", "--scheduler", "asha", "--grace-epochs", "5", "--out-dir",
                         tmp_path / "out")
    assert_one_line_error(rc, out, err, "--grace-epochs 5 exceeds the most --epochs, 4")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("argv, needle", [
    (["--folds", "3", "--validation-split", "0.2"], "give no --validation-split"),
    (["--folds", "3", "--validation-split", "0,0.2"], "give no --validation-split"),
    (["--folds", "3", "--validation-data", "v.csv"], "give no --validation-split or "
                                                      "--validation-data"),
    (["--folds", "1"], "--folds must be at least 2"),
    (["--group", "pixel0"], "--group and --no-stratify say how --folds K deals the rows"),
    (["--no-stratify", *DIGITS[2:]], "give --folds"),
], ids=["split", "varying-split", "validation-data", "one-fold", "group-alone",
        "no-stratify-alone"])
def test_bad_folds_are_one_line_before_ray(capsys, tmp_path, no_ray, digits_csv, argv, needle):
    rc, out, err = sweep(capsys, digits_csv, "--arch", "16relu-10linear", *FOLDED, *argv,
                         "--out-dir", tmp_path / "out")
    line = assert_one_line_error(rc, out, err, needle)
    assert "pip install" not in line
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("value", ["-1", "inf", "nan"])
def test_bad_checkpoint_seconds_is_one_line_before_ray(capsys, tmp_path, no_ray, digits_csv,
                                                       value):
    rc, out, err = sweep(capsys, digits_csv, "--arch", "16relu-10linear", *DIGITS,
                         "--checkpoint-seconds", value, "--out-dir", tmp_path / "out")
    assert_one_line_error(rc, out, err, f"--checkpoint-seconds must be 0 or more, received")
    assert not (tmp_path / "out").exists()


def test_other_commands_never_import_ray():
    code = ("import contextlib, io, sys\n"
            "from nncli.cli import main\n"
            "with contextlib.redirect_stdout(io.StringIO()):\n"
            "    main(['train', '--help']); main(['sweep', '--help']); main(['info', '--help'])\n"
            "import nncli.sweep, nncli.sweep.driver, nncli.sweep.space, nncli.sweep.results\n"
            "print('ray' in sys.modules, 'numba' in sys.modules)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "False False"


def test_unreachable_address_is_one_line_at_once(capsys, tmp_path, ray_env, digits_csv):
    with socket.socket() as s:            # a port that was free a moment ago: nobody listens
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    started = time.monotonic()
    rc, out, err = sweep(capsys, digits_csv, "--arch", "16relu-10linear", *DIGITS,
                         "--epochs", "1", "--address", f"127.0.0.1:{port}", "--out-dir",
                         tmp_path / "out")
    assert_one_line_error(rc, out, err, f"127.0.0.1:{port}")
    assert time.monotonic() - started < 30
    assert not ray.is_initialized()
    assert not (tmp_path / "out").exists()   # nothing to --resume


# ---------------------------------------------- checkpoint cadence (no Ray started)

@pytest.mark.parametrize("grace, epochs", [(1, 1), (1, 3), (1, 4), (1, 16), (1, 17), (2, 40),
                                           (3, 100), (4, 4)])
def test_asha_rungs_are_ray_tunes(grace, epochs):
    # the epochs a trial checkpoints at under ASHA are those where Ray's ASHA may stop it
    from ray.tune.schedulers import ASHAScheduler

    from nncli.sweep import tuning

    ray_asha = ASHAScheduler(time_attr="epoch", max_t=epochs, grace_period=grace,
                             reduction_factor=tuning.REDUCTION_FACTOR)
    milestones = sorted(int(m) for m, _ in ray_asha._brackets[0]._rungs)
    assert list(tuning.asha_rungs(grace, epochs)) == milestones


@pytest.fixture
def reports(monkeypatch):
    """What TuneSink hands to tune.report, recorded instead: (metrics, the checkpoint's model
    file read back, or None)."""
    from nncli.modelfile import read_model_file
    from nncli.sweep import tuning

    seen: list[tuple[dict, object]] = []

    def report(metrics, checkpoint=None):
        saved = None
        if checkpoint is not None:
            with checkpoint.as_directory() as folder:
                saved = read_model_file(Path(folder) / tuning.MODEL_FILE)
        seen.append((metrics, saved))

    monkeypatch.setattr(tuning.tune, "report", report)
    return seen


def _train_with_sink(digits_csv: Path, sink, epochs: int = 6):
    from nncli.train import TrainConfig, load_inputs, run

    config = TrainConfig.from_options(arch="8relu-10linear", loss="sparse_cce", logits=True,
                                      validation_split=0.2, epochs=epochs, batch_size=256)
    return run(config, load_inputs(config, str(digits_csv)), sink)


@pytest.mark.parametrize("every, rungs, checkpointed", [
    (0.0, (), [1, 2, 3, 4, 5]),              # every epoch, as before the cadence existed
    (3600.0, (), []),                        # by time only: none due in a short run
    (3600.0, (1, 4), [1, 4]),                # ASHA's rungs: where a trial may be stopped
])
def test_trial_reports_every_epoch_and_checkpoints_when_due(reports, digits_csv, every, rungs,
                                                             checkpointed):
    from nncli.sweep.tuning import FINISHED_KEY, Cadence, TuneSink

    result = _train_with_sink(digits_csv, TuneSink("node", Cadence(every, rungs)))
    assert [m["epoch"] for m, _ in reports] == [1, 2, 3, 4, 5, 6]
    assert [m["epoch"] for m, saved in reports[:-1] if saved is not None] == checkpointed
    for metrics, saved in reports[:-1]:
        assert not metrics[FINISHED_KEY] and metrics["node"] == "node"
        if saved is not None:        # a checkpoint a retried trial can go on from
            assert saved.state["epoch"] == metrics["epoch"]
    metrics, saved = reports[-1]     # the end: the finished model, without training state
    assert metrics[FINISHED_KEY] and saved is not None and saved.state is None
    for i in range(len(result.model.layers)):
        assert np.array_equal(saved.model.kernel(i), result.model.kernel(i))


def test_trial_checkpoints_by_time(reports, digits_csv, monkeypatch):
    # the sink's clock moves 1 s at each reading (one before the epochs, one per epoch, one
    # after each checkpoint): every 2.5 s is every third epoch
    import types

    from nncli.sweep.tuning import Cadence, TuneSink, trials

    clock = iter(range(100))
    monkeypatch.setattr(trials, "time", types.SimpleNamespace(
        monotonic=lambda: float(next(clock))))
    _train_with_sink(digits_csv, TuneSink("node", Cadence(2.5)), epochs=8)
    assert [m["epoch"] for m, saved in reports[:-1] if saved is not None] == [3, 6]


# ------------------------------------------------------------------- local sweeps

@pytest.fixture(scope="module")
def digits_sweep(local_ray, tmp_path_factory):
    """A 2x2 grid on digits ranked by val_accuracy, run once: (JSON, stderr, folder)."""
    base = tmp_path_factory.mktemp("digits_sweep")
    capsys = _Capture()
    rc = _main(["sweep", str(ROOT / "datasets" / "digits.csv"), *DIGITS, "--arch",
                "16relu-10linear,32relu-10linear", "--lr", "1e-3,1e-2", "--epochs", "3",
                "--seed", "3", "--metric", "val_accuracy", "-o", str(base / "best.safetensors"),
                "--out-dir", str(base / "out"), "--json"], capsys)
    assert rc == 0, capsys.err
    return json.loads(capsys.out), capsys.err, base


class _Capture:
    out = err = ""


def _main(argv: list[str], capture: _Capture) -> int:
    """main(argv) with stdout and stderr kept (a module fixture cannot use capsys)."""
    import contextlib
    import io

    from nncli.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(argv)
    capture.out, capture.err = out.getvalue(), err.getvalue()
    return rc


def test_local_ray_starts_without_log_and_autoscaler_monitors(local_ray):
    # nncli turns both off for a local instance (nncli.sweep.tuning.session): two Python
    # processes fewer while Ray starts; Ray itself still runs (a task comes back)
    from ray._private import ray_constants
    from ray._private.worker import _global_node

    started = set(_global_node.all_processes)
    assert ray_constants.PROCESS_TYPE_RAYLET in started
    assert ray_constants.PROCESS_TYPE_LOG_MONITOR not in started
    assert ray_constants.PROCESS_TYPE_MONITOR not in started
    assert ray.get(ray.remote(lambda: 7).remote()) == 7


def test_local_sweep_leaves_leaderboard_models_and_json(digits_sweep):
    doc, err, base = digits_sweep
    out_dir = base / "out"
    assert {"trials", "best", "best_model", "out_dir", "metric", "mode"} <= set(doc)
    assert doc["metric"] == "val_accuracy" and doc["mode"] == "max"
    assert doc["out_dir"] == str(out_dir) and doc["best_model"] == str(base / "best.safetensors")
    trials = doc["trials"]
    assert len(trials) == 4
    assert {(t["config"]["arch"], t["config"]["lr"]) for t in trials} == {
        (a, lr) for a in ("16relu-10linear", "32relu-10linear") for lr in (1e-3, 1e-2)}
    for t in trials:
        assert TRIAL_KEYS <= set(t)
        assert t["status"] == "finished" and t["epochs"] == 3 and t["retries"] == 0
        assert t["node"] and t["seconds"] > 0
        assert {"loss", "accuracy", "val_loss", "val_accuracy"} <= set(t["metrics"])
        assert Path(t["model"]) == out_dir / "trials" / f"{t['trial_id']}.safetensors"
        assert Path(t["model"]).is_file()
    # best first: val_accuracy is better higher
    accuracies = [t["metrics"]["val_accuracy"] for t in trials]
    assert accuracies == sorted(accuracies, reverse=True)
    assert doc["best"] == trials[0]
    assert sorted(p.name for p in (out_dir / "trials").iterdir()) == sorted(
        f"{t['trial_id']}.safetensors" for t in trials)
    lines = (out_dir / "leaderboard.csv").read_text().splitlines()
    assert lines[0].split(",")[:5] == ["rank", "trial", "arch", "lr", "status"]
    assert [line.split(",")[1] for line in lines[1:]] == [t["trial_id"] for t in trials]
    assert "leaderboard (by val_accuracy, highest first)" in err


def test_stderr_not_a_terminal_has_a_line_per_finished_trial(digits_sweep):
    # the live table's place in a log: each trial once, when it ends (the rows Ray Tune's
    # callback passes on are updated in place, so "changed" must be judged by status seen)
    doc, err, _ = digits_sweep
    for t in doc["trials"]:
        line = (f"trial {t['trial_id']} finished: --arch {t['config']['arch']} --lr "
                f"{t['config']['lr']:.4g}  val_accuracy {t['metrics']['val_accuracy']:.4f}  "
                f"epoch 3")
        assert err.count(f"trial {t['trial_id']} ") == 1 and line in err, err


def test_best_model_is_nncli_train_of_its_trial_bit_for_bit(capsys, tmp_path, digits_sweep):
    doc, _, base = digits_sweep
    best = doc["best"]
    tensors_equal(base / "best.safetensors", Path(best["model"]))
    trained = train_like(capsys, {**best["config"], "epochs": 3, "seed": 3}, DIGITS,
                         tmp_path / "train.safetensors")
    tensors_equal(Path(best["model"]), trained)
    rc, out, _ = run(capsys, "info", base / "best.safetensors", "--json")
    assert rc == 0
    assert best["trial_id"] in out          # the sweep is in the best model's metadata


def test_regularisation_options_vary_and_each_trial_is_nncli_train(capsys, tmp_path, local_ray,
                                                                    digits_csv):
    # issue 19's options vary as any other: dropout inside --arch, --l2, --lr-schedule and
    # --class-weight; a trial with all of them on is still `nncli train` bit for bit
    rc, out, err = sweep(capsys, digits_csv, *DIGITS, "--arch",
                         "16relu-10linear,16relu-dropout0.3-10linear", "--l2", "0,1e-3",
                         "--lr-schedule", "constant,cosine", "--class-weight", "none,balanced",
                         "--epochs", "2", "--seed", "5", "--out-dir", tmp_path / "out", "--json")
    assert rc == 0, err
    trials = json.loads(out)["trials"]
    configs = {(t["config"]["arch"], t["config"]["l2"], t["config"]["lr_schedule"],
                t["config"]["class_weight"]) for t in trials}
    assert configs == {(a, l2, s, w) for a in ("16relu-10linear", "16relu-dropout0.3-10linear")
                       for l2 in (0.0, 1e-3) for s in ("constant", "cosine")
                       for w in ("none", "balanced")}
    assert all(t["status"] == "finished" and "lr" in t["metrics"] for t in trials
               if t["config"]["lr_schedule"] == "cosine")
    everything = next(t for t in trials if "dropout" in t["config"]["arch"]
                      and t["config"]["l2"] and t["config"]["lr_schedule"] == "cosine"
                      and t["config"]["class_weight"] == "balanced")
    trained = train_like(capsys, {**everything["config"], "epochs": 2, "seed": 5}, DIGITS,
                         tmp_path / "train.safetensors")
    tensors_equal(Path(everything["model"]), trained)


def test_sample_weighted_sweep_best_is_nncli_train_bit_for_bit(capsys, tmp_path, local_ray):
    """--sample-weight is the same for every trial: the trials get the weights with the data
    (through Ray's object store), and the best model is nncli train's of its options."""
    rng = np.random.default_rng(2)
    X = rng.normal(size=(120, 3))
    rows = [f"{a:.4f},{b:.4f},{rng.uniform(0, 3):.3f},{c:.4f},{int(a + b > 0)}"
            for a, b, c in X]
    data = tmp_path / "weighted.csv"
    data.write_text("a,b,w,c,t\n" + "\n".join(rows) + "\n")
    common = ["--arch", "6relu-2linear", "--loss", "sparse_cce", "--logits",
              "--validation-split", "0.25", "--sample-weight", "w", "--epochs", "2", "--seed", "5"]
    rc, out, err = sweep(capsys, data, *common, "--lr", "1e-3,1e-2", "--quiet", "--json",
                         "--out-dir", tmp_path / "out", "-o", tmp_path / "best.safetensors")
    assert rc == 0, err
    best = json.loads(out)["best"]
    rc, _, err = run(capsys, "train", data, *common, "--lr", str(best["config"]["lr"]), "-q",
                     "-o", tmp_path / "train.safetensors")
    assert rc == 0, err
    tensors_equal(tmp_path / "best.safetensors", tmp_path / "train.safetensors")
    rc, out, _ = run(capsys, "info", tmp_path / "best.safetensors", "--json")
    assert rc == 0 and json.loads(out)["sample_weight"] == "w"


def test_asha_stops_hopeless_trials_early(capsys, tmp_path, local_ray, digits_csv):
    # the good rates first: ASHA never stops the first trial to reach a rung
    rc, out, err = sweep(capsys, digits_csv, "--arch", "16relu-10linear", *DIGITS,
                         "--lr", "1e-2,3e-3,1e-6,3e-7", "--epochs", "8", "--batch-size", "64",
                         "--scheduler", "asha", "--grace-epochs", "1", "--quiet", "--json",
                         "--out-dir", tmp_path / "out", "-o", tmp_path / "best.safetensors")
    assert rc == 0, err
    doc = json.loads(out)
    assert doc["mode"] == "min"             # val_loss, the default: better lower
    losses = [t["metrics"]["val_loss"] for t in doc["trials"]]
    assert losses == sorted(losses)
    statuses = {t["config"]["lr"]: (t["status"], t["epochs"]) for t in doc["trials"]}
    assert ("finished", 8) in statuses.values()
    stopped = [lr for lr, (status, epochs) in statuses.items()
               if status == "stopped early" and epochs < 8]
    assert stopped and set(stopped) & {1e-6, 3e-7}, statuses
    for t in doc["trials"]:                 # a stopped trial keeps its model where it stopped
        assert Path(t["model"]).is_file()


def test_killed_worker_is_retried_from_its_checkpoint(capsys, tmp_path, local_ray,
                                                      digits_csv):
    from nncli.sweep.driver import Request, run_sweep
    from nncli.sweep.space import parse_space

    options = {"arch": "32relu-10linear", "loss": "sparse_cce", "logits": True,
               "validation_split": "0.2", "epochs": "6", "batch_size": "4",
               "lr": "1e-3,3e-3"}
    # a checkpoint every epoch: the kill comes after epoch 2, within the second
    request = Request(str(digits_csv), options, out_dir=str(tmp_path / "out"),
                      output=str(tmp_path / "best.safetensors"), max_failures=2,
                      checkpoint_seconds=0)
    space = parse_space(options)
    killed: dict = {}
    seen: list[tuple[str, int, str]] = []   # (trial, epoch, status) of every event

    def on_event(row) -> None:
        seen.append((row.trial_id, row.epochs, row.status))
        if not killed and row.status == "running" and row.epochs >= 2 and row.pid:
            killed.update(trial=row.trial_id, pid=row.pid, epoch=row.epochs)
            os.kill(row.pid, signal.SIGKILL)

    report = run_sweep(request, space, on_event=on_event)
    assert killed, "no trial reported two epochs"
    rows = {r.trial_id: r for r in report.rows}
    assert not report.interrupted
    assert all(r.status == "finished" and r.epochs == 6 for r in rows.values()), rows
    row = rows[killed["trial"]]
    assert row.retries >= 1 and row.pid != killed["pid"]
    # after the kill the trial went on from a checkpoint, not from epoch 1 again
    after = [e for t, e, s in seen[seen.index((killed["trial"], killed["epoch"], "running")) + 1:]
             if t == killed["trial"] and s == "running"]
    assert after and min(after) >= 2 and 1 not in after, seen
    trained = train_like(capsys, {**row.config, "epochs": 6, "batch_size": 4,
                                  "arch": "32relu-10linear"}, DIGITS, tmp_path / "t.safetensors")
    tensors_equal(Path(row.model), trained)


@pytest.mark.parametrize("folds", [0, 2])
def test_ctrl_c_leaves_leaderboard_and_resume_finishes(capsys, tmp_path, digits_csv, folds):
    env = {**os.environ, **RAY_TEST_ENV}
    out_dir = tmp_path / "out"
    split = [*FOLDED, "--folds", str(folds)] if folds else DIGITS
    argv = [sys.executable, "-m", "nncli", "sweep", str(digits_csv), "--arch", "32relu-10linear",
            *split, "--lr", "1e-3,3e-3", "--epochs", "30", "--batch-size", "4", "--quiet",
            "--checkpoint-seconds", "0", "--out-dir", str(out_dir), "-o",
            str(tmp_path / "best.safetensors")]
    returncode, err = interrupt_after_checkpoint(argv, env, tmp_path, out_dir)
    assert returncode == 130, err
    assert "Traceback" not in err
    assert f"--resume {out_dir}" in err
    assert (out_dir / "leaderboard.csv").is_file()
    lines = (out_dir / "leaderboard.csv").read_text().splitlines()
    assert len(lines) == 3 and any(",interrupted," in line or ",pending," in line
                                   for line in lines[1:]), lines
    done = subprocess.run([sys.executable, "-m", "nncli", "sweep", "--resume", str(out_dir),
                           "--quiet", "--json"], env=env, cwd=tmp_path, capture_output=True,
                          text=True, timeout=180)
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert [t["status"] for t in doc["trials"]] == ["finished", "finished"], doc["trials"]
    assert all(t["epochs"] == 30 for t in doc["trials"])
    # the interrupted trials went on from their checkpoints, bit-identical to one training
    best = doc["best"]
    options = {**best["config"], "arch": "32relu-10linear", "epochs": 30, "batch_size": 4}
    if folds:
        cv_like(capsys, options, FOLDED, folds, tmp_path / "cv")
        folds_equal(Path(best["model"]), tmp_path / "cv", folds)
        return
    tensors_equal(tmp_path / "best.safetensors", Path(best["model"]))
    trained = train_like(capsys, options, DIGITS, tmp_path / "train.safetensors")
    tensors_equal(Path(best["model"]), trained)


# ---------------------------------------------------------- cross-validated sweeps

def test_folds_sweep_ranks_by_the_mean_and_o_is_train_on_all_rows(capsys, tmp_path, local_ray,
                                                                   digits_csv):
    rc, out, err = sweep(capsys, digits_csv, "--arch", "16relu-10linear", *FOLDED, "--lr",
                         "1e-3,1e-2,3e-2", "--epochs", "3", "--seed", "4", "--folds", "3",
                         "--json", "--out-dir", tmp_path / "out", "-o",
                         tmp_path / "best.safetensors")
    assert rc == 0, err
    doc = json.loads(out)
    assert doc["folds"] == 3 and doc["metric"] == "val_loss"
    means = {}
    for t in doc["trials"]:
        assert t["status"] == "finished" and len(t["folds"]) == 3
        # the same configuration through nncli cv: its folds' held-out losses, averaged here
        cv = cv_like(capsys, {**t["config"], "arch": "16relu-10linear", "epochs": 3, "seed": 4},
                     FOLDED, 3, tmp_path / f"cv{t['trial_id']}")
        losses = np.array([f["loss"] for f in cv["folds"]])
        assert [f["val_loss"] for f in t["folds"]] == pytest.approx(losses, rel=1e-12)
        assert t["metrics"]["val_loss"] == pytest.approx(losses.mean(), rel=1e-12)
        assert t["std"]["val_loss"] == pytest.approx(losses.std(), rel=1e-9)
        folds_equal(Path(t["model"]), tmp_path / f"cv{t['trial_id']}", 3)
        means[t["trial_id"]] = losses.mean()
    assert [t["trial_id"] for t in doc["trials"]] == sorted(means, key=means.get)
    assert doc["best"]["trial_id"] == min(means, key=means.get)
    # -o: the chosen configuration trained on all rows, as nncli train trains it
    trained = train_like(capsys, {**doc["best"]["config"], "arch": "16relu-10linear",
                                  "epochs": 3, "seed": 4}, FOLDED,
                         tmp_path / "train.safetensors")
    tensors_equal(tmp_path / "best.safetensors", trained)
    board = (tmp_path / "out" / "leaderboard.csv").read_text().splitlines()
    assert "val_loss,val_loss_std" in board[0]
    # nncli plot DIR draws a cross-validated trial by its first fold
    from nncli.plot.history import read_runs

    [(label, history)] = read_runs([tmp_path / "out"], top=1)
    assert label == f"--lr {doc['best']['config']['lr']} (fold 1)" and len(history) == 3
    assert history[-1]["val_loss"] == doc["best"]["folds"][0]["val_loss"]
    assert "leaderboard (by val_loss mean over 3 folds, lowest first)" in err
    assert f"{doc['best']['metrics']['val_loss']:.4f} ± " in err


def test_folds_sweep_with_asha_keeps_the_stopped_folds(capsys, tmp_path, local_ray, digits_csv):
    rc, out, err = sweep(capsys, digits_csv, "--arch", "16relu-10linear", *FOLDED, "--lr",
                         "1e-2,3e-3,1e-6,3e-7", "--epochs", "8", "--batch-size", "64",
                         "--folds", "2", "--scheduler", "asha", "--quiet", "--json",
                         "--out-dir", tmp_path / "out", "-o", tmp_path / "best.safetensors")
    assert rc == 0, err
    trials = json.loads(out)["trials"]
    stopped = [t for t in trials if t["status"] == "stopped early"]
    assert stopped and all(t["epochs"] < 8 for t in stopped), trials
    for t in trials:                 # each fold's model where the trial stopped (its rung)
        assert sorted(p.name for p in Path(t["model"]).iterdir()) == [
            "fold1.safetensors", "fold2.safetensors"]


def test_killed_folds_trial_is_retried_from_its_checkpoint(capsys, tmp_path, local_ray,
                                                           digits_csv):
    from nncli.sweep.driver import Request, run_sweep
    from nncli.sweep.space import parse_space

    options = {"arch": "32relu-10linear", "loss": "sparse_cce", "logits": True, "epochs": "6",
               "batch_size": "4", "lr": "1e-3"}
    request = Request(str(digits_csv), options, out_dir=str(tmp_path / "out"),
                      output=str(tmp_path / "best.safetensors"), checkpoint_seconds=0,
                      folds=2)
    killed: dict = {}
    seen: list[tuple[int, str]] = []

    def on_event(row) -> None:
        seen.append((row.epochs, row.status))
        if not killed and row.status == "running" and row.epochs >= 2 and row.pid:
            killed.update(pid=row.pid, epoch=row.epochs)
            os.kill(row.pid, signal.SIGKILL)

    report = run_sweep(request, parse_space(options), on_event=on_event)
    assert killed, "the trial reported no two epochs"
    [row] = report.rows
    assert row.status == "finished" and row.epochs == 6 and row.retries >= 1
    after = [e for e, s in seen[seen.index((killed["epoch"], "running")) + 1:] if s == "running"]
    assert after and min(after) >= 2, seen     # on from its checkpoint, not from epoch 1
    cv_like(capsys, {"lr": 1e-3, "arch": "32relu-10linear", "epochs": 6, "batch_size": 4},
            FOLDED, 2, tmp_path / "cv")
    folds_equal(Path(row.model), tmp_path / "cv", 2)


# ------------------------------------------------------------------- a cluster

def test_two_node_cluster_runs_trials_on_both(capsys, tmp_path, ray_env, digits_csv):
    from ray.cluster_utils import Cluster

    ray.shutdown()                          # the module's local instance, if it ran
    # Ray connects to 127.0.0.1 as this machine's network address: the nodes listen there
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1,
                                                            "include_dashboard": False})
    try:
        cluster.add_node(num_cpus=1)
        cluster.wait_for_nodes()
        address = "127.0.0.1:" + cluster.address.rsplit(":", 1)[1]
        rc, out, err = sweep(capsys, digits_csv, "--arch", "16relu-10linear", *DIGITS,
                             "--lr", "1e-3,3e-3,1e-2,3e-2", "--epochs", "4", "--batch-size",
                             "8", "--threads-per-trial", "1", "--address", address, "--quiet",
                             "--json", "--out-dir", tmp_path / "out", "-o",
                             tmp_path / "best.safetensors")
        assert rc == 0, err
        doc = json.loads(out)
        assert [t["status"] for t in doc["trials"]] == ["finished"] * 4
        nodes = {t["node"] for t in doc["trials"]}
        assert len(nodes) == 2, nodes
        assert not ray.is_initialized()     # the sweep left the cluster, not started one
        # a cross-validated sweep's configurations, each with its folds, on both nodes
        rc, out, err = sweep(capsys, digits_csv, "--arch", "16relu-10linear", *FOLDED,
                             "--lr", "1e-3,3e-3,1e-2,3e-2", "--epochs", "4", "--batch-size",
                             "8", "--folds", "3", "--address", address, "--quiet", "--json",
                             "--out-dir", tmp_path / "folds", "-o",
                             tmp_path / "best_folds.safetensors")
        assert rc == 0, err
        doc = json.loads(out)
        assert [t["status"] for t in doc["trials"]] == ["finished"] * 4
        assert all(len(t["folds"]) == 3 for t in doc["trials"])
        assert len({t["node"] for t in doc["trials"]}) == 2
        assert (tmp_path / "best_folds.safetensors").is_file()
    finally:
        ray.shutdown()
        cluster.shutdown()
