"""Faults during training, through the library (no Typer): checkpoints and bit-identical resume,
stop requests, signals, divergence, early stopping and the history CSV."""

from __future__ import annotations

import csv
import os
import signal
from dataclasses import replace

import numpy as np
import pytest
from safetensors.numpy import load_file

import nncli.train as T
import nncli.train.loop as L
import nncli.train.saving as R
from nncli.data import Dataset
from nncli.errors import DivergedError, Interrupted, ModelFileError, StopNow, UsageError
from nncli.modelfile import load_model, read_model_file, save_model
from nncli.train import (
    EarlyStopping,
    EpochReport,
    FileSink,
    RunFiles,
    Sink,
    Sinks,
    TrainConfig,
    checkpoint_parts,
    fit,
    interruptible,
    prepare,
    run_prepared,
)

PLAIN_TENSORS = {"layers.0.kernel", "layers.0.bias", "layers.1.kernel", "layers.1.bias",
                 "normalization.mean", "normalization.std"}


class _OnEpoch(Sink):
    def __init__(self, on_epoch):
        self.on_epoch = on_epoch

    def epoch(self, run, report):
        self.on_epoch(report)


def train_and_save(run, files, on_epoch=None):
    """A prepared run to the end as ``nncli train`` runs it (its files), ``on_epoch`` told of
    every epoch before the files are written."""
    sinks = (_OnEpoch(on_epoch),) if on_epoch is not None else ()
    return run_prepared(run, Sinks(*sinks, FileSink(files)))


def _data(n=300, d=5, seed=0, classes=True):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d)).astype(np.float32)
    if classes:
        y = ((X[:, 0] - X[:, 1] > 0) + (X[:, 2] > 0.5)).astype(np.float32)[:, None]
    else:
        y = (X @ rng.normal(size=d) + 0.1 * rng.normal(size=n)).astype(np.float32)[:, None]
    return X, y


def _run(epochs=6, data=None, **overrides) -> T.Training:
    X, y = data if data is not None else _data()
    fields = {"arch": "7relu-3linear", "loss": "sparse_cce", "logits": True, "epochs": epochs,
              "batch_size": 16, "validation_split": 0.2, "seed": 3, **overrides}
    config = TrainConfig(**fields)
    return prepare(config, Dataset.from_arrays(X.copy(), y.copy(), "synthetic"))


def _resumed(tmp_path, run: T.Training, epochs: int, data=None, **overrides) -> T.Training:
    """Save ``run`` as a checkpoint, read it back and prepare a run that continues it."""
    path = tmp_path / "ckpt.safetensors"
    save_model(run.model, path, *checkpoint_parts(run))
    X, y = data if data is not None else _data()
    fields = {**run.config.__dict__, "epochs": epochs, **overrides}
    config = TrainConfig(**fields)
    return prepare(config, Dataset.from_arrays(X.copy(), y.copy(), "synthetic"),
                   resume=read_model_file(path))


def _without_seconds(history):
    return [{k: v for k, v in h.as_dict().items() if k != "seconds"} for h in history]


def _stop_after(calls: int, signum: int = signal.SIGINT):
    """A stop request that arrives after ``calls`` questions (as a signal would)."""
    asked = {"n": 0}

    def stop() -> int:
        asked["n"] += 1
        return signum if asked["n"] > calls else 0

    return stop


# ---------------------------------------------------------------- bit-identical resume


@pytest.mark.parametrize("optimizer, lr, momentum", [("adam", None, 0.0), ("sgd", 0.05, 0.9)])
def test_resume_at_an_epoch_boundary_is_bit_identical(tmp_path, optimizer, lr, momentum):
    straight = _run(epochs=6, optimizer=optimizer, lr=lr, momentum=momentum)
    list(fit(straight))
    first = _run(epochs=2, optimizer=optimizer, lr=lr, momentum=momentum)
    list(fit(first))
    rest = _resumed(tmp_path, first, epochs=6)
    assert [r.epoch for r in fit(rest)] == [3, 4, 5, 6]
    assert np.array_equal(rest.model.params, straight.model.params)
    assert _without_seconds(rest.history) == _without_seconds(straight.history)
    assert rest.state.step == straight.state.step
    assert np.array_equal(rest.state.m, straight.state.m)


