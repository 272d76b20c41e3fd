"""Running a training as the command line does: ``train_and_save`` runs ``fit`` with signal
handlers (``interruptible``), checkpoints, the history CSV (``HistoryLog``), and the model file
written on success, on interruption and on divergence, to the files a ``RunFiles`` names."""

from __future__ import annotations

import signal
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, TextIO

from nncli.errors import DivergedError, Interrupted, StopNow, UsageError
from nncli.modelfile import check_writable, save_model
from nncli.train.checkpoints import checkpoint_parts
from nncli.train.loop import fit
from nncli.train.state import EpochReport, ProgressFn, Training

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


def default_checkpoint(model: Path) -> Path:
    """MODEL.ckpt next to the model."""
    model = Path(model)
    return model.with_name(model.name + ".ckpt")


def history_columns(run: Training) -> list[str]:
    """epoch, then the metrics the run reports, in the order of the epoch lines, then seconds."""
    classifier = run.model.loss_spec.classifier
    columns = ["epoch", "loss"] + (["accuracy"] if classifier else [])
    if run.X_val is not None:
        columns += ["val_loss"] + (["val_accuracy"] if classifier
                                   else ["val_mse", "val_mae", "val_r2"])
    return columns + ["seconds"]


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


class StopFlag:
    """Set by the first SIGINT/SIGTERM; ``fit`` asks it after every chunk."""

    def __init__(self) -> None:
        self.signum = 0

    def __call__(self) -> int:
        return self.signum


@contextmanager
def interruptible() -> Iterator[StopFlag]:
    """While inside: the first SIGINT or SIGTERM sets the flag yielded (fit stops after its
    current chunk), a second one raises ``StopNow`` (a KeyboardInterrupt) at once. The previous
    handlers come back on exit. Outside the main thread signals cannot be caught: the flag is
    never set and the usual handlers apply."""
    flag = StopFlag()
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return
    signals = (signal.SIGINT, signal.SIGTERM)

    def again(signum, frame):
        raise StopNow(signum)

    def first(signum, frame):
        flag.signum = signum
        for s in signals:
            signal.signal(s, again)

    before = {s: signal.getsignal(s) for s in signals}
    for s in signals:
        signal.signal(s, first)
    try:
        yield flag
    finally:
        for s, handler in before.items():
            signal.signal(s, handler if handler is not None else signal.SIG_DFL)


def train_and_save(run: Training, files: RunFiles, on_progress: ProgressFn | None = None,
                   on_epoch: Callable[[EpochReport], None] | None = None) -> None:
    """Run ``fit`` to the end and write the model, as ``nncli train`` does.

    SIGINT/SIGTERM are caught for the duration (``interruptible``). Every epoch goes to the
    history CSV and, every ``checkpoint_every`` epochs, to the checkpoint. On success the model
    is written without training state and a backup checkpoint is removed. On interruption or
    divergence the model is written *with* its training state (so ``--resume MODEL`` continues
    it; after divergence, with a smaller --lr), the backup is removed, and the error is raised
    again naming the file.
    """
    log = HistoryLog(files.history, history_columns(run), run.history) if files.history else None
    saved_at = time.monotonic()
    try:
        with interruptible() as stop:
            try:
                for report in fit(run, on_progress, stop):
                    if log is not None:
                        log.write(report)
                    if on_epoch is not None:
                        on_epoch(report)
                    if _checkpoint_due(run, files, report.epoch, time.monotonic() - saved_at):
                        save_model(run.model, files.checkpoint, *checkpoint_parts(run))
                        saved_at = time.monotonic()
            except (Interrupted, DivergedError) as e:
                # Either way the run is resumable: the weights (the last finite ones after a
                # divergence) go to the model file with the optimizer state.
                save_model(run.model, files.model, *checkpoint_parts(run))
                _remove_backup(files)
                if isinstance(e, Interrupted):
                    e.args = (f"{e}; wrote the weights as they stand, with the optimizer state, "
                              f"to {files.model}",)
                else:
                    e.args = (f"{getattr(e, 'what', e)}; wrote the last finite weights, with the "
                              f"optimizer state, to {files.model}{getattr(e, 'hint', '')}",)
                e.path = files.model
                raise
            save_model(run.model, files.model)
            _remove_backup(files)
    finally:
        if log is not None:
            log.close()


def _checkpoint_due(run: Training, files: RunFiles, epoch: int, since: float) -> bool:
    if files.checkpoint is None or not files.checkpoint_every:
        return False
    if not files.keep_checkpoint and (run.epochs_left == 0 or since < files.backup_seconds):
        return False  # a backup: superseded by the model written next, or written recently
    return epoch % files.checkpoint_every == 0 or run.epochs_left == 0


def _remove_backup(files: RunFiles) -> None:
    if files.checkpoint is not None and not files.keep_checkpoint:
        files.checkpoint.unlink(missing_ok=True)
