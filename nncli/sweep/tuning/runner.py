"""The sweep on Ray Tune: its plan, the run (or its resumption), the trials' rows kept up to date
as Tune reports, and what the sweep came to."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
from ray import tune
from ray.tune.schedulers import ASHAScheduler
from ray.tune.search.basic_variant import BasicVariantGenerator

from nncli.errors import UsageError
from nncli.metrics import EPOCH_METRICS
from nncli.sweep.results import (ERROR, FINISHED, INTERRUPTED, PENDING, RETRYING, RUNNING,
                                 STD_SUFFIX, STOPPED, TrialRow)
from nncli.sweep.space import Space
from nncli.sweep.tuning.packs import PACK, PACK_KEY, member_id, member_of, pack_trial
from nncli.sweep.tuning.trials import FINISHED_KEY, FOLDS_KEY, fold_trial, trial

TUNE_NAME = "tune"
# ASHA's reduction factor (Ray Tune's default, written out: ``asha_rungs`` derives from it the
# epochs where ASHA decides whether a trial goes on).
REDUCTION_FACTOR = 4


@dataclass
class Plan:
    """How a sweep runs: its space and everything besides the trials' options."""

    space: Space
    metric: str
    mode: str
    epochs: int                       # the most epochs a trial runs (ASHA's max_t)
    out_dir: Path
    scheduler: str = "fifo"           # fifo (every trial to the end) or asha
    grace_epochs: int = 1
    max_failures: int = 2
    threads_per_trial: int = 1
    seed: int = 0
    address: str | None = None
    storage: str | None = None        # where Tune keeps checkpoints; default out_dir/...
    checkpoint_seconds: float = 0.0   # a trial checkpoints at most this often (0: every epoch)
    folds: int = 0                    # K: a trial trains its configuration on each of K folds
    # a trial per pack of configurations (nncli.sweep.packing), each a list of the options
    # that vary; None: a trial per configuration
    packs: list[list[dict]] | None = None

    @property
    def storage_path(self) -> str:
        return self.storage or str(self.out_dir.resolve())

    @property
    def rungs(self) -> tuple[int, ...]:
        """The epochs after which the scheduler may stop a trial (besides its last)."""
        return asha_rungs(self.grace_epochs, self.epochs) if self.scheduler == "asha" else ()


def asha_rungs(grace_epochs: int, epochs: int,
               reduction_factor: int = REDUCTION_FACTOR) -> tuple[int, ...]:
    """The epochs at which Ray Tune's ASHA (one bracket) compares a trial with the others and
    may stop it: ``grace_epochs`` times the powers of the reduction factor, as its rungs are
    laid out (tested against Ray's own)."""
    count = int(np.log(epochs / grace_epochs) / np.log(reduction_factor) + 1)
    return tuple(grace_epochs * reduction_factor ** k for k in range(count))


@dataclass
class Outcome:
    """What the sweep came to: one row per trial, and whether it was interrupted."""

    rows: list[TrialRow]
    interrupted: bool
    checkpoints: dict[str, Any] = field(default_factory=dict)   # trial id -> tune.Checkpoint

    def model_files(self) -> Iterator[tuple[str, Path]]:
        """(trial id, model file) of every model in each trial's last checkpoint (one, or one
        per fold, named as ``nncli cv`` names them): the finished models, or the weights where
        the trial stopped (ASHA, an error, an interruption) with their training state. A file
        is there until the next trial's are asked for (a checkpoint in remote storage is
        downloaded into a temporary folder)."""
        for trial_id, checkpoint in self.checkpoints.items():
            with checkpoint.as_directory() as folder:
                for path in sorted(Path(folder).glob("*.safetensors")):
                    yield member_of(trial_id, path.name) or trial_id, path


EventFn = Callable[[TrialRow], None]


def run(plan: Plan, trainable_args: dict[str, Any], on_event: EventFn | None = None,
        restore: bool = False) -> Outcome:
    """Run (or with ``restore``, continue) the sweep of ``plan``; ``trainable_args`` are what
    every trial gets (the data sets, or each fold's with ``plan.folds``; the fixed options, the
    starting model) and ``on_event`` hears of every trial's start, epoch and end."""
    if plan.packs is not None:
        function, extra = pack_trial, {"packs": plan.packs, "metric": plan.metric,
                                       "mode": plan.mode}
    else:   # packs run under FIFO only: no rungs
        function, extra = (fold_trial if plan.folds else trial), {"rungs": plan.rungs}
    trainable = tune.with_resources(
        tune.with_parameters(function, threads=plan.threads_per_trial,
                             checkpoint_seconds=plan.checkpoint_seconds, **extra,
                             **trainable_args),
        {"cpu": plan.threads_per_trial})
    events = _Events(plan, on_event)
    tune_dir = os.path.join(plan.storage_path, TUNE_NAME)
    if restore:
        if not tune.Tuner.can_restore(tune_dir):
            raise UsageError(f"{plan.out_dir}: no Ray Tune state to resume from "
                             f"(looked in {tune_dir})")
        tuner = tune.Tuner.restore(tune_dir, trainable, resume_unfinished=True,
                                   resume_errored=True)
        # restore() takes the run configuration from the saved state (where _Events was saved
        # without its listener); the live table is this session's
        tuner._local_tuner.get_run_config().callbacks = [events]  # noqa: SLF001 - no public way
    else:
        tuner = tune.Tuner(trainable, param_space=_param_space(plan),
                           tune_config=_tune_config(plan), run_config=_run_config(plan, events))
    grid = tuner.fit()
    return _outcome(plan, grid, events)


