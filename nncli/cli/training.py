"""``nncli train``: its options come from the library's table (``nncli.options``); the
command reads the inputs, runs ``train.run`` with a ``FileSink`` (the run's files) beside its
display (progress on stderr), and prints the result."""

from __future__ import annotations

import json
import shlex
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

import typer

from nncli.cli.app import command, err, prepare_numba, say, show_bar, status, tell
from nncli.cli.options import with_options
from nncli.errors import Interrupted
from nncli.metrics import base
from nncli.options import OPTIONS, RUN_RECORDED, TrainConfig

if TYPE_CHECKING:
    from nncli.train import EpochReport, Training


@command(summary="Train a network on DATA and write it to a model file.",
         epilog="Example: nncli train datasets/digits.csv --arch 25relu-15relu-10linear "
                "--loss sparse_cce --logits --epochs 40 --validation-split 0.2 "
                "-o digits.safetensors")
@with_options(OPTIONS)
def train(ctx: typer.Context,
          data: str = typer.Argument(..., help="CSV, NPZ (X, y) or '-' for CSV on stdin."),
          **o) -> None:
    """Train a network on DATA and write it to a .safetensors model file.

    Ctrl-C (or SIGTERM) stops after the current chunk of mini-batches and writes the model with
    its optimizer state, ready for --resume; a second Ctrl-C stops at once.
    """
    prepare_numba(o["threads"])  # first: the train package imports the kernels
    from nncli.train import FileSink, RunFiles, Sinks, load_inputs, run, set_threads

    config = TrainConfig.from_options(**o)
    files = RunFiles.for_output(o["output"], o["checkpoint"], o["checkpoint_every"],
                                o["history"])
    files.check()
    set_threads(o["threads"])
    inputs = load_inputs(config, data, o["validation_data"], o["target"], o["init_from"],
                         o["resume"])
    for message in inputs.messages():
        say(message)
    try:
        sink = Sinks(_Display(files, o["quiet"], o["resume"]), FileSink(files))
        result = run(config, inputs, sink, own_data=True)
    except Interrupted as e:
        e.resume = _resume_command(ctx.obj.argv if ctx.obj else [], files.model)
        raise
    if not o["quiet"]:
        _say_early_stopping(result.run)
        tell(f"wrote {o['output']} ({result.model.arch}, {len(result.run.X)} training rows)")
    if o["json_out"]:
        recorded = {**{name: o[name] for name in RUN_RECORDED}, "data": data,
                    "checkpoint": files.checkpoint}
        doc = result.document(str(o["output"]), {
            name: str(value) if isinstance(value, Path) else value
            for name, value in recorded.items()})
        typer.echo(json.dumps(doc, indent=2))


class _Display:
    """What ``nncli train`` shows on stderr as a run goes (a Sink of nncli.train.running, by
    its methods): a note about an earlier backup, the compile step, then a Rich bar on a
    terminal, a line per epoch otherwise; nothing but notes with --quiet."""

    def __init__(self, files, quiet: bool, resume: Path | None) -> None:
        self.files, self.quiet, self.resume = files, quiet, resume
        self.bar, self.task, self.rows = None, None, 0
        self.epochs, self.units = 0, ""

    def prepared(self, run: "Training") -> None:
        from nncli.train import kernels_cached, warm_up
        from nncli.train.running import loss_units

        self.epochs, self.units, self.rows = run.config.epochs, loss_units(run.model), len(run.X)
        backup = self.files.earlier_backup(self.resume)
        if backup is not None and not self.quiet:
            say(f"note: {backup} holds the state of an earlier run that did not finish; this "
                f"run replaces it (to continue that one instead: --resume {backup})")
        if not run.epochs_left:
            return
        if not self.quiet and not show_bar(self.quiet) and not kernels_cached():
            say("compiling kernels (first run after install, about 20 s; later runs load them "
                "from the cache)")
        with status("preparing kernels (the first run compiles them, ~20 s)",
                    show_bar(self.quiet)):
            warm_up(run.config, run.X.shape[1], run.X_val is not None)

    @contextmanager
    def session(self, run: "Training") -> Iterator[None]:
        if not show_bar(self.quiet):
            yield None
            return
        from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                                   TimeElapsedColumn, TimeRemainingColumn)

        columns = (TextColumn("epoch {task.fields[epoch]}/" + str(self.epochs)), BarColumn(),
                   MofNCompleteColumn(), TextColumn("loss {task.fields[loss]:.4f}"),
                   TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn())
        done = run.state.epoch * self.rows + run.state.rows_done if run.state else 0
        with Progress(*columns, console=err, transient=False) as self.bar:
            self.task = self.bar.add_task("train", total=self.epochs * self.rows,
                                          completed=done, epoch=done // self.rows + 1,
                                          loss=float("nan"))
            yield None

    def progress(self, epoch: int, done: int, total: int, loss: float) -> None:
        if self.bar is not None:
            self.bar.update(self.task, completed=(epoch - 1) * self.rows + done, epoch=epoch,
                            loss=loss)

    def epoch(self, run: "Training", report: "EpochReport") -> None:
        if self.bar is not None:
            self.bar.console.print(epoch_line(report, self.epochs, self.units))
        elif not self.quiet:
            tell(epoch_line(report, self.epochs, self.units))

    def stopped(self, run: "Training", error: Exception) -> None:
        pass

    def finished(self, result) -> None:
        pass


def _say_early_stopping(run: "Training") -> None:
    es = run.early
    if es is None or es.best is None:
        return
    if es.stopped_epoch:
        tell(f"early stopping after epoch {es.stopped_epoch}: {es.monitor} did not improve "
             f"for {es.wait} epoch{'s' if es.wait > 1 else ''}")
    tell(f"restored the weights of epoch {es.best_epoch}, the best ({es.monitor} "
         f"{es.best:.4f})")


def _resume_command(argv: list[str], model: Path) -> str:
    """The command line of this run, with --resume MODEL (and without --init-from)."""
    args, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a in ("--resume", "--init-from"):
            skip = True
        elif not a.startswith(("--resume=", "--init-from=")):
            args.append(a)
    return shlex.join(["nncli", *args, "--resume", str(model)])


def epoch_line(report: "EpochReport", epochs: int, units: str = "") -> str:
    """One epoch's metrics, in the metric table's order; ``units`` tags the loss when it is not
    in the targets' units."""
    tag = f" ({units})" if units else ""
    values = report.as_dict()
    parts = [f"epoch {report.epoch}/{epochs}", f"loss {report.loss:.4f}{tag}"]
    # a setting (the learning rate) may be far below 1e-4: in significant digits
    parts += [f"{key} {value:{'.3g' if base(key).setting else '.4f'}}"
              for key, value in values.items() if key not in ("epoch", "loss", "seconds")]
    parts.append(f"{report.seconds:.3f}s")
    return "  ".join(parts)
