"""Running a sweep on Ray Tune: the only module of nncli that imports ray.

A trial is one configuration of the sweep: a Ray Tune function trainable that runs the training
of ``nncli train`` (``train.run``, with a ``TuneSink``) on arrays the driver read once and put
into Ray's object store (``tune.with_parameters``): workers on other machines need neither the
file nor a shared filesystem for the data. A trial reports its metrics to Tune after every epoch
(a report is a small dictionary: no file is written), so ASHA can stop it between epochs. It
checkpoints (the model file with its training state, through Tune's checkpoint API) only now
and then: at most every ``checkpoint_seconds`` of training, at each epoch where ASHA may stop it
(its rungs, so a stopped trial keeps its model where it stopped), and at its end, whose report
carries the finished model. A trial whose worker dies is restarted from its last checkpoint
(``--max-failures``), losing at most ``checkpoint_seconds`` of training.

Checkpoints and Tune's own state live under ``storage`` (default: the sweep's folder). On a
cluster of several machines that folder must be one every node can write (a shared mount, or
an ``s3://``/``gs://`` URI): Ray Tune moves checkpoints through it.
"""

from __future__ import annotations

import os
import socket
import tempfile
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import ray
from ray import tune
from ray.tune.schedulers import ASHAScheduler
from ray.tune.search.basic_variant import BasicVariantGenerator

from nncli.errors import JoinTimeout, UsageError
from nncli.metrics import EPOCH_METRICS
from nncli.sweep.results import (ERROR, FINISHED, INTERRUPTED, PENDING, RETRYING, RUNNING,
                                 STOPPED, TrialRow)
from nncli.sweep.space import Space

MODEL_FILE = "model.safetensors"
# How long joining an existing cluster may take before it is an error (the issue: 30 s).
JOIN_SECONDS = 20.0
TUNE_NAME = "tune"
# ASHA's reduction factor (Ray Tune's default, written out: ``asha_rungs`` derives from it the
# epochs where ASHA decides whether a trial goes on).
REDUCTION_FACTOR = 4
# The key of a trial's reports that says it trained to its end: not Tune's own "done", which
# Tune sets on the last result of a trial its scheduler stopped too.
FINISHED_KEY = "nncli_finished"
# Ray's own chatter we do not want: usage reports (there may be no network), the trial folder
# as working directory (nncli passes no relative paths, but a user's --init-from could be one),
# its core's warnings on our stderr, its trial loggers, colour codes in its log
# (nncli.sweep.redirect sends what it prints to the sweep's ray.log).
RAY_ENV = {"RAY_USAGE_STATS_ENABLED": "0", "RAY_CHDIR_TO_TRIAL_DIR": "0",
           "RAY_BACKEND_LOG_LEVEL": "error", "RAY_COLOR_PREFIX": "0",
           "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS": "1", "RAY_AIR_NEW_OUTPUT": "0"}


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
        """(trial id, model file) of each trial's last checkpoint: the finished model, or the
        weights where the trial stopped (ASHA, an error, an interruption) with its training
        state; the file is there until the next one is asked for (a checkpoint in remote
        storage is downloaded into a temporary folder)."""
        for trial_id, checkpoint in self.checkpoints.items():
            with checkpoint.as_directory() as folder:
                yield trial_id, Path(folder) / MODEL_FILE


EventFn = Callable[[TrialRow], None]


@contextmanager
def ray_session(address: str | None, cpus: int | None = None) -> Iterator[None]:
    """A Ray instance for the sweep: started here (and stopped at the end) without
    ``address``, else the cluster at ``address`` (host:port), checked to answer first."""
    for key, value in RAY_ENV.items():
        os.environ.setdefault(key, value)
    if ray.is_initialized():
        yield
        return
    runtime_env = {"env_vars": {k: os.environ[k] for k in RAY_ENV}}
    if address is not None:
        check_reachable(address)
        _join(address, runtime_env)
    else:
        ray.init(num_cpus=cpus, include_dashboard=False, runtime_env=runtime_env,
                 log_to_driver=False, logging_level="ERROR")
    try:
        yield
    finally:
        if address is None:
            _stop_autoscaler()
        ray.shutdown()