# ------------------------------------------------------------------------------ internals

def _param_space(plan: Plan) -> dict:
    if plan.packs is not None:
        return {PACK: tune.grid_search(list(range(len(plan.packs))))}
    space = plan.space
    out: dict[str, Any] = {name: tune.grid_search(values) for name, values in space.grid.items()}
    for name, r in space.ranges.items():
        if r.integer:
            out[name] = (tune.lograndint(int(r.lo), int(r.hi) + 1) if r.kind == "log"
                         else tune.randint(int(r.lo), int(r.hi) + 1))
        else:
            out[name] = (tune.loguniform(r.lo, r.hi) if r.kind == "log"
                         else tune.uniform(r.lo, r.hi))
    return out


def _tune_config(plan: Plan) -> tune.TuneConfig:
    scheduler = None
    if plan.scheduler == "asha":
        # the epoch as ASHA's clock: a trial retried from a checkpoint goes on counting
        # from that checkpoint's epoch, and its rungs are the epochs that checkpoint (rungs)
        scheduler = ASHAScheduler(time_attr="epoch", max_t=max(plan.epochs, 1),
                                  grace_period=plan.grace_epochs,
                                  reduction_factor=REDUCTION_FACTOR)
    return tune.TuneConfig(metric=plan.metric, mode=plan.mode, num_samples=plan.space.samples,
                           scheduler=scheduler, reuse_actors=True,
                           search_alg=BasicVariantGenerator(random_state=plan.seed),
                           trial_dirname_creator=trial_folder)


def trial_folder(trial) -> str:
    """A trial's folder under the sweep's ``tune/``: ``trial_<id>``, whatever its trainable
    (Tune's default names it after the function and every option's value)."""
    return f"trial_{trial.trial_id}"


def _run_config(plan: Plan, events: "_Events") -> tune.RunConfig:
    return tune.RunConfig(name=TUNE_NAME, storage_path=plan.storage_path, verbose=0,
                          callbacks=[events],
                          failure_config=tune.FailureConfig(max_failures=plan.max_failures),
                          checkpoint_config=tune.CheckpointConfig(num_to_keep=1))


class _Events(tune.Callback):
    """Keeps a TrialRow per trial up to date in the driver and passes each change on."""

    def __init__(self, plan: Plan, on_event: EventFn | None) -> None:
        self.plan, self.on_event = plan, on_event
        self.rows: dict[str, TrialRow] = {}
        self.trials: list = []          # every trial, this session's and earlier ones', at the end

    def __getstate__(self) -> dict:
        # Tune saves its run configuration, callbacks included, for resuming; the listener
        # (a terminal table) is this process's only
        return {"plan": self.plan, "on_event": None, "rows": {}, "trials": []}

    def on_experiment_end(self, trials, **info):
        self.trials = list(trials)

    def _rows(self, trial) -> list[TrialRow]:
        """The trial's leaderboard rows, made on first sight: its own, or with packs one per
        configuration of its pack."""
        if self.plan.packs is None:
            named = [(trial.trial_id, trial.config)]
        else:
            named = [(member_id(trial.trial_id, j), options)
                     for j, options in enumerate(self.plan.packs[trial.config[PACK]])]
        rows = []
        for row_id, options in named:
            row = self.rows.get(row_id)
            if row is None:
                config = {k: options.get(k) for k in self.plan.space.varying}
                row = self.rows[row_id] = TrialRow(row_id, config)
            row.retries = int(getattr(trial, "num_failures", 0) or 0)
            rows.append(row)
        return rows

    def _set(self, trial, status: str, result: dict | None = None) -> None:
        """The trial's rows after ``result`` (its metrics; a pack's finished configurations),
        those it has not finished now ``status`` (with packs: the first of them, the others
        waiting their turn)."""
        rows = self._rows(trial)
        if result is not None:
            _take_pack(rows, result) if self.plan.packs is not None else \
                _take_result(rows[0], result)
        waiting = False
        for row in rows:
            if self.plan.packs is not None and row.status == FINISHED:
                continue
            row.status = PENDING if waiting and status == RUNNING else status
            waiting = self.plan.packs is not None
        for row in rows:
            self._emit(row)

    def _emit(self, row: TrialRow) -> None:
        if self.on_event is not None:
            self.on_event(row)

    def on_trial_start(self, iteration, trials, trial, **info):
        self._set(trial, RUNNING)

    def on_trial_result(self, iteration, trials, trial, result, **info):
        self._set(trial, RUNNING, result)

    def on_trial_complete(self, iteration, trials, trial, **info):
        finished = (trial.last_result or {}).get(FINISHED_KEY)
        self._set(trial, FINISHED if finished else STOPPED)

    def on_trial_recover(self, iteration, trials, trial, **info):
        self._set(trial, RETRYING)

    def on_trial_error(self, iteration, trials, trial, **info):
        self._set(trial, ERROR)


