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

from nncli import metrics, optim, schedules
from nncli.metrics import EPOCH_METRICS
from nncli.model import Model
from nncli.options import TrainConfig

ProgressFn = Callable[[int, int, int, float], None]   # epoch, rows done, rows total, mean loss
StopFn = Callable[[], int]                             # the signal that asked to stop, or 0


@dataclass
class EpochReport:
    """Metrics after one epoch, by the names of the metric table (nncli.metrics): ``loss``,
    ``accuracy`` (classifiers), ``val_loss``, ... ; each reads as an attribute too, None when
    the run does not report it (``report.val_accuracy``).

    ``loss`` and ``val_loss`` are what training minimises: for an mse model that standardises
    its targets, in standardised units. A regression model's ``val_mse``, ``val_mae`` and
    ``val_r2`` are in the targets' own units.
    """

    epoch: int
    metrics: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0

    def __getattr__(self, name: str):
        if name in EPOCH_METRICS:
            return self.metrics.get(name)
        raise AttributeError(name)

    def as_dict(self) -> dict:
        """epoch, the metrics in the table's order, seconds (as the model file keeps them)."""
        ordered = {k: float(self.metrics[k]) for k in EPOCH_METRICS
                   if self.metrics.get(k) is not None}
        return {"epoch": self.epoch, **ordered, "seconds": self.seconds}

    @classmethod
    def from_dict(cls, d: dict) -> "EpochReport":
        return cls(int(d["epoch"]), {k: float(d[k]) for k in EPOCH_METRICS
                                     if d.get(k) is not None}, float(d.get("seconds", 0.0)))


@dataclass
class TrainState:
    """Where a run stands besides its weights: everything resuming it needs.

    Between epochs ``rows_done`` is 0. A run stopped inside an epoch has trained the first
    ``rows_done`` rows of that epoch's shuffle, and ``loss_sum``/``correct``/``seconds`` hold the
    epoch's partial sums; ``rng`` is always the shuffling generator's state at the start of
    epoch ``epoch + 1``, so that epoch's permutation can be drawn again.
    """

    m: np.ndarray                 # the optimizer's state tensors (optim.Optimizer.state): Adam's
    v: np.ndarray                 # moments m and v, SGD's velocity in m; absent ones empty
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
        value = report.metrics[self.monitor]
        self.wait += 1
        if self.best is None or self._improves(value):
            self.best, self.best_epoch, self.wait = value, report.epoch, 0
            self.weights = params.copy()
        elif self.wait >= self.patience:
            self.stopped_epoch = report.epoch

    def _improves(self, value: float) -> bool:
        if metrics.mode(self.monitor) == "min":
            return value + self.min_delta < self.best
        return value - self.min_delta > self.best

    def summary(self) -> dict:
        """What the model file and --json keep of it."""
        return {"monitor": self.monitor, "patience": self.patience, "min_delta": self.min_delta,
                "best": self.best, "best_epoch": self.best_epoch, "wait": self.wait,
                "stopped_epoch": self.stopped_epoch}


@dataclass
class ReduceLROnPlateau:
    """Keras's ReduceLROnPlateau(monitor, factor, patience, min_lr, min_delta=1e-4, cooldown=0).

    After each epoch: an improvement (``value < best - min_delta`` for a metric to minimise;
    the first epoch always improves) sets ``best`` and ``wait = 0``; otherwise ``wait`` grows
    by one, and when it reaches ``patience`` and ``lr > min_lr``, ``lr`` becomes
    ``max(lr * factor, min_lr)`` and ``wait`` 0. ``lr`` is the optimizer's learning rate from
    the next epoch on (the --lr-schedule multiplies it step by step).
    """

    monitor: str
    patience: int
    factor: float
    min_lr: float
    lr: float
    min_delta: float = 1e-4
    best: float | None = None
    wait: int = 0

    def update(self, report: EpochReport) -> None:
        value = report.metrics[self.monitor]
        if self.best is None or self._improves(value):
            self.best, self.wait = value, 0
            return
        self.wait += 1
        if self.wait >= self.patience and self.lr > self.min_lr:
            self.lr, self.wait = max(self.lr * self.factor, self.min_lr), 0

    def _improves(self, value: float) -> bool:
        if metrics.mode(self.monitor) == "min":
            return value < self.best - self.min_delta
        return value > self.best + self.min_delta

    def summary(self) -> dict:
        """What a checkpoint keeps of it (the settings come from the options)."""
        return {"monitor": self.monitor, "lr": self.lr, "best": self.best, "wait": self.wait}


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
    plateau: ReduceLROnPlateau | None = None
    resumed_from: str | None = None
    W: np.ndarray | None = None              # each training row's loss weight (nncli.weights)

    @property
    def scheduled(self) -> bool:
        """Whether the learning rate changes during the run: its history reports ``lr``."""
        cfg = self.config
        return (schedules.parse(cfg.lr_schedule)[0].name != schedules.DEFAULT
                or cfg.warmup_epochs > 0 or self.plateau is not None)

    @property
    def epochs_left(self) -> int:
        done = self.state.epoch if self.state is not None else 0
        if self.early is not None and self.early.stopped_epoch:
            return 0
        return max(0, self.config.epochs - done)


def new_state(model: Model, config: TrainConfig) -> TrainState:
    """The state of a run that has not started: zero optimizer state, the shuffle seeded by
    --seed."""
    rng = np.random.default_rng(np.random.SeedSequence(config.seed).spawn(1)[0])
    return TrainState(**state_tensors(model, lambda name: np.zeros_like(model.params)),
                      rng=rng.bit_generator.state)


def state_tensors(model: Model, tensor: Callable[[str], np.ndarray]) -> dict[str, np.ndarray]:
    """TrainState's optimizer fields for ``model``'s optimizer: ``tensor(name)`` for each state
    tensor it keeps, empty arrays for the others."""
    kept = optim.optimizer_of(model.info["optimizer"]).state
    return {name: tensor(name) if name in kept else np.zeros(0, np.float32)
            for name in STATE_FIELDS}


# TrainState's fields that hold an optimizer's state tensors (named as optim's table names them).
STATE_FIELDS = ("m", "v")
