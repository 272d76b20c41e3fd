"""The training loop: from arrays and options to a fitted Model, one EpochReport at a time.

``fit`` never prints: callers (the CLI, tests, scripts) decide what to show. Each epoch shuffles
the training rows, then runs the mini-batches in compiled code (kernels.train_batches), a chunk
of ``ROWS_PER_CALL`` rows per call so that a progress callback can be told how far the epoch is.
A batch never straddles two calls.

Everything besides the weights that a run needs to continue lives in ``Training.state`` (a
``TrainState``), updated after every chunk, so a run can be saved at any chunk boundary and
resumed later with bit-identical results (``checkpoint_parts`` / ``prepare(resume=...)``).

Faults are handled at chunk boundaries too:

* a stop request (``interruptible()``: the first SIGINT or SIGTERM) is honoured after the current
  chunk: ``fit`` raises ``Interrupted`` with the state standing where it stopped. A chunk is a few
  milliseconds to a second of work, so "finishes the current mini-batch" means "finishes the
  current chunk of mini-batches". A second signal raises ``StopNow`` at once;
* a NaN or infinite batch loss stops the kernel before that batch's update; a chunk that leaves
  any weight NaN or infinite is rolled back to the weights before it. Either way ``fit`` raises
  ``DivergedError`` naming the epoch and batch, with the last finite weights in the model.

``train_and_save`` runs ``fit`` the way the command line does: signal handlers, checkpoints,
the history CSV, and the model file written on success, on interruption and on divergence.
"""

from __future__ import annotations

import copy
import math
import os
import signal
import threading
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterator, TextIO

import numpy as np

from nncli import kernels as K
from nncli import optim
from nncli.arch import format_arch, layer_shapes, parse_arch
from nncli.data import Dataset
from nncli.errors import (DataError, DivergedError, Interrupted, ModelFileError, StopNow,
                          UsageError)
from nncli.evaluate import regression_metrics
from nncli.losses import PROB_EPSILON, Loss, check_output_layer, get_loss, prepare_targets
from nncli.model import Model, Workspace
from nncli.modelfile import check_writable, save_model

DEFAULT_EPOCHS = 20
# Rows per compiled call: large enough that Python is invisible, small enough for a live bar
# and a prompt reaction to Ctrl-C.
ROWS_PER_CALL = 8192
# A feature whose spread is below this is left unscaled rather than blown up (Keras divides by
# max(std, 1e-7), which turns a constant column seen differently at predict time into +-1e7).
MIN_STD = 1e-7
# Cells per block when computing feature statistics: bounds the float64 temporaries.
STATS_BLOCK = 1 << 20
# The default backup checkpoint is written at most this often (wall seconds): more often would
# only slow down runs of short epochs, for a loss of at most this much work in a crash.
BACKUP_SECONDS = 10.0
# What --monitor can watch, and which way is better.
MONITORS = {"loss": "min", "accuracy": "max", "val_loss": "min", "val_accuracy": "max"}

ProgressFn = Callable[[int, int, int, float], None]   # epoch, rows done, rows total, mean loss
StopFn = Callable[[], int]                             # the signal that asked to stop, or 0


@dataclass
class TrainConfig:
    """Every option of a training run; printed by --json."""

    arch: str
    loss: str
    logits: bool = False
    optimizer: str = "adam"
    lr: float | None = None
    momentum: float = 0.0
    epochs: int = DEFAULT_EPOCHS
    batch_size: int = 32
    validation_split: float = 0.0
    seed: int = 0
    normalize: bool = True
    early_stopping: int | None = None   # patience in epochs; None: no early stopping
    min_delta: float = 0.0
    monitor: str | None = None          # None: val_loss with validation data, else loss
    channels: int = 1                   # a row of features is length x channels, channels last
    normalize_target: bool = True       # mse: learn (Y - mean) / std, predict in Y's units
    missing: str = "mean"               # missing feature cells: mean | error | drop
    categorical: list[str] = field(default_factory=list)  # columns to one-hot even if numbers
    delimiter: str | None = None        # None: detected


@dataclass
class EpochReport:
    """Metrics after one epoch; accuracies are None for regression, val_* without validation.

    ``loss`` and ``val_loss`` are what training minimises: for an mse model that standardises
    its targets, in standardised units. A regression model's ``val_mse``, ``val_mae`` and
    ``val_r2`` are in the targets' own units.
    """

    epoch: int
    loss: float
    accuracy: float | None
    val_loss: float | None
    val_accuracy: float | None
    seconds: float
    val_mse: float | None = None
    val_mae: float | None = None
    val_r2: float | None = None

    def as_dict(self) -> dict:
        return {k: v for k, v in asdict(self).items() if v is not None}

    @classmethod
    def from_dict(cls, d: dict) -> "EpochReport":
        return cls(int(d["epoch"]), float(d["loss"]), _opt_float(d.get("accuracy")),
                   _opt_float(d.get("val_loss")), _opt_float(d.get("val_accuracy")),
                   float(d.get("seconds", 0.0)), _opt_float(d.get("val_mse")),
                   _opt_float(d.get("val_mae")), _opt_float(d.get("val_r2")))


