"""Learning-rate schedules (``--lr-schedule``, ``--warmup-epochs``) as Keras 3 computes them.

A schedule is text: a kind and its arguments separated by colons (``exponential:0.9:100``,
``cosine``, ``cosine:1000:0.1``). The table ``KINDS`` says each kind's arguments and its
``shape``: the factor by which it multiplies the learning rate at optimizer step ``step``
(counted from 0, one per mini-batch, as Keras's ``optimizer.iterations`` before the update).
A ``Schedule`` is a kind with its arguments resolved for one run (its total number of steps
fills cosine's default), and adds a linear warm-up from 0 before it:

    lr(step) = lr * step / warmup                      for step < warmup
    lr(step) = lr * shape(step - warmup)               after it

which is Keras's ``CosineDecay(0, decay_steps, alpha, warmup_target=lr, warmup_steps=warmup)``
for cosine; Keras has no warm-up for the other kinds, nncli applies the same one. The learning
rate itself may change between epochs (``--reduce-lr-on-plateau``): the schedule multiplies
whatever it currently is, so ``rates`` takes it as an argument.

Pure Python besides ``rates`` (which imports NumPy when called): the command line parses
schedules without loading NumPy.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

from nncli.errors import UsageError

if TYPE_CHECKING:
    import numpy as np

DEFAULT = "constant"


@dataclass(frozen=True)
class Arg:
    """One argument of a schedule kind: its name in the syntax, its type, its default (None:
    required, or for cosine's STEPS: the run's steps after the warm-up), the check of a value
    and the words of that check."""

    name: str
    type: type
    default: float | int | None
    ok: Callable[[float], bool]
    words: str
    required: bool = False


@dataclass(frozen=True)
class Kind:
    """One schedule kind: its arguments and ``shape(step, *args)``, the factor of the learning
    rate at ``step`` steps after the warm-up; ``keras`` names its Keras equivalent."""

    name: str
    args: tuple[Arg, ...]
    shape: Callable[..., float]
    keras: str

    @property
    def syntax(self) -> str:
        parts, closing = self.name, ""
        for a in self.args:
            if a.required:
                parts += f":{a.name}"
            else:
                parts += f"[:{a.name}"
                closing += "]"
        return parts + closing


def _constant(step: float) -> float:
    return 1.0


def _exponential(step: float, rate: float, steps: int) -> float:
    # ExponentialDecay(staircase=False): lr * rate ** (step / decay_steps)
    return rate ** (step / steps)


def _cosine(step: float, steps: int, alpha: float) -> float:
    # CosineDecay: step = min(step, decay_steps); lr * ((1 - alpha) * cosine_decay + alpha)
    step = min(step, steps)
    return (1.0 - alpha) * 0.5 * (1.0 + math.cos(math.pi * step / steps)) + alpha


_STEPS_OK, _STEPS_WORDS = (lambda v: v >= 1), "a whole number of at least 1"
KINDS: dict[str, Kind] = {k.name: k for k in (
    Kind("constant", (), _constant, "a float learning_rate"),
    Kind("exponential", (Arg("RATE", float, None, lambda v: 0 < v, "a number above 0", True),
                         Arg("STEPS", int, None, _STEPS_OK, _STEPS_WORDS, True)),
         _exponential, "ExponentialDecay(lr, decay_steps=STEPS, decay_rate=RATE)"),
    Kind("cosine", (Arg("STEPS", int, None, _STEPS_OK, _STEPS_WORDS),
                    Arg("ALPHA", float, 0.0, lambda v: 0 <= v <= 1, "a number in [0, 1]")),
         _cosine, "CosineDecay(lr, decay_steps=STEPS, alpha=ALPHA)"),
)}


def syntax() -> str:
    """Every kind's syntax, for help and errors: 'constant, exponential:RATE:STEPS, ...'."""
    return ", ".join(k.syntax for k in KINDS.values())


def parse(text: str) -> tuple[Kind, list]:
    """The kind and the argument values of schedule ``text`` (None for a default left to the
    run), or a UsageError that says what was expected."""
    name, *given = text.strip().split(":")
    kind = KINDS.get(name.strip().lower())
    if kind is None:
        raise UsageError(f"--lr-schedule {text}: unknown schedule '{name}'; expected one of "
                         f"{syntax()}")
    needed = sum(a.required for a in kind.args)
    if not needed <= len(given) <= len(kind.args):
        raise UsageError(f"--lr-schedule {text}: expected {kind.syntax}")
    values: list = []
    for arg, word in zip(kind.args, given + [None] * (len(kind.args) - len(given))):
        if word is None or word.strip() == "":
            if arg.required:
                raise UsageError(f"--lr-schedule {text}: {arg.name} is required ({kind.syntax})")
            values.append(arg.default)
            continue
        try:
            value = arg.type(word.strip())
        except ValueError:
            value = None
        if value is None or not (math.isfinite(value) and arg.ok(value)):
            raise UsageError(f"--lr-schedule {text}: {arg.name} must be {arg.words}, received "
                             f"{word.strip()!r}")
        values.append(value)
    return kind, values


def check(text: str) -> str:
    """``text`` once it parses (the options table keeps the schedule as typed)."""
    parse(text)
    return text


@dataclass(frozen=True)
class Schedule:
    """A schedule resolved for one run: ``kind`` with ``args`` (defaults filled) after
    ``warmup`` steps of linear warm-up from 0."""

    kind: Kind
    args: tuple
    warmup: int = 0

    @property
    def varies(self) -> bool:
        """Whether the learning rate changes from step to step."""
        return self.kind.name != "constant" or self.warmup > 0

    def factor(self, step: int) -> float:
        """The factor of the learning rate at optimizer step ``step`` (0: the first)."""
        if step < self.warmup:
            return step / self.warmup
        return self.kind.shape(step - self.warmup, *self.args)

    def lr(self, lr: float, step: int) -> float:
        """The learning rate at step ``step`` when the optimizer's is ``lr``."""
        return lr * self.factor(step)

    def rates(self, lr: float, first: int, count: int) -> "np.ndarray":
        """The learning rates of steps first .. first + count - 1 (float64, as the kernel reads
        them); exactly ``lr`` at every step of a constant schedule."""
        import numpy as np

        if not self.varies:
            return np.full(count, lr, dtype=np.float64)
        return np.array([self.lr(lr, s) for s in range(first, first + count)], np.float64)


def build(text: str, warmup_steps: int, total_steps: int) -> Schedule:
    """The Schedule of ``text`` for a run of ``total_steps`` optimizer steps whose first
    ``warmup_steps`` warm up; cosine's STEPS defaults to the steps after the warm-up."""
    kind, values = parse(text)
    after = max(1, total_steps - warmup_steps)
    args = tuple(after if v is None else v for v in values)
    return Schedule(kind, args, warmup_steps)
