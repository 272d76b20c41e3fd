"""History -> figure: the training curves of one or more models, overlaid. The only module that
imports matplotlib, and only inside ``plot_histories`` and ``require_matplotlib``, so importing
this module (or running any other command) never loads it.

A *run* is ``(label, history)``: a legend name and the per-epoch records of a model file's
``info["history"]`` (``{"epoch": 1, "loss": ..., "val_loss": ..., "seconds": ...}``). Every
numeric key other than ``epoch`` and ``seconds`` is a metric; ``NAME`` and ``val_NAME`` share one
panel (a *metric family*, named ``NAME``): training solid, validation dashed, one colour per
run. Panels come in the order the keys first appear, ``loss`` first.

The figure is drawn on a bare ``matplotlib.figure.Figure``, never through pyplot, so no GUI
backend is chosen and the caller's global backend is left as it is (headless by construction),
and written atomically: a temporary file in the same folder, then renamed.
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

from nncli.errors import UsageError
from nncli.files import write_atomically

# File suffix -> matplotlib's format name.
FORMATS = {".png": "png", ".svg": "svg", ".pdf": "pdf"}
NOT_METRICS = ("epoch", "seconds")
VAL_PREFIX = "val_"
DPI = 100
PANEL_SIZE = (4.5, 3.2)     # inches per panel
MAX_COLUMNS = 3             # panels per row
INSTALL_HINT = "nncli plot needs matplotlib: pip install 'nncli[plot]'"


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

    def as_dict(self) -> dict:
        return asdict(self)


def require_matplotlib() -> None:
    """Fail with the install hint when the ``plot`` extra is not installed."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise UsageError(INSTALL_HINT) from None


def output_format(path: str | os.PathLike) -> str:
    """The figure format the suffix of ``path`` asks for: png, svg or pdf."""
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise UsageError(f"{path}: cannot tell the figure format from the suffix: expected "
                         f"{', '.join(FORMATS)}, received '{suffix or '(none)'}'")
    return FORMATS[suffix]


def check_output(path: str | os.PathLike) -> str:
    """Everything that can fail before drawing: matplotlib, the suffix, a writable folder.
    Returns the format."""
    from nncli.files import check_writable

    fmt = output_format(path)
    require_matplotlib()
    check_writable(path, "the figure")
    return fmt


def read_runs(paths: Sequence[str | os.PathLike], labels: Sequence[str] | None = None,
              top: int = 5) -> list[tuple[str, list[dict]]]:
    """The runs of model files (or checkpoints): their histories, labelled by ``labels`` or by
    file name (the path as given where two files share a name). A sweep's folder (``nncli
    sweep --out-dir``) stands for its ``top`` best trials, labelled by their options."""
    from nncli.modelfile import read_model_file

    if labels and len(labels) != len(paths):
        raise UsageError(f"expected one --label per model ({len(paths)}), received "
                         f"{len(labels)}")
    if not labels:
        names = [Path(p).name for p in paths]
        labels = [n if names.count(n) == 1 else str(p) for n, p in zip(names, paths)]
    runs = []
    for path, label in zip(paths, labels):
        if Path(path).is_dir():
            runs += sweep_runs(Path(path), top)
            continue
        history = read_model_file(path).model.info.get("history") or []
        if not history:
            raise UsageError(f"{path}: no training history to plot (no epoch was trained)")
        runs.append((label, history))
    return runs


def sweep_runs(folder: Path, top: int) -> list[tuple[str, list[dict]]]:
    """The ``top`` best trials of a sweep's folder, from its leaderboard.csv (best first),
    each labelled by the options that vary (``--arch 25relu-10linear --lr 0.01``)."""
    from nncli.modelfile import read_model_file
    from nncli.sweep.results import read_leaderboard

    board = folder / "leaderboard.csv"
    if not board.is_file():
        raise UsageError(f"{folder}: a folder, but not a sweep's (no leaderboard.csv)")
    rows = read_leaderboard(board)
    if not rows:
        raise UsageError(f"{board}: no trial to plot")
    runs = []
    for row in rows:
        if len(runs) == top:
            break
        if not row.model:
            continue
        history = _trial_history(Path(row.model))
        if history:
            label = " ".join(f"--{name.replace('_', '-')} {value}"
                             for name, value in row.config.items())
            runs.append((label or row.trial_id, history))
    if not runs:
        raise UsageError(f"{folder}: no trial of the sweep has a model with a history")
    return runs


def _trial_history(path: Path) -> list[dict]:
    """A sweep trial's history: its model's, or for a cross-validated trial (a folder of fold
    models) the folds' mean at each epoch they all reached."""
    from nncli.modelfile import read_model_file

    if not path.is_dir():
        return read_model_file(path).model.info.get("history") or []
    folds = [read_model_file(p).model.info.get("history") or []
             for p in sorted(path.glob("fold*.safetensors"))]
    if not folds:
        return []
    epochs = min(len(h) for h in folds)
    return [{key: (sum(h[e][key] for h in folds) / len(folds)
                   if all(_is_number(h[e].get(key)) for h in folds) else value)
             for key, value in folds[0][e].items()} for e in range(epochs)]


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

    from matplotlib import rc_context, rcParams
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D
    from matplotlib.ticker import MaxNLocator

    with rc_context({"svg.hashsalt": "nncli", "svg.fonttype": "none"}):
        ncols = min(len(panels), MAX_COLUMNS)
        nrows = math.ceil(len(panels) / ncols)
        fig = Figure(figsize=(PANEL_SIZE[0] * ncols, PANEL_SIZE[1] * nrows + 0.4),
                     layout="constrained")
        axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
        colours = [c["color"] for c in rcParams["axes.prop_cycle"]]
        any_val = False
        for i, (ax, panel) in enumerate(zip(axes, panels)):
            for j, (label, history) in enumerate(runs):
                for key, style in ((panel.metric, "-"), (VAL_PREFIX + panel.metric, "--")):
                    epochs, values = _series(history, key)
                    if not epochs:
                        continue
                    any_val |= style == "--"
                    line, = ax.plot(epochs, values, style, color=colours[j % len(colours)],
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
        handles = [Line2D([], [], color=colours[j % len(colours)], label=label)
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
        _save_atomically(fig, path, fmt, dpi)
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


def _save_atomically(fig, path: Path, fmt: str, dpi: int) -> None:
    # No dates in SVG and PDF, so the same histories give the same file.
    metadata = {"svg": {"Date": None}, "pdf": {"CreationDate": None}}.get(fmt)
    write_atomically(path, lambda f: fig.savefig(f, format=fmt, dpi=dpi, metadata=metadata))
