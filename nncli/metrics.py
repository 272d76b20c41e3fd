"""The metric table: every metric a run reports, which way is better, and where it applies.

One row per metric as ``nncli eval`` names it (``loss``, ``accuracy``, ``mse``, ...). A run
reports the metrics marked ``training`` on its training rows under their own names and every
metric of its task on validation data as ``val_<name>``: from these rows come ``--monitor``'s
and ``--metric``'s choices, the epoch report's fields and their order, the history CSV's and
the leaderboard's columns and the epoch lines (``nncli eval`` reports these and more, in the
order of nncli.evaluate.HEADLINE). A row marked ``setting`` is not measured on data but set by
the run (``lr``, the learning rate of a run that schedules it): reported each epoch beside the
others, never on validation data nor by eval, and not something to monitor or rank by. Pure
Python: importing it is cheap.
"""

from __future__ import annotations

from dataclasses import dataclass

from nncli.errors import UsageError

CLASSIFIER, REGRESSION = "classifier", "regression"
VALIDATION_PREFIX = "val_"


@dataclass(frozen=True)
class Metric:
    """One metric: its name, ``min`` or ``max`` for better, the tasks it applies to, whether
    training reports it on the training rows too (else on validation data only), and whether
    it is a ``setting`` of the run rather than a measurement (see the module docstring)."""

    name: str
    mode: str
    tasks: frozenset[str]
    training: bool = True
    setting: bool = False


_BOTH = frozenset({CLASSIFIER, REGRESSION})
METRICS: dict[str, Metric] = {m.name: m for m in (
    Metric("loss", "min", _BOTH),
    Metric("accuracy", "max", frozenset({CLASSIFIER})),
    # a regression model's metrics in the targets' own units (loss may be standardised)
    Metric("mse", "min", frozenset({REGRESSION}), training=False),
    Metric("mae", "min", frozenset({REGRESSION}), training=False),
    Metric("r2", "max", frozenset({REGRESSION}), training=False),
    # the learning rate of the epoch's last step, reported by runs that schedule it
    Metric("lr", "min", _BOTH, setting=True),
)}


def task(classifier: bool) -> str:
    """The task name of a model: CLASSIFIER or REGRESSION."""
    return CLASSIFIER if classifier else REGRESSION


def _all_epoch_metrics() -> tuple[str, ...]:
    measured = [m for m in METRICS.values() if not m.setting]
    return (*(m.name for m in measured if m.training),
            *(VALIDATION_PREFIX + m.name for m in measured),
            *(m.name for m in METRICS.values() if m.setting))


# Every name an epoch can report, in the order epoch lines, history columns and leaderboards
# show them: the training metrics, then every metric on validation data, then the settings.
EPOCH_METRICS: tuple[str, ...] = _all_epoch_metrics()
# The epoch metrics that --monitor and --metric may rank by: all but the settings.
RANKED_METRICS: tuple[str, ...] = tuple(
    n for n in EPOCH_METRICS if not METRICS[n.removeprefix(VALIDATION_PREFIX)].setting)


def base(name: str) -> Metric:
    """The table row of an epoch metric (``val_r2`` -> ``r2``)."""
    return METRICS[name.removeprefix(VALIDATION_PREFIX)]


def mode(name: str) -> str:
    """``min`` or ``max``: which way ``name`` (an epoch metric) is better."""
    return base(name).mode


def needs_validation(name: str) -> bool:
    return name.startswith(VALIDATION_PREFIX)


def epoch_metrics(classifier: bool, validation: bool, scheduled: bool = False) -> list[str]:
    """The metrics a run of this task reports each epoch, in their order; ``scheduled``: the
    run schedules its learning rate (and reports ``lr``)."""
    kind = task(classifier)
    return [name for name in EPOCH_METRICS if kind in base(name).tasks
            and (validation or not needs_validation(name))
            and (scheduled or not base(name).setting)]


def check_metric(name: str, what: str, classifier: bool | None, validation: bool) -> str:
    """``name`` when a run of this task (None: not known yet) reports it, else a UsageError
    that says what to use instead; ``what`` is the option, e.g. ``--monitor``."""
    if name in EPOCH_METRICS and name not in RANKED_METRICS:
        raise UsageError(f"{what} {name}: {name} is reported, not ranked by; expected one of "
                         f"{', '.join(RANKED_METRICS)}")
    if name not in EPOCH_METRICS:
        raise UsageError(f"unknown {what} '{name}'; expected one of {', '.join(RANKED_METRICS)}")
    if needs_validation(name) and not validation:
        raise UsageError(f"{what} {name} needs validation data: give --validation-split or "
                         f"--validation-data, or {_use(what, 'loss')}")
    if classifier is not None and task(classifier) not in base(name).tasks:
        kind = "regression" if classifier is False else "classification"
        loss = (VALIDATION_PREFIX if needs_validation(name) else "") + "loss"
        raise UsageError(f"{what} {name}: a {kind} model has no {base(name).name}; "
                         f"{_use(what, loss)}")
    return name


def _use(what: str, name: str) -> str:
    """How the user picks metric ``name`` for option ``what``."""
    return f"rank by --metric {name}" if what == "--metric" else f"monitor {name}"
