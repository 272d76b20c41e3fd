"""The command line: parse options, call the library, render. The only module that imports
typer and rich. Library modules are imported inside the commands so that ``nncli --help`` does
not load numba.

Exit codes: 0 ok, 1 a check failed (gradcheck) or training diverged, 2 bad usage or input,
130 interrupted (SIGINT), 143 terminated (SIGTERM).
Data (predictions, --json) goes to stdout; progress, tables and messages to stderr.
"""

from __future__ import annotations

import io
import json
import os
import shlex
import sys
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Optional

import typer
from rich.console import Console
from rich.table import Table

try:  # newer typer vendors click; older ones use the click package
    from typer._click.exceptions import ClickException
    from typer._click.exceptions import UsageError as ClickUsageError
except ImportError:  # pragma: no cover
    from click.exceptions import ClickException
    from click.exceptions import UsageError as ClickUsageError

from nncli import __version__
from nncli.errors import (EXIT_CHECK_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_TERMINATED,
                          EXIT_USAGE, Interrupted, NncliError, UsageError)

if TYPE_CHECKING:
    from nncli.train import TrainConfig

app = typer.Typer(
    name="nncli",
    help="Train small dense and 1-D convolutional neural networks on the CPU from a one-line architecture string.",
    epilog="Example: nncli train datasets/digits.csv --arch 25relu-15relu-10linear --loss "
           "sparse_cce --logits --epochs 40 --validation-split 0.2",
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
err = Console(stderr=True, highlight=False)


class Output(str, Enum):
    proba = "proba"
    klass = "class"
    logits = "logits"


class Optim(str, Enum):
    adam = "adam"
    sgd = "sgd"


class Monitor(str, Enum):
    val_loss = "val_loss"
    loss = "loss"
    val_accuracy = "val_accuracy"
    accuracy = "accuracy"


class Missing(str, Enum):
    mean = "mean"
    error = "error"
    drop = "drop"


class Shell(str, Enum):
    bash = "bash"
    zsh = "zsh"
    fish = "fish"


def _version(value: bool) -> None:
    if value:
        typer.echo(f"nncli {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                 help="Print the version and exit."),
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks of errors."),
) -> None:
    """Train small dense and 1-D convolutional neural networks on the CPU from a one-line architecture string."""


# --------------------------------------------------------------------------- train

@app.command(epilog="Example: nncli train datasets/digits.csv --arch 25relu-15relu-10linear "
                    "--loss sparse_cce --logits --epochs 40 --validation-split 0.2 "
                    "-o digits.safetensors")
def train(
    data: str = typer.Argument(..., help="CSV, NPZ (X, y) or '-' for CSV on stdin."),
    arch: str = typer.Option(..., "--arch", help="Layers, e.g. 25relu-15relu-10linear "
                             "(activations: relu, sigmoid, tanh, linear, softmax), or 1-D "
                             "conv/local layers: 8conv5s2relu, 1local20s10relu."),
    loss: str = typer.Option(..., "--loss", help="mse, bce, cce or sparse_cce."),
    logits: bool = typer.Option(False, "--logits", help="The last layer is linear and the loss "
                                "applies sigmoid/softmax itself (numerically stable)."),
    channels: int = typer.Option(1, "--channels", help="Read each row's features as a signal "
                                 "of length x CHANNELS values, channels last (for conv and "
                                 "local layers)."),
    optimizer: Optim = typer.Option(Optim.adam, "--optimizer", help="adam or sgd."),
    lr: Optional[float] = typer.Option(None, "--lr", help="Learning rate \\[default: 0.001 "
                                       "for adam, 0.01 for sgd]."),
    momentum: float = typer.Option(0.0, "--momentum", help="SGD momentum."),
    epochs: int = typer.Option(20, "--epochs", help="Passes over the training rows (0 writes "
                               "the freshly initialised model)."),
    batch_size: int = typer.Option(32, "--batch-size", help="Rows per step; >= rows is "
                                   "full-batch gradient descent."),
    validation_split: float = typer.Option(0.0, "--validation-split", help="Hold out the LAST "
                                           "fraction of rows (before shuffling), as Keras."),
    validation_data: Optional[str] = typer.Option(None, "--validation-data",
                                                  help="Validate on this file instead."),
    target: Optional[list[str]] = typer.Option(None, "--target", help="Target column by name "
                                               "or 0-based index; repeat for several "
                                               "\\[default: the last column]."),
    seed: int = typer.Option(0, "--seed", help="Seed of the initial weights and shuffling."),
    threads: Optional[int] = typer.Option(None, "--threads", help="Compute threads "
                                          "\\[default: all cores]; results do not depend on it."),
    no_normalize: bool = typer.Option(False, "--no-normalize", help="Do not standardise "
                                      "features."),
    init_from: Optional[Path] = typer.Option(None, "--init-from", help="Start from this "
                                             "model's weights (same architecture)."),
    output: Path = typer.Option(Path("model.safetensors"), "-o", "--output",
                                help="Where to write the model."),
    resume: Optional[Path] = typer.Option(None, "--resume", help="Continue the run saved in "
                                          "this checkpoint (or interrupted model) with its "
                                          "optimizer and shuffling state; --epochs counts all "
                                          "epochs, those done included."),
    checkpoint: Optional[Path] = typer.Option(None, "--checkpoint", help="Save the run here "
                                              "every --checkpoint-every epochs, and keep it "
                                              "\\[default: OUTPUT.ckpt, at most every 10 s, "
                                              "removed once the model is written]."),
    checkpoint_every: int = typer.Option(1, "--checkpoint-every", help="Epochs between "
                                         "checkpoints; 0 writes none."),
    early_stopping: Optional[int] = typer.Option(None, "--early-stopping", metavar="PATIENCE",
                                                 help="Stop after PATIENCE epochs without "
                                                 "improvement of --monitor, and keep the best "
                                                 "epoch's weights."),
    min_delta: float = typer.Option(0.0, "--min-delta", help="Smallest change of --monitor "
                                    "that counts as an improvement."),
    monitor: Optional[Monitor] = typer.Option(None, "--monitor", help="What --early-stopping "
                                              "watches \\[default: val_loss with validation "
                                              "data, else loss]."),
    history: Optional[Path] = typer.Option(None, "--history", help="Write one CSV row of "
                                           "metrics per epoch here, flushed every epoch."),
    missing: Optional[Missing] = typer.Option(None, "--missing", help="Missing feature cells "
                                              "(empty, NA, NaN, N/A, ?, null): mean fills a "
                                              "number with the column's training mean (a "
                                              "category column gets a 'missing' category); "
                                              "error stops at the first; drop leaves the row "
                                              "out \\[default: mean]."),
    drop_invalid_rows: bool = typer.Option(False, "--drop-invalid-rows", help="Same as "
                                           "--missing drop (rows with missing, NaN or infinite "
                                           "features are left out, and counted)."),
    categorical: Optional[list[str]] = typer.Option(None, "--categorical", help="One-hot "
                                                    "encode this column (name or 0-based "
                                                    "index) even though it holds numbers; "
                                                    "repeat for several. Text columns are "
                                                    "categorical anyway."),
    delimiter: Optional[str] = typer.Option(None, "--delimiter", help="The CSV delimiter: "
                                            "',', ';', tab, '|' or another character "
                                            "\\[default: detected from the first lines; tab "
                                            "for .tsv]."),
    no_normalize_target: bool = typer.Option(False, "--no-normalize-target", help="mse: "
                                             "learn the targets as they are instead of "
                                             "standardised (predictions are in the targets' "
                                             "units either way)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress on stderr."),
    json_out: bool = typer.Option(False, "--json", help="Print a JSON summary on stdout."),
) -> None:
    """Train a network on DATA and write it to a .safetensors model file.

    Ctrl-C (or SIGTERM) stops after the current chunk of mini-batches and writes the model with
    its optimizer state, ready for --resume; a second Ctrl-C stops at once.
    """
    config = train_config(**locals())
    _prepare_numba(threads)
    from nncli.train import (RunFiles, kernels_cached, load_inputs, prepare, set_threads,
                             warm_up)

    files = RunFiles.for_output(output, checkpoint, checkpoint_every, history)
    files.check()
    set_threads(threads)
    inputs = load_inputs(config, data, validation_data, target, init_from, resume)
    for message in inputs.messages():
        _say(message)
    run = prepare(config, inputs.data, inputs.val, inputs.init_from, inputs.resume,
                  own_data=True)
    if not quiet:
        _note_earlier_backup(files, resume)
    if run.epochs_left:
        if not quiet and not _show_bar(quiet) and not kernels_cached():
            print("nncli: compiling kernels (first run after install, about 20 s; later runs "
                  "load them from the cache)", file=sys.stderr, flush=True)
        with err.status("preparing kernels (the first run compiles them, ~20 s)",
                        spinner="dots") if _show_bar(quiet) else _nothing():
            warm_up(run)
    try:
        _run_epochs(run, files, quiet)
    except Interrupted as e:
        e.args = (f"{e}; resume with: {_resume_command(files.model)}",)
        raise
    if not quiet:
        _say_early_stopping(run)
        # plain print: no Rich markup or wrapping, so the file name stays as it is
        print(f"wrote {output} ({run.model.arch}, {len(run.X)} training rows)", file=sys.stderr)
    if json_out:
        last = run.history[-1].as_dict() if run.history else {}
        doc = {"model": str(output), "options": {**vars(config), "data": data,
                                                  "validation_data": validation_data,
                                                  "target": target, "threads": threads,
                                                  "init_from": str(init_from) if init_from
                                                  else None,
                                                  "resume": str(resume) if resume else None,
                                                  "checkpoint": str(files.checkpoint)
                                                  if files.checkpoint else None,
                                                  "checkpoint_every": checkpoint_every,
                                                  "history": str(history) if history else None},
               "optimizer": run.model.info["optimizer"],
               "rows": {"train": len(run.X), "validation": 0 if run.X_val is None
                        else len(run.X_val), "dropped": len(inputs.data.dropped)},
               "columns": [c.as_dict() for c in run.model.input_schema().columns],
               "missing": inputs.data.encoded.as_dict(),
               "loss_units": _loss_units(run.model) or "targets",
               "target_normalization": None if run.model.target_mean is None else {
                   "mean": run.model.target_mean.tolist(), "std": run.model.target_std.tolist()},
               "early_stopping": run.model.info.get("early_stopping"),
               "final": last, "history": [r.as_dict() for r in run.history]}
        typer.echo(json.dumps(doc, indent=2))


def train_config(arch: str, loss: str, logits: bool = False, channels: int = 1,
                 optimizer: Optim | str = Optim.adam, lr: Optional[float] = None,
                 momentum: float = 0.0, epochs: int = 20, batch_size: int = 32,
                 validation_split: float = 0.0, seed: int = 0, no_normalize: bool = False,
                 early_stopping: Optional[int] = None, min_delta: float = 0.0,
                 monitor: Optional[Monitor | str] = None, missing: Optional[Missing | str] = None,
                 drop_invalid_rows: bool = False, categorical: Optional[list[str]] = None,
                 delimiter: Optional[str] = None, no_normalize_target: bool = False,
                 **files) -> "TrainConfig":
    """The TrainConfig of ``nncli train``'s options (as the command receives them; the options
    that name files and threads are not part of it): the one place that turns the command
    line's spelling into the library's (the train command and each trial of a sweep use it)."""
    from nncli.train import TrainConfig

    missing = _value(missing)
    if drop_invalid_rows and missing not in (None, "drop"):
        raise UsageError(f"--drop-invalid-rows means --missing drop; it contradicts --missing "
                         f"{missing}")
    return TrainConfig(arch=arch, loss=loss, logits=logits, optimizer=_value(optimizer), lr=lr,
                       momentum=momentum, epochs=epochs, batch_size=batch_size,
                       validation_split=validation_split, seed=seed, normalize=not no_normalize,
                       early_stopping=early_stopping, min_delta=min_delta,
                       monitor=_value(monitor), channels=channels,
                       normalize_target=not no_normalize_target,
                       missing="drop" if drop_invalid_rows else (missing or "mean"),
                       categorical=list(categorical or []), delimiter=_delimiter(delimiter))


def _value(option):
    """An enum option's value (typer hands enums, a sweep's grid hands strings)."""
    return option.value if isinstance(option, Enum) else option


def _run_epochs(run, files, quiet: bool) -> None:
    from nncli.train import train_and_save

    epochs = run.config.epochs
    units = _loss_units(run.model)
    if quiet:
        train_and_save(run, files)
    elif _show_bar(quiet):
        from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                                   TimeElapsedColumn, TimeRemainingColumn)

        columns = (TextColumn("epoch {task.fields[epoch]}/" + str(epochs)), BarColumn(),
                   MofNCompleteColumn(), TextColumn("loss {task.fields[loss]:.4f}"),
                   TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn())
        rows = len(run.X)
        done = run.state.epoch * rows + run.state.rows_done if run.state else 0
        with Progress(*columns, console=err, transient=False) as bar:
            task = bar.add_task("train", total=epochs * rows, completed=done,
                                epoch=done // rows + 1, loss=float("nan"))

            def progress(epoch: int, done: int, total: int, loss: float) -> None:
                bar.update(task, completed=(epoch - 1) * rows + done, epoch=epoch, loss=loss)

            train_and_save(run, files, progress,
                           lambda report: bar.console.print(_epoch_line(report, epochs, units)))
    else:
        train_and_save(run, files, on_epoch=lambda report: print(
            _epoch_line(report, epochs, units), file=sys.stderr, flush=True))


def _loss_units(model) -> str:
    """'standardized targets' when the losses are not in the targets' own units, else ''."""
    return "standardized targets" if model.target_mean is not None else ""


def _delimiter(text: Optional[str]) -> Optional[str]:
    """--delimiter as a character: 'tab' (or a typed \\t) means a tab."""
    if text is None:
        return None
    text = {"tab": "\t", "\\t": "\t", "comma": ",", "semicolon": ";", "pipe": "|"}.get(
        text.lower(), text)
    if len(text) != 1 or text in "\"\n\r":
        raise UsageError(f"--delimiter must be one character (or 'tab'), received {text!r}")
    return text


def _say(message: str) -> None:
    """A message for the user on stderr (not progress: shown even with --quiet)."""
    if message:
        print(f"nncli: {message}", file=sys.stderr, flush=True)


def _note_earlier_backup(files, resume: Optional[Path]) -> None:
    ckpt = files.checkpoint
    if ckpt is None or files.keep_checkpoint or not ckpt.exists():
        return
    if resume is not None and ckpt.resolve() == Path(resume).resolve():
        return
    _say(f"note: {ckpt} holds the state of an earlier run that did not finish; this run "
         f"replaces it (to continue that one instead: --resume {ckpt})")


def _say_early_stopping(run) -> None:
    es = run.early
    if es is None or es.best is None:
        return
    if es.stopped_epoch:
        err.print(f"early stopping after epoch {es.stopped_epoch}: {es.monitor} did not improve "
                  f"for {es.wait} epoch{'s' if es.wait > 1 else ''}")
    err.print(f"restored the weights of epoch {es.best_epoch}, the best ({es.monitor} "
              f"{es.best:.4f})")


def _resume_command(model: Path) -> str:
    """The command line of this run, with --resume MODEL (and without --init-from)."""
    args, skip = [], False
    for a in _ARGV:
        if skip:
            skip = False
        elif a in ("--resume", "--init-from"):
            skip = True
        elif not a.startswith(("--resume=", "--init-from=")):
            args.append(a)
    return shlex.join(["nncli", *args, "--resume", str(model)])


def _epoch_line(report, epochs: int, units: str = "") -> str:
    """One epoch's metrics; ``units`` tags the losses when they are not in the targets' units."""
    tag = f" ({units})" if units else ""
    parts = [f"epoch {report.epoch}/{epochs}", f"loss {report.loss:.4f}{tag}"]
    for key in ("accuracy", "val_loss", "val_accuracy", "val_mse", "val_mae", "val_r2"):
        value = getattr(report, key)
        if value is not None:
            parts.append(f"{key} {value:.4f}")
    parts.append(f"{report.seconds:.3f}s")
    return "  ".join(parts)


# --------------------------------------------------------------------------- eval

@app.command("eval", epilog="Example: nncli eval digits.safetensors datasets/digits.csv --json")
def eval_(
    model: Path = typer.Argument(..., help="A model file written by nncli train."),
    data: str = typer.Argument(..., help="CSV, NPZ or '-' for CSV on stdin."),
    target: Optional[list[str]] = typer.Option(None, "--target", help="Target column(s) "
                                               "\\[default: those the model was trained on]."),
    json_out: bool = typer.Option(False, "--json", help="Print the metrics as JSON on stdout."),
    threads: Optional[int] = typer.Option(None, "--threads", help="Compute threads."),
    delimiter: Optional[str] = typer.Option(None, "--delimiter", help="The CSV delimiter "
                                            "\\[default: detected]."),
) -> None:
    """Report loss and metrics of MODEL on labelled DATA.

    The model's input columns are found by name (or position), missing numbers are filled with
    the training means and categories never seen in training encode as zeros (with a warning).
    """
    _prepare_numba(threads)
    from nncli.data import ReadOptions, load_training_data
    from nncli.evaluate import evaluate
    from nncli.modelfile import load_model
    from nncli.train import set_threads

    set_threads(threads)
    m = load_model(model)
    ds = load_training_data(data, target, classes=m.classes,
                            options=ReadOptions(_delimiter(delimiter)),
                            schema=m.input_schema(), model_targets=_model_targets(m))
    for message in ds.messages():
        _say(message)
    report = evaluate(m, ds.X, ds.Y, ds.source, ds.line_numbers)
    report["missing"] = ds.encoded.as_dict()
    if json_out:
        typer.echo(json.dumps(report, indent=2))
    else:
        _render_eval(report)


def _render_eval(report: dict) -> None:
    table = Table(title="metrics", show_header=False)
    for key in ("rows", "loss", "accuracy", "mse", "mae", "r2"):
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

@app.command(epilog="Example: cat new.csv | nncli predict digits.safetensors - > probs.csv")
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
) -> None:
    """Write predictions of MODEL for DATA as CSV with a header.

    Rows are read, predicted and written a block at a time, so any amount of data can be
    scored through a pipe. The model's input columns are found by name (or position), missing
    numbers are filled with the training means and categories never seen in training encode
    as zeros (counted in one warning line).
    """
    _prepare_numba(threads)
    from nncli.data import Encoded, iter_features
    from nncli.modelfile import load_model
    from nncli.train import set_threads

    set_threads(threads)
    m = load_model(model)
    encoded = Encoded()
    blocks = iter_features(data, m.input_schema(), m.target_columns,
                           delimiter=_delimiter(delimiter), encoded=encoded)
    if out_file is None:
        try:
            _write_predictions(sys.stdout, m, blocks, output.value)
            sys.stdout.flush()
        except BrokenPipeError:
            # The reader went away (| head): not an error; keep Python quiet at exit.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    else:
        _write_atomically(out_file, lambda f: _write_predictions(f, m, blocks, output.value))
    for message in encoded.messages("<stdin>" if data == "-" else data):
        _say(message)


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


