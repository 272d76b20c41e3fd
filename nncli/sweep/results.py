"""What a sweep leaves: one row per trial, the leaderboard sorted by the metric, its CSV, and
the --json document. Knows nothing of Ray (``nncli.sweep.tuning`` fills the rows)."""

from __future__ import annotations

import csv
import io
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from nncli.files import write_atomically
from nncli.metrics import EPOCH_METRICS

# What a trial's status means to the user.
FINISHED, STOPPED, ERROR, INTERRUPTED, PENDING, RUNNING, RETRYING = (
    "finished", "stopped early", "error", "interrupted", "pending", "running", "retrying")


@dataclass
class TrialRow:
    """One trial: its options that vary, where it stands and what it reached."""

    trial_id: str
    config: dict[str, Any]
    status: str = PENDING
    epochs: int = 0
    metrics: dict[str, float] = field(default_factory=dict)
    node: str | None = None
    retries: int = 0
    seconds: float = 0.0
    pid: int | None = None            # the worker process of its latest report (a retry's new)
    model: str | None = None          # the trial's model file in the sweep's folder
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
    """The leaderboard as CSV: rank, trial, the varying options, status, epochs, metrics,
    node, retries, seconds, model."""
    metrics = [m for m in EPOCH_METRICS if any(m in r.metrics for r in rows)]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["rank", "trial", *varying, "status", "epochs", *metrics, "node",
                     "retries", "seconds", "model"])
    for rank, r in enumerate(rows, start=1):
        writer.writerow([rank, r.trial_id, *(r.config.get(v, "") for v in varying), r.status,
                         r.epochs, *(_cell(r.metrics.get(m)) for m in metrics), r.node or "",
                         r.retries, f"{r.seconds:.3f}", r.model or ""])
    return out.getvalue()


def read_leaderboard(path: Path) -> list[TrialRow]:
    """The trials of a leaderboard CSV (as ``leaderboard_csv`` writes it), best first: each
    with its varying options (the columns between ``trial`` and ``status``) as ``config``, its
    status, epochs, metrics and model file."""
    with open(path, newline="", encoding="utf-8") as f:
        table = list(csv.reader(f))
    if not table:
        return []
    header = table[0]
    first, status = header.index("trial") + 1, header.index("status")
    rows = []
    for cells in table[1:]:
        named = dict(zip(header[status:], cells[status:]))
        rows.append(TrialRow(cells[1], dict(zip(header[first:status], cells[first:status])),
                             named["status"], int(named["epochs"] or 0),
                             {m: float(named[m]) for m in EPOCH_METRICS if named.get(m)},
                             model=named.get("model") or None))
    return rows


def write_leaderboard(path: Path, rows: list[TrialRow], varying: list[str]) -> None:
    text = leaderboard_csv(rows, varying)
    write_atomically(path, lambda f: f.write(text), text=True)


def summary(rows: list[TrialRow], metric: str, mode: str, best_model: str | None,
            out_dir: str, interrupted: bool) -> dict:
    """The --json document: every trial (best first), the best one, where things went."""
    best = rows[0] if rows and rows[0].value(metric) is not None else None
    return {"metric": metric, "mode": mode, "interrupted": interrupted,
            "trials": [r.as_dict() for r in rows],
            "best": best.as_dict() if best is not None else None,
            "best_model": best_model, "out_dir": out_dir}


def _cell(value) -> str:
    if value is None:
        return ""
    return repr(float(value)) if isinstance(value, float) else str(value)
