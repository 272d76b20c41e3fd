"""History -> figure: the training curves of one or more models, overlaid.

A *run* is ``(label, history)``: a legend name and the per-epoch records of a model file's
``info["history"]`` (``{"epoch": 1, "loss": ..., "val_loss": ..., "seconds": ...}``). Every
numeric key other than ``epoch`` and ``seconds`` is a metric; ``NAME`` and ``val_NAME`` share one
panel (a *metric family*, named ``NAME``): training solid, validation dashed, one colour per
run. Panels come in the order the keys first appear, ``loss`` first.
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

from nncli.errors import UsageError
from nncli.plot.figure import DPI, check_output, colour, grid, save_atomically, settings
from nncli.plot.sources import Member, Need, members

NOT_METRICS = ("epoch", "seconds")
VAL_PREFIX = "val_"
PANEL_SIZE = (4.5, 3.2)     # inches per panel


@dataclass
class Panel:
    """One axes of the figure: a metric family and the curves drawn in it ("adam val_loss")."""

    metric: str
    lines: list[str] = field(default_factory=list)


@dataclass
class PlotSummary:
    """What ``plot_histories`` drew, for the CLI's message and for tests."""

    path: str
    format: str
    labels: list[str]
    panels: list[Panel]
    kind: str = "history"

    def as_dict(self) -> dict:
        return asdict(self)


def _history(member: Member) -> list[dict]:
    return member.model.info.get("history") or []


HAS_HISTORY = Need(lambda m: bool(_history(m)), "with a history")


def read_runs(paths: Sequence[str | os.PathLike], labels: Sequence[str] | None = None,
              top: int = 5) -> list[tuple[str, list[dict]]]:
    """The runs of model files (or checkpoints): their histories, labelled by ``labels`` or by
    file name (the path as given where two files share a name). A sweep's folder (``nncli
    sweep --out-dir``) stands for its ``top`` best trials, labelled by their options; a
    cross-validation's folder (``nncli cv -o``) for its folds' models."""
    runs = []
    for member in members(paths, labels, top, HAS_HISTORY):
        history = _history(member)
        if not history:
            raise UsageError(f"{member.path}: no training history to plot (no epoch was "
                             f"trained)")
        runs.append((member.label, history))
    return runs


def metric_families(runs: Iterable[tuple[str, list[dict]]]) -> list[str]:
    """The metric families in the runs' histories: ``loss`` first, then in order of appearance."""
    seen: dict[str, None] = {}
    for _, history in runs:
        for record in history:
            for key, value in record.items():
                if key not in NOT_METRICS and _is_number(value):
                    seen.setdefault(_family(key), None)
    return sorted(seen, key=lambda name: name != "loss")


def plot_histories(runs: Sequence[tuple[str, list[dict]]], path: str | os.PathLike,
                   metrics: Sequence[str] | None = None, dpi: int = DPI) -> PlotSummary:
    """Draw every run's curves, one panel per metric family (``metrics``: which, in this order;
    ``val_NAME`` means ``NAME``), and write the figure to ``path`` (.png, .svg or .pdf)."""
    path = Path(path)
    fmt = check_output(path)
    if not runs:
        raise UsageError("no model to plot")
    for label, history in runs:
        if not history:
            raise UsageError(f"{label}: no training history to plot")
    panels = _choose_panels(metric_families(runs), metrics)

    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D
    from matplotlib.ticker import MaxNLocator

    with settings():
        nrows, ncols = grid(len(panels))
        fig = Figure(figsize=(PANEL_SIZE[0] * ncols, PANEL_SIZE[1] * nrows + 0.4),
                     layout="constrained")
        axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
        any_val = False
        for i, (ax, panel) in enumerate(zip(axes, panels)):
            for j, (label, history) in enumerate(runs):
                for key, style in ((panel.metric, "-"), (VAL_PREFIX + panel.metric, "--")):
                    epochs, values = _series(history, key)
                    if not epochs:
                        continue
                    any_val |= style == "--"
                    line, = ax.plot(epochs, values, style, color=colour(j),
                                    marker="o" if len(epochs) == 1 else None,
                                    label=f"{label} {key}")
                    line.set_gid(f"curve-{i}-{j}-{key}")
                    panel.lines.append(f"{label} {key}")
            ax.set_title(panel.metric)
            ax.set_xlabel("epoch")
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.grid(True, alpha=0.3)
        for ax in axes[len(panels):]:
            ax.remove()
        handles = [Line2D([], [], color=colour(j), label=label)
                   for j, (label, _) in enumerate(runs)]
        if any_val:
            handles += [Line2D([], [], color="grey", linestyle="-", label="training"),
                        Line2D([], [], color="grey", linestyle="--", label="validation")]
        # as many legend entries a row as the figure's width holds (about 11 characters an
        # inch at the default font), so that long labels (a sweep's options) wrap, not clip
        longest = max(len(h.get_label()) for h in handles) + 5
        per_row = max(1, int(PANEL_SIZE[0] * ncols * 11) // longest)
        fig.legend(handles=handles, loc="outside upper center",
                   ncols=min(len(handles), 6, per_row), frameon=False)
        save_atomically(fig, path, fmt, dpi)
    return PlotSummary(str(path), fmt, [label for label, _ in runs], panels)


def _choose_panels(available: list[str], wanted: Sequence[str] | None) -> list[Panel]:
    if not available:
        raise UsageError("the histories hold no metric to plot")
    if not wanted:
        return [Panel(name) for name in available]
    chosen: dict[str, None] = {}
    for name in wanted:
        family = _family(name)
        if family not in available:
            raise UsageError(f"no metric '{name}' in the histories; available: "
                             f"{', '.join(available)}")
        chosen.setdefault(family, None)
    return [Panel(name) for name in chosen]


def _series(history: list[dict], key: str) -> tuple[list[int], list[float]]:
    """(epochs, values) of ``key``; an epoch without it is a gap (NaN), none at all is empty."""
    if not any(_is_number(r.get(key)) for r in history):
        return [], []
    epochs = [int(r.get("epoch", n)) for n, r in enumerate(history, start=1)]
    values = [float(r[key]) if _is_number(r.get(key)) else math.nan for r in history]
    return epochs, values


def _family(key: str) -> str:
    return key[len(VAL_PREFIX):] if key.startswith(VAL_PREFIX) else key


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
