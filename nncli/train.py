"""The training loop: from arrays and options to a fitted Model, one EpochReport at a time.

It never prints: callers (the CLI, tests, scripts) decide what to show. Each epoch shuffles the
training rows, then runs the mini-batches in compiled code (kernels.train_batches), a chunk of
batches per call so that a progress callback can be told how far the epoch is.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Callable, Iterator

import numpy as np

from nncli import kernels as K
from nncli import optim
from nncli.arch import LayerSpec, format_arch
from nncli.errors import DivergedError, UsageError
from nncli.losses import PROB_EPSILON, check_output_layer, get_loss, prepare_targets
from nncli.model import Model, Workspace

DEFAULT_EPOCHS = 20
# Rows per compiled call: large enough that Python is invisible, small enough for a live bar.
ROWS_PER_CALL = 8192
# A feature whose spread is below this is left unscaled rather than blown up (Keras divides by
# max(std, 1e-7), which turns a constant column seen differently at predict time into +-1e7).
MIN_STD = 1e-7

ProgressFn = Callable[[int, int, int, float], None]   # epoch, rows done, rows total, mean loss


@dataclass
class TrainConfig:
    """Every option of a training run; stored in the model file and printed by --json."""

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


@dataclass
class EpochReport:
    """Metrics after one epoch; accuracies are None for regression, val_* without validation."""

    epoch: int
    loss: float
    accuracy: float | None
    val_loss: float | None
    val_accuracy: float | None
    seconds: float

    def as_dict(self) -> dict:
        return {k: v for k, v in asdict(self).items() if v is not None}


@dataclass
class Training:
    """A prepared run: the model and the arrays the kernels will read."""

    model: Model
    config: TrainConfig
    X: np.ndarray
    Y: np.ndarray
    X_val: np.ndarray | None = None
    Y_val: np.ndarray | None = None
    history: list[EpochReport] = field(default_factory=list)


def prepare(config: TrainConfig, layers: list[LayerSpec], X: np.ndarray, Y: np.ndarray,
            source: str, val: tuple[np.ndarray, np.ndarray, str, Sequence[int] | None] | None = None,
            init_from: Model | None = None, lines: Sequence[int] | None = None,
            **model_fields) -> Training:
    """Check the options against the data, split, normalise and build the model.

    ``X`` is normalised in place (the caller hands over ownership) so a large data set is not
    copied. ``val`` is (X, Y, source, line numbers) of separate validation data. ``model_fields`` (classes, feature_names, ...) are stored in the model.
    """
    loss = get_loss(config.loss)
    check_output_layer(loss, config.logits, layers)
    _check_config(config)
    opt = optim.settings(config.optimizer, config.lr, config.momentum)
    Y = prepare_targets(loss, Y, layers[-1].units, source, lines)
    if val is not None:
        X_val, Y_val = val[0], prepare_targets(loss, val[1], layers[-1].units, val[2], val[3])
        X_train, Y_train = X, Y
    else:
        n_val = int(len(X) * config.validation_split)
        if config.validation_split and n_val == 0:
            raise UsageError(f"--validation-split {config.validation_split} of {len(X)} rows "
                             f"leaves no validation row")
        X_train, Y_train = X[:len(X) - n_val], Y[:len(Y) - n_val]
        X_val, Y_val = (X[len(X) - n_val:], Y[len(Y) - n_val:]) if n_val else (None, None)
    if len(X_train) == 0:
        raise UsageError("no training rows left after the validation split")
    info = {"optimizer": opt, "seed": config.seed, "normalize": config.normalize,
            "history": []}
    model = Model.create(layers, X.shape[1], config.loss, config.logits, seed=config.seed,
                         info=info, **model_fields)
    if init_from is not None:
        _take_weights(model, init_from)
    elif config.normalize:
        model.mean, model.std = feature_stats(X_train)
    model.normalize(X)
    if val is not None:
        model.normalize(X_val)
    return Training(model, config, X_train, Y_train, X_val, Y_val)


def feature_stats(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and population std of each column (float64 sums); tiny spreads become 1."""
    mean = X.mean(axis=0, dtype=np.float64)
    std = X.std(axis=0, dtype=np.float64)
    std[std < MIN_STD] = 1.0
    return mean.astype(np.float32), std.astype(np.float32)