def test_resume_inside_an_epoch_is_bit_identical(tmp_path, monkeypatch):
    # Small chunks so that an epoch has several and a stop lands inside one.
    monkeypatch.setattr(L, "ROWS_PER_CALL", 32)
    straight = _run(epochs=4)
    list(fit(straight))
    first = _run(epochs=4)
    with pytest.raises(Interrupted) as info:
        list(fit(first, stop=_stop_after(12)))
    assert info.value.exit_code == 130
    assert "SIGINT" in str(info.value)
    assert 0 < first.state.rows_done < len(first.X)  # stopped inside an epoch
    rest = _resumed(tmp_path, first, epochs=4)
    list(fit(rest))
    assert np.array_equal(rest.model.params, straight.model.params)
    assert _without_seconds(rest.history) == _without_seconds(straight.history)


def test_resume_with_weight_penalties_is_bit_identical(tmp_path, monkeypatch):
    """--l2 and --l1 change every step; the resumed run takes them from its options."""
    monkeypatch.setattr(L, "ROWS_PER_CALL", 32)
    kw = {"l2": 1e-2, "l1": 1e-3}
    plain = _run(epochs=4)
    list(fit(plain))
    straight = _run(epochs=4, **kw)
    list(fit(straight))
    assert not np.array_equal(straight.model.params, plain.model.params)
    first = _run(epochs=4, **kw)
    with pytest.raises(Interrupted):
        list(fit(first, stop=_stop_after(12)))
    assert 0 < first.state.rows_done < len(first.X)
    rest = _resumed(tmp_path, first, epochs=4)
    assert (rest.config.l2, rest.config.l1) == (1e-2, 1e-3)
    list(fit(rest))
    assert np.array_equal(rest.model.params, straight.model.params)
    assert _without_seconds(rest.history) == _without_seconds(straight.history)


def test_resume_with_early_stopping_is_bit_identical(tmp_path):
    kw = {"early_stopping": 2, "lr": 0.05}
    straight = _run(epochs=40, **kw)
    list(fit(straight))
    assert straight.early.stopped_epoch  # the comparison below covers a triggered stop
    first = _run(epochs=40, **kw)
    reports = fit(first)
    for _ in range(straight.early.best_epoch):  # stop right after the best epoch
        next(reports)
    rest = _resumed(tmp_path, first, epochs=40)
    list(fit(rest))
    assert rest.early.summary() == straight.early.summary()
    assert np.array_equal(rest.model.params, straight.model.params)


def test_checkpoint_loads_as_a_model_and_a_plain_model_has_only_its_tensors(tmp_path):
    run = _run(epochs=2)
    list(fit(run))
    ckpt, plain = tmp_path / "c.safetensors", tmp_path / "p.safetensors"
    save_model(run.model, ckpt, *checkpoint_parts(run))
    save_model(run.model, plain)
    assert set(load_file(str(plain))) == PLAIN_TENSORS
    assert set(load_file(str(ckpt))) == PLAIN_TENSORS | {"optimizer.m", "optimizer.v"}
    model = load_model(ckpt)
    assert np.array_equal(model.params, run.model.params)
    assert "training_state" not in model.info
    assert read_model_file(plain).state is None
    state = read_model_file(ckpt).state
    assert state["epoch"] == 2 and state["rows_done"] == 0 and state["rows"] == len(run.X)


# ---------------------------------------------------------------- resume refuses mismatches


def test_resume_refuses_a_finished_model(tmp_path):
    run = _run(epochs=1)
    list(fit(run))
    save_model(run.model, tmp_path / "m.safetensors")
    X, y = _data()
    with pytest.raises(UsageError, match="--init-from"):
        prepare(run.config, Dataset.from_arrays(X, y, "s"),
                resume=read_model_file(tmp_path / "m.safetensors"))


@pytest.mark.parametrize("change, message", [
    ({"arch": "8relu-3linear"}, "must match"),
    ({"optimizer": "sgd"}, "--optimizer adam"),
    ({"validation_split": 0.5}, "rows"),
    ({"epochs": 1}, "at least 2"),
])
def test_resume_refuses_another_run(tmp_path, change, message):
    run = _run(epochs=2)
    list(fit(run))
    with pytest.raises(UsageError, match=message):
        _resumed(tmp_path, run, **{"epochs": 2, **change})


def test_resume_and_init_from_together_are_refused(tmp_path):
    run = _run(epochs=1)
    list(fit(run))
    path = tmp_path / "c.safetensors"
    save_model(run.model, path, *checkpoint_parts(run))
    X, y = _data()
    with pytest.raises(UsageError, match="not both"):
        prepare(run.config, Dataset.from_arrays(X, y, "s"),
                resume=read_model_file(path), init_from=run.model)


