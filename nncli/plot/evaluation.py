"""Probabilities -> figure: how classifiers rank, decide and are calibrated on labelled rows.

- ``roc``: the ROC curve (false positive rate against true positive rate) with the chance
  diagonal; the legend gives each curve's AUC (``nncli eval``'s ``roc_auc``).
- ``pr``: precision against recall, a step per distinct score, each curve's prevalence (the
  precision of guessing) dotted in its colour; the legend gives the average precision.
- ``calibration``: the reliability diagram, the mean predicted probability of each of
  ``bins`` equal-width bins against the fraction of its rows truly positive, the diagonal, and
  below it the number of rows in each bin.
- ``confusion``: the confusion matrix as a heat map, rows the true class, the count in each
  cell; a cross-validation's folds pooled (summed) into one matrix.

The curves of a model: the positive class (the second) of a binary model, each class against
the rest for more classes, each label of a multi-label model; for a reliability diagram with
more than two classes, the top class's probability against whether it is right. When every
model has one curve, they overlay in one panel, a colour per model; otherwise each model has a
panel of its own, a colour per class. The confusion matrix has a panel per model (per label of
a multi-label model).

In an SVG, every curve carries the id ``curve-PANEL-CURVE``, every confusion cell's text
``cell-PANEL-ROW-COLUMN`` and every bin histogram ``bins-PANEL-CURVE``: what tests count.
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from nncli.decision import check_threshold
from nncli.errors import UsageError
from nncli.plot.figure import DPI, check_output, colour, grid, save_atomically, settings
from nncli.plot.predictions import TOP_CLASS, Scored, Series
from nncli.scores.calibration import calibration_bins
from nncli.scores.ranking import (average_precision, precision_recall_curve, roc_auc,
                                  roc_curve)

DEFAULT_BINS = 10
# inches per panel; a reliability panel's histogram takes a quarter of its height
PANEL_SIZE = (4.8, 4.4)


@dataclass
class EvaluationSummary:
    """What ``plot_evaluation`` drew, for the CLI's message, ``--json`` and tests: each
    panel's title and its curves (legend text, model, class, rows and scores) or matrix."""

    path: str
    format: str
    kind: str
    labels: list[str]
    panels: list[dict]

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Ranking:
    """A curve of a ranking by score: its title and axes, the points drawn and the number
    summing it up (its JSON key and its short name in the legend)."""

    title: str
    xlabel: str
    ylabel: str
    score: str
    short: str
    points: Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]
    measure: Callable[[np.ndarray, np.ndarray], float]
    legend_at: str
    steps: bool