def _take_pack(rows: list[TrialRow], result: dict) -> None:
    """A packed trial's report into the rows of the configurations it has finished."""
    for j, metrics in (result.get(PACK_KEY) or {}).items():
        row = rows[int(j)]
        # where and how long it trained (a retried pack's later reports repeat it as it was)
        _take_result(row, {**metrics, "time_total_s": metrics.get("seconds", 0.0)})
        row.status = FINISHED


def _take_result(row: TrialRow, result: dict) -> None:
    row.epochs = int(result.get("epoch", row.epochs))
    row.metrics = {k: float(v) for k, v in result.items()
                   if k in EPOCH_METRICS and v is not None}
    row.std = {k: float(result[k + STD_SUFFIX]) for k in row.metrics
               if result.get(k + STD_SUFFIX) is not None}
    if result.get(FOLDS_KEY):
        row.folds = [{k: v for k, v in fold.items() if k in EPOCH_METRICS or k == "epoch"}
                     for fold in result[FOLDS_KEY]]
    row.node = result.get("node", row.node)
    row.seconds = float(result.get("time_total_s", row.seconds))
    row.pid = result.get("pid", row.pid)


def _outcome(plan: Plan, grid, events: _Events) -> Outcome:
    """Rows of every trial from Tune's results (they hold the trials of an earlier session
    too, when resumed), with statuses from what this session saw of them.

    Ctrl-C leaves no mark on the trials: Tune ends the running ones at the end as TERMINATED,
    the status of a trial that ended. So a trial that neither finished nor failed and that this
    session started but never saw complete (ASHA's stops do complete) was interrupted; one this
    session never started kept its status from the earlier session, where it ended.
    """
    trials = events.trials
    results = list(grid)
    if len(trials) != len(results):   # ResultGrid lists its trials in order; if not, by id
        by_id = {t.trial_id: t for t in trials}
        trials = [by_id.get((r.metrics or {}).get("trial_id")) for r in results]
    rows, checkpoints, interrupted = [], {}, False
    for t, result in zip(trials, results):
        metrics = result.metrics or {}
        trial_id = getattr(t, "trial_id", None) or metrics.get("trial_id") or Path(result.path).name
        own = _result_rows(plan, events, trial_id, result.config)
        if plan.packs is not None:
            _take_pack(own, metrics)
            metrics = {k: v for k, v in metrics.items() if k != FINISHED_KEY}
        elif metrics:
            _take_result(own[0], metrics)
        status = getattr(t, "status", None)
        for row in own:
            if plan.packs is not None and row.status == FINISHED and row.metrics:
                pass                                 # a configuration its pack finished
            elif result.error is not None or status == "ERROR":
                row.status = ERROR
                row.error = str(result.error).strip().splitlines()[-1] if result.error else None
            elif metrics.get(FINISHED_KEY):
                row.status = FINISHED
            elif (row.status in (PENDING, RUNNING, RETRYING) and row.trial_id in events.rows) \
                    or status in ("PENDING", "RUNNING", "PAUSED"):
                row.status = INTERRUPTED if row.metrics else PENDING
                interrupted = True
            else:
                row.status = STOPPED
            if t is not None:
                row.retries = int(getattr(t, "num_failures", 0) or 0)
        if result.checkpoint is not None:
            checkpoints[trial_id] = result.checkpoint
        rows.extend(own)
    return Outcome(rows, interrupted, checkpoints)


def _result_rows(plan: Plan, events: _Events, trial_id: str, config: dict) -> list[TrialRow]:
    """A result's rows: as this session saw them, or new (a trial of an earlier session)."""
    if plan.packs is None:
        named = [(trial_id, config)]
    else:
        named = [(member_id(trial_id, j), options)
                 for j, options in enumerate(plan.packs[config[PACK]])]
    return [events.rows.get(row_id) or
            TrialRow(row_id, {k: options.get(k) for k in plan.space.varying})
            for row_id, options in named]