def test_damaged_training_state_is_a_model_file_error(tmp_path):
    run = _run(epochs=1)
    list(fit(run))
    state, tensors = checkpoint_parts(run)
    path = tmp_path / "c.safetensors"
    save_model(run.model, path, {**state, "rng": {"bit_generator": "MT19937"}}, tensors)
    X, y = _data()
    with pytest.raises(ModelFileError, match="c.safetensors"):
        prepare(run.config, Dataset.from_arrays(X, y, "s"), resume=read_model_file(path))


# ---------------------------------------------------------------- stop requests and signals


def test_stop_between_epochs_and_before_the_first():
    run = _run(epochs=5)
    with pytest.raises(Interrupted, match="after epoch 0"):
        list(fit(run, stop=lambda: signal.SIGTERM))
    assert run.state.epoch == 0 and run.history == []
    run = _run(epochs=5)
    reports = []
    with pytest.raises(Interrupted) as info:
        for report in fit(run, stop=_stop_after(2, signal.SIGTERM)):
            reports.append(report)
    assert info.value.exit_code == 143
    assert len(reports) == run.state.epoch >= 1


def test_interruptible_first_signal_sets_the_flag_second_stops_at_once():
    before = signal.getsignal(signal.SIGINT)
    with interruptible() as flag:
        assert flag() == 0
        os.kill(os.getpid(), signal.SIGINT)
        assert flag() == signal.SIGINT
        with pytest.raises(StopNow) as info:
            os.kill(os.getpid(), signal.SIGTERM)
            for _ in range(1000):  # the handler runs between bytecodes
                pass
        assert isinstance(info.value, KeyboardInterrupt)
        assert info.value.exit_code == 143
    assert signal.getsignal(signal.SIGINT) is before