# --------------------------------------------------------------------------- gradcheck

@app.command(epilog="Examples: nncli gradcheck --arch 25relu-15relu-10linear --loss sparse_cce "
                    "--logits;  nncli gradcheck digits.safetensors datasets/digits.csv")
def gradcheck(
    model: Optional[Path] = typer.Argument(None, help="Check this model's gradients on DATA "
                                           "(instead of --arch)."),
    data: Optional[str] = typer.Argument(None, help="Data for MODEL."),
    arch: Optional[str] = typer.Option(None, "--arch", help="Architecture to build with random "
                                       "weights and data."),
    loss: Optional[str] = typer.Option(None, "--loss", help="mse, bce, cce or sparse_cce."),
    logits: bool = typer.Option(False, "--logits", help="The loss takes logits."),
    inputs: int = typer.Option(5, "--inputs", help="Input features of the random data."),
    channels: int = typer.Option(1, "--channels", help="Read the inputs as a signal of "
                                 "inputs/CHANNELS positions x CHANNELS (conv and local layers)."),
    batch: int = typer.Option(4, "--batch", help="Rows of data to check on."),
    seed: int = typer.Option(0, "--seed", help="Seed of the random weights and data."),
    tol: float = typer.Option(1e-5, "--tol", help="Largest error allowed: |a-n| / max(|a|+|n|, "
                              "1e-3) between analytic and central-difference gradients."),
    json_out: bool = typer.Option(False, "--json", help="Print the errors as JSON on stdout."),
) -> None:
    """Compare every analytic gradient with central differences in float64; exit 1 on failure."""
    _prepare_numba()
    from nncli import gradcheck as gc

    if batch < 1 or inputs < 1:
        raise UsageError("--batch and --inputs must be at least 1")
    if model is not None:
        if arch or loss or data is None:
            raise UsageError("give either MODEL DATA, or --arch and --loss")
        if channels != 1:
            raise UsageError("--channels applies to --arch; a model file knows its channels")
        from nncli.data import load_training_data
        from nncli.losses import prepare_targets
        from nncli.modelfile import load_model

        m = load_model(model)
        ds = load_training_data(data, classes=m.classes, schema=m.input_schema(),
                                model_targets=_model_targets(m))
        X, Y = m.normalize(ds.X[:batch].copy()), ds.Y[:batch]
        Y = m.scale_targets(prepare_targets(m.loss_spec, Y, m.n_outputs, ds.source))
        results, what = gc.gradcheck_model(m, X, Y), f"{model} on {len(X)} rows of {data}"
    else:
        if not arch or not loss:
            raise UsageError("gradcheck needs --arch and --loss (or MODEL DATA)")
        from nncli.arch import parse_arch

        results = gc.gradcheck_arch(parse_arch(arch), loss, logits, inputs, batch, seed,
                                    channels)
        what = (f"{arch} --loss {loss}{' --logits' if logits else ''} on {batch} random rows"
                f" of {inputs} inputs" + (f" ({channels} channels)" if channels > 1 else ""))
    ok = all(r.ok(tol) for r in results)
    if json_out:
        typer.echo(json.dumps({"ok": ok, "tol": tol, "tensors": [
            {"name": r.name, "size": r.size, "max_error": r.max_error} for r in results]},
            indent=2))
    table = Table(title=f"gradcheck: {what}")
    for col in ("tensor", "size", "max error", ""):
        table.add_column(col, justify="left" if col == "tensor" else "right")
    for r in results:
        table.add_row(r.name, str(r.size), f"{r.max_error:.2e}",
                      "ok" if r.ok(tol) else "[red]FAIL[/red]")
    err.print(table)
    err.print(f"gradcheck {'passed' if ok else 'FAILED'} (tolerance {tol:g})")
    if not ok:
        raise typer.Exit(EXIT_CHECK_FAILED)


