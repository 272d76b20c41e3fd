"""A sweep's trials as Ray Tune runs them: ``trial`` (one configuration trained on the data, as
``nncli train`` trains it) and ``fold_trial`` (one configuration trained on each of K folds, the
folds in step), both reporting to Tune after every epoch and checkpointing now and then.

A report is a small dictionary (no file is written): Tune and ASHA see every epoch. A
checkpoint (nncli model files with their training state, through Tune's checkpoint API) is
written only when ``Cadence`` says so: ``every`` seconds after the last (0: every epoch), at
each epoch where ASHA may stop the trial (its rungs: a stopped trial keeps its model where it
stopped), and at the end, whose report carries the finished models. A trial whose worker dies
goes on from its last checkpoint, losing at most ``every`` seconds of training.
"""

from __future__ import annotations

import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import ray
from ray import tune

from nncli.metrics import EPOCH_METRICS
from nncli.sweep.results import STD_SUFFIX

MODEL_FILE = "model.safetensors"
# The key of a trial's reports that says it trained to its end: not Tune's own "done", which
# Tune sets on the last result of a trial its scheduler stopped too.
FINISHED_KEY = "nncli_finished"
# The key of a cross-validated trial's last report: each fold's metrics at its end.
FOLDS_KEY = "nncli_folds"


class Cadence:
    """When a trial checkpoints: after ``every`` seconds since its last checkpoint (0: every
    epoch), or at an epoch of ``rungs``."""

    def __init__(self, every: float = 0.0, rungs: tuple[int, ...] = ()) -> None:
        self.every, self.rungs = every, frozenset(rungs)
        self.restart()

    def restart(self) -> None:
        """A checkpoint was just written (or training starts): the clock starts again."""
        self.last = time.monotonic()

    def due(self, epoch: int) -> bool:
        return epoch in self.rungs or time.monotonic() - self.last >= self.every


def start_worker(threads: int):
    """Numba's settings and threads before the kernels load; the node's id."""
    from nncli.kernel_cache import prepare_numba

    prepare_numba(threads)
    from nncli.train import set_threads

    set_threads(threads)
    return ray.get_runtime_context().get_node_id()


def _resumed() -> dict:
    """The model files of the checkpoint Tune restarts this trial from (name -> ModelFile),
    empty for a trial that starts afresh."""
    from nncli.modelfile import read_model_file

    checkpoint = tune.get_checkpoint()
    if checkpoint is None:
        return {}
    with checkpoint.as_directory() as folder:
        return {p.name: read_model_file(p) for p in Path(folder).glob("*.safetensors")}


def _report(node: str, metrics: dict, files: dict | None = None, done: bool = False) -> None:
    """``metrics`` to Tune, with ``files`` (name -> (model, checkpoint parts)) written as a
    checkpoint when given."""
    metrics = {**metrics, "node": node, FINISHED_KEY: done}
    if files is None:
        tune.report(metrics)
        return
    from nncli.modelfile import save_model

    with tempfile.TemporaryDirectory() as folder:
        for name, (model, parts) in files.items():
            save_model(model, Path(folder) / name, *parts)
        tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(folder))


def trial(config: dict, *, data, val, fixed: dict, threads: int, init_from=None,
          checkpoint_seconds: float = 0.0, rungs: tuple[int, ...] = ()) -> None:
    """One trial: the run of ``nncli train`` with ``fixed`` options and this trial's
    ``config``, on the driver's data (see the module docstring)."""
    node = start_worker(threads)
    from nncli.train import Inputs, TrainConfig, run

    options = TrainConfig.from_options(**{**fixed, **config})
    resume = _resumed().get(MODEL_FILE)
    run(options, Inputs(data, val, None if resume else init_from, resume),
        TuneSink(node, Cadence(checkpoint_seconds, rungs)))


class TuneSink:
    """A trial's Sink (nncli.train.running): after every epoch its metrics to Tune, with a
    checkpoint when ``cadence`` says one is due; the last epoch's report carries the finished
    model instead, and the metrics of the weights it ends with."""

    def __init__(self, node: str, cadence: Cadence | None = None) -> None:
        self.node, self.cadence = node, cadence or Cadence()

    @contextmanager
    def session(self, run):
        yield None

    def prepared(self, run) -> None:
        self.cadence.restart()

    def progress(self, epoch: int, done: int, total: int, loss: float) -> None:
        pass

    def epoch(self, run, report) -> None:
        if not run.epochs_left:   # the last epoch is reported with the finished model
            return
        files = None
        if self.cadence.due(report.epoch):
            from nncli.train import checkpoint_parts

            files = {MODEL_FILE: (run.model, checkpoint_parts(run))}
        _report(self.node, report.as_dict(), files)
        if files is not None:
            self.cadence.restart()

    def stopped(self, run, error) -> None:
        pass

    def finished(self, result) -> None:
        if result.run.history:
            _report(self.node, result.kept, {MODEL_FILE: (result.model, ())}, done=True)


