"""The options of a training run: ``TrainConfig``, its defaults and what ``--monitor`` can watch."""

from __future__ import annotations

from dataclasses import dataclass, field

DEFAULT_EPOCHS = 20
# What --monitor can watch, and which way is better.
MONITORS = {"loss": "min", "accuracy": "max", "val_loss": "min", "val_accuracy": "max"}


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