# --------------------------------------------------------------------------- info

@app.command(epilog="Example: nncli info digits.safetensors --json | jq .arch")
def info(
    model: Path = typer.Argument(..., help="A model file written by nncli train."),
    json_out: bool = typer.Option(False, "--json", help="Print the summary as JSON on stdout."),
) -> None:
    """Show a model's architecture, layers (kind, output shape, parameters), loss, classes and
    training summary."""
    _prepare_numba()
    from nncli.modelfile import read_model_file

    saved = read_model_file(model)
    m = saved.model
    history = m.info.get("history") or []
    state = saved.state or {}
    summary = {
        "arch": m.arch, "inputs": m.n_inputs, "channels": m.channels, "outputs": m.n_outputs,
        "parameters": int(m.params.size),
        "layers": _layer_summaries(m),
        "loss": m.loss, "logits": m.logits, "classes": m.classes,
        "targets": m.target_names, "optimizer": m.info.get("optimizer"),
        "normalize": m.info.get("normalize"), "seed": m.info.get("seed"),
        "epochs": len(history), "final": history[-1] if history else None,
        "early_stopping": m.info.get("early_stopping"),
        "checkpoint": {"epoch": state.get("epoch"), "rows_done": state.get("rows_done"),
                       "rows": state.get("rows")} if saved.is_checkpoint else None,
        "nncli_version": m.info.get("nncli_version"),
        "columns": [c.as_dict() for c in m.input_schema().columns],
        "ignored_columns": [c.name for c in m.input_schema().ignored],
        "target_normalization": None if m.target_mean is None else {
            "mean": m.target_mean.tolist(), "std": m.target_std.tolist()},
        "sweep": m.info.get("sweep"),
    }
    if json_out:
        typer.echo(json.dumps(summary, indent=2))
        return
    table = Table(title=str(model), show_header=False)
    for key in ("arch", "inputs", "channels", "outputs", "parameters", "loss", "logits",
                "classes", "targets", "optimizer", "normalize", "target_normalization", "seed",
                "epochs", "final",
                "early_stopping", "checkpoint"):
        value = summary[key]
        table.add_row(key, json.dumps(value) if isinstance(value, (dict, list)) else str(value))
    err.print(table)
    layers = Table(title="layers")
    for col in ("", "layer", "kind", "output shape", "parameters"):
        layers.add_column(col, justify="left" if col in ("layer", "kind") else "right")
    for i, (layer, entry) in enumerate(zip(m.layers, summary["layers"]), start=1):
        layers.add_row(str(i), str(layer), entry["kind"],
                       " x ".join(str(d) for d in entry["output_shape"]),
                       str(entry["parameters"]))
    err.print(layers)
    columns = Table(title="input columns")
    for col in ("column", "kind", "features", "missing values become"):
        columns.add_column(col, justify="right" if col == "features" else "left")
    for c in m.input_schema().columns:
        categories = ", ".join(c.categories[:8]) + (", ..." if len(c.categories) > 8 else "")
        kind = c.kind if c.kind == "numeric" else f"categorical ({categories})"
        gap = ((f"{c.fill:.6g} (training mean)" if c.fill is not None else "an error")
               if c.kind == "numeric" else
               ("a category of their own" if c.missing_category else "all zeros (unseen)"))
        columns.add_row(c.name, kind, str(c.width), gap)
    err.print(columns)
    if summary["ignored_columns"]:
        err.print(f"left out (identifiers): {', '.join(summary['ignored_columns'])}")


