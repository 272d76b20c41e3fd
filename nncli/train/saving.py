"""A run's files, as ``nncli train`` writes them: ``FileSink`` writes the history CSV
(``HistoryLog``) and checkpoints as the run goes, and the model file on success, on interruption
and on divergence, to the files a ``RunFiles`` names, with SIGINT/SIGTERM caught for the
duration (``signals.interruptible``)."""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, TextIO

from nncli.errors import DivergedError, Interrupted, UsageError
from nncli.metrics import epoch_metrics
from nncli.modelfile import check_writable, save_model
from nncli.train.checkpoints import checkpoint_parts
from nncli.train.running import Result, Sink
from nncli.train.signals import interruptible
from nncli.train.state import EpochReport, StopFn, Training

# The default backup checkpoint is written at most this often (wall seconds): more often would
# only slow down runs of short epochs, for a loss of at most this much work in a crash.
BACKUP_SECONDS = 10.0


@dataclass
class RunFiles:
    """Where a training run writes.

    ``checkpoint``: the run is saved there every ``checkpoint_every`` epochs (None or 0: never).
    A kept checkpoint (given by the user) is also written after the last epoch and stays; a
    backup (``keep_checkpoint`` False, the default ``MODEL.ckpt``) is written only when
    ``backup_seconds`` have passed since the last one (or the start), and removed once the model
    is written, as Keras's BackupAndRestore removes its backup. ``history``: one CSV row per
    epoch.
    """

    model: Path
    checkpoint: Path | None = None
    checkpoint_every: int = 1
    keep_checkpoint: bool = False
    history: Path | None = None
    backup_seconds: float = BACKUP_SECONDS

    @classmethod
    def for_output(cls, model: Path, checkpoint: Path | None = None, every: int = 1,
                   history: Path | None = None) -> "RunFiles":
        """The files of a run writing ``model``: by default a backup checkpoint MODEL.ckpt."""
        if every < 0:
            raise UsageError(f"--checkpoint-every must be 0 (no checkpoints) or more, received "
                             f"{every}")
        keep = checkpoint is not None
        if checkpoint is None and every:
            checkpoint = default_checkpoint(model)
        files = cls(Path(model), Path(checkpoint) if checkpoint and every else None, every,
                    keep, Path(history) if history else None)
        named = [p.resolve() for p in (files.model, files.checkpoint, files.history) if p]
        if len(set(named)) != len(named):
            raise UsageError("the model, --checkpoint and --history must be different files")
        return files

    def check(self) -> None:
        """Fail now, before training, when one of the files cannot be written."""
        check_writable(self.model)
        if self.checkpoint is not None:
            check_writable(self.checkpoint, "the checkpoint")
        if self.history is not None:
            check_writable(self.history, "the history")

    def earlier_backup(self, resume: Path | None) -> Path | None:
        """The backup checkpoint an earlier run of this model left (it did not finish), unless
        it is the one this run resumes."""
        ckpt = self.checkpoint
        if ckpt is None or self.keep_checkpoint or not ckpt.exists():
            return None
        if resume is not None and ckpt.resolve() == Path(resume).resolve():
            return None
        return ckpt


def default_checkpoint(model: Path) -> Path:
    """MODEL.ckpt next to the model."""
    model = Path(model)
    return model.with_name(model.name + ".ckpt")


def history_columns(run: Training) -> list[str]:
    """epoch, then the metrics the run reports, in the order of the epoch lines, then seconds."""
    return ["epoch", *epoch_metrics(run.model.loss_spec.classifier, run.X_val is not None,
                                    run.scheduled), "seconds"]


class HistoryLog:
    """The --history CSV: a header, then one row per epoch, flushed as it is written.

    A resumed run rewrites the file with the epochs its checkpoint holds, then goes on.
    """

    def __init__(self, path: Path, columns: list[str], past: list[EpochReport]) -> None:
        self.columns = columns
        try:
            self._f: TextIO = open(path, "w", encoding="utf-8", newline="")
        except OSError as e:
            raise UsageError(f"{path}: cannot write the history: {e.strerror or e}") from None
        self._f.write(",".join(columns) + "\n")
        for report in past:
            self.write(report)
        self._f.flush()

    def write(self, report: EpochReport) -> None:
        values = report.as_dict()
        self._f.write(",".join(_cell(values.get(c)) for c in self.columns) + "\n")
        self._f.flush()

    def close(self) -> None:
        self._f.close()


def _cell(value) -> str:
    if value is None:
        return ""
    return str(value) if isinstance(value, int) else repr(float(value))


class FileSink(Sink):
    """Runs a training as the command line does: SIGINT/SIGTERM caught for the duration (the
    first stops after the current chunk), every epoch to the history CSV and, every
    ``checkpoint_every`` epochs, to the checkpoint. On success the model is written without
    training state and a backup checkpoint is removed. On interruption or divergence the model
    is written *with* its training state (so ``--resume MODEL`` continues it; after divergence,
    with a smaller --lr), the backup is removed, and the error goes on naming the file.
    (A display goes beside it: ``running.Sinks``.)"""

    def __init__(self, files: RunFiles) -> None:
        self.files = files
        self.log: HistoryLog | None = None
        self.saved_at = 0.0

    @contextmanager
    def session(self, run: Training) -> Iterator[StopFn | None]:
        files = self.files
        self.log = (HistoryLog(files.history, history_columns(run), run.history)
                    if files.history else None)
        self.saved_at = time.monotonic()
        try:
            with interruptible() as stop:
                yield stop
        finally:
            if self.log is not None:
                self.log.close()

    def epoch(self, run: Training, report: EpochReport) -> None:
        if self.log is not None:
            self.log.write(report)
        if _checkpoint_due(run, self.files, report.epoch, time.monotonic() - self.saved_at):
            save_model(run.model, self.files.checkpoint, *checkpoint_parts(run))
            self.saved_at = time.monotonic()

    def stopped(self, run: Training, error: Interrupted | DivergedError) -> None:
        # Either way the run is resumable: the weights (the last finite ones after a
        # divergence) go to the model file with the optimizer state.
        save_model(run.model, self.files.model, *checkpoint_parts(run))
        _remove_backup(self.files)
        error.path = self.files.model

    def finished(self, result: Result) -> None:
        save_model(result.run.model, self.files.model)
        _remove_backup(self.files)


def _checkpoint_due(run: Training, files: RunFiles, epoch: int, since: float) -> bool:
    if files.checkpoint is None or not files.checkpoint_every:
        return False
    if not files.keep_checkpoint and (run.epochs_left == 0 or since < files.backup_seconds):
        return False  # a backup: superseded by the model written next, or written recently
    return epoch % files.checkpoint_every == 0 or run.epochs_left == 0


def _remove_backup(files: RunFiles) -> None:
    if files.checkpoint is not None and not files.keep_checkpoint:
        files.checkpoint.unlink(missing_ok=True)
