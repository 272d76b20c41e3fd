"""The optimizer table: names, Keras defaults, state tensors, and the hyper-parameter vector the
kernels read. Every other module asks a row of this table what an optimizer is."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from nncli.errors import UsageError

if TYPE_CHECKING:
    import numpy as np

# The hyper-parameter vector of kernels.train_batches, in its order: an optimizer's settings
# fill the entries it has, the others are 0. After them the run's weight penalties (--l1, --l2:
# training options, not optimizer settings, so hyper_vector takes them apart).
HYPER = ("learning_rate", "beta_1", "beta_2", "epsilon", "momentum", "l1", "l2")
PENALTIES = ("l1", "l2")


@dataclass(frozen=True)
class Optimizer:
    """One row of the optimizer table (defaults are Keras 3's).

    ``hyper``: its hyper-parameters and their defaults, learning rate first. ``state``: the
    names of its state tensors, each as large as the parameters (saved in checkpoints as
    ``optimizer.<name>``). ``code``: what kernels.train_batches runs: 1 Adam with moments
    ``m`` and ``v``, 0 SGD with the velocity in ``m``.
    """

    name: str
    code: int
    hyper: dict[str, float] = field(default_factory=dict)
    state: tuple[str, ...] = ("m",)

    @property
    def lr(self) -> float:
        return self.hyper["learning_rate"]

    @property
    def velocity(self) -> bool:
        """Whether the kernel keeps SGD's velocity (in ``m``) rather than Adam's moments."""
        return self.code == 0


OPTIMIZERS: dict[str, Optimizer] = {o.name: o for o in (
    Optimizer("adam", 1, {"learning_rate": 1e-3, "beta_1": 0.9, "beta_2": 0.999,
                          "epsilon": 1e-7}, ("m", "v")),
    Optimizer("sgd", 0, {"learning_rate": 1e-2, "momentum": 0.0}, ("m",)),
)}


def get_optimizer(name: str) -> Optimizer:
    """The table row for ``name``, or a UsageError listing the known optimizers."""
    try:
        return OPTIMIZERS[name]
    except KeyError:
        raise UsageError(f"unknown optimizer '{name}'; expected one of "
                         f"{', '.join(OPTIMIZERS)}") from None


def settings(name: str, lr: float | None, momentum: float) -> dict:
    """The optimizer settings as stored in the model file and printed by --json: the name,
    then every hyper-parameter of the row (``lr`` and ``momentum`` where given)."""
    opt = get_optimizer(name)
    if lr is not None and not lr > 0:
        raise UsageError(f"--lr must be positive, received {lr}")
    if not 0 <= momentum < 1:
        raise UsageError(f"--momentum must lie in [0, 1), received {momentum}")
    if momentum and "momentum" not in opt.hyper:
        takes = [o.name for o in OPTIMIZERS.values() if "momentum" in o.hyper]
        raise UsageError(f"--momentum applies to --optimizer {' or '.join(takes)} only")
    given = {"learning_rate": lr, "momentum": momentum}
    return {"name": opt.name, **{key: default if given.get(key) is None else given[key]
                                 for key, default in opt.hyper.items()}}


def optimizer_of(s: dict) -> Optimizer:
    """The table row of stored settings (a model file's ``info["optimizer"]``)."""
    return get_optimizer(s["name"])


def hyper_vector(s: dict, l1: float = 0.0, l2: float = 0.0) -> "np.ndarray":
    """The settings and the weight penalties as kernels.train_batches reads them, in the order
    of HYPER (a penalty is never taken from the settings, which do not hold one)."""
    import numpy as np

    values = {**{key: s.get(key, 0.0) for key in HYPER if key not in PENALTIES},
              "l1": l1, "l2": l2}
    return np.array([values[key] for key in HYPER], dtype=np.float64)