def test_train_and_save_writes_a_resumable_model_when_interrupted(tmp_path, monkeypatch):
    class Flag:
        def __init__(self):
            self.signum = 0

        def __call__(self):
            return self.signum

    flag = Flag()

    class Signals:
        def __enter__(self):
            return flag

        def __exit__(self, *exc):
            return False

    monkeypatch.setattr(R, "interruptible", Signals)
    files = RunFiles.for_output(tmp_path / "m.safetensors")
    files.backup_seconds = 0.0
    run = _run(epochs=10)

    def on_epoch(report):
        if report.epoch == 3:
            flag.signum = signal.SIGINT
            assert files.checkpoint.exists()  # the backup of epochs 1-2

    with pytest.raises(Interrupted) as info:
        train_and_save(run, files, on_epoch=on_epoch)
    assert "m.safetensors" in str(info.value) and "after epoch 3" in str(info.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.safetensors"]  # backup removed
    saved = read_model_file(tmp_path / "m.safetensors")
    assert saved.state["epoch"] == 3


def test_checkpoint_schedule(tmp_path):
    written = []
    files = RunFiles.for_output(tmp_path / "m.safetensors", tmp_path / "keep.ckpt", every=2)
    assert files.keep_checkpoint
    real = R.save_model

    def spy(model, path, *rest):
        written.append((path.name, read_state(rest)))
        real(model, path, *rest)

    def read_state(rest):
        return rest[0]["epoch"] if rest else None

    R.save_model, saved_fn = spy, R.save_model
    try:
        train_and_save(_run(epochs=5), files)
    finally:
        R.save_model = saved_fn
    assert written == [("keep.ckpt", 2), ("keep.ckpt", 4), ("keep.ckpt", 5),
                       ("m.safetensors", None)]
    assert read_model_file(tmp_path / "keep.ckpt").state["epoch"] == 5  # kept, resumable


def test_the_default_backup_is_written_at_most_every_backup_seconds(tmp_path, monkeypatch):
    clock = {"now": 0.0}
    monkeypatch.setattr(R.time, "monotonic", lambda: clock["now"])
    written = []
    monkeypatch.setattr(R, "save_model", lambda model, path, *rest: written.append(
        (path.name, rest[0]["epoch"] if rest else None)))

    def on_epoch(report):
        clock["now"] += 4.0  # four seconds an epoch: a backup every third epoch

    train_and_save(_run(epochs=7), RunFiles.for_output(tmp_path / "m.safetensors"),
                   on_epoch=on_epoch)
    assert written == [("m.safetensors.ckpt", 3), ("m.safetensors.ckpt", 6),
                       ("m.safetensors", None)]


def test_run_files_defaults_and_checks(tmp_path):
    files = RunFiles.for_output(tmp_path / "m.safetensors")
    assert files.checkpoint == tmp_path / "m.safetensors.ckpt" and not files.keep_checkpoint
    assert RunFiles.for_output(tmp_path / "m.safetensors", every=0).checkpoint is None
    with pytest.raises(UsageError, match="different files"):
        RunFiles.for_output(tmp_path / "m", tmp_path / "m")
    with pytest.raises(UsageError, match="--checkpoint-every"):
        RunFiles.for_output(tmp_path / "m", every=-1)
    with pytest.raises(UsageError, match="does not exist"):
        RunFiles.for_output(tmp_path / "m", history=tmp_path / "no" / "h.csv").check()


# ---------------------------------------------------------------- divergence


def test_divergence_keeps_the_weights_before_the_bad_batch():
    X, y = _data(classes=False)
    X *= 100
    run = _run(epochs=5, data=(X, y), arch="8relu-1linear", loss="mse", logits=False,
               optimizer="sgd", lr=10.0, normalize=False)
    with pytest.raises(DivergedError) as info:
        list(fit(run))
    message = str(info.value)
    assert "epoch 1, batch" in message and "--lr" in message and "10" in message
    assert info.value.exit_code == 1
    assert np.isfinite(run.model.params).all()
    assert run.state.rows_done % 16 == 0


def test_non_finite_weights_roll_back_the_chunk(monkeypatch):
    real = L.K.train_batches
    calls = {"n": 0}

    def poisoned(params, *args):
        out = real(params, *args)
        calls["n"] += 1
        if calls["n"] == 3:
            params[5] = np.inf  # as if an update overflowed without a non-finite loss
        return out

    monkeypatch.setattr(L.K, "train_batches", poisoned)
    monkeypatch.setattr(L, "ROWS_PER_CALL", 64)
    run = _run(epochs=3)
    before = {}

    def progress(epoch, done, total, loss):
        before["params"] = run.model.params.copy()
        before["step"] = run.state.step

    with pytest.raises(DivergedError, match="a weight became NaN or infinite in epoch 1"):
        list(fit(run, progress))
    assert np.array_equal(run.model.params, before["params"])
    assert run.state.step == before["step"] and run.state.rows_done == 128


def test_train_and_save_writes_the_last_finite_weights_on_divergence(tmp_path):
    X, y = _data(classes=False)
    X *= 100
    run = _run(epochs=5, data=(X, y), arch="8relu-1linear", loss="mse", logits=False,
               optimizer="sgd", lr=10.0, normalize=False)
    with pytest.raises(DivergedError) as info:
        train_and_save(run, RunFiles.for_output(tmp_path / "m.safetensors"))
    message = str(info.value)
    assert message.index("m.safetensors") < message.index("hint: try a smaller --lr")
    saved = read_model_file(tmp_path / "m.safetensors")
    assert np.isfinite(saved.model.params).all()
    assert np.array_equal(saved.model.params, run.model.params)
    assert saved.state is not None


# ---------------------------------------------------------------- early stopping


def _reports(values, monitor="val_loss"):
    return [EpochReport(i + 1, {"loss": 1.0, "accuracy": 0.5,
                                "val_loss": v if monitor == "val_loss" else 1.0,
                                "val_accuracy": v if monitor == "val_accuracy" else 0.5}, 0.0)
            for i, v in enumerate(values)]


@pytest.mark.parametrize("patience, values, stopped, best_epoch", [
    (2, [1.0, 0.9, 0.95, 0.93, 0.8], 4, 2),      # two epochs without improvement
    (2, [1.0, 0.9, 0.95, 0.85, 0.86], 0, 4),     # improvement resets the wait
    (0, [1.0, 1.1], 2, 1),                       # Keras: patience 0 stops at the first miss
    (1, [1.0, 1.0], 2, 1),                       # equal is not better
])
def test_early_stopping_follows_keras(patience, values, stopped, best_epoch):
    es = EarlyStopping("val_loss", patience)
    for report in _reports(values):
        if es.stopped_epoch:
            break
        es.update(report, np.full(2, report.epoch, np.float32))
    assert es.stopped_epoch == stopped
    assert es.best_epoch == best_epoch
    assert es.weights.tolist() == [best_epoch, best_epoch]


def test_early_stopping_min_delta_and_maximised_monitors():
    es = EarlyStopping("val_loss", 1, min_delta=0.1)
    for report in _reports([1.0, 0.95]):
        es.update(report, np.zeros(1, np.float32))
    assert es.stopped_epoch == 2 and es.best == 1.0  # 0.05 better is not enough
    es = EarlyStopping("val_accuracy", 1)
    for report in _reports([0.5, 0.7, 0.6], "val_accuracy"):
        es.update(report, np.zeros(1, np.float32))
    assert es.best == 0.7 and es.stopped_epoch == 3


def test_best_weights_come_back_even_without_a_stop():
    run = _run(epochs=12, early_stopping=100, lr=0.2)
    list(fit(run))
    assert run.early.stopped_epoch == 0
    best = min(run.history, key=lambda r: r.val_loss)
    assert run.early.best_epoch == best.epoch
    assert np.array_equal(run.model.params, run.early.weights)
    loss, _ = run.model.evaluate(run.X_val, run.Y_val)
    assert loss == pytest.approx(best.val_loss, rel=1e-6)
    assert run.model.info["early_stopping"]["best_epoch"] == best.epoch


def test_monitor_defaults_and_refusals():
    assert _run(epochs=1, early_stopping=1).early.monitor == "val_loss"
    assert _run(epochs=1, early_stopping=1, validation_split=0.0).early.monitor == "loss"
    with pytest.raises(UsageError, match="validation data"):
        _run(epochs=1, early_stopping=1, validation_split=0.0, monitor="val_loss")
    with pytest.raises(UsageError, match="no accuracy"):
        _run(epochs=1, early_stopping=1, monitor="val_accuracy", data=_data(classes=False),
             arch="4relu-1linear", loss="mse", logits=False)
    with pytest.raises(UsageError, match="--early-stopping"):
        _run(epochs=1, monitor="loss")
    with pytest.raises(UsageError, match="--min-delta"):
        _run(epochs=1, early_stopping=1, min_delta=-1.0)


# ---------------------------------------------------------------- history CSV


def test_history_csv_has_a_row_per_epoch_and_survives_resume(tmp_path):
    history = tmp_path / "h.csv"
    first = _run(epochs=2)
    train_and_save(first, RunFiles.for_output(tmp_path / "a.safetensors", history=history))
    rows = list(csv.reader(history.open()))
    assert rows[0] == ["epoch", "loss", "accuracy", "val_loss", "val_accuracy", "seconds"]
    assert [r[0] for r in rows[1:]] == ["1", "2"]
    assert float(rows[2][1]) == first.history[1].loss
    # Resuming from a checkpoint after epoch 2 rewrites the two rows and appends the rest.
    rest = _resumed(tmp_path, first, epochs=4)
    train_and_save(rest, RunFiles.for_output(tmp_path / "b.safetensors", history=history))
    rows = list(csv.reader(history.open()))
    assert [r[0] for r in rows[1:]] == ["1", "2", "3", "4"]


def test_history_columns_of_a_regression_without_validation():
    run = _run(epochs=1, data=_data(classes=False), arch="4relu-1linear", loss="mse",
               logits=False, validation_split=0.0)
    assert T.history_columns(run) == ["epoch", "loss", "seconds"]


def test_warm_up_leaves_the_run_as_it_was():
    run = _run(epochs=3, early_stopping=1)
    before = run.model.params.copy()
    T.warm_up(run.config, run.X.shape[1], run.X_val is not None)
    assert np.array_equal(run.model.params, before)
    assert run.model.info["history"] == [] and "early_stopping" not in run.model.info
    assert run.state is None and run.early.best is None


def test_text_classes_the_output_cannot_hold_are_named():
    X, _ = _data()
    y = np.arange(len(X), dtype=np.float32)[:, None] % 4
    config = TrainConfig(arch="5relu-3linear", loss="sparse_cce", logits=True, epochs=0)
    with pytest.raises(UsageError, match="4 classes .*holds 3"):
        prepare(config, Dataset.from_arrays(X, y, "s", classes=["ant", "bee", "cat", "dog"]))
    config = replace(config, arch="5relu-1linear", loss="bce")
    with pytest.raises(UsageError, match="holds 2; for 4 classes use .4linear."):
        prepare(config, Dataset.from_arrays(X, y, "s", classes=["a", "b", "c", "d"]))
