"""``nncli plot``: the training curves of models (or a sweep's best trials, or a
cross-validation's folds) in one figure, or their ROC, precision-recall, confusion matrix and
reliability diagram on labelled data."""

from __future__ import annotations

import json
from enum import Enum
from pathlib import Path
from typing import Optional

import typer

from nncli.cli.app import command, prepare_numba, say, tell
from nncli.errors import UsageError
from nncli.options import delimiter_char, encoding_name


class Kind(str, Enum):
    history = "history"
    roc = "roc"
    pr = "pr"
    confusion = "confusion"
    calibration = "calibration"


_EVALUATION = ("roc", "pr", "confusion", "calibration")
# an option given for a kind that does not use it is refused: it would do nothing
_ONLY_FOR = {"--metric": ("history",), "--data": _EVALUATION, "--target": _EVALUATION,
             "--delimiter": _EVALUATION, "--encoding": _EVALUATION,
             "--threshold": ("confusion",), "--bins": ("calibration",)}


@command(summary="Draw training curves, or ROC, PR, confusion, calibration.",
         epilog="Examples: nncli plot adam.safetensors sgd.safetensors --label adam "
                "--label sgd -o curves.png; nncli plot digits.safetensors --kind roc "
                "--data datasets/digits.csv -o roc.svg; nncli plot digits_cv --kind roc")
def plot(
    models: list[Path] = typer.Argument(..., help="Model files (or checkpoints) written by "
                                        "nncli train, a sweep's folder or a cv folder."),
    output: Path = typer.Option(Path("curves.png"), "-o", "--output", help="Where to write "
                                "the figure; .png, .svg or .pdf by the suffix."),
    kind: Kind = typer.Option(Kind.history, "--kind", metavar="KIND", help="history "
                              "(training curves), or roc, pr, confusion, calibration (judged "
                              "on --data; a cv folder: each fold on its held-out rows)."),
    data: Optional[str] = typer.Option(None, "--data", metavar="FILE", help="Labelled CSV or "
                                       "NPZ to judge the models on ('-': stdin); for a cv "
                                       "folder, its data file moved."),
    label: Optional[list[str]] = typer.Option(None, "--label", help="Legend name of each "
                                              "MODEL, in order \\[default: the file names]."),
    metric: Optional[list[str]] = typer.Option(None, "--metric", help="History: a panel to "
                                               "draw (loss, accuracy, ...); repeat for "
                                               "several \\[default: every metric]."),
    target: Optional[list[str]] = typer.Option(None, "--target", help="Target column(s) of "
                                               "--data \\[default: the models']."),
    delimiter: Optional[str] = typer.Option(None, "--delimiter", help="The CSV delimiter of "
                                            "--data \\[default: detected]."),
    encoding: Optional[str] = typer.Option(None, "--encoding", metavar="NAME",
                                           help="The text encoding of --data \\[default: "
                                                "UTF-8]."),
    threshold: Optional[float] = typer.Option(None, "--threshold", metavar="T",
                                              help="Confusion of sigmoid (bce) models: "
                                                   "positive when p > T \\[default: 0.5]."),
    bins: Optional[int] = typer.Option(None, "--bins", help="Calibration: equal-width bins "
                                       "of the probability \\[default: 10]."),
    json_out: bool = typer.Option(False, "--json", help="Print what was drawn as JSON on "
                                  "stdout."),
    top: int = typer.Option(5, "--top", help="For a sweep's folder given as MODEL: how many "
                            "of its best trials to draw."),
) -> None:
    """Draw the training curves of MODELS in one figure: loss and each metric against the
    epoch, validation dashed beside training, one colour per model. A sweep's --out-dir
    stands for its --top best trials, a cv folder (nncli cv -o) for its folds.

    --kind roc, pr, confusion or calibration judges each model on --data instead (a cv
    folder's folds on their held-out rows) and draws its ROC curve, precision-recall curve,
    confusion matrix or reliability diagram. Needs matplotlib (pip install 'nncli\\[plot]').
    """
    given = {"--metric": metric, "--data": data, "--target": target, "--delimiter": delimiter,
             "--encoding": encoding, "--threshold": threshold, "--bins": bins}
    for flag, value in given.items():
        if value is not None and kind.value not in _ONLY_FOR[flag]:
            raise UsageError(f"{flag} applies to --kind {', '.join(_ONLY_FOR[flag])}, not "
                             f"--kind {kind.value}")
    if top < 1:
        raise UsageError(f"--top must be at least 1, received {top}")
    prepare_numba()
    from nncli.plot import check_output

    check_output(output)  # matplotlib, suffix, folder: fail before reading the models
    if kind is Kind.history:
        from nncli.plot import plot_histories, read_runs

        summary = plot_histories(read_runs(models, label, top), output, metric)
        what = ""
    else:
        from nncli.data import ReadOptions
        from nncli.plot import members, plot_evaluation, score_members
        from nncli.plot.evaluation import DEFAULT_BINS

        read = ReadOptions(delimiter_char(delimiter), encoding=encoding_name(encoding))
        scored = score_members(members(models, label, top), data, target, read, say)
        summary = plot_evaluation(scored, kind.value, output,
                                  DEFAULT_BINS if bins is None else bins, threshold)
        what = f"{kind.value}: "
    runs, panels = len(summary.labels), len(summary.panels)
    tell(f"wrote {output} ({what}{runs} model{'s' if runs > 1 else ''}, "
         f"{panels} panel{'s' if panels > 1 else ''})")
    if json_out:
        typer.echo(json.dumps(summary.as_dict(), indent=2))
