"""A sweep's search space, from ``train``'s options as the user typed them.

``--lr 1e-3,3e-3,1e-2`` (a comma list) is a grid: every combination of every list runs.
``--lr log:1e-4:1e-1`` and ``--lr uniform:0.1:0.9`` are ranges, sampled ``--samples N`` times
(the grid repeats N times, as in Ray Tune). Anything else is the same for every trial. Knows
nothing of Ray: ``nncli.sweep.tuning`` turns a Space into Ray Tune's search space.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

from nncli.errors import UsageError

RANGE_KINDS = ("log", "uniform")
# Options that say how the data is read: the driver reads it once, so they cannot vary.
DATA_OPTIONS = ("missing", "drop_invalid_rows", "categorical", "delimiter", "target",
                "validation_data")
# --init-from's model is read once by the driver too (a list of them would reach no trial).
READ_ONCE = (*DATA_OPTIONS, "init_from")
# What --metric can rank by, and which way is better.
METRICS = {"loss": "min", "accuracy": "max", "val_loss": "min", "val_accuracy": "max",
           "val_mse": "min", "val_mae": "min", "val_r2": "max"}


@dataclass(frozen=True)
class Range:
    """A range to sample: log-uniform or uniform between ``lo`` and ``hi``."""

    kind: str
    lo: float
    hi: float
    integer: bool = False

    def corners(self) -> list[Any]:
        cast = int if self.integer else float
        return [cast(self.lo), cast(self.hi)]


@dataclass
class Space:
    """The options of every trial: ``fixed`` for all, a ``grid`` of lists, sampled ``ranges``."""

    fixed: dict[str, Any]
    grid: dict[str, list[Any]] = field(default_factory=dict)
    ranges: dict[str, Range] = field(default_factory=dict)
    samples: int = 1

    @property
    def varying(self) -> list[str]:
        """The options that differ between trials, in the order they were given."""
        return list(self.grid) + list(self.ranges)

    @property
    def trials(self) -> int:
        """How many trials the sweep runs."""
        n = self.samples
        for values in self.grid.values():
            n *= len(values)
        return n

    def corners(self) -> Iterator[dict[str, Any]]:
        """The options of every grid combination with each range at its ends: what validating
        the sweep before it starts checks (a range's inside is as valid as its ends)."""
        names = self.varying
        choices = [self.grid[n] if n in self.grid else self.ranges[n].corners() for n in names]
        for values in itertools.product(*choices):
            yield {**self.fixed, **dict(zip(names, values))}


def parse_space(raw: dict[str, Any], convert: Callable[[str, str], Any],
                kind: Callable[[str], str | None], samples: int = 1) -> Space:
    """The Space of ``raw`` (option name -> its text as typed; a repeatable option's list of
    texts is fixed). ``convert(name, text)`` checks and converts one value as ``train`` would;
    ``kind(name)`` is "int", "float" or None for options that take no range."""
    if samples < 1:
        raise UsageError(f"--samples must be at least 1, received {samples}")
    space = Space({}, samples=samples)
    for name, text in raw.items():
        if not isinstance(text, (str, list)):   # a flag given (True): the same for all
            space.fixed[name] = text
            continue
        if isinstance(text, list):
            space.fixed[name] = [convert(name, t) for t in text]
            continue
        head = text.split(":", 1)[0]
        if head in RANGE_KINDS and ":" in text:
            space.ranges[name] = _range(name, text, kind(name))
        elif "," in text:
            values = [convert(name, t.strip()) for t in text.split(",")]
            if len(set(map(repr, values))) != len(values):
                raise UsageError(f"{_flag(name)} {text}: a value is given twice")
            space.grid[name] = values
        else:
            space.fixed[name] = convert(name, text)
    for name in space.varying:
        if name in READ_ONCE:
            what = "its model is" if name == "init_from" else "the data is"
            raise UsageError(f"{_flag(name)} cannot vary in a sweep: {what} read once, "
                             f"the same way for every trial")
    return space


def metric_mode(metric: str, has_validation: bool) -> str:
    """"min" or "max" for --metric, refusing what the trials cannot report."""
    if metric not in METRICS:
        raise UsageError(f"unknown --metric '{metric}'; expected one of {', '.join(METRICS)}")
    if metric.startswith("val_") and not has_validation:
        raise UsageError(f"--metric {metric} needs validation data: give --validation-split or "
                         f"--validation-data, or rank by --metric loss")
    return METRICS[metric]


def _range(name: str, text: str, kind: str | None) -> Range:
    parts = text.split(":")
    if kind is None:
        raise UsageError(f"{_flag(name)} {text}: only numeric options take a range")
    try:
        head, lo, hi = parts
        low, high = float(lo), float(hi)
    except ValueError:
        raise UsageError(f"{_flag(name)} {text}: expected {parts[0]}:LOW:HIGH with two "
                         f"numbers") from None
    if not low < high:
        raise UsageError(f"{_flag(name)} {text}: LOW must be below HIGH")
    if head == "log" and low <= 0:
        raise UsageError(f"{_flag(name)} {text}: a log range needs LOW > 0")
    integer = kind == "int"
    if integer and (low != int(low) or high != int(high)):
        raise UsageError(f"{_flag(name)} {text}: {_flag(name)} takes whole numbers")
    return Range(head, low, high, integer)


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")