def fit(run: Training, on_progress: ProgressFn | None = None) -> Iterator[EpochReport]:
    """Train for ``run.config.epochs`` epochs, yielding a report after each."""
    model, cfg = run.model, run.config
    n = len(run.X)
    batch = min(cfg.batch_size, n)
    ws = Workspace(model.layer_table(), batch, np.float32)
    grads = np.zeros_like(model.params)
    opt = model.info["optimizer"]
    code = optim.get_optimizer(opt["name"]).code
    slot_m = np.zeros_like(model.params)
    slot_v = np.zeros_like(model.params) if opt["name"] == "adam" else np.zeros(0, np.float32)
    hyper = optim.hyper_vector(opt)
    Xb = np.zeros((batch, run.X.shape[1]), np.float32)
    Yb = np.zeros((batch, run.Y.shape[1]), np.float32)
    X, Y = np.ascontiguousarray(run.X), np.ascontiguousarray(run.Y)
    rng = np.random.default_rng(np.random.SeedSequence(cfg.seed).spawn(1)[0])
    perm = np.arange(n, dtype=np.int64)
    per_call = max(1, ROWS_PER_CALL // batch) * batch
    step = 0
    for epoch in range(1, cfg.epochs + 1):
        rng.shuffle(perm)
        loss_sum, correct = 0.0, 0
        start = time.perf_counter()
        for s in range(0, n, per_call):
            e = min(s + per_call, n)
            ls, c, step, diverged_at = K.train_batches(
                model.params, grads, slot_m, slot_v, Xb, Yb, ws.Z, ws.A, ws.dZ, ws.dA,
                ws.table, X, Y, perm, s, e, batch, model.kernel_code, PROB_EPSILON, code,
                hyper, step)
            if diverged_at >= 0:
                raise DivergedError(
                    f"the loss became NaN or infinite in epoch {epoch}, batch "
                    f"{diverged_at // batch + 1}; hint: try a smaller --lr "
                    f"(it is {opt['learning_rate']:g})")
            loss_sum += ls
            correct += c
            if on_progress is not None:
                on_progress(epoch, e, n, loss_sum / e)
        seconds = time.perf_counter() - start
        report = EpochReport(epoch, loss_sum / n, model.accuracy(correct, n), None, None, seconds)
        if run.X_val is not None and len(run.X_val):
            report.val_loss, report.val_accuracy = model.evaluate(run.X_val, run.Y_val)
        run.history.append(report)
        model.info["history"].append(report.as_dict())
        yield report


def warm_up(run: Training) -> None:
    """Compile (or load from cache) the training kernels on one row, leaving the model as is."""
    model = run.model
    saved = model.params.copy()
    history = list(run.history)
    one = Training(model, TrainConfig(**{**asdict(run.config), "epochs": 1, "batch_size": 1}),
                   run.X[:1], run.Y[:1], run.X_val[:1] if run.X_val is not None else None,
                   run.Y_val[:1] if run.Y_val is not None else None)
    info_history = list(model.info["history"])
    for _ in fit(one):
        pass
    model.params[...] = saved
    model.info["history"] = info_history
    run.history = history


def set_threads(threads: int | None) -> None:
    """Use ``threads`` compute threads (None: all cores). Results do not depend on it."""
    import numba

    if threads is not None:
        if threads < 1:
            raise UsageError(f"--threads must be at least 1, received {threads}")
        numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))


def _check_config(cfg: TrainConfig) -> None:
    if cfg.epochs < 0:
        raise UsageError(f"--epochs must be 0 or more, received {cfg.epochs}")
    if cfg.batch_size < 1:
        raise UsageError(f"--batch-size must be at least 1, received {cfg.batch_size}")
    if not 0 <= cfg.validation_split < 1:
        raise UsageError(f"--validation-split must lie in [0, 1), received "
                         f"{cfg.validation_split}")


def _take_weights(model: Model, source: Model) -> None:
    if source.arch != model.arch or source.n_inputs != model.n_inputs:
        raise UsageError(
            f"--init-from model is '{source.arch}' on {source.n_inputs} inputs, but this run is "
            f"'{format_arch(model.layers)}' on {model.n_inputs} inputs; they must match")
    model.params[...] = source.params
    # Continuing from a model keeps the input scaling its weights were trained for.
    model.mean, model.std = source.mean.copy(), source.std.copy()