def _stop_autoscaler() -> None:
    """End the local instance's autoscaler monitor at once. ray.shutdown stops it after the GCS,
    and it then spends its whole second of grace trying to tell the GCS it was stopped
    (measured: 1.0 of the 1.35 s ray.shutdown took); one machine has nothing to autoscale."""
    try:
        node = ray._private.worker._global_node  # noqa: SLF001 - no public handle on it
        if node is not None and node.is_head():
            node.kill_monitor(check_alive=False)
    except Exception:  # noqa: BLE001 - a private API: without it, ray.shutdown waits its second
        pass


def _join(address: str, runtime_env: dict) -> None:
    """ray.init on the cluster at ``address``, given JOIN_SECONDS to answer: where something
    other than a Ray head listens, Ray would retry for minutes."""
    failure: list[BaseException] = []

    def connect() -> None:
        try:
            ray.init(address=address, runtime_env=runtime_env, log_to_driver=False,
                     logging_level="ERROR")
        except BaseException as e:  # noqa: BLE001 - reported below, as one line
            failure.append(e)

    thread = threading.Thread(target=connect, name="nncli-ray-join", daemon=True)
    thread.start()
    thread.join(JOIN_SECONDS)
    if thread.is_alive():
        raise JoinTimeout(f"no Ray cluster answered at {address} within {JOIN_SECONDS:.0f} s; "
                          f"is a Ray head ('ray start --head') listening there?")
    if failure:
        e = failure[0]
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UsageError(f"cannot join the Ray cluster at {address}: {first}")


def check_reachable(address: str) -> None:
    """A one-line error at once when nothing answers at ``address`` (host:port), where
    ray.init would wait for minutes."""
    host, _, port = address.rpartition(":")
    if address.startswith(("ray://", "auto")) or not host:
        return
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except ValueError:
        raise UsageError(f"--address {address}: expected HOST:PORT") from None
    except OSError as e:
        raise UsageError(f"cannot reach the Ray cluster at {address} "
                         f"({e.strerror or e}); start it with 'ray start --head "
                         f"--port {port}' there") from None
    # Ray itself connects to 127.0.0.1/localhost as this machine's network address: a head
    # listening on the loopback only (--node-ip-address 127.0.0.1) answers the check above,
    # and ray.init would then retry for many minutes
    try:
        from ray._private.services import canonicalize_bootstrap_address

        ray_address = canonicalize_bootstrap_address(address) or address
    except Exception:  # noqa: BLE001 - a private helper: without it, no second check
        return
    if ray_address != address:
        try:
            socket.create_connection(tuple(ray_address.rsplit(":", 1)), timeout=5).close()
        except (OSError, ValueError):
            raise UsageError(f"--address {address}: Ray connects to it as {ray_address} "
                             f"(this machine's network address), where nothing answers; "
                             f"start the head without --node-ip-address 127.0.0.1") from None


