"""``nncli sweep``: train's options as typed turned into a search space (checked and converted
as train would), the run on Ray Tune, and the trials shown live and as a leaderboard."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from nncli.cli.app import command, err, prepare_numba, say, tell
from nncli.errors import Interrupted, UsageError
from nncli.metrics import RANKED_METRICS
from nncli.sweep.driver import RAY_LOG, Request


@command(summary="Train many networks at once on Ray Tune and keep the best.",
         epilog="Example: nncli sweep datasets/digits.csv --loss sparse_cce --logits "
                "--arch 25relu-10linear,64relu-32relu-10linear --lr 1e-3,1e-2 --epochs 20 "
                "--validation-split 0.2 -o best.safetensors",
         context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def sweep(
    ctx: typer.Context,
    data: Optional[str] = typer.Argument(None, help="CSV or NPZ, as for nncli train (not with "
                                         "--resume)."),
    samples: int = typer.Option(Request.samples, "--samples", help="Trials per grid "
                                "combination; each draws its own values of the log:LO:HI and "
                                "uniform:LO:HI options."),
    metric: str = typer.Option(Request.metric, "--metric", help="What ranks the trials: " +
                               ", ".join(RANKED_METRICS) + "."),
    scheduler: str = typer.Option(Request.scheduler, "--scheduler", help="fifo: every trial "
                                  "runs to the end; asha: Ray Tune's ASHA stops poor trials "
                                  "early."),
    grace_epochs: int = typer.Option(Request.grace_epochs, "--grace-epochs", help="ASHA: "
                                     "epochs every trial runs before it can be stopped."),
    max_failures: int = typer.Option(Request.max_failures, "--max-failures", help="Times a "
                                     "trial whose worker or node died is restarted from its "
                                     "last epoch."),
    threads_per_trial: int = typer.Option(Request.threads_per_trial, "--threads-per-trial",
                                          help="CPUs each trial asks Ray for (and compute "
                                               "threads it uses)."),
    checkpoint_seconds: float = typer.Option(Request.checkpoint_seconds,
                                             "--checkpoint-seconds",
                                             help="A trial checkpoints at most this often, and "
                                                  "at its end (0: every epoch); a retried "
                                                  "trial goes on from its last checkpoint."),
    folds: int = typer.Option(Request.folds, "--folds", metavar="K", show_default=False,
                              help="Judge each "
                              "configuration by the mean over K folds of --metric, each fold "
                              "trained on the others and validated on its own rows, as nncli "
                              "cv; -o is then the best configuration trained on all rows "
                              "\\[default: one split, --validation-split]."),
    no_stratify: bool = typer.Option(False, "--no-stratify", help="--folds: deal the rows at "
                                     "random (by default each fold holds a classifier's "
                                     "classes evenly)."),
    group: Optional[str] = typer.Option(None, "--group", metavar="COL", help="--folds: keep "
                                        "the rows of equal values of this column in one fold "
                                        "(not a feature)."),
    pack: int = typer.Option(Request.pack, "--pack", metavar="N", help="Configurations "
                             "one trial trains, one after the other (1: a trial each); 0: "
                             "tiny trainings of a grid share trials where that is faster."),
    address: Optional[str] = typer.Option(None, "--address", help="HOST:PORT of an existing Ray "
                                          "cluster \\[default: start one on this machine]."),
    storage: Optional[str] = typer.Option(None, "--storage", help="Where Ray Tune keeps "
                                          "checkpoints: on a cluster, a folder every node "
                                          "mounts or an s3:// URI \\[default: --out-dir]."),
    output: Path = typer.Option(Path(Request.output), "-o", "--output", help="Where to "
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
    from nncli.sweep.driver import run_sweep
    from nncli.sweep.space import options_from_args, parse_space

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
                          options_from_args(ctx.args), samples, metric, scheduler, grace_epochs,
                          max_failures, threads_per_trial, address, storage,
                          str(output.resolve()), str(folder.resolve()), checkpoint_seconds,
                          folds, not no_stratify, group, pack)
    space = parse_space(request.options, request.samples)
    prepare_numba()
    table = _LiveTrials(space.varying, request.metric, quiet)
    report = run_sweep(request, space, table.update, say, restore=resume is not None,
                       display=table)
    ctx.obj.exit_at_once = True   # Ray is shut down, the files closed
    if not quiet:
        table.leaderboard(report)
    if any(row.retries or row.status == "error" for row in report.rows):
        say(f"note: Ray's messages about the trials that failed or were restarted are in "
            f"{Path(report.out_dir) / RAY_LOG}")
    if json_out:
        typer.echo(json.dumps(report.as_dict(), indent=2))
    if report.interrupted:
        say(f"sweep interrupted; the leaderboard so far is in {report.out_dir}; continue with: "
            f"nncli sweep --resume {report.out_dir}")
        raise Interrupted("interrupted", report.signal or 2)


class _LiveTrials:
    """The sweep's trials on stderr: a live Rich table on a terminal, a line per finished trial
    otherwise, nothing with --quiet. The driver enters it once Ray's output is kept off the
    terminal: a line written under a live table breaks its redraws."""

    def __init__(self, varying: list[str], metric: str, quiet: bool) -> None:
        self.varying, self.metric, self.quiet = varying, metric, quiet
        self.rows: dict = {}
        # the last status seen per trial: the driver updates its rows in place, so a row
        # kept here cannot tell what changed
        self.statuses: dict[str, str] = {}
        self.live = None

    def __enter__(self) -> "_LiveTrials":
        if not self.quiet and err.is_terminal:
            from rich.live import Live

            # stdout is left alone: nncli writes nothing there before the sweep ends, and
            # what Ray prints there meanwhile goes to its log (nncli.sweep.redirect)
            self.live = Live(self._table(), console=err, refresh_per_second=4, transient=True,
                             redirect_stdout=False)
            self.live.__enter__()
        return self

    def __exit__(self, *exc) -> bool:
        if self.live is not None:
            self.live.__exit__(*exc)
        return False

    def update(self, row) -> None:
        before = self.statuses.get(row.trial_id)
        self.rows[row.trial_id], self.statuses[row.trial_id] = row, row.status
        if self.live is not None:
            self.live.update(self._table())
        elif not self.quiet and row.status not in ("running", "pending") and \
                before != row.status:
            value = _value(row, self.metric)
            shown = f"{self.metric} {value}" if value else "no result"
            tell(f"trial {row.trial_id} {row.status}: {_config_text(row.config)}  {shown}  "
                 f"epoch {row.epochs}")

    def _table(self, rows=None, title: str = "trials") -> Table:
        table = Table(title=title)
        for col in ("trial", *self.varying, "status", "epoch", self.metric, "node", "retries"):
            table.add_column(col, no_wrap=True,
                             justify="left" if col in ("trial", "status", "node")
                             else "right")
        for row in rows if rows is not None else self.rows.values():
            table.add_row(row.trial_id, *(_shown(row.config.get(v)) for v in self.varying),
                          row.status, str(row.epochs), _value(row, self.metric),
                          (row.node or "")[:8], str(row.retries))
        return table

    def leaderboard(self, report) -> None:
        order = "lowest" if report.mode == "min" else "highest"
        # a log is read wider than a terminal's 80 columns: options and statuses unclipped
        wide = err if err.is_terminal else Console(stderr=True, highlight=False, width=140)
        over = f" mean over {report.folds} folds" if report.folds else ""
        wide.print(self._table(report.rows,
                               f"leaderboard (by {report.metric}{over}, {order} first)"))
        if report.best_model:
            best = report.rows[0]
            how = ", trained on all rows" if report.folds else ""
            tell(f"wrote {report.best_model} (trial {best.trial_id}: "
                 f"{_config_text(best.config)}{how}); every trial in {report.out_dir}")


def _value(row, metric: str) -> str:
    """The trial's ``metric`` for the tables: over folds its mean ± std (ddof 0)."""
    value = row.value(metric)
    if value is None:
        return ""
    std = row.std.get(metric)
    return f"{value:.4f}" if std is None else f"{value:.4f} ± {std:.4f}"


def _config_text(config: dict) -> str:
    return " ".join(f"--{k.replace('_', '-')} {_shown(v)}" for k, v in config.items())


def _shown(value) -> str:
    """An option's value for people: a sampled float to 4 significant digits."""
    return f"{value:.4g}" if isinstance(value, float) else str(value)