@dataclass
class TrainState:
    """Where a run stands besides its weights: everything resuming it needs.

    Between epochs ``rows_done`` is 0. A run stopped inside an epoch has trained the first
    ``rows_done`` rows of that epoch's shuffle, and ``loss_sum``/``correct``/``seconds`` hold the
    epoch's partial sums; ``rng`` is always the shuffling generator's state at the start of
    epoch ``epoch + 1``, so that epoch's permutation can be drawn again.
    """

    m: np.ndarray                 # Adam's first moment, or SGD's velocity (flat, like params)
    v: np.ndarray                 # Adam's second moment; empty for SGD
    rng: dict                     # np.random.PCG64 state (JSON-able)
    epoch: int = 0                # epochs completed
    rows_done: int = 0
    loss_sum: float = 0.0
    correct: int = 0
    seconds: float = 0.0
    step: int = 0                 # optimizer steps taken (Adam's t)


@dataclass
class EarlyStopping:
    """Keras's EarlyStopping(monitor, min_delta, patience, restore_best_weights=True).

    After each epoch: ``wait`` grows by one, and goes back to 0 when the monitored value beats
    the best by more than ``min_delta``; training stops once ``wait`` reaches ``patience``.
    At the end of training, stopped or not, the weights of the best epoch are put back (as
    Keras 3 does; tf.keras 2 restored them only when the stop triggered).
    """

    monitor: str
    patience: int
    min_delta: float = 0.0
    best: float | None = None
    best_epoch: int = 0
    wait: int = 0
    stopped_epoch: int = 0        # the epoch after which it stopped; 0: it did not trigger
    weights: np.ndarray | None = None

    def update(self, report: EpochReport, params: np.ndarray) -> None:
        value = getattr(report, self.monitor)
        self.wait += 1
        if self.best is None or self._improves(value):
            self.best, self.best_epoch, self.wait = value, report.epoch, 0
            self.weights = params.copy()
        elif self.wait >= self.patience:
            self.stopped_epoch = report.epoch

    def _improves(self, value: float) -> bool:
        if MONITORS[self.monitor] == "min":
            return value + self.min_delta < self.best
        return value - self.min_delta > self.best

    def summary(self) -> dict:
        """What the model file and --json keep of it."""
        return {"monitor": self.monitor, "patience": self.patience, "min_delta": self.min_delta,
                "best": self.best, "best_epoch": self.best_epoch, "wait": self.wait,
                "stopped_epoch": self.stopped_epoch}


@dataclass
class Training:
    """A prepared run: the model, the arrays the kernels will read, and where the run stands."""

    model: Model
    config: TrainConfig
    X: np.ndarray
    Y: np.ndarray
    X_val: np.ndarray | None = None
    Y_val: np.ndarray | None = None
    history: list[EpochReport] = field(default_factory=list)
    state: TrainState | None = None          # None: a fresh run (made by fit)
    early: EarlyStopping | None = None
    resumed_from: str | None = None

    @property
    def epochs_left(self) -> int:
        done = self.state.epoch if self.state is not None else 0
        if self.early is not None and self.early.stopped_epoch:
            return 0
        return max(0, self.config.epochs - done)


# ------------------------------------------------------------------------------ preparing a run

@dataclass
class Inputs:
    """What a run reads before it starts: the data, and the model it starts from."""

    data: Dataset
    val: Dataset | None = None
    init_from: Model | None = None
    resume: object | None = None       # a modelfile.ModelFile with a training state

    def messages(self) -> list[str]:
        """What the user should be told about the data (dropped rows, filled values, ...)."""
        return self.data.messages() + (self.val.messages() if self.val is not None else [])


def load_inputs(config: TrainConfig, data: str, validation_data: str | None = None,
                targets: list[str] | None = None, init_from: str | os.PathLike | None = None,
                resume: str | os.PathLike | None = None, stdin=None) -> Inputs:
    """Read the training data (``-``: standard input), the validation data and the model a
    run starts from, as ``nncli train`` does: the training file's columns are learnt here
    (or, continuing from a model, read with that model's columns), and the validation file is
    read with the same columns and classes. Hand the result to :func:`prepare`."""
    from nncli.data import ReadOptions, load_training_data
    from nncli.modelfile import load_model, read_model_file

    if validation_data is not None and config.validation_split:
        raise UsageError("give --validation-split or --validation-data, not both")
    base = load_model(init_from) if init_from else None
    saved = read_model_file(resume) if resume else None
    start = saved.model if saved is not None else base
    options = ReadOptions(config.delimiter, config.missing, tuple(config.categorical))
    ds = load_training_data(data, targets, classes=saved.model.classes if saved else None,
                            stdin=stdin, options=options,
                            schema=start.input_schema() if start is not None else None)
    vds = None
    if validation_data is not None:
        vds = load_training_data(validation_data, targets, classes=ds.classes, options=options,
                                 schema=ds.schema)
    return Inputs(ds, vds, base, saved)


