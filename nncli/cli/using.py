"""Using a trained model: ``nncli eval`` (metrics on labelled data, rendered as tables) and
``nncli predict`` (predictions written as CSV a block of rows at a time)."""

from __future__ import annotations

import io
import json
import os
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from nncli.cli.app import (Output, command, err, model_targets, prepare_numba, say,
                           write_output)
from nncli.metrics import eval_metrics
from nncli.options import delimiter_char, encoding_name

# eval's and predict's --encoding (train's is a row of nncli.options.OPTIONS)
_ENCODING_HELP = ("The CSV's text encoding (latin-1, cp1252, utf-16, ...) \\[default: UTF-8, or "
                  "UTF-16 after its byte order mark].")


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
) -> None:
    """Report loss and metrics of MODEL on labelled DATA.

    The model's input columns are found by name (or position), missing numbers are filled with
    the training means and categories never seen in training encode as zeros (with a warning).
    """
    prepare_numba(threads)
    from nncli.data import ReadOptions, load_training_data
    from nncli.evaluate import evaluate
    from nncli.modelfile import load_model
    from nncli.train import set_threads

    set_threads(threads)
    m = load_model(model)
    ds = load_training_data(data, target, classes=m.classes,
                            options=ReadOptions(delimiter_char(delimiter),
                                                encoding=encoding_name(encoding)),
                            schema=m.input_schema(), model_targets=model_targets(m))
    for message in ds.messages():
        say(message)
    report = evaluate(m, ds.X, ds.Y, ds.source, ds.line_numbers, own_data=True)
    report["missing"] = ds.encoded.as_dict()
    if json_out:
        typer.echo(json.dumps(report, indent=2))
    else:
        _render_eval(report)


def _render_eval(report: dict) -> None:
    table = Table(title="metrics", show_header=False)
    for key in ("rows", *eval_metrics("accuracy" in report), "penalty"):
        if key in report:
            value = report[key]
            table.add_row(key, f"{value:.6g}" if isinstance(value, float) else str(value))
    err.print(table)
    if "label_accuracy" in report:
        per = Table(title="accuracy per label")
        per.add_column("label")
        per.add_column("accuracy", justify="right")
        for name, acc in report["label_accuracy"].items():
            per.add_row(name, f"{acc:.4f}")
        err.print(per)
    if "confusion_matrix" in report:
        cm = Table(title="confusion matrix (rows: true, columns: predicted)")
        cm.add_column("")
        for name in report["labels"]:
            cm.add_column(name, justify="right")
        for name, row in zip(report["labels"], report["confusion_matrix"]):
            cm.add_row(name, *(str(v) for v in row))
        err.print(cm)


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
    from nncli.train import set_threads

    set_threads(threads)
    m = load_model(model)
    encoded = Encoded()
    blocks = iter_features(data, m.input_schema(), m.target_columns,
                           delimiter=delimiter_char(delimiter), encoded=encoded,
                           encoding=encoding_name(encoding))
    if out_file is None:
        try:
            _write_predictions(sys.stdout, m, blocks, output.value)
            sys.stdout.flush()
        except BrokenPipeError:
            # The reader went away (| head): not an error; keep Python quiet at exit.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    else:
        write_output(out_file, lambda f: _write_predictions(f, m, blocks, output.value))
    for message in encoded.messages("<stdin>" if data == "-" else data):
        say(message)


def _write_predictions(stream, m, blocks, output: str) -> None:
    """Predictions of each block of rows, as one CSV with one header."""
    from nncli.predict import predict as run_predict
    from nncli.predict import write_csv

    header = None
    for X in blocks:
        columns, values = run_predict(m, X, output)
        if header is None:
            head = io.StringIO()
            write_csv(head, columns, values[:0])
            header = head.getvalue()
            write_csv(stream, columns, values)
        else:
            text = io.StringIO()
            write_csv(text, columns, values)
            stream.write(text.getvalue()[len(header):])
