"""Using a trained model: ``nncli eval`` (metrics on labelled data, rendered as tables) and
``nncli predict`` (predictions written as CSV a block of rows at a time)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from nncli.cli.app import Output, command, err, prepare_numba, say, write_output
from nncli.options import delimiter_char, encoding_name

# eval's and predict's --encoding (train's is a row of nncli.options.OPTIONS)
_ENCODING_HELP = ("The CSV's text encoding (latin-1, cp1252, utf-16, ...) \\[default: UTF-8, or "
                  "UTF-16 after its byte order mark].")
_THRESHOLD_HELP = ("Sigmoid (bce) models: a row, or a label, is positive when its probability is "
                   "above T \\[default: 0.5].")


@command("eval", summary="Report loss and metrics of MODEL on labelled DATA.",
         epilog="Example: nncli eval digits.safetensors datasets/digits.csv --json")
def eval_(
    model: Path = typer.Argument(..., help="A model file written by nncli train."),
    data: str = typer.Argument(..., help="CSV, NPZ or '-' for CSV on stdin."),
    target: Optional[list[str]] = typer.Option(None, "--target", help="Target column(s) "
                                               "\\[default: those the model was trained on]."),
    json_out: bool = typer.Option(False, "--json", help="Print the metrics as JSON on stdout."),
    threads: Optional[int] = typer.Option(None, "--threads", help="Compute threads."),
    delimiter: Optional[str] = typer.Option(None, "--delimiter", help="The CSV delimiter "
                                            "\\[default: detected]."),
    encoding: Optional[str] = typer.Option(None, "--encoding", metavar="NAME",
                                           help=_ENCODING_HELP),
    threshold: Optional[float] = typer.Option(None, "--threshold", metavar="T",
                                              help=_THRESHOLD_HELP),
    sample_weight: Optional[str] = typer.Option(None, "--sample-weight", metavar="COL",
                                                help="Weigh each row's part in the metrics "
                                                     "(not the loss) by this column of DATA, as "
                                                     "scikit-learn's sample_weight."),
) -> None:
    """Report loss and metrics of MODEL on labelled DATA.

    The model's input columns are found by name (or position), missing numbers are filled with
    the training means and categories never seen in training encode as zeros (with a warning).
    """
    prepare_numba(threads)
    from nncli.data import ReadOptions, load_training_data
    from nncli.decision import check_threshold
    from nncli.evaluate import evaluate
    from nncli.modelfile import load_model
    from nncli.train import set_threads

    set_threads(threads)
    m = load_model(model)
    check_threshold(m, threshold)
    ds = load_training_data(data, target, classes=m.classes,
                            options=ReadOptions(delimiter_char(delimiter),
                                                encoding=encoding_name(encoding),
                                                sample_weight=sample_weight),
                            schema=m.input_schema(), model_targets=m.target_lookup())
    for message in ds.messages():
        say(message)
    report = evaluate(m, ds.X, ds.Y, ds.source, ds.line_numbers, own_data=True,
                      threshold=threshold, sample_weight=ds.sample_weight)
    if sample_weight is not None:
        report["sample_weight"] = sample_weight
    report["missing"] = ds.encoded.as_dict()
    if json_out:
        typer.echo(json.dumps(report, indent=2))
    else:
        _render_eval(report)


def _render_eval(report: dict) -> None:
    from nncli.evaluate import CLASS_SCORES, HEADLINE, LABEL_SCORES

    weighted = f" (weighted by {report['sample_weight']})" if "sample_weight" in report else ""
    table = Table(title="metrics" + weighted, show_header=False)
    for key in HEADLINE:
        if key in report:
            table.add_row(key, _cell(report[key], 6))
    best = report.get("best_threshold")
    if best is not None:
        table.add_row("best_threshold", f"{_cell(best['threshold'])} (f1 {_cell(best['f1'])}, "
                      f"precision {_cell(best['precision'])}, recall {_cell(best['recall'])})")
    err.print(table)
    if "per_class" in report:
        rows = {**report["per_class"], **{f"{avg} avg": report[avg]
                                          for avg in ("macro", "weighted")}}
        err.print(_score_table("per class", "class", rows, (*CLASS_SCORES, "support")))
    if "per_label" in report:
        rows = {name: {**scores, "accuracy": report["label_accuracy"][name],
                       "best threshold": scores["best_threshold"]["threshold"]}
                for name, scores in report["per_label"].items()}
        rows["macro avg"] = report["macro"]
        err.print(_score_table("per label", "label", rows, ("accuracy", *LABEL_SCORES,
                                                           "support", "best threshold")))
    if "per_output" in report:
        from nncli.scores.regression import PER_OUTPUT

        err.print(_score_table("per output", "output", report["per_output"], PER_OUTPUT))
    if "confusion_matrix" in report:
        cm = Table(title="confusion matrix")
        cm.add_column("true \\ predicted")   # rows true classes, columns predicted ones
        for name in report["labels"]:
            cm.add_column(name, justify="right")
        for name, row in zip(report["labels"], report["confusion_matrix"]):
            cm.add_row(name, *(_cell(v) for v in row))
        err.print(cm)


def _score_table(title: str, what: str, rows: dict[str, dict], columns: tuple[str, ...]) -> Table:
    """One row per class, label or output (and average), one column per score; a score a row
    lacks (the support of an average) is left blank."""
    table = Table(title=title)
    table.add_column(what)
    for column in columns:
        table.add_column(column.replace("average_precision", "avg precision"), justify="right")
    for name, scores in rows.items():
        table.add_row(name, *(_cell(scores[c]) if c in scores else "" for c in columns))
    return table


def _cell(value, digits: int = 4) -> str:
    """A number as the tables show it (floats to ``digits`` significant digits); an undefined
    score (null) as n/a."""
    if value is None:
        return "n/a"
    return f"{value:.{digits}g}" if isinstance(value, float) else str(value)


# --------------------------------------------------------------------------- predict

@command(summary="Write predictions of MODEL for DATA as CSV with a header.",
         epilog="Example: cat new.csv | nncli predict digits.safetensors - > probs.csv")
def predict(
    model: Path = typer.Argument(..., help="A model file written by nncli train."),
    data: str = typer.Argument(..., help="CSV, NPZ, NPY or '-' for CSV on stdin."),
    output: Output = typer.Option(Output.proba, "--output", help="proba: probabilities "
                                  "(regression: values); class: labels; logits: raw outputs."),
    out_file: Optional[Path] = typer.Option(None, "-o", help="Write the CSV here instead of "
                                            "stdout."),
    threads: Optional[int] = typer.Option(None, "--threads", help="Compute threads."),
    delimiter: Optional[str] = typer.Option(None, "--delimiter", help="The CSV delimiter "
                                            "\\[default: detected]."),
    encoding: Optional[str] = typer.Option(None, "--encoding", metavar="NAME",
                                           help=_ENCODING_HELP),
    threshold: Optional[float] = typer.Option(None, "--threshold", metavar="T",
                                              help="--output class: " + _THRESHOLD_HELP),
) -> None:
    """Write predictions of MODEL for DATA as CSV with a header.

    Rows are read, predicted and written a block at a time, so any amount of data can be
    scored through a pipe. The model's input columns are found by name (or position), missing
    numbers are filled with the training means and categories never seen in training encode
    as zeros (counted in one warning line).
    """
    prepare_numba(threads)
    from nncli.data import Encoded, iter_features
    from nncli.modelfile import load_model
    from nncli.predict import check_options, write_predictions
    from nncli.train import set_threads

    set_threads(threads)
    m = load_model(model)
    check_options(m, output.value, threshold)
    encoded = Encoded()
    blocks = iter_features(data, m.input_schema(), m.target_columns,
                           delimiter=delimiter_char(delimiter), encoded=encoded,
                           encoding=encoding_name(encoding))
    if out_file is None:
        try:
            write_predictions(sys.stdout, m, blocks, output.value, threshold)
            sys.stdout.flush()
        except BrokenPipeError:
            # The reader went away (| head): not an error; keep Python quiet at exit.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    else:
        write_output(out_file, lambda f: write_predictions(f, m, blocks, output.value,
                                                             threshold))
    for message in encoded.messages("<stdin>" if data == "-" else data):
        say(message)

