"""A prepared run and where it stands: ``Training``, its ``TrainState``, the ``EpochReport`` of
each epoch and the ``EarlyStopping`` bookkeeping.

Everything besides the weights that a run needs to continue lives in ``Training.state`` (a
``TrainState``), updated after every chunk, so a run can be saved at any chunk boundary and
resumed later with bit-identical results (see ``checkpoints``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Callable

import numpy as np

from nncli import optim
from nncli.model import Model
from nncli.train.options import MONITORS, TrainConfig

ProgressFn = Callable[[int, int, int, float], None]   # epoch, rows done, rows total, mean loss
StopFn = Callable[[], int]                             # the signal that asked to stop, or 0


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


def new_state(model: Model, config: TrainConfig) -> TrainState:
    """The state of a run that has not started: zero moments, the shuffle seeded by --seed."""
    m = np.zeros_like(model.params)
    v = np.zeros_like(model.params) if _is_adam(model) else np.zeros(0, np.float32)
    rng = np.random.default_rng(np.random.SeedSequence(config.seed).spawn(1)[0])
    return TrainState(m=m, v=v, rng=rng.bit_generator.state)


def _is_adam(model: Model) -> bool:
    """Whether the model trains with Adam (second moments, no SGD velocity) or SGD."""
    return optim.get_optimizer(model.info["optimizer"]["name"]).code == 1


def _opt_float(value) -> float | None:
    return None if value is None else float(value)
