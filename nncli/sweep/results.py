"""What a sweep leaves: one row per trial, the leaderboard sorted by the metric, its CSV, and
the --json document. Knows nothing of Ray (``nncli.sweep.tuning`` fills the rows)."""

from __future__ import annotations

import csv
import io
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from nncli.errors import DataError
from nncli.files import write_atomically
from nncli.metrics import EPOCH_METRICS

# What a trial's status means to the user.
FINISHED, STOPPED, ERROR, INTERRUPTED, PENDING, RUNNING, RETRYING = (
    "finished", "stopped early", "error", "interrupted", "pending", "running", "retrying")
# The column of a metric's standard deviation over the folds: its name and this.
STD_SUFFIX = "_std"
# The columns read_leaderboard needs (leaderboard_csv writes them, ``trial`` before ``status``).
_LEADERBOARD_COLUMNS = ("trial", "status", "epochs", "model")


@dataclass
class TrialRow:
    """One trial: its options that vary, where it stands and what it reached. In a
    cross-validated sweep a trial is a configuration trained on each of K folds: ``metrics``
    are then the means over the folds, ``std`` their standard deviations (ddof 0), and
    ``folds`` each fold's metrics at its end."""

    trial_id: str
    config: dict[str, Any]
    status: str = PENDING
    epochs: int = 0
    metrics: dict[str, float] = field(default_factory=dict)
    std: dict[str, float] = field(default_factory=dict)
    folds: list[dict[str, float]] = field(default_factory=list)
    node: str | None = None
    retries: int = 0
    seconds: float = 0.0
    pid: int | None = None            # the worker process of its latest report (a retry's new)
    model: str | None = None          # its model file in the sweep's folder (its folds' folder)
    error: str | None = None

    def value(self, metric: str) -> float | None:
        v = self.metrics.get(metric)
        return None if v is None or (isinstance(v, float) and math.isnan(v)) else float(v)

    def as_dict(self) -> dict:
        return asdict(self)


def leaderboard(rows: list[TrialRow], metric: str, mode: str) -> list[TrialRow]:
    """The trials best first by ``metric`` (``mode`` "min" or "max"); trials without a value
    of it last, in trial order."""
    ranked = [r for r in rows if r.value(metric) is not None]
    ranked.sort(key=lambda r: (r.value(metric) if mode == "min" else -r.value(metric),
                               r.trial_id))
    return ranked + [r for r in rows if r.value(metric) is None]


def leaderboard_csv(rows: list[TrialRow], varying: list[str]) -> str:
    """The leaderboard as CSV: rank, trial, the varying options, status, epochs, metrics (in a
    cross-validated sweep each mean followed by its std, ``val_loss_std``), node, retries,
    seconds, model."""
    metrics = [m for m in EPOCH_METRICS if any(m in r.metrics for r in rows)]
    columns = [(m, c) for m in metrics for c in (m, m + STD_SUFFIX)
               if c == m or any(m in r.std for r in rows)]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["rank", "trial", *varying, "status", "epochs", *(c for _, c in columns),
                     "node", "retries", "seconds", "model"])
    for rank, r in enumerate(rows, start=1):
        values = [_cell(r.metrics.get(m) if c == m else r.std.get(m)) for m, c in columns]
        writer.writerow([rank, r.trial_id, *(r.config.get(v, "") for v in varying), r.status,
                         r.epochs, *values, r.node or "", r.retries, f"{r.seconds:.3f}",
                         r.model or ""])
    return out.getvalue()


def read_leaderboard(path: Path) -> list[TrialRow]:
    """The trials of a leaderboard CSV (as ``leaderboard_csv`` writes it), best first: each
    with its varying options (the columns between ``trial`` and ``status``) as ``config``, its
    status, epochs, metrics and model file. A damaged file (a header without those columns, a
    row of another width, a number that is not one) is a DataError at its line."""
    source = str(path)
    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.reader(f)
            table = [(reader.line_num, cells) for cells in reader]
    except (UnicodeDecodeError, csv.Error) as e:
        raise DataError(f"damaged leaderboard ({e})", source) from None
    if not table:
        return []
    header = table[0][1]
    lacking = [c for c in _LEADERBOARD_COLUMNS if c not in header]
    if lacking:
        raise DataError(f"damaged leaderboard: the header has no column "
                        f"{', '.join(map(repr, lacking))}", source, 1)
    if header.index("trial") > header.index("status"):
        raise DataError("damaged leaderboard: the header has 'status' before 'trial'", source, 1)
    first, status = header.index("trial") + 1, header.index("status")
    rows = []
    for line, cells in table[1:]:
        if len(cells) != len(header):
            raise DataError(f"damaged leaderboard: expected {len(header)} fields, found "
                            f"{len(cells)}", source, line)
        named = dict(zip(header[status:], cells[status:]))
        try:
            rows.append(TrialRow(cells[header.index("trial")],
                                 dict(zip(header[first:status], cells[first:status])),
                                 named["status"], _cell_number(named, "epochs", int, 0),
                                 {m: _cell_number(named, m, float) for m in EPOCH_METRICS
                                  if named.get(m)},
                                 model=named["model"] or None))
        except ValueError as e:
            raise DataError(f"damaged leaderboard: {e}", source, line) from None
    return rows


def _cell_number(named: dict[str, str], column: str, cast: type, empty=None):
    """The number in ``column`` (``empty`` for an empty cell); ValueError naming it."""
    text = named[column]
    if not text and empty is not None:
        return empty
    try:
        return cast(text)
    except ValueError:
        kind = "a whole number" if cast is int else "a number"
        raise ValueError(f"{column} {text[:40]!r} is not {kind}") from None


def write_leaderboard(path: Path, rows: list[TrialRow], varying: list[str]) -> None:
    text = leaderboard_csv(rows, varying)
    write_atomically(path, lambda f: f.write(text), text=True)


def summary(rows: list[TrialRow], metric: str, mode: str, best_model: str | None,
            out_dir: str, interrupted: bool, folds: int = 0) -> dict:
    """The --json document: every trial (best first), the best one, where things went;
    ``folds`` (0: one split) says what a trial's metrics are means over."""
    best = rows[0] if rows and rows[0].value(metric) is not None else None
    return {"metric": metric, "mode": mode, "folds": folds, "interrupted": interrupted,
            "trials": [r.as_dict() for r in rows],
            "best": best.as_dict() if best is not None else None,
            "best_model": best_model, "out_dir": out_dir}


def _cell(value) -> str:
    if value is None:
        return ""
    return repr(float(value)) if isinstance(value, float) else str(value)