def _layer_summaries(m) -> list[dict]:
    """Per layer: kind, units, activation, window (conv, local), the output shape (units, or
    positions x filters) and the kernel and bias shapes and parameter count."""
    out = []
    for i, (layer, shape) in enumerate(zip(m.layers, m.shapes())):
        kernel, bias = m.kernel(i), m.bias(i)
        entry = {"kind": layer.kind, "units": layer.units, "activation": layer.activation}
        if layer.kind == "dense":
            entry["output_shape"] = [layer.units]
        else:
            entry.update(kernel=layer.kernel, stride=layer.effective_stride,
                         output_shape=[shape.positions, shape.filters])
        entry.update(kernel_shape=list(kernel.shape), bias_shape=list(bias.shape),
                     parameters=int(kernel.size + bias.size))
        out.append(entry)
    return out


# --------------------------------------------------------------------------- plot

@app.command(epilog="Example: nncli plot adam.safetensors sgd.safetensors --label adam "
                    "--label sgd -o curves.png")
def plot(
    models: list[Path] = typer.Argument(..., help="Model files (or checkpoints) written by "
                                        "nncli train."),
    output: Path = typer.Option(Path("curves.png"), "-o", "--output", help="Where to write "
                                "the figure; .png, .svg or .pdf by the suffix."),
    label: Optional[list[str]] = typer.Option(None, "--label", help="Legend name of each "
                                              "MODEL, in order \\[default: the file names]."),
    metric: Optional[list[str]] = typer.Option(None, "--metric", help="A panel to draw "
                                               "(loss, accuracy, ...); repeat for several "
                                               "\\[default: every metric in the histories]."),
    json_out: bool = typer.Option(False, "--json", help="Print what was drawn as JSON on "
                                  "stdout."),
    top: int = typer.Option(5, "--top", help="For a sweep's folder given as MODEL: how many "
                            "of its best trials to draw."),
) -> None:
    """Draw the training curves of MODELS in one figure: loss and each metric against the
    epoch, validation dashed beside training, one colour per model. A sweep's --out-dir
    stands for its --top best trials. Needs matplotlib (pip install 'nncli\\[plot]')."""
    _prepare_numba()
    from nncli.plot import check_output, plot_histories, read_runs

    check_output(output)  # matplotlib, suffix, folder: fail before reading the models
    if top < 1:
        raise UsageError(f"--top must be at least 1, received {top}")
    summary = plot_histories(read_runs(models, label, top), output, metric)
    runs, panels = len(summary.labels), len(summary.panels)
    print(f"wrote {output} ({runs} model{'s' if runs > 1 else ''}, "
          f"{panels} panel{'s' if panels > 1 else ''})", file=sys.stderr)
    if json_out:
        typer.echo(json.dumps(summary.as_dict(), indent=2))


