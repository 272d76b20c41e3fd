"""A sweep's search space, from ``train``'s options as the user typed them.

``--lr 1e-3,3e-3,1e-2`` (a comma list) is a grid: every combination of every list runs.
``--lr log:1e-4:1e-1`` and ``--lr uniform:0.1:0.9`` are ranges, sampled ``--samples N`` times
(the grid repeats N times, as in Ray Tune). Anything else is the same for every trial. Knows
nothing of Ray: ``nncli.sweep.tuning`` turns a Space into Ray Tune's search space.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any, Iterator

from nncli import metrics
from nncli.errors import UsageError
from nncli.jsondoc import shown
from nncli.options import BY_NAME, OPTIONS, convert, number_kind

RANGE_KINDS = ("log", "uniform")


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


def options_from_args(args: list[str]) -> dict[str, Any]:
    """``nncli train``'s options among a sweep's arguments, as typed: name -> text (a comma
    list or a range stays text), a repeatable option's list of texts, or True for a flag."""
    flags = {flag: o for o in OPTIONS for flag in o.flags}
    out: dict[str, Any] = {}
    i = 0
    while i < len(args):
        flag, _, inline = args[i].partition("=")
        option = flags.get(flag)
        if option is None:
            raise UsageError(f"nncli sweep has no option {flag!r} (the sweep's own are in "
                             f"'nncli sweep --help', the trials' in 'nncli train --help')")
        if option.sweep.role == "no":
            raise UsageError(f"{flag} is not a sweep option" +
                             (f": {option.sweep.why}" if option.sweep.why else ""))
        i += 1
        if option.is_flag:
            out[option.name] = True
            continue
        if not inline:
            if i >= len(args):
                raise UsageError(f"{flag} needs a value")
            inline, i = args[i], i + 1
        if option.repeat:
            out.setdefault(option.name, []).append(inline)
        elif option.name in out:
            raise UsageError(f"{flag} is given twice; list the values once: {flag} a,b")
        else:
            out[option.name] = inline
    for option in OPTIONS:
        if option.required and option.name not in out:
            raise UsageError(f"a sweep needs {option.flag}, as nncli train does")
    return out


def check_options(raw: dict[str, Any]) -> str | None:
    """What is wrong with stored options (a sweep's ``sweep.json``) that ``options_from_args``
    could not have given, or None: an option a sweep does not take, or a value of the wrong
    type (True for a flag, a list of texts for a repeatable option, else text)."""
    for name, value in raw.items():
        option = BY_NAME.get(name)
        if option is None or option.sweep.role == "no":
            return f"'options': {shown(name)} is not an option of a sweep"
        if option.is_flag:
            ok, words = value is True, "true"
        elif option.repeat:
            ok = isinstance(value, list) and all(isinstance(v, str) for v in value)
            words = "a list of texts"
        else:
            ok, words = isinstance(value, str), "text"
        if not ok:
            return f"'options': '{name}' must be {words}, found {shown(value)}"
    lacking = [o.name for o in OPTIONS if o.required and o.name not in raw]
    return f"'options' lacks '{lacking[0]}'" if lacking else None


def parse_space(raw: dict[str, Any], samples: int = 1) -> Space:
    """The Space of ``raw`` (option name -> its text as typed, see ``options_from_args``; a
    repeatable option's list of texts is fixed), each value checked and converted as
    ``nncli train`` would."""
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
            space.ranges[name] = _range(name, text, number_kind(name))
        elif "," in text:
            values = [convert(name, t.strip()) for t in text.split(",")]
            if len(set(map(repr, values))) != len(values):
                raise UsageError(f"{_flag(name)} {text}: a value is given twice")
            space.grid[name] = values
        else:
            space.fixed[name] = convert(name, text)
    for name in space.varying:
        if BY_NAME[name].sweep.role == "same":
            raise UsageError(f"{_flag(name)} cannot vary in a sweep: {BY_NAME[name].sweep.why}")
    return space


def metric_mode(metric: str, has_validation: bool) -> str:
    """"min" or "max" for --metric, refusing what the trials cannot report."""
    return metrics.mode(metrics.check_metric(metric, "--metric", None, has_validation))


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
    return BY_NAME[name].flag