def _roc_points(truth: np.ndarray, score: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    fpr, tpr, _ = roc_curve(truth, score)
    return fpr, tpr


def _pr_points(truth: np.ndarray, score: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    precision, recall, _ = precision_recall_curve(truth, score)
    return recall, precision


RANKINGS = {
    "roc": Ranking("ROC", "false positive rate", "true positive rate", "roc_auc", "AUC",
                   _roc_points, roc_auc, "lower right", steps=False),
    "pr": Ranking("precision-recall", "recall", "precision", "average_precision", "AP",
                  _pr_points, average_precision, "lower left", steps=True),
}


def plot_evaluation(scored: Sequence[Scored], kind: str, path: str | os.PathLike,
                    bins: int = DEFAULT_BINS, threshold: float | None = None,
                    dpi: int = DPI) -> EvaluationSummary:
    """Draw ``kind`` (roc, pr, calibration, confusion) of every scored model and write the
    figure to ``path`` (.png, .svg or .pdf). ``bins``: the reliability diagram's;
    ``threshold``: where a sigmoid output turns positive in a confusion matrix."""
    path = Path(path)
    fmt = check_output(path)
    if kind not in KINDS:
        raise UsageError(f"unknown kind '{kind}'; expected one of {', '.join(KINDS)}")
    if bins < 1:
        raise UsageError(f"--bins must be at least 1, received {bins}")
    if not scored:
        raise UsageError("no model to plot")
    with settings():
        fig, panels = KINDS[kind](scored, kind, bins, threshold)
        save_atomically(fig, path, fmt, dpi)
    return EvaluationSummary(str(path), fmt, kind, [s.label for s in scored], panels)


# ------------------------------------------------------------------ which curves in which panel

Placed = tuple[str, str, Series]    # legend name, model label, series


def _layout(scored: Sequence[Scored], curves: Callable[[Scored], list[Series]],
            title: str) -> list[tuple[str, str, list[Placed]]]:
    """(title, legend title, curves) of each panel: every model in one panel when each has
    one curve, else a panel per model."""
    sets = [(s, curves(s)) for s in scored]
    if all(len(series) == 1 for _, series in sets):
        names = {series[0][0] for _, series in sets}
        shown = names.pop() if len(names) == 1 else None
        if shown is not None and shown != TOP_CLASS:
            shown = f"positive class {shown}"
        return [(f"{title}, {shown}" if shown else title, "model",
                 [(s.label, s.label, series[0]) for s, series in sets])]
    return [(f"{title}: {s.label}", _legend_title(s, series),
             [(one[0], s.label, one) for one in series]) for s, series in sets]


def _legend_title(scored: Scored, series: list[Series]) -> str:
    """What the curves of a model's own panel are."""
    if scored.multilabel:
        return "label"
    if len(scored.names) == 2:
        return "positive class"
    return "class (vs rest)" if len(series) > 1 else ""


def _figure(panels: int, rows_per_panel: int = 1, ratios: Sequence[float] = (1,)):
    """A constrained Figure and a grid of ``panels`` cells, each ``rows_per_panel`` axes
    high in ``ratios``: the list of each panel's axes."""
    from matplotlib.figure import Figure

    nrows, ncols = grid(panels)
    fig = Figure(figsize=(PANEL_SIZE[0] * ncols, PANEL_SIZE[1] * nrows), layout="constrained")
    spec = fig.add_gridspec(nrows * rows_per_panel, ncols,
                            height_ratios=list(ratios) * nrows)
    cells = []
    for p in range(panels):
        r, c = divmod(p, ncols)
        first = fig.add_subplot(spec[r * rows_per_panel, c])
        cells.append([first] + [fig.add_subplot(spec[r * rows_per_panel + k, c], sharex=first)
                                for k in range(1, rows_per_panel)])
    return fig, cells


def _legend_text(name: str, short: str, value: float) -> str:
    return f"{name} ({short} {'n/a' if math.isnan(value) else f'{value:.3f}'})"


def _number(value: float) -> float | None:
    return None if math.isnan(value) else float(value)


# ------------------------------------------------------------------ the kinds

def _ranking(scored: Sequence[Scored], kind: str, bins: int, threshold: float | None):
    from matplotlib.lines import Line2D

    how = RANKINGS[kind]
    layout = _layout(scored, Scored.ranked, how.title)
    fig, cells = _figure(len(layout))
    panels = []
    for p, ((title, legend_title, placed), (ax,)) in enumerate(zip(layout, cells)):
        curves = []
        for c, (name, model, (what, truth, score)) in enumerate(placed):
            x, y = how.points(truth, score)
            value = how.measure(truth, score)
            text = _legend_text(name, how.short, value)
            line, = ax.plot(x, y, color=colour(c), label=text,
                            drawstyle="steps-post" if how.steps else "default")
            line.set_gid(f"curve-{p}-{c}")
            curve = {"label": text, "model": model, "class": what, "rows": int(len(truth)),
                     how.score: _number(value)}
            if kind == "pr":
                prevalence = float(np.mean(truth))
                ax.axhline(prevalence, color=colour(c), linestyle=":", linewidth=0.8,
                           gid=f"baseline-{p}-{c}")
                curve["prevalence"] = prevalence
            curves.append(curve)
        chance = "chance"
        if kind == "roc":
            ax.plot([0, 1], [0, 1], ":", color="grey", linewidth=0.8, gid=f"chance-{p}")
        else:
            chance = "chance (prevalence)"
        handles = ax.get_legend_handles_labels()[0]
        handles.append(Line2D([], [], color="grey", linestyle=":", label=chance))
        _finish(ax, title, how.xlabel, how.ylabel)
        ax.legend(handles=handles, title=legend_title, loc=how.legend_at, fontsize="small",
                  title_fontsize="small")
        panels.append({"title": title, "curves": curves})
    return fig, panels


def _calibration(scored: Sequence[Scored], kind: str, bins: int, threshold: float | None):
    layout = _layout(scored, Scored.confidence, "reliability")
    fig, cells = _figure(len(layout), 2, (3, 1))
    panels = []
    for p, ((title, legend_title, placed), (ax, below)) in enumerate(zip(layout, cells)):
        curves = []
        for c, (name, model, (what, truth, proba)) in enumerate(placed):
            edges, positive, mean, total = calibration_bins(truth, proba, bins)
            filled = total != 0
            line, = ax.plot(mean[filled], positive[filled], "o-", color=colour(c),
                            markersize=3, label=name)
            line.set_gid(f"curve-{p}-{c}")
            below.stairs(total, edges, color=colour(c), gid=f"bins-{p}-{c}")
            curves.append({"label": name, "model": model, "class": what,
                           "rows": int(len(truth)),
                           "mean_probability": mean[filled].tolist(),
                           "fraction_positive": positive[filled].tolist(),
                           "count": total[filled].tolist()})
        ax.plot([0, 1], [0, 1], ":", color="grey", linewidth=0.8, label="perfectly calibrated",
                gid=f"chance-{p}")
        _finish(ax, title, "", "fraction positive")
        ax.tick_params(labelbottom=False)
        ax.legend(title=legend_title, loc="upper left", fontsize="small",
                  title_fontsize="small")
        below.set_xlabel("mean predicted probability")
        below.set_ylabel("rows")
        below.grid(True, alpha=0.3)
        panels.append({"title": title, "bins": bins, "curves": curves})
    return fig, panels


def _confusion(scored: Sequence[Scored], kind: str, bins: int, threshold: float | None):
    matrices = _matrices(scored, threshold)
    fig, cells = _figure(len(matrices))
    panels = []
    for p, ((title, names, matrix, models, cut), (ax,)) in enumerate(zip(matrices, cells)):
        ax.imshow(matrix, cmap="Blues", vmin=0, vmax=max(int(matrix.max()), 1))
        dark = matrix.max() / 2
        small = "small" if len(names) > 5 else "medium"
        for i, j in np.ndindex(*matrix.shape):
            ax.text(j, i, str(int(matrix[i, j])), ha="center", va="center", fontsize=small,
                    color="white" if matrix[i, j] > dark else "black", gid=f"cell-{p}-{i}-{j}")
        ax.set_xticks(range(len(names)), names)
        ax.set_yticks(range(len(names)), names)
        ax.set_title(title)
        ax.set_xlabel("predicted" if cut is None else f"predicted (positive: p > {cut:g})")
        ax.set_ylabel("true")
        panels.append({"title": title, "models": models, "labels": names,
                       "matrix": matrix.tolist(), "threshold": cut})
    return fig, panels


def _matrices(scored: Sequence[Scored], threshold: float | None) -> list[tuple]:
    """(title, class names, matrix, models, threshold or None) of each panel: a model's
    matrix (each label's of a multi-label model), the folds of one cross-validation summed."""
    out: list[tuple] = []
    pooled: dict[int, int] = {}     # id of a cv -> its first panel
    for s in scored:
        cut = check_threshold(s.model, threshold)
        matrices = s.matrices(threshold)
        if s.cv is None:
            out += [(s.label if name is None else f"{s.label}: {name}", names, matrix,
                     [s.label], cut) for name, names, matrix in matrices]
            continue
        if id(s.cv) not in pooled:
            pooled[id(s.cv)] = len(out)
            title = f"{s.cv.label}: {s.cv.k} folds pooled"
            out += [(title if name is None else f"{title}, {name}", names,
                     np.zeros_like(matrix), [], cut) for name, names, matrix in matrices]
        for j, (_, _, matrix) in enumerate(matrices):
            title, names, total, models, cut = out[pooled[id(s.cv)] + j]
            out[pooled[id(s.cv)] + j] = (title, names, total + matrix, models + [s.label], cut)
    return out


def _finish(ax, title: str, xlabel: str, ylabel: str) -> None:
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_xlim(-0.02, 1.02)
    ax.set_ylim(-0.02, 1.02)
    ax.grid(True, alpha=0.3)


# kind -> the function drawing it: (scored, kind, bins, threshold) -> (figure, panels)
KINDS = {"roc": _ranking, "pr": _ranking, "calibration": _calibration,
         "confusion": _confusion}