def prepare(config: TrainConfig, data: Dataset, val: Dataset | None = None,
            init_from: Model | None = None, resume=None, own_data: bool = False) -> Training:
    """Check the options against the data, split, fill, standardise and build the model.

    ``data`` (and ``val``, separate validation data encoded with ``data``'s schema) are left as
    they are unless ``own_data``: then their arrays are filled and normalised in place, so a
    large data set is not copied (the command line hands its freshly loaded data over; a caller
    reusing one data set for several runs keeps the default). ``resume`` is a checkpoint
    (``modelfile.ModelFile`` with a training state) to continue: its weights, input and target
    scaling, optimizer state, shuffling state, history and early-stopping state are taken
    over; the options of this call must describe the same network and data.
    """
    if resume is not None and init_from is not None:
        raise UsageError("give --resume or --init-from, not both (--resume continues a run with "
                         "its optimizer state; --init-from starts a new one from a model)")
    layers, loss, n_out = validate(config, data, val)
    X = data.X if own_data else data.X.copy()
    opt = optim.settings(config.optimizer, config.lr, config.momentum)
    Y = prepare_targets(loss, data.Y, n_out, data.source, data.line_numbers)
    if val is not None:
        X_val = val.X if own_data else val.X.copy()
        Y_val = prepare_targets(loss, val.Y, n_out, val.source, val.line_numbers)
        X_train, Y_train = X, Y
    else:
        n_val = validation_rows(config, len(X))
        X_train, Y_train = X[:len(X) - n_val], Y[:len(Y) - n_val]
        X_val, Y_val = (X[len(X) - n_val:], Y[len(Y) - n_val:]) if n_val else (None, None)
    early = _early_stopping(config, loss.classifier, X_val is not None)
    info = {"optimizer": opt, "seed": config.seed, "normalize": config.normalize,
            "normalize_target": False, "missing": config.missing, "history": []}
    schema = copy.deepcopy(data.schema) if data.schema is not None else None
    model = Model.create(layers, X.shape[1], config.loss, config.logits, seed=config.seed,
                         channels=config.channels, info=info, classes=data.classes,
                         feature_names=data.feature_names, target_names=data.target_names,
                         target_columns=data.target_columns, schema=schema)
    if resume is not None:
        _take_weights(model, resume.model, "--resume checkpoint")
    elif init_from is not None:
        _take_weights(model, init_from, "--init-from model")
    else:
        _fit_scaling(model, config, X_train, Y_train)
    info["normalize_target"] = model.target_mean is not None
    for part in (X, X_val) if val is not None else (X,):
        model.input_schema().fill_missing(part, data.source)
        model.normalize(part)
    Y_train = model.scale_targets(Y_train)
    Y_val = model.scale_targets(Y_val) if Y_val is not None else None
    run = Training(model, config, X_train, Y_train, X_val, Y_val, early=early)
    if resume is not None:
        _resume(run, resume)
    return run


def validate(config: TrainConfig, data: Dataset,
             val: Dataset | None = None) -> tuple[list, Loss, int]:
    """Every check of ``config`` against ``data`` that ``prepare`` makes, without copying or
    scaling anything (a sweep checks each combination before it starts any): the
    architecture, the loss against the last layer, the options' ranges, the classes and
    targets against the output layer, the validation split, early stopping. Returns the
    layers, the loss and the output width."""
    layers = parse_arch(config.arch)
    loss = get_loss(config.loss)
    n_out = layer_shapes(layers, data.X.shape[1], config.channels)[-1].n_out
    check_output_layer(loss, config.logits, layers, n_out)
    _check_config(config)
    _check_classes(loss, n_out, data.classes, data.source)
    optim.settings(config.optimizer, config.lr, config.momentum)
    prepare_targets(loss, data.Y, n_out, data.source, data.line_numbers)
    if val is not None:
        prepare_targets(loss, val.Y, n_out, val.source, val.line_numbers)
    n_val = 0 if val is not None else validation_rows(config, len(data.X))
    if len(data.X) - n_val == 0:
        raise UsageError("no training rows left after the validation split")
    _early_stopping(config, loss.classifier, val is not None or n_val > 0)
    return layers, loss, n_out


def validation_rows(config: TrainConfig, n: int) -> int:
    """How many of ``n`` rows --validation-split holds out: Keras trains on the first
    int(n * (1 - split)) rows and validates on the rest."""
    n_val = n - int(n * (1.0 - config.validation_split))
    if config.validation_split and n_val == 0:
        raise UsageError(f"--validation-split {config.validation_split} of {n} rows leaves no "
                         f"validation row")
    return n_val


