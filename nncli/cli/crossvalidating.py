"""``nncli cv``: train's options (the library's table, less -o) and the cross-validation's own;
the command calls ``crossval.cross_validate`` and shows a line per fold and a table of the
metrics' mean and standard deviation on stderr, the document on stdout with --json."""

from __future__ import annotations

import json
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Iterator, Optional

import typer
from rich.table import Table

from nncli.cli.app import command, err, prepare_numba, say, show_bar, status, tell
from nncli.cli.options import with_options
from nncli.options import OPTIONS

if TYPE_CHECKING:
    from nncli.crossval import FoldResult
    from nncli.train import EpochReport, Training

# cv's -o is a folder, its own; train's other options are the table's, those a fold cannot take
# parsed (to refuse them with a reason) but not shown
_OPTIONS = tuple(o for o in OPTIONS if o.name != "output")
_REFUSED = frozenset(o.name for o in OPTIONS if o.cv)
# the fold entry's keys that are not the held-out metrics
_BOOKKEEPING = ("fold", "model", "train_rows", "validation_rows", "epochs", "seconds", "rows")


@command(summary="Cross-validate a training over K folds of DATA.",
         epilog="Example: nncli cv datasets/digits.csv --folds 5 --arch 25relu-15relu-10linear "
                "--loss sparse_cce --logits --epochs 40 -o digits_cv")
@with_options(_OPTIONS, hidden=_REFUSED)
def cv(data: str = typer.Argument(..., help="CSV, NPZ (X, y) or '-' for CSV on stdin."),
       folds: int = typer.Option(5, "--folds", metavar="K", help="How many folds."),
       no_stratify: bool = typer.Option(False, "--no-stratify", help="Deal the rows into the "
                                        "folds at random \\[default for a classifier with one "
                                        "class per row: each class's rows evenly]."),
       group: Optional[str] = typer.Option(None, "--group", metavar="COL", help="Keep the "
                                           "rows of equal values of this column (name or "
                                           "0-based index) in one fold; not a feature, not "
                                           "stratified."),
       output: Optional[Path] = typer.Option(None, "-o", "--output", metavar="DIR",
                                             help="Keep the K models (fold1.safetensors, ...) "
                                                  "and cv.json in this folder."),
       **o) -> None:
    """Cross-validate a training: K trainings, each on all folds of DATA but one and judged on
    that one, as nncli eval would judge it; each fold's line, then the mean and standard
    deviation of every metric over the folds.

    Every option of nncli train is taken, and a fold is trained exactly as nncli train would
    train it on a file of its training rows (--validation-split holds out the last rows of
    those). The folds are drawn from --seed.
    """
    prepare_numba(o["threads"])  # first: crossval imports the kernels
    from nncli.crossval import cross_validate
    from nncli.train import set_threads

    set_threads(o["threads"])
    display = _FoldDisplay(folds, o["quiet"])
    doc = cross_validate(data, folds, o, not no_stratify, group, output, say=say,
                         display=display.fold, done=display.done)
    if not o["quiet"]:
        _render(doc)
        if output is not None:
            tell(f"wrote {output} ({folds} models and cv.json)")
    if o["json_out"]:
        typer.echo(json.dumps(doc, indent=2))


class _FoldDisplay:
    """What cv shows on stderr as its folds train: the compile note before the first, a spinner
    naming the fold and epoch on a terminal, and one line per finished fold with its metrics
    (none with --quiet)."""

    def __init__(self, k: int, quiet: bool) -> None:
        self.k, self.quiet, self.number, self.spinner = k, quiet, 0, None

    def fold(self, i: int) -> "_FoldDisplay":
        self.number = i
        return self

    def prepared(self, run: "Training") -> None:
        from nncli.train import kernels_cached

        if self.number == 1 and not self.quiet and not kernels_cached():
            say("compiling kernels (first run after install, about 20 s; later runs load them "
                "from the cache)")

    @contextmanager
    def session(self, run: "Training") -> Iterator[None]:
        with status(self._text(0, run.config.epochs), show_bar(self.quiet)) as self.spinner:
            yield None
        self.spinner = None

    def progress(self, epoch: int, done: int, total: int, loss: float) -> None:
        pass

    def epoch(self, run: "Training", report: "EpochReport") -> None:
        if self.spinner is not None:
            self.spinner.update(self._text(report.epoch, run.config.epochs))

    def stopped(self, run: "Training", error: Exception) -> None:
        pass

    def finished(self, result) -> None:
        pass

    def done(self, fold: "FoldResult") -> None:
        from nncli.crossval.summary import is_number

        for message in fold.messages:
            say(f"{message} (fold {fold.fold}'s held-out rows)")
        if self.quiet:
            return
        shown = "  ".join(f"{key} {value:.6g}" for key, value in fold.metrics.items()
                          if key not in _BOOKKEEPING and is_number(value))
        validated = f" (+{fold.validation_rows} validation)" if fold.validation_rows else ""
        epochs = f"{fold.epochs} epoch{'s' if fold.epochs != 1 else ''}"
        tell(f"fold {fold.fold}/{self.k}: {fold.train_rows} training rows{validated}, "
             f"{fold.metrics['rows']} held out, {epochs}: {shown}  {fold.seconds:.1f}s")

    def _text(self, epoch: int, epochs: int) -> str:
        return f"fold {self.number}/{self.k}: epoch {epoch}/{epochs}"


def _render(doc: dict) -> None:
    """The mean and std of each metric (each fold's values are on its line above): the
    top-level numbers and those of flat objects (``macro``, ``label_accuracy``); deeper ones
    (``per_class``) are in --json only."""
    table = Table(title=f"cross-validation over {len(doc['folds'])} folds")
    table.add_column("metric")
    table.add_column("mean", justify="right", no_wrap=True)
    table.add_column("std (ddof 0)", justify="right", no_wrap=True)
    for name, path in _shown_metrics(doc["mean"]):
        # as eval shows its metrics: six significant digits (an mse may be in the thousands)
        table.add_row(name, f"{_at(doc['mean'], path):.6g}", f"{_at(doc['std'], path):.6g}")
    err.print(table)


def _shown_metrics(mean: dict) -> list[tuple[str, tuple[str, ...]]]:
    from nncli.crossval.summary import is_number

    out = []
    for key, value in mean.items():
        if key in _BOOKKEEPING:
            continue
        if isinstance(value, dict):
            if all(is_number(v) for v in value.values()):
                out += [(f"{key} {inner}", (key, inner)) for inner in value]
        else:
            out.append((key, (key,)))
    return out


def _at(doc: dict, path: tuple[str, ...]):
    for key in path:
        doc = doc[key]
    return doc
