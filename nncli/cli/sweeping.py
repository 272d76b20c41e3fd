"""``nncli sweep``: train's options as typed turned into a search space (checked and converted
as train would), the run on Ray Tune, and the trials shown live and as a leaderboard."""

from __future__ import annotations

import json
import sys
from enum import Enum
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from nncli.cli.app import _prepare_numba, _say, app, err
from nncli.cli.training import train_config
from nncli.errors import EXIT_INTERRUPTED, EXIT_TERMINATED, UsageError

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
            table.add_column(col, no_wrap=True,
                             justify="left" if col in ("trial", "status", "node")
                             else "right")
        for row in rows if rows is not None else self.rows.values():
            value = row.value(self.metric)
            table.add_row(row.trial_id, *(_shown(row.config.get(v)) for v in self.varying),
                          row.status, str(row.epochs), "" if value is None else f"{value:.4f}",
                          (row.node or "")[:8], str(row.retries))
        return table

    def leaderboard(self, report) -> None:
        order = "lowest" if report.mode == "min" else "highest"
        # a log is read wider than a terminal's 80 columns: options and statuses unclipped
        wide = err if err.is_terminal else Console(stderr=True, highlight=False, width=140)
        wide.print(self._table(report.rows, f"leaderboard (by {report.metric}, {order} first)"))
        if report.best_model:
            best = report.rows[0]
            print(f"wrote {report.best_model} (trial {best.trial_id}: "
                  f"{_config_text(best.config)}); every trial in {report.out_dir}",
                  file=sys.stderr)


def _config_text(config: dict) -> str:
    return " ".join(f"--{k.replace('_', '-')} {_shown(v)}" for k, v in config.items())


def _shown(value) -> str:
    """An option's value for people: a sampled float to 4 significant digits."""
    return f"{value:.4g}" if isinstance(value, float) else str(value)