def _fit_scaling(model: Model, config: TrainConfig, X_train: np.ndarray,
                 Y_train: np.ndarray) -> None:
    """What a new model learns from its training rows besides the weights: each numeric
    column's fill value for missing cells (its mean), the features' standardisation (numeric
    features only: one-hot ones stay 0/1) and, for mse, the targets'."""
    if model.schema is None:
        model.schema = model.input_schema()
    schema = model.schema
    numeric = schema.numeric_features()
    means = column_means(X_train)
    for column, at in zip(schema.columns, schema.offsets()):
        if column.kind == "numeric":
            if not np.isfinite(means[at]):
                raise DataError(f"column '{column.name}' has no value in the training rows "
                                f"(every one is missing); leave it out")
            column.fill = float(means[at])
    schema.fill_missing(X_train, "")  # the statistics see the filled values
    if config.normalize:
        mean, std = feature_stats(X_train)
        model.mean, model.std = np.where(numeric, mean, 0.0).astype(np.float32), \
            np.where(numeric, std, 1.0).astype(np.float32)
    if config.normalize_target and model.loss == "mse":
        model.target_mean, model.target_std = feature_stats(Y_train)


def column_means(X: np.ndarray) -> np.ndarray:
    """Each column's mean over its non-NaN values (float64 sums, a block of rows at a time);
    NaN for a column with no value."""
    step = max(1, STATS_BLOCK // max(1, X.shape[1]))
    total = np.zeros(X.shape[1], np.float64)
    count = np.zeros(X.shape[1], np.int64)
    for lo in range(0, len(X), step):
        block = X[lo:lo + step]
        gaps = np.isnan(block)
        if gaps.any():
            total += np.where(gaps, 0.0, block).sum(axis=0, dtype=np.float64)
            count += (~gaps).sum(axis=0)
        else:
            total += block.sum(axis=0, dtype=np.float64)
            count += len(block)
    with np.errstate(invalid="ignore", divide="ignore"):
        return total / count


def _early_stopping(cfg: TrainConfig, classifier: bool, has_val: bool) -> EarlyStopping | None:
    if cfg.early_stopping is None:
        if cfg.monitor is not None or cfg.min_delta:
            raise UsageError("--monitor and --min-delta apply to --early-stopping PATIENCE")
        return None
    monitor = cfg.monitor or ("val_loss" if has_val else "loss")
    if monitor not in MONITORS:
        raise UsageError(f"unknown --monitor '{monitor}'; expected one of {', '.join(MONITORS)}")
    if monitor.startswith("val_") and not has_val:
        raise UsageError(f"--monitor {monitor} needs validation data: give --validation-split "
                         f"or --validation-data, or monitor loss")
    if monitor.endswith("accuracy") and not classifier:
        raise UsageError(f"--monitor {monitor}: a regression model has no accuracy; monitor "
                         f"{monitor.replace('accuracy', 'loss')}")
    return EarlyStopping(monitor, cfg.early_stopping, cfg.min_delta)


def new_state(model: Model, config: TrainConfig) -> TrainState:
    """The state of a run that has not started: zero moments, the shuffle seeded by --seed."""
    m = np.zeros_like(model.params)
    v = np.zeros_like(model.params) if _is_adam(model) else np.zeros(0, np.float32)
    rng = np.random.default_rng(np.random.SeedSequence(config.seed).spawn(1)[0])
    return TrainState(m=m, v=v, rng=rng.bit_generator.state)


def _is_adam(model: Model) -> bool:
    """Whether the model trains with Adam (second moments, no SGD velocity) or SGD."""
    return optim.get_optimizer(model.info["optimizer"]["name"]).code == 1


def feature_stats(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and population std of each column (float64 sums); tiny spreads become 1.

    Two passes over blocks of rows: np.std of the whole array would allocate a float64 copy of
    it (twice the data), which dominated the peak memory of training on a large set.
    """
    n = max(len(X), 1)
    step = max(1, STATS_BLOCK // max(1, X.shape[1]))
    total = np.zeros(X.shape[1], np.float64)
    for lo in range(0, len(X), step):
        total += X[lo:lo + step].sum(axis=0, dtype=np.float64)
    mean = total / n
    squares = np.zeros(X.shape[1], np.float64)
    for lo in range(0, len(X), step):
        squares += ((X[lo:lo + step] - mean) ** 2).sum(axis=0)
    std = np.sqrt(squares / n)
    std[std < MIN_STD] = 1.0
    return mean.astype(np.float32), std.astype(np.float32)


# ------------------------------------------------------------------------------ the loop

def fit(run: Training, on_progress: ProgressFn | None = None,
        stop: StopFn | None = None) -> Iterator[EpochReport]:
    """Train until ``run.config.epochs`` epochs are done in all, yielding a report after each.

    Continues from ``run.state`` (a fresh state when None). ``stop`` is asked after every chunk
    but the last of an epoch, and before every epoch; when it returns a signal number, ``fit``
    raises ``Interrupted`` with the state where it stands. With early stopping, the best
    weights are put back when the loop ends (not when it is interrupted).
    """
    model, cfg = run.model, run.config
    if run.state is None:
        run.state = new_state(model, cfg)
    st, es = run.state, run.early
    n = len(run.X)
    batch = min(cfg.batch_size, n)
    ws = Workspace(model.layer_table(), batch, np.float32)
    grads = np.zeros_like(model.params)
    opt = model.info["optimizer"]
    adam = _is_adam(model)
    hyper = optim.hyper_vector(opt)
    Xb = np.zeros((batch, run.X.shape[1]), np.float32)
    Yb = np.zeros((batch, run.Y.shape[1]), np.float32)
    X, Y = np.ascontiguousarray(run.X), np.ascontiguousarray(run.Y)
    rng = np.random.default_rng()
    perm = np.empty(n, dtype=np.int64)
    per_call = max(1, ROWS_PER_CALL // batch) * batch
    # The weights and moments before the current chunk, to roll back to if it leaves any
    # weight non-finite.
    saved = (np.empty_like(model.params), np.empty_like(st.m), np.empty_like(st.v))
    while st.epoch < cfg.epochs and not (es is not None and es.stopped_epoch):
        _check_stop(stop, st, n)
        epoch = st.epoch + 1
        rng.bit_generator.state = st.rng
        perm[:] = np.arange(n)
        rng.shuffle(perm)
        start = time.perf_counter() - st.seconds
        for s in range(st.rows_done, n, per_call):
            e = min(s + per_call, n)
            for keep, now in zip(saved, (model.params, st.m, st.v)):
                keep[...] = now
            ls, c, step, diverged_at = K.train_batches(
                model.params, grads, st.m, st.v, None if adam else st.m, Xb, Yb, ws.Z, ws.A,
                ws.dZ, ws.dA, ws.T, ws.table, X, Y, perm, s, e, batch, model.kernel_code,
                PROB_EPSILON, hyper, st.step, ws.windowed)
            if diverged_at >= 0 or not np.isfinite(model.params).all():
                _diverged(run, epoch, s, e, batch, ls, c, step, diverged_at, saved, start)
            st.loss_sum += ls
            st.correct += c
            st.step = step
            st.rows_done = e
            if on_progress is not None:
                on_progress(epoch, e, n, st.loss_sum / e)
            if e < n:
                st.seconds = time.perf_counter() - start
                _check_stop(stop, st, n)
        report = EpochReport(epoch, st.loss_sum / n, model.accuracy(st.correct, n), None, None,
                             time.perf_counter() - start)
        if run.X_val is not None and len(run.X_val):
            report.val_loss, report.val_accuracy = model.evaluate(run.X_val, run.Y_val)
            if not model.loss_spec.classifier:
                metrics = regression_metrics(model.unscale_outputs(model.outputs(run.X_val)),
                                             model.unscale_outputs(run.Y_val))
                report.val_mse, report.val_mae, report.val_r2 = (
                    metrics["mse"], metrics["mae"], metrics["r2"])
        st.epoch, st.rows_done, st.loss_sum, st.correct, st.seconds = epoch, 0, 0.0, 0, 0.0
        st.rng = rng.bit_generator.state
        run.history.append(report)
        model.info["history"].append(report.as_dict())
        if es is not None:
            es.update(report, model.params)
        yield report
    if es is not None:
        if es.weights is not None:
            model.params[...] = es.weights
        model.info["early_stopping"] = es.summary()


def _check_stop(stop: StopFn | None, st: TrainState, n: int) -> None:
    signum = stop() if stop is not None else 0
    if signum:
        name = signal.Signals(signum).name
        where = (f"in epoch {st.epoch + 1} after {st.rows_done} of {n} rows" if st.rows_done
                 else f"after epoch {st.epoch}")
        raise Interrupted(f"interrupted by {name} {where}", signum)


def _diverged(run: Training, epoch: int, s: int, e: int, batch: int, ls: float, c: int,
              step: int, diverged_at: int, saved: tuple, start: float) -> None:
    """Leave the state at the last finite weights and raise DivergedError."""
    model, st = run.model, run.state
    lr = model.info["optimizer"]["learning_rate"]
    if diverged_at >= 0 and np.isfinite(model.params).all():
        # The kernel stopped before the bad batch's update: keep the batches before it.
        st.loss_sum += ls
        st.correct += c
        st.step = step
        st.rows_done = diverged_at
        what = f"the loss became NaN or infinite in epoch {epoch}, batch {diverged_at // batch + 1}"
    else:
        for keep, now in zip(saved, (model.params, st.m, st.v)):
            now[...] = keep
        st.rows_done = s
        first, last = s // batch + 1, math.ceil(e / batch)
        what = (f"a weight became NaN or infinite in epoch {epoch}, batch "
                f"{first}" + (f"-{last}" if last > first else ""))
    st.seconds = time.perf_counter() - start
    hint = f"; hint: try a smaller --lr (it is {lr:g})"
    error = DivergedError(what + hint)
    error.what, error.hint = what, hint
    raise error


def warm_up(run: Training) -> None:
    """Compile (or load from cache) the training kernels on one row, leaving the run as is."""
    model = run.model
    saved = model.params.copy()
    info = {k: model.info[k] for k in ("history", "early_stopping") if k in model.info}
    one = Training(model, TrainConfig(**{**asdict(run.config), "epochs": 1, "batch_size": 1,
                                         "early_stopping": None, "monitor": None,
                                         "min_delta": 0.0}),
                   run.X[:1], run.Y[:1], run.X_val[:1] if run.X_val is not None else None,
                   run.Y_val[:1] if run.Y_val is not None else None)
    model.info["history"] = []
    try:
        for _ in fit(one):
            pass
    except DivergedError:
        pass  # a one-row step may blow up where the real run does not; it compiled all the same
    model.params[...] = saved
    model.info.pop("early_stopping", None)
    model.info.update(info)


def kernels_cached() -> bool:
    """Whether the training kernels have been compiled into Numba's cache before (a first run
    after install compiles them, ~20 s). Reads a Numba internal; when that fails, says True."""
    try:
        index = K.train_batches._cache._cache_file._index_path
    except AttributeError:
        return True
    return os.path.exists(index)


def set_threads(threads: int | None) -> None:
    """Use ``threads`` compute threads (None: all cores). Results do not depend on it."""
    import numba

    if threads is not None:
        if threads < 1:
            raise UsageError(f"--threads must be at least 1, received {threads}")
        numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))


# ------------------------------------------------------------------------------ checkpoints

def checkpoint_parts(run: Training) -> tuple[dict, dict[str, np.ndarray]]:
    """(training_state document, extra tensors) that make a model file a checkpoint of ``run``.

    Pass them to ``modelfile.save_model(run.model, path, state, tensors)``.
    """
    st = run.state if run.state is not None else new_state(run.model, run.config)
    state = {"epoch": st.epoch, "rows_done": st.rows_done, "loss_sum": st.loss_sum,
             "correct": st.correct, "seconds": st.seconds, "step": st.step, "rng": st.rng,
             "rows": len(run.X), "optimizer": run.model.info["optimizer"]["name"]}
    tensors = {"optimizer.m": st.m}
    if st.v.size:
        tensors["optimizer.v"] = st.v
    if run.early is not None:
        state["early_stopping"] = run.early.summary()
        if run.early.weights is not None:
            tensors["early_stopping.best"] = run.early.weights
    return state, tensors


def _resume(run: Training, saved) -> None:
    """Take over the training state of checkpoint ``saved`` (a modelfile.ModelFile)."""
    name, model = saved.path, run.model
    if saved.state is None:
        raise UsageError(f"{name}: a finished model, not a checkpoint (it holds no optimizer "
                         f"state); to train on from its weights use --init-from {name}")
    base = saved.model
    if (base.loss, base.logits) != (model.loss, model.logits):
        raise UsageError(f"--resume {name}: the checkpoint was trained with --loss {base.loss}"
                         f"{' --logits' if base.logits else ''}; resume it with the same loss")
    if base.classes != model.classes:
        raise UsageError(f"--resume {name}: the checkpoint's classes are {base.classes}, this "
                         f"data's are {model.classes}")
    try:
        state = saved.state
        opt_name = str(state["optimizer"])
        rows = int(state["rows"])
        st = TrainState(m=np.ascontiguousarray(saved.tensors["optimizer.m"]),
                        v=np.ascontiguousarray(saved.tensors["optimizer.v"])
                        if opt_name == "adam" else np.zeros(0, np.float32),
                        rng=dict(state["rng"]), epoch=int(state["epoch"]),
                        rows_done=int(state["rows_done"]), loss_sum=float(state["loss_sum"]),
                        correct=int(state["correct"]), seconds=float(state["seconds"]),
                        step=int(state["step"]))
        np.random.default_rng().bit_generator.state = st.rng
        history = [EpochReport.from_dict(h) for h in base.info.get("history") or []]
    except (KeyError, TypeError, ValueError) as e:
        raise ModelFileError(f"{name}: damaged training state ({type(e).__name__}: {e})") from None
    if opt_name != model.info["optimizer"]["name"]:
        raise UsageError(f"--resume {name}: the checkpoint's optimizer state is {opt_name}'s; "
                         f"resume it with --optimizer {opt_name}")
    if rows != len(run.X):
        raise UsageError(f"--resume {name}: the checkpoint was trained on {rows} rows, this run "
                         f"has {len(run.X)}; give the same data and validation split")
    if not 0 <= st.rows_done <= rows or st.epoch < 0 or len(history) != st.epoch:
        raise ModelFileError(f"{name}: damaged training state (epoch {st.epoch}, rows "
                             f"{st.rows_done}, {len(history)} epochs of history)")
    needed = st.epoch + (1 if st.rows_done else 0)
    if run.config.epochs < needed:
        raise UsageError(f"--resume {name}: the checkpoint is {'in' if st.rows_done else 'after'}"
                         f" epoch {needed}, but --epochs is {run.config.epochs}; --epochs counts"
                         f" all epochs, so give at least {needed}")
    run.state, run.history, run.resumed_from = st, history, name
    model.info["history"] = [h.as_dict() for h in history]
    es_state = state.get("early_stopping")
    if run.early is not None and isinstance(es_state, dict) \
            and es_state.get("monitor") == run.early.monitor:
        try:
            es = run.early
            es.best = None if es_state.get("best") is None else float(es_state["best"])
            es.best_epoch = int(es_state.get("best_epoch", 0))
            es.wait = int(es_state.get("wait", 0))
            es.stopped_epoch = int(es_state.get("stopped_epoch", 0))
            best = saved.tensors.get("early_stopping.best")
            es.weights = None if best is None else best.copy()
        except (TypeError, ValueError) as e:
            raise ModelFileError(f"{name}: damaged early-stopping state ({e})") from None


# ------------------------------------------------------------------------------ running it all

@dataclass
class RunFiles:
    """Where a training run writes.

    ``checkpoint``: the run is saved there every ``checkpoint_every`` epochs (None or 0: never).
    A kept checkpoint (given by the user) is also written after the last epoch and stays; a
    backup (``keep_checkpoint`` False, the default ``MODEL.ckpt``) is written only when
    ``backup_seconds`` have passed since the last one (or the start), and removed once the model
    is written, as Keras's BackupAndRestore removes its backup. ``history``: one CSV row per
    epoch.
    """

    model: Path
    checkpoint: Path | None = None
    checkpoint_every: int = 1
    keep_checkpoint: bool = False
    history: Path | None = None
    backup_seconds: float = BACKUP_SECONDS

    @classmethod
    def for_output(cls, model: Path, checkpoint: Path | None = None, every: int = 1,
                   history: Path | None = None) -> "RunFiles":
        """The files of a run writing ``model``: by default a backup checkpoint MODEL.ckpt."""
        if every < 0:
            raise UsageError(f"--checkpoint-every must be 0 (no checkpoints) or more, received "
                             f"{every}")
        keep = checkpoint is not None
        if checkpoint is None and every:
            checkpoint = default_checkpoint(model)
        files = cls(Path(model), Path(checkpoint) if checkpoint and every else None, every,
                    keep, Path(history) if history else None)
        named = [p.resolve() for p in (files.model, files.checkpoint, files.history) if p]
        if len(set(named)) != len(named):
            raise UsageError("the model, --checkpoint and --history must be different files")
        return files

    def check(self) -> None:
        """Fail now, before training, when one of the files cannot be written."""
        check_writable(self.model)
        if self.checkpoint is not None:
            check_writable(self.checkpoint, "the checkpoint")
        if self.history is not None:
            check_writable(self.history, "the history")


def default_checkpoint(model: Path) -> Path:
    """MODEL.ckpt next to the model."""
    model = Path(model)
    return model.with_name(model.name + ".ckpt")


def history_columns(run: Training) -> list[str]:
    """epoch, then the metrics the run reports, in the order of the epoch lines, then seconds."""
    classifier = run.model.loss_spec.classifier
    columns = ["epoch", "loss"] + (["accuracy"] if classifier else [])
    if run.X_val is not None:
        columns += ["val_loss"] + (["val_accuracy"] if classifier
                                   else ["val_mse", "val_mae", "val_r2"])
    return columns + ["seconds"]


class HistoryLog:
    """The --history CSV: a header, then one row per epoch, flushed as it is written.

    A resumed run rewrites the file with the epochs its checkpoint holds, then goes on.
    """

    def __init__(self, path: Path, columns: list[str], past: list[EpochReport]) -> None:
        self.columns = columns
        try:
            self._f: TextIO = open(path, "w", encoding="utf-8", newline="")
        except OSError as e:
            raise UsageError(f"{path}: cannot write the history: {e.strerror or e}") from None
        self._f.write(",".join(columns) + "\n")
        for report in past:
            self.write(report)
        self._f.flush()

    def write(self, report: EpochReport) -> None:
        values = report.as_dict()
        self._f.write(",".join(_cell(values.get(c)) for c in self.columns) + "\n")
        self._f.flush()

    def close(self) -> None:
        self._f.close()


def _cell(value) -> str:
    if value is None:
        return ""
    return str(value) if isinstance(value, int) else repr(float(value))


class StopFlag:
    """Set by the first SIGINT/SIGTERM; ``fit`` asks it after every chunk."""

    def __init__(self) -> None:
        self.signum = 0

    def __call__(self) -> int:
        return self.signum


@contextmanager
def interruptible() -> Iterator[StopFlag]:
    """While inside: the first SIGINT or SIGTERM sets the flag yielded (fit stops after its
    current chunk), a second one raises ``StopNow`` (a KeyboardInterrupt) at once. The previous
    handlers come back on exit. Outside the main thread signals cannot be caught: the flag is
    never set and the usual handlers apply."""
    flag = StopFlag()
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return
    signals = (signal.SIGINT, signal.SIGTERM)

    def again(signum, frame):
        raise StopNow(signum)

    def first(signum, frame):
        flag.signum = signum
        for s in signals:
            signal.signal(s, again)

    before = {s: signal.getsignal(s) for s in signals}
    for s in signals:
        signal.signal(s, first)
    try:
        yield flag
    finally:
        for s, handler in before.items():
            signal.signal(s, handler if handler is not None else signal.SIG_DFL)


def train_and_save(run: Training, files: RunFiles, on_progress: ProgressFn | None = None,
                   on_epoch: Callable[[EpochReport], None] | None = None) -> None:
    """Run ``fit`` to the end and write the model, as ``nncli train`` does.

    SIGINT/SIGTERM are caught for the duration (``interruptible``). Every epoch goes to the
    history CSV and, every ``checkpoint_every`` epochs, to the checkpoint. On success the model
    is written without training state and a backup checkpoint is removed. On interruption or
    divergence the model is written *with* its training state (so ``--resume MODEL`` continues
    it; after divergence, with a smaller --lr), the backup is removed, and the error is raised
    again naming the file.
    """
    log = HistoryLog(files.history, history_columns(run), run.history) if files.history else None
    saved_at = time.monotonic()
    try:
        with interruptible() as stop:
            try:
                for report in fit(run, on_progress, stop):
                    if log is not None:
                        log.write(report)
                    if on_epoch is not None:
                        on_epoch(report)
                    if _checkpoint_due(run, files, report.epoch, time.monotonic() - saved_at):
                        save_model(run.model, files.checkpoint, *checkpoint_parts(run))
                        saved_at = time.monotonic()
            except (Interrupted, DivergedError) as e:
                # Either way the run is resumable: the weights (the last finite ones after a
                # divergence) go to the model file with the optimizer state.
                save_model(run.model, files.model, *checkpoint_parts(run))
                _remove_backup(files)
                if isinstance(e, Interrupted):
                    e.args = (f"{e}; wrote the weights as they stand, with the optimizer state, "
                              f"to {files.model}",)
                else:
                    e.args = (f"{getattr(e, 'what', e)}; wrote the last finite weights, with the "
                              f"optimizer state, to {files.model}{getattr(e, 'hint', '')}",)
                e.path = files.model
                raise
            save_model(run.model, files.model)
            _remove_backup(files)
    finally:
        if log is not None:
            log.close()


def _checkpoint_due(run: Training, files: RunFiles, epoch: int, since: float) -> bool:
    if files.checkpoint is None or not files.checkpoint_every:
        return False
    if not files.keep_checkpoint and (run.epochs_left == 0 or since < files.backup_seconds):
        return False  # a backup: superseded by the model written next, or written recently
    return epoch % files.checkpoint_every == 0 or run.epochs_left == 0


def _remove_backup(files: RunFiles) -> None:
    if files.checkpoint is not None and not files.keep_checkpoint:
        files.checkpoint.unlink(missing_ok=True)


# ------------------------------------------------------------------------------ checks

def _check_config(cfg: TrainConfig) -> None:
    if cfg.epochs < 0:
        raise UsageError(f"--epochs must be 0 or more, received {cfg.epochs}")
    if cfg.batch_size < 1:
        raise UsageError(f"--batch-size must be at least 1, received {cfg.batch_size}")
    if not 0 <= cfg.validation_split < 1:
        raise UsageError(f"--validation-split must lie in [0, 1), received "
                         f"{cfg.validation_split}")
    if cfg.early_stopping is not None and cfg.early_stopping < 0:
        raise UsageError(f"--early-stopping PATIENCE must be 0 or more, received "
                         f"{cfg.early_stopping}")
    if not cfg.min_delta >= 0:
        raise UsageError(f"--min-delta must be 0 or more, received {cfg.min_delta}")


def _check_classes(loss, units: int, classes: list[str] | None, source: str) -> None:
    """Text class labels that the output layer cannot hold, named by their text (numeric labels
    are checked row by row, with their line, by losses.prepare_targets)."""
    if not classes:
        return
    if loss.targets in ("index", "onehot"):
        room, fix = units, f"widen the last layer to {len(classes)} units"
    elif loss.targets == "binary" and units == 1:
        room, fix = 2, (f"for {len(classes)} classes use '{len(classes)}linear' with --loss "
                        f"sparse_cce --logits")
    else:
        return
    if len(classes) > room:
        shown = ", ".join(classes[:10]) + (", ..." if len(classes) > 10 else "")
        raise UsageError(f"{source}: the labels name {len(classes)} classes ({shown}), but "
                         f"--loss {loss.name} on {units} output unit{'s' if units > 1 else ''}"
                         f" holds {room}; {fix}")


def _take_weights(model: Model, source: Model, what: str) -> None:
    if (source.arch, source.n_inputs, source.channels) != \
            (model.arch, model.n_inputs, model.channels):
        raise UsageError(
            f"{what} is '{source.arch}' on {_inputs(source)}, but this run is "
            f"'{format_arch(model.layers)}' on {_inputs(model)}; they must match")
    model.params[...] = source.params
    # Continuing from a model keeps the input and target scaling its weights were trained for,
    # and its columns (the data was read with them).
    model.mean, model.std = source.mean.copy(), source.std.copy()
    model.schema = copy.deepcopy(source.input_schema())
    model.target_mean = None if source.target_mean is None else source.target_mean.copy()
    model.target_std = None if source.target_std is None else source.target_std.copy()


def _inputs(model: Model) -> str:
    return f"{model.n_inputs} inputs" + (f" of {model.channels} channels" if model.channels > 1
                                         else "")


def _opt_float(value) -> float | None:
    return None if value is None else float(value)