def run(plan: Plan, trainable_args: dict[str, Any], on_event: EventFn | None = None,
        restore: bool = False) -> Outcome:
    """Run (or with ``restore``, continue) the sweep of ``plan``; ``trainable_args`` are what
    every trial gets (the data sets, the fixed options, the starting model) and ``on_event``
    hears of every trial's start, epoch and end."""
    trainable = tune.with_resources(
        tune.with_parameters(trial, threads=plan.threads_per_trial,
                             checkpoint_seconds=plan.checkpoint_seconds, rungs=plan.rungs,
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
        tuner = tune.Tuner(trainable, param_space=_param_space(plan.space),
                           tune_config=_tune_config(plan), run_config=_run_config(plan, events))
    grid = tuner.fit()
    return _outcome(plan, grid, events)


def trial(config: dict, *, data, val, fixed: dict, threads: int, init_from=None,
          checkpoint_seconds: float = 0.0, rungs: tuple[int, ...] = ()) -> None:
    """One trial: the run of ``nncli train`` with ``fixed`` options and this trial's
    ``config``, on the driver's data, reporting to Tune after every epoch and checkpointing
    now and then (see the module docstring)."""
    from nncli.kernel_cache import prepare_numba

    prepare_numba(threads)
    from nncli.modelfile import read_model_file
    from nncli.train import Inputs, TrainConfig, run, set_threads

    set_threads(threads)
    options = TrainConfig.from_options(**{**fixed, **config})
    resume = None
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as folder:
            resume = read_model_file(Path(folder) / MODEL_FILE)
    run(options, Inputs(data, val, None if resume else init_from, resume),
        TuneSink(ray.get_runtime_context().get_node_id(), checkpoint_seconds, rungs))


class TuneSink:
    """A trial's Sink (nncli.train.running): after every epoch, its metrics to ``tune.report``,
    with an nncli checkpoint (the model file with its training state) when one is due: after
    ``every`` seconds since the last (0: every epoch) or at an epoch of ``rungs``; the last
    epoch's report carries the finished model instead, and the metrics of the weights it ends
    with."""

    def __init__(self, node: str, every: float = 0.0, rungs: tuple[int, ...] = ()) -> None:
        self.node, self.every, self.rungs = node, every, frozenset(rungs)
        self.saved = time.monotonic()

    @contextmanager
    def session(self, run):
        yield None

    def prepared(self, run) -> None:
        self.saved = time.monotonic()

    def progress(self, epoch: int, done: int, total: int, loss: float) -> None:
        pass

    def epoch(self, run, report) -> None:
        if not run.epochs_left:   # the last epoch is reported with the finished model
            return
        if report.epoch in self.rungs or time.monotonic() - self.saved >= self.every:
            from nncli.train import checkpoint_parts

            self._report(report.as_dict(), run.model, checkpoint_parts(run), done=False)
        else:
            self._report(report.as_dict())

    def stopped(self, run, error) -> None:
        pass

    def finished(self, result) -> None:
        if result.run.history:
            self._report(result.kept, result.model, (), done=True)

    def _report(self, metrics: dict, model=None, parts: tuple = (), done: bool = False) -> None:
        """``metrics`` to Tune, with ``model`` (and the checkpoint ``parts``) as a checkpoint
        when given."""
        metrics = {**metrics, "node": self.node, FINISHED_KEY: done}
        if model is None:
            tune.report(metrics)
            return
        from nncli.modelfile import save_model

        with tempfile.TemporaryDirectory() as folder:
            save_model(model, Path(folder) / MODEL_FILE, *parts)
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(folder))
        self.saved = time.monotonic()


# ------------------------------------------------------------------------------ internals

def _param_space(space: Space) -> dict:
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
                           search_alg=BasicVariantGenerator(random_state=plan.seed))


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

    def _row(self, trial) -> TrialRow:
        row = self.rows.get(trial.trial_id)
        if row is None:
            config = {k: trial.config.get(k) for k in self.plan.space.varying}
            row = self.rows[trial.trial_id] = TrialRow(trial.trial_id, config)
        row.retries = int(getattr(trial, "num_failures", 0) or 0)
        return row

    def _emit(self, row: TrialRow) -> None:
        if self.on_event is not None:
            self.on_event(row)

    def on_trial_start(self, iteration, trials, trial, **info):
        row = self._row(trial)
        row.status = RUNNING
        self._emit(row)

    def on_trial_result(self, iteration, trials, trial, result, **info):
        row = self._row(trial)
        _take_result(row, result)
        row.status = RUNNING
        self._emit(row)

    def on_trial_complete(self, iteration, trials, trial, **info):
        row = self._row(trial)
        row.status = FINISHED if (trial.last_result or {}).get(FINISHED_KEY) else STOPPED
        self._emit(row)

    def on_trial_recover(self, iteration, trials, trial, **info):
        row = self._row(trial)
        row.status = RETRYING
        self._emit(row)

    def on_trial_error(self, iteration, trials, trial, **info):
        row = self._row(trial)
        row.status = ERROR
        self._emit(row)


def _take_result(row: TrialRow, result: dict) -> None:
    row.epochs = int(result.get("epoch", row.epochs))
    row.metrics = {k: float(v) for k, v in result.items()
                   if k in EPOCH_METRICS and v is not None}
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
        seen = events.rows.get(trial_id)
        row = seen or TrialRow(trial_id, {k: result.config.get(k) for k in plan.space.varying})
        if metrics:
            _take_result(row, metrics)
        status = getattr(t, "status", None)
        if result.error is not None or status == "ERROR":
            row.status = ERROR
            row.error = str(result.error).strip().splitlines()[-1] if result.error else None
        elif metrics.get(FINISHED_KEY):
            row.status = FINISHED
        elif (seen is not None and seen.status in (PENDING, RUNNING, RETRYING)) or \
                status in ("PENDING", "RUNNING", "PAUSED"):
            row.status = INTERRUPTED if metrics else PENDING
            interrupted = True
        else:
            row.status = STOPPED
        if t is not None:
            row.retries = int(getattr(t, "num_failures", 0) or 0)
        if result.checkpoint is not None:
            checkpoints[trial_id] = result.checkpoint
        rows.append(row)
    return Outcome(rows, interrupted, checkpoints)