def fold_file(i: int) -> str:
    """Fold ``i``'s model file (1-based) in a cross-validated trial's checkpoint, named as
    ``nncli cv -o DIR`` names it."""
    from nncli.crossval import fold_file as cv_fold_file

    return cv_fold_file(i)


def fold_trial(config: dict, *, folds: list, fixed: dict, threads: int, init_from=None,
               checkpoint_seconds: float = 0.0, rungs: tuple[int, ...] = ()) -> None:
    """One trial of a cross-validated sweep: the configuration ``fixed`` + ``config`` trained on
    each fold's training rows (``folds``: one ``train.Inputs`` per fold, the held-out rows as
    its validation data), the folds in step (``train.run_in_step``), each exactly as ``nncli
    train`` trains those rows. After every epoch Tune hears the mean over the folds of each
    metric (and its std, ``val_loss_std``): what ASHA and the leaderboard judge the
    configuration by."""
    node = start_worker(threads)
    from nncli.train import TrainConfig, prepare, run_in_step

    options = TrainConfig.from_options(**{**fixed, **config})
    resumed = _resumed()
    trainings = []
    for i, inputs in enumerate(folds, start=1):
        resume = resumed.get(fold_file(i))
        trainings.append(prepare(options, inputs.data, inputs.val,
                                 None if resume else init_from, resume))
    reporter = _FoldReporter(node, Cadence(checkpoint_seconds, rungs), trainings)
    reporter.finished(run_in_step(trainings, reporter.sinks, reporter.round))


class _LastEpoch:
    """A fold's sink: keeps its latest epoch report."""

    def __init__(self) -> None:
        self.report = None

    @contextmanager
    def session(self, run):
        yield None

    def prepared(self, run) -> None:
        pass

    def progress(self, epoch: int, done: int, total: int, loss: float) -> None:
        pass

    def epoch(self, run, report) -> None:
        self.report = report

    def stopped(self, run, error) -> None:
        pass

    def finished(self, result) -> None:
        pass


class _FoldReporter:
    """A cross-validated trial's reports: after each round of epochs the folds' mean and std,
    with every fold's checkpoint when one is due; at the end the means of the metrics each fold
    ends with, each fold's, and the finished models."""

    def __init__(self, node: str, cadence: Cadence, trainings: list) -> None:
        self.node, self.cadence, self.trainings = node, cadence, trainings
        self.sinks = [_LastEpoch() for _ in trainings]

    def round(self) -> None:
        if not any(t.epochs_left for t in self.trainings):
            return                # the last round is reported with the finished models
        epoch = max(s.report.epoch for s in self.sinks if s.report is not None)
        files = None
        if self.cadence.due(epoch):
            from nncli.train import checkpoint_parts

            files = {fold_file(i): (t.model, checkpoint_parts(t))
                     for i, t in enumerate(self.trainings, start=1)}
        reports = [s.report.as_dict() for s in self.sinks if s.report is not None]
        _report(self.node, {**_mean_and_std(reports), "epoch": epoch}, files)
        if files is not None:
            self.cadence.restart()

    def finished(self, results: list) -> None:
        if not all(r.run.history for r in results):
            return
        kept = [r.kept for r in results]
        metrics = {**_mean_and_std(kept), "epoch": max(k["epoch"] for k in kept),
                   FOLDS_KEY: kept}
        files = {fold_file(i): (r.model, ()) for i, r in enumerate(results, start=1)}
        _report(self.node, metrics, files, done=True)


def _mean_and_std(reports: list[dict]) -> dict:
    """The mean over the folds of every epoch metric, and its std under ``name_std``
    (``nncli cv``'s mean and std: ddof 0)."""
    from nncli.crossval import mean_and_std

    mean, std = mean_and_std([{k: v for k, v in r.items() if k in EPOCH_METRICS}
                              for r in reports])
    return {**mean, **{name + STD_SUFFIX: value for name, value in std.items()}}
