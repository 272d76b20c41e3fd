"""``nncli train``: the options, ``train_config`` (the command line's spelling turned into the
library's ``TrainConfig``; each trial of a sweep calls it too, by reference), and the progress,
epoch lines and messages of a run."""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Optional

import typer

from nncli.cli.app import (_ARGV, Missing, Monitor, Optim, _delimiter, _nothing,
                           _prepare_numba, _say, _show_bar, _value, app, err)
from nncli.errors import Interrupted, UsageError

if TYPE_CHECKING:
    from nncli.train import TrainConfig


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
    _prepare_numba(threads)  # first: TrainConfig's package imports the kernels
    config = train_config(**locals())
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
