"""Learning-rate schedules: --lr-schedule, --warmup-epochs and --reduce-lr-on-plateau, against
Keras's formulas written independently in tests/naive.py; through the library, the kernel,
checkpoints and the real command line."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

import naive
import nncli.train.loop as L
from clirun import assert_one_line_error, run
from nncli import schedules
from nncli.data import Dataset
from nncli.errors import UsageError
from nncli.modelfile import read_model_file, save_model
from nncli.train import EpochReport, TrainConfig, checkpoint_parts, fit, prepare
from nncli.train.state import ReduceLROnPlateau

LR = 0.01
STEPS = [0, 1, 7, 49, 50, 51, 99, 100, 101, 250]


# ---------------------------------------------------------------- the schedule module


@pytest.mark.parametrize("rate, steps", [(0.96, 100), (0.5, 7), (1.2, 1)])
def test_exponential_is_keras_exponential_decay(rate, steps):
    s = schedules.build(f"exponential:{rate}:{steps}", 0, 1000)
    for step in STEPS:
        want = naive.keras_exponential_decay(LR, rate, steps, step)
        assert s.lr(LR, step) == pytest.approx(want, rel=1e-14)
    assert s.lr(LR, 0) == LR


@pytest.mark.parametrize("text, steps, alpha", [("cosine", 100, 0.0), ("cosine:50", 50, 0.0),
                                                ("cosine:50:0.1", 50, 0.1),
                                                ("cosine::0.2", 100, 0.2)])
def test_cosine_is_keras_cosine_decay_and_defaults_to_the_run(text, steps, alpha):
    s = schedules.build(text, 0, 100)   # a run of 100 steps: cosine's STEPS defaults to 100
    for step in STEPS:
        want = naive.keras_cosine_decay(LR, steps, step, alpha)
        assert s.lr(LR, step) == pytest.approx(want, rel=1e-12, abs=1e-18)
    assert s.lr(LR, 0) == LR
    assert s.lr(LR, 1000) == pytest.approx(LR * alpha, abs=1e-18)   # flat after STEPS


def test_warmup_is_keras_cosine_decay_warmup_from_zero():
    # 20 warm-up steps in a run of 100: cosine decays over the 80 after them
    s = schedules.build("cosine", 20, 100)
    for step in [0, 1, 10, 19, 20, 21, 60, 99, 100, 150]:
        want = naive.keras_cosine_decay(0.0, 80, step, warmup_target=LR, warmup_steps=20)
        assert s.lr(LR, step) == pytest.approx(want, rel=1e-12, abs=1e-18), step
    assert s.lr(LR, 0) == 0.0                       # Keras's first warm-up step is at 0
    assert s.lr(LR, 20) == LR                       # the warm-up boundary: the full rate
    assert s.lr(LR, 10) == pytest.approx(LR / 2)
    # the other kinds warm up the same way, then start from their own step 0
    e = schedules.build("exponential:0.5:10", 20, 100)
    assert e.lr(LR, 10) == pytest.approx(LR / 2)
    assert e.lr(LR, 30) == pytest.approx(naive.keras_exponential_decay(LR, 0.5, 10, 10))
    c = schedules.build("constant", 20, 100)
    assert (c.lr(LR, 5), c.lr(LR, 20), c.lr(LR, 99)) == (pytest.approx(LR / 4), LR, LR)


def test_constant_rates_are_exactly_the_learning_rate():
    s = schedules.build("constant", 0, 100)
    assert not s.varies
    rates = s.rates(LR, 37, 5)
    assert rates.dtype == np.float64 and (rates == LR).all()
    c = schedules.build("cosine:10", 0, 100)
    assert c.rates(LR, 3, 4).tolist() == [c.lr(LR, k) for k in (3, 4, 5, 6)]


@pytest.mark.parametrize("text, words", [
    ("linear", "unknown schedule 'linear'"), ("exponential", "expected exponential:RATE:STEPS"),
    ("exponential:0.9", "expected exponential:RATE:STEPS"),
    ("exponential:x:10", "RATE must be a number above 0"),
    ("exponential:0.9:0", "STEPS must be a whole number of at least 1"),
    ("exponential:0:10", "RATE must be a number above 0"),
    ("cosine:10.5", "STEPS must be a whole number"), ("cosine:10:2", "ALPHA must be"),
    ("cosine:10:nan", "ALPHA must be"), ("cosine:1:2:3", "expected cosine[:STEPS[:ALPHA]]"),
    ("constant:1", "expected constant")])
def test_bad_schedules_say_what_was_expected(text, words):
    with pytest.raises(UsageError, match="^--lr-schedule .*" + _re(words)):
        schedules.parse(text)


def _re(text: str) -> str:
    import re
    return re.escape(text)


# ---------------------------------------------------------------- ReduceLROnPlateau


@pytest.mark.parametrize("patience, factor, min_lr, values", [
    (2, 0.1, 0.0, [1.0, 0.9, 0.9, 0.95, 0.85, 0.85, 0.85, 0.84999, 0.9, 0.9]),
    (0, 0.5, 0.003, [1.0, 1.0, 1.0, 1.0, 0.5, 0.6, 0.7]),
    (1, 0.2, 0.0, [3.0, 2.0, 1.0, 0.99995, 0.5, 0.6]),
])
def test_reduce_lr_on_plateau_follows_keras(patience, factor, min_lr, values):
    p = ReduceLROnPlateau("loss", patience, factor, min_lr, LR)
    used = []
    for epoch, value in enumerate(values, start=1):
        used.append(p.lr)
        p.update(EpochReport(epoch, {"loss": value}))
    assert used == pytest.approx(naive.keras_plateau_rates(values, LR, patience, factor, min_lr),
                                 rel=1e-14)
    assert min(used) < LR   # each case reduces at least once


def test_plateau_watches_a_metric_to_maximise_the_other_way():
    p = ReduceLROnPlateau("val_accuracy", 1, 0.5, 0.0, LR)
    for epoch, acc in enumerate([0.5, 0.6, 0.6], start=1):
        p.update(EpochReport(epoch, {"val_accuracy": acc}))
    assert p.lr == LR / 2


# ---------------------------------------------------------------- the kernel's rate per step


def _regression(n=40, d=3, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d)).astype(np.float32)
    y = (X @ np.array([1.5, -2.0, 0.5]) + 3.0).astype(np.float32)[:, None]
    return X, y


@pytest.mark.parametrize("schedule, warmup", [("exponential:0.7:3", 0), ("cosine:9:0.1", 2)])
def test_each_sgd_step_uses_its_own_learning_rate(schedule, warmup):
    # Full-batch SGD on a linear model with mse: w -= lr(step) * 2/n X^T (X w + b - y)
    X, y = _regression()
    config = TrainConfig(arch="1linear", loss="mse", optimizer="sgd", lr=0.05, epochs=12,
                         batch_size=len(X), normalize=False, normalize_target=False,
                         lr_schedule=schedule, warmup_epochs=warmup)
    run_ = prepare(config, Dataset.from_arrays(X.copy(), y.copy(), "synthetic"))
    W, b = naive.f64(run_.model.kernel(0)).copy(), naive.f64(run_.model.bias(0)).copy()
    reports = list(fit(run_))
    sched = schedules.build(schedule, warmup, 12)
    for step in range(12):
        r = naive.dense(X, W, b) - naive.f64(y)
        W = W - sched.lr(0.05, step) * 2 / len(X) * naive.f64(X).T @ r
        b = b - sched.lr(0.05, step) * 2 / len(X) * r.sum(axis=0)
        # lr of the epoch: the rate of its last step (one step an epoch here)
        assert reports[step].lr == pytest.approx(sched.lr(0.05, step), rel=1e-14)
    naive.assert_close(run_.model.kernel(0), W, np.float32, rtol=1e-4)
    naive.assert_close(run_.model.bias(0), b, np.float32, rtol=1e-4)


def _run_data():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 5)).astype(np.float32)
    y = ((X[:, 0] - X[:, 1] > 0) + (X[:, 2] > 0.5)).astype(np.float32)[:, None]
    return X, y


def _run(epochs=6, **overrides):
    X, y = _run_data()
    fields = {"arch": "7relu-3linear", "loss": "sparse_cce", "logits": True, "epochs": epochs,
              "batch_size": 16, "validation_split": 0.2, "seed": 3, **overrides}
    return prepare(TrainConfig(**fields), Dataset.from_arrays(X, y, "synthetic"))


def test_a_constant_run_reports_no_lr_and_a_scheduled_one_does():
    plain = _run(epochs=1)
    assert "lr" not in list(fit(plain))[0].metrics
    assert list(fit(_run(epochs=1, warmup_epochs=1)))[0].lr == pytest.approx(1e-3 * 14 / 15)


def test_resume_with_a_schedule_and_a_plateau_is_bit_identical(tmp_path, monkeypatch):
    monkeypatch.setattr(L, "ROWS_PER_CALL", 64)   # several chunks an epoch: rates per chunk
    kw = {"lr_schedule": "cosine::0.05", "warmup_epochs": 1, "reduce_lr_on_plateau": 1,
          "lr_factor": 0.5, "lr": 0.05, "monitor": "val_accuracy"}
    straight = _run(epochs=10, **kw)
    list(fit(straight))
    assert straight.plateau.lr < 0.05    # the plateau cut the rate, so its state matters
    first = _run(epochs=10, **kw)
    reports = fit(first)
    for _ in range(5):
        next(reports)
    path = tmp_path / "ckpt.safetensors"
    save_model(first.model, path, *checkpoint_parts(first))
    rest = prepare(first.config, Dataset.from_arrays(*_run_data(), "synthetic"),
                   resume=read_model_file(path))
    assert rest.plateau.summary() == first.plateau.summary()
    list(fit(rest))
    assert np.array_equal(rest.model.params, straight.model.params)
    assert [h.as_dict()["lr"] for h in rest.history] == \
        [h.as_dict()["lr"] for h in straight.history]
    assert rest.plateau.summary() == straight.plateau.summary()


def test_monitor_is_taken_by_the_plateau_alone():
    assert _run(epochs=1, reduce_lr_on_plateau=2, monitor="loss").plateau.monitor == "loss"
    assert _run(epochs=1, reduce_lr_on_plateau=2).plateau.monitor == "val_loss"
    with pytest.raises(UsageError, match="--reduce-lr-on-plateau"):
        _run(epochs=1, monitor="loss")
    with pytest.raises(UsageError, match="--lr-factor and --min-lr apply"):
        _run(epochs=1, lr_factor=0.5)
    with pytest.raises(UsageError, match="--lr-factor must lie in"):
        _run(epochs=1, reduce_lr_on_plateau=1, lr_factor=1.0)


# ---------------------------------------------------------------- the command line


def _train(capsys, tmp_path, csv_path, *extra):
    hist = tmp_path / "h.csv"
    rc, out, err = run(capsys, "train", csv_path, "--arch", "1linear", "--loss", "mse",
                       "--epochs", "4", "--batch-size", "32", "--optimizer", "sgd",
                       "--lr", "0.01", "-o", tmp_path / "m.safetensors", "--history", hist,
                       "--json", "-q", *extra)
    assert rc == 0, err
    with open(hist) as f:
        rows = list(csv.DictReader(f))
    return json.loads(out), rows


# 300 rows, batch 32: 10 steps an epoch; the lr of epoch e is the rate of step 10 e - 1
@pytest.mark.parametrize("extra, lr_of_step", [
    (["--lr-schedule", "exponential:0.9:5"],
     lambda s: naive.keras_exponential_decay(0.01, 0.9, 5, s)),
    (["--lr-schedule", "cosine"], lambda s: naive.keras_cosine_decay(0.01, 40, s)),
    (["--lr-schedule", "cosine:25:0.1", "--warmup-epochs", "1"],
     lambda s: naive.keras_cosine_decay(0.0, 25, s, 0.1, warmup_target=0.01, warmup_steps=10)),
    (["--warmup-epochs", "2"],
     lambda s: naive.keras_cosine_decay(0.0, 10**9, s, 1.0, warmup_target=0.01,
                                        warmup_steps=20)),
])
def test_cli_history_and_json_report_the_scheduled_lr(capsys, tmp_path, regression_csv,
                                                      extra, lr_of_step):
    doc, rows = _train(capsys, tmp_path, regression_csv, *extra)
    want = [lr_of_step(10 * e - 1) for e in range(1, 5)]
    assert [float(r["lr"]) for r in rows] == pytest.approx(want, rel=1e-12)
    assert [h["lr"] for h in doc["history"]] == pytest.approx(want, rel=1e-12)
    assert doc["final"]["lr"] == pytest.approx(want[-1], rel=1e-12)
    assert list(rows[0]) == ["epoch", "loss", "lr", "seconds"]
    rc, out, _ = run(capsys, "info", tmp_path / "m.safetensors", "--json")
    shown = json.loads(out)["lr_schedule"]
    assert set(shown) == {"lr_schedule", "warmup_epochs", "reduce_lr_on_plateau", "lr_factor",
                          "min_lr"}
    assert shown == {key: doc["options"][key] for key in shown}


def test_cli_info_of_a_constant_rate_shows_no_schedule(capsys, tmp_path, regression_csv):
    _train(capsys, tmp_path, regression_csv)
    rc, out, _ = run(capsys, "info", tmp_path / "m.safetensors", "--json")
    assert rc == 0 and json.loads(out)["lr_schedule"] is None


def test_cli_constant_run_has_no_lr_column(capsys, tmp_path, regression_csv):
    doc, rows = _train(capsys, tmp_path, regression_csv)
    assert "lr" not in rows[0] and "lr" not in doc["history"][0]
    assert doc["options"]["lr_schedule"] == "constant"


def test_cli_plateau_cuts_the_rate_after_patience_epochs(capsys, tmp_path, regression_csv):
    # a rate so small that the loss cannot improve by min_delta 1e-4: every epoch a plateau
    doc, rows = _train(capsys, tmp_path, regression_csv, "--lr", "1e-9",
                       "--reduce-lr-on-plateau", "2", "--lr-factor", "0.5", "--min-lr",
                       "3e-10", "--monitor", "loss", "--epochs", "7")
    lrs = [float(r["lr"]) for r in rows]
    # epoch 1 sets best; epochs 2, 3 wait; the cut after epoch 3 shows from epoch 4 on
    assert lrs == pytest.approx([1e-9, 1e-9, 1e-9, 5e-10, 5e-10, 3e-10, 3e-10], rel=1e-12)
    assert lrs == pytest.approx(naive.keras_plateau_rates(
        [float(r["loss"]) for r in rows], 1e-9, 2, 0.5, 3e-10), rel=1e-12)


@pytest.mark.parametrize("extra, words", [
    (["--lr-schedule", "cosine:0"], "--lr-schedule cosine:0: STEPS must be"),
    (["--lr-schedule", "step:3"], "unknown schedule 'step'"),
    (["--warmup-epochs", "-1"], "--warmup-epochs must be 0 or more"),
    (["--monitor", "lr", "--reduce-lr-on-plateau", "1"], "lr"),
    (["--min-lr", "0.1"], "apply to --reduce-lr-on-plateau"),
])
def test_cli_bad_schedule_options_are_one_line_errors(capsys, tmp_path, regression_csv,
                                                      extra, words):
    rc, out, err = run(capsys, "train", regression_csv, "--arch", "1linear", "--loss", "mse",
                       "-o", tmp_path / "m.safetensors", *extra)
    assert_one_line_error(rc, out, err, words)


def test_sweep_varies_the_schedule():
    from nncli.sweep.space import options_from_args, parse_space

    raw = options_from_args(["--arch", "1linear", "--loss", "mse", "--lr-schedule",
                             "constant,cosine,exponential:0.9:100", "--warmup-epochs", "0,2",
                             "--reduce-lr-on-plateau", "3", "--lr-factor", "0.5,0.2"])
    space = parse_space(raw)
    assert space.grid["lr_schedule"] == ["constant", "cosine", "exponential:0.9:100"]
    assert space.grid["warmup_epochs"] == [0, 2]
    assert space.grid["lr_factor"] == [0.5, 0.2]
    for options in space.corners():
        config = TrainConfig.from_options(**options)
        assert schedules.parse(config.lr_schedule)
    with pytest.raises(UsageError, match="unknown schedule"):
        TrainConfig.from_options(**{**raw, "lr_schedule": "nope"})


def test_plot_draws_lr(capsys, tmp_path, regression_csv):
    _train(capsys, tmp_path, regression_csv, "--lr-schedule", "cosine")
    out = tmp_path / "lr.png"
    rc, _, err = run(capsys, "plot", tmp_path / "m.safetensors", "--metric", "lr", "-o", out)
    assert rc == 0, err
    assert out.stat().st_size > 0