# --------------------------------------------------------------------------- sweep

# train's options that a sweep sets itself or has no use for, and why
_NOT_IN_SWEEP = {"output": "-o names the best model", "resume": "--resume DIR continues a sweep",
                 "checkpoint": "each trial checkpoints through Ray Tune",
                 "checkpoint_every": "each trial checkpoints every epoch",
                 "history": "each trial's history is in its model file",
                 "threads": "use --threads-per-trial", "quiet": None, "json_out": None}


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
             epilog="Example: nncli sweep datasets/digits.csv --loss sparse_cce --logits "
                    "--arch 25relu-10linear,64relu-32relu-10linear --lr 1e-3,1e-2 "
                    "--epochs 20 --validation-split 0.2 -o best.safetensors")
def sweep(
    ctx: typer.Context,
    data: Optional[str] = typer.Argument(None, help="CSV or NPZ, as for nncli train (not with "
                                         "--resume)."),
    samples: int = typer.Option(1, "--samples", help="Trials per grid combination; each draws "
                                "its own values of the log:LO:HI and uniform:LO:HI options."),
    metric: str = typer.Option("val_loss", "--metric", help="What ranks the trials: val_loss, "
                               "val_accuracy, loss, accuracy, val_mse, val_mae, val_r2."),
    scheduler: str = typer.Option("fifo", "--scheduler", help="fifo: every trial runs to the "
                                  "end; asha: Ray Tune's ASHA stops poor trials early."),
    grace_epochs: int = typer.Option(1, "--grace-epochs", help="ASHA: epochs every trial runs "
                                     "before it can be stopped."),
    max_failures: int = typer.Option(2, "--max-failures", help="Times a trial whose worker or "
                                     "node died is restarted from its last epoch."),
    threads_per_trial: int = typer.Option(1, "--threads-per-trial", help="CPUs each trial asks "
                                          "Ray for (and compute threads it uses)."),
    address: Optional[str] = typer.Option(None, "--address", help="HOST:PORT of an existing Ray "
                                          "cluster \\[default: start one on this machine]."),
    storage: Optional[str] = typer.Option(None, "--storage", help="Where Ray Tune keeps "
                                          "checkpoints: on a cluster, a folder every node "
                                          "mounts or an s3:// URI \\[default: --out-dir]."),
    output: Path = typer.Option(Path("best.safetensors"), "-o", "--output", help="Where to "
                                "write the best trial's model."),
    out_dir: Optional[Path] = typer.Option(None, "--out-dir", help="Folder for the "
                                           "leaderboard, every trial's model and Ray Tune's "
                                           "state \\[default: sweeps/DATE-TIME]."),
    resume: Optional[Path] = typer.Option(None, "--resume", help="Continue the interrupted "
                                          "sweep in this --out-dir."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No live table on stderr."),
    json_out: bool = typer.Option(False, "--json", help="Print every trial, the best one and "
                                  "the best model's path as JSON on stdout."),
) -> None:
    """Train many networks at once on Ray Tune and keep the best: every option of nncli train
    is accepted, a comma list (--lr 1e-3,1e-2) makes a grid, log:LO:HI and uniform:LO:HI are
    ranges sampled --samples times. Every combination is checked before Ray starts."""
    from nncli.sweep.driver import Request, run_sweep
    from nncli.sweep.space import parse_space

    if resume is not None:
        if data is not None or ctx.args:
            raise UsageError("--resume DIR takes the sweep's options from DIR; give no DATA or "
                             "train options with it")
        request = Request.load(str(resume))
    else:
        if data is None:
            raise UsageError("give DATA (or --resume DIR)")
        when = __import__("time").strftime("%Y%m%d-%H%M%S")
        folder = out_dir if out_dir is not None else Path("sweeps") / when
        # absolute paths: --resume DIR may run from another folder
        request = Request(data if data == "-" else str(Path(data).resolve()),
                          _sweep_options(ctx.args), samples, metric, scheduler, grace_epochs,
                          max_failures, threads_per_trial, address, storage,
                          str(output.resolve()), str(folder.resolve()))
    space = parse_space(request.options, _convert_train_option, _train_option_kind,
                        request.samples)
    _prepare_numba()
    table = _LiveTrials(space.varying, request.metric, quiet)
    with table:
        report = run_sweep(request, space, train_config, table.update, _say,
                           restore=resume is not None)
    if not quiet:
        table.leaderboard(report)
    if json_out:
        typer.echo(json.dumps(report.as_dict(), indent=2))
    if report.interrupted:
        _say(f"sweep interrupted; the leaderboard so far is in {report.out_dir}; continue with: "
             f"nncli sweep --resume {report.out_dir}")
        raise typer.Exit(EXIT_TERMINATED if report.signal == 15 else EXIT_INTERRUPTED)


def _train_params() -> dict[str, object]:
    """train's click options by every spelling (--lr, -o, ...)."""
    import typer.main

    command = typer.main.get_command(app).commands["train"]
    return {flag: p for p in command.params if getattr(p, "opts", None) and
            p.param_type_name == "option" for flag in (*p.opts, *p.secondary_opts)}


def _sweep_options(args: list[str]) -> dict:
    """train's options among a sweep's arguments, as typed: name -> text (a comma list or a
    range stays text), a repeatable option's list of texts, or True for a flag."""
    params = _train_params()
    out: dict = {}
    i = 0
    while i < len(args):
        flag, _, inline = args[i].partition("=")
        param = params.get(flag)
        if param is None:
            raise UsageError(f"nncli sweep has no option {flag!r} (the sweep's own are in "
                             f"'nncli sweep --help', the trials' in 'nncli train --help')")
        if param.name in _NOT_IN_SWEEP:
            why = _NOT_IN_SWEEP[param.name]
            raise UsageError(f"{flag} is not a sweep option" + (f": {why}" if why else ""))
        if param.is_flag:
            out[param.name] = True
            i += 1
            continue
        if not inline:
            if i + 1 >= len(args):
                raise UsageError(f"{flag} needs a value")
            inline, i = args[i + 1], i + 1
        i += 1
        if param.multiple:
            out.setdefault(param.name, []).append(inline)
        elif param.name in out:
            raise UsageError(f"{flag} is given twice; list the values once: {flag} a,b")
        else:
            out[param.name] = inline
    for name in ("arch", "loss"):
        if name not in out:
            raise UsageError(f"a sweep needs --{name}, as nncli train does")
    return out


def _train_param(name: str):
    return next(p for p in _train_params().values() if p.name == name)


def _train_option_type(name: str) -> type:
    """The Python type train declares for option ``name`` (Optional and list unwrapped)."""
    import typing

    annotation = _train_param(name).type_descriptor.annotation
    while typing.get_origin(annotation) is not None:
        annotation = next(a for a in typing.get_args(annotation) if a is not type(None))
    return annotation


def _convert_train_option(name: str, text: str):
    """One value of train's option ``name`` checked and converted as train would (an enum
    option's value stays text, as train_config takes it)."""
    kind = _train_option_type(name)
    try:
        if isinstance(kind, type) and issubclass(kind, Enum):
            return kind(text).value
        return kind(text) if kind in (int, float) else text
    except ValueError:
        choices = (f"; expected one of {', '.join(m.value for m in kind)}"
                   if isinstance(kind, type) and issubclass(kind, Enum) else "")
        raise UsageError(f"--{name.replace('_', '-')} {text}: not a valid "
                         f"{getattr(kind, '__name__', 'value')}{choices}") from None


def _train_option_kind(name: str) -> Optional[str]:
    return {int: "int", float: "float"}.get(_train_option_type(name))


class _LiveTrials:
    """The sweep's trials on stderr: a live Rich table on a terminal, a line per finished trial
    otherwise, nothing with --quiet."""

    def __init__(self, varying: list[str], metric: str, quiet: bool) -> None:
        self.varying, self.metric, self.quiet = varying, metric, quiet
        self.rows: dict = {}
        self.live = None

    def __enter__(self) -> "_LiveTrials":
        if not self.quiet and err.is_terminal:
            from rich.live import Live

            self.live = Live(self._table(), console=err, refresh_per_second=4, transient=True)
            self.live.__enter__()
        return self

    def __exit__(self, *exc) -> bool:
        if self.live is not None:
            self.live.__exit__(*exc)
        return False

    def update(self, row) -> None:
        before = self.rows.get(row.trial_id)
        self.rows[row.trial_id] = row
        if self.live is not None:
            self.live.update(self._table())
        elif not self.quiet and row.status not in ("running", "pending") and \
                (before is None or before.status != row.status):
            value = row.value(self.metric)
            shown = f"{self.metric} {value:.4f}" if value is not None else "no result"
            print(f"trial {row.trial_id} {row.status}: {_config_text(row.config)}  {shown}  "
                  f"epoch {row.epochs}", file=sys.stderr, flush=True)

    def _table(self, rows=None, title: str = "trials") -> Table:
        table = Table(title=title)
        for col in ("trial", *self.varying, "status", "epoch", self.metric, "node", "retries"):
            table.add_column(col, justify="left" if col in ("trial", "status", "node")
                             else "right")
        for row in rows if rows is not None else self.rows.values():
            value = row.value(self.metric)
            table.add_row(row.trial_id, *(str(row.config.get(v)) for v in self.varying),
                          row.status, str(row.epochs), "" if value is None else f"{value:.4f}",
                          (row.node or "")[:8], str(row.retries))
        return table

    def leaderboard(self, report) -> None:
        order = "lowest" if report.mode == "min" else "highest"
        err.print(self._table(report.rows, f"leaderboard (by {report.metric}, {order} first)"),
                  width=max(err.width, 140))
        if report.best_model:
            best = report.rows[0]
            print(f"wrote {report.best_model} (trial {best.trial_id}: "
                  f"{_config_text(best.config)}); every trial in {report.out_dir}",
                  file=sys.stderr)


def _config_text(config: dict) -> str:
    return " ".join(f"--{k.replace('_', '-')} {v}" for k, v in config.items())


# --------------------------------------------------------------------------- export

@app.command(epilog="Example: nncli export digits.safetensors -o digits.onnx")
def export(
    model: Path = typer.Argument(..., help="A model file written by nncli train."),
    output: Optional[Path] = typer.Option(None, "-o", "--output", help="Where to write the "
                                          "ONNX file \\[default: MODEL with the suffix .onnx]."),
    opset: Optional[int] = typer.Option(None, "--opset", help="ONNX opset to write, 13 up to "
                                        "the newest the installed onnx knows \\[default: 17]."),
) -> None:
    """Write MODEL as an ONNX graph: raw features in ('features'), what predict prints out
    ('probabilities' or 'values'; 'logits' too for --logits classifiers). Needs nncli\\[onnx]."""
    _prepare_numba()
    from nncli.export import write_onnx  # ExportError naming the extra when onnx is missing
    from nncli.modelfile import load_model

    m = load_model(model)
    target = output if output is not None else model.with_suffix(".onnx")
    if target.exists() and target.resolve() == model.resolve():
        raise UsageError(f"{target}: refusing to write the ONNX graph over the model file; "
                         f"choose another -o")
    size = write_onnx(m, target, opset)
    print(f"wrote {target} ({m.arch}, {size} bytes)", file=sys.stderr)


# --------------------------------------------------------------------------- completions

@app.command(hidden=True)
def completions(shell: Shell) -> None:
    """Print the completion script for SHELL (the files in completions/ are made by this)."""
    typer.echo(completion_script(shell.value))


def completion_script(shell: str) -> str:
    """The shell completion script of nncli for bash, zsh or fish."""
    from typer._completion_shared import get_completion_script

    return get_completion_script(prog_name="nncli", complete_var="_NNCLI_COMPLETE", shell=shell)


# --------------------------------------------------------------------------- helpers

def _prepare_numba(threads: Optional[int] = None) -> None:
    """Get Numba ready before nncli's kernels are first imported (see
    ``nncli.kernel_cache.prepare_numba``); its one note goes to stderr."""
    from nncli import kernel_cache

    kernel_cache.prepare_numba(threads, _say)


def _show_bar(quiet: bool) -> bool:
    return not quiet and err.is_terminal


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def _model_targets(m) -> tuple[list[str], list[int]] | None:
    """The model's target names and columns, to find its targets in a file."""
    if m.target_columns:
        return list(m.target_names or []), list(m.target_columns)
    return None


def _write_atomically(path: Path, write) -> None:
    from nncli.files import write_atomically

    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise UsageError(f"{path}: folder '{folder}' does not exist")
    write_atomically(path, write, text=True)


_ARGV: list[str] = []   # the arguments of the running command, for the resume hint


def main(argv: list[str] | None = None) -> int:
    """The ``nncli`` console script: run a command, map errors to one line and an exit code."""
    global _ARGV
    args = list(sys.argv[1:] if argv is None else argv) or ["--help"]
    _ARGV = list(args)
    if "_NNCLI_COMPLETE" in os.environ:
        # A shell is asking for completions: register typer's shell classes first.
        from typer.completion import completion_init

        completion_init()
    debug = "--debug" in args or os.environ.get("NNCLI_DEBUG") == "1"
    try:
        result = app(args=args, prog_name="nncli", standalone_mode=False)
    except NncliError as e:
        if debug:
            raise
        _fail(str(e))
        if getattr(e, "hard_exit", False):  # a library thread is stuck (see JoinTimeout)
            sys.stdout.flush()
            os._exit(e.exit_code)
        return e.exit_code
    except ClickException as e:
        if debug:
            raise
        ctx = getattr(e, "ctx", None)
        hint = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
        _fail(f"{e.format_message()}{hint}")
        return EXIT_USAGE if isinstance(e, ClickUsageError) else e.exit_code
    except KeyboardInterrupt as e:
        # Ctrl-C outside training, or a second Ctrl-C/SIGTERM during it (StopNow)
        result = getattr(e, "exit_code", EXIT_INTERRUPTED)
    except typer.Abort:
        result = EXIT_INTERRUPTED
    if result in (EXIT_INTERRUPTED, EXIT_TERMINATED):
        _fail("interrupted")
    return result if isinstance(result, int) else EXIT_OK


def _fail(message: str) -> None:
    print(f"nncli: error: {message}", file=sys.stderr, flush=True)
