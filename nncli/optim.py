"""The optimizer table: names, Keras defaults, and the hyper-parameter vector the kernels read."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from nncli.errors import UsageError


@dataclass(frozen=True)
class Optimizer:
    """One row of the optimizer table (defaults are Keras 3's)."""

    name: str
    code: int                    # 0 sgd, 1 adam (train.fit passes SGD's velocity, or None)
    lr: float
    beta_1: float = 0.9
    beta_2: float = 0.999
    epsilon: float = 1e-7


OPTIMIZERS: dict[str, Optimizer] = {
    "adam": Optimizer("adam", 1, lr=1e-3),
    "sgd": Optimizer("sgd", 0, lr=1e-2),
}


def get_optimizer(name: str) -> Optimizer:
    """The table row for ``name``, or a UsageError listing the known optimizers."""
    try:
        return OPTIMIZERS[name]
    except KeyError:
        raise UsageError(f"unknown optimizer '{name}'; expected one of "
                         f"{', '.join(OPTIMIZERS)}") from None


def settings(name: str, lr: float | None, momentum: float) -> dict:
    """The optimizer settings as stored in the model file and printed by --json."""
    opt = get_optimizer(name)
    if lr is not None and not lr > 0:
        raise UsageError(f"--lr must be positive, received {lr}")
    if not 0 <= momentum < 1:
        raise UsageError(f"--momentum must lie in [0, 1), received {momentum}")
    if momentum and opt.name != "sgd":
        raise UsageError("--momentum applies to --optimizer sgd only")
    out = {"name": opt.name, "learning_rate": opt.lr if lr is None else lr}
    if opt.name == "adam":
        out.update(beta_1=opt.beta_1, beta_2=opt.beta_2, epsilon=opt.epsilon)
    else:
        out["momentum"] = momentum
    return out


def hyper_vector(s: dict) -> np.ndarray:
    """(lr, beta_1, beta_2, epsilon, momentum) as kernels.train_batches reads them."""
    return np.array([s["learning_rate"], s.get("beta_1", 0.0), s.get("beta_2", 0.0),
                     s.get("epsilon", 0.0), s.get("momentum", 0.0)], dtype=np.float64)
