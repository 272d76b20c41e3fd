"""Training and judging each fold: ``run_folds`` trains fold after fold through ``train.run``
(the one training path, so a fold's model is ``nncli train``'s on those rows) and evaluates
each on its held-out rows as ``nncli eval`` would; ``-o DIR`` keeps the models
(``CvFolder``)."""

from __future__ import annotations

import re
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

from nncli.crossval.plan import Folds
from nncli.data import Dataset, training_data
from nncli.errors import DivergedError, Interrupted, UsageError
from nncli.evaluate import evaluate
from nncli.files import check_writable
from nncli.model import Model
from nncli.modelfile import save_model
from nncli.train import Result, Sink, Sinks, Training, interruptible, load_inputs, run
from nncli.train.state import StopFn

SUMMARY_FILE = "cv.json"
_FOLD_FILE = re.compile(r"fold[1-9][0-9]*\.safetensors")


def fold_file(i: int) -> str:
    """The file name of fold ``i``'s model (1-based)."""
    return f"fold{i}.safetensors"


@dataclass
class CvFolder:
    """``-o DIR``: fold1.safetensors ... foldK.safetensors and cv.json. A folder that exists
    must be empty or hold an earlier cross-validation's files only: those stay until the first
    fold's model is written, and go then, so the folder never mixes two runs."""

    path: Path

    def check(self) -> None:
        """Fail now, before training, when the folder cannot be used."""
        path = self.path
        if path.exists() and not path.is_dir():
            raise UsageError(f"-o {path}: not a folder (cv writes one model per fold and "
                             f"{SUMMARY_FILE} into a folder)")
        if not path.exists():
            parent = path.parent if str(path.parent) else Path(".")
            if not parent.is_dir():
                raise UsageError(f"-o {path}: folder '{parent}' does not exist")
            return
        foreign = sorted(p.name for p in path.iterdir() if not self._ours(p.name))
        if foreign:
            raise UsageError(f"-o {path}: the folder holds files of something else "
                             f"({', '.join(foreign[:3])}{', ...' if len(foreign) > 3 else ''}); "
                             f"give a new or empty folder")
        check_writable(path / SUMMARY_FILE, "the cross-validation")

    def model(self, i: int) -> Path:
        """Where fold ``i``'s model goes (1-based)."""
        return self.path / fold_file(i)

    def save(self, i: int, model) -> None:
        """Write fold ``i``'s model; the first creates the folder or clears an earlier run's
        files out of it."""
        if i == 1:
            self.path.mkdir(exist_ok=True)
            for p in self.path.iterdir():
                if self._ours(p.name):
                    p.unlink()
        save_model(model, self.model(i))

    @staticmethod
    def _ours(name: str) -> bool:
        return name == SUMMARY_FILE or _FOLD_FILE.fullmatch(name) is not None


@dataclass
class FoldResult:
    """One fold: its number (1-based), how many rows trained its model (and validated it,
    split off by --validation-split, as ``nncli train --json``'s ``rows`` counts them) over how
    many epochs, the model's metrics on the held-out rows (``nncli eval``'s report), what
    reading those said, and the model file when kept."""

    fold: int
    train_rows: int
    validation_rows: int
    epochs: int
    metrics: dict
    seconds: float
    model: Path | None = None
    messages: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        """The fold's entry of ``--json``'s ``folds``: fold, model, train_rows,
        validation_rows, epochs, seconds, then the metrics under ``eval --json``'s names
        (``rows``: the held-out rows)."""
        head = {"fold": self.fold, "model": None if self.model is None else str(self.model),
                "train_rows": self.train_rows, "validation_rows": self.validation_rows,
                "epochs": self.epochs,
                "seconds": round(self.seconds, 3)}
        return {**head, **self.metrics}


class FoldSink(Sink):
    """Fold ``i``'s run as the command line runs it: SIGINT/SIGTERM caught for its duration
    (the first stops it after the current chunk), and its model written to ``folder`` when it
    finishes (when kept); an unfinished fold writes nothing."""

    def __init__(self, folder: CvFolder | None, i: int) -> None:
        self.folder, self.i = folder, i

    @contextmanager
    def session(self, run: Training) -> Iterator[StopFn | None]:
        with interruptible() as stop:
            yield stop

    def finished(self, result: Result) -> None:
        if self.folder is not None:
            self.folder.save(self.i, result.run.model)


def held_out_data(folds: Folds, i: int, model: Model, targets: list[str] | None = None
                  ) -> Dataset:
    """Fold ``i``'s held-out rows (1-based) read through its ``model``'s columns, as ``nncli
    eval`` reads a file of them: a category its training rows never had encodes as zeros,
    missing numbers take its means."""
    return training_data(folds.held_out_rows(i - 1), targets, classes=model.classes,
                         schema=model.input_schema())


def run_folds(folds: Folds, targets: list[str] | None = None,
              validation_data: str | None = None, init_from: str | None = None,
              folder: CvFolder | None = None,
              display: Callable[[int], object] | None = None,
              done: Callable[[FoldResult], None] | None = None) -> list[FoldResult]:
    """Train and judge every fold, in order. Each fold's model is what ``nncli train`` with
    ``folds.config``, ``targets``, ``validation_data`` and ``init_from`` writes for a file of
    that fold's training rows; it is evaluated on its held-out rows through its own columns
    (unseen categories encode as zeros, missing numbers take its training means). ``display(i)``
    gives a sink (see ``train.Sinks``) that hears of fold ``i``'s run (1-based); ``done`` hears
    of each finished fold. An interruption stops the folds after the current chunk; the
    finished folds' models stay in ``folder``."""
    config, results = folds.config, []
    for i in range(1, folds.k + 1):
        start = time.perf_counter()
        inputs = load_inputs(config, folds.training_rows(i - 1), validation_data, targets,
                             init_from)
        sinks = [display(i)] if display is not None else []
        try:
            result = run(config, inputs, Sinks(*sinks, FoldSink(folder, i)), own_data=True)
        except Interrupted as e:
            kept = (f"; the {i - 1} finished folds' models are in {folder.path}"
                    if folder is not None and i > 1 else "")
            raise Interrupted(f"interrupted in fold {i} of {folds.k}{kept}", e.signum) from None
        except DivergedError as e:
            raise DivergedError(f"fold {i} of {folds.k}: {e.what}", e.epoch, e.batch,
                                e.hint) from None
        model = result.model
        held = held_out_data(folds, i, model, targets)
        metrics = evaluate(model, held.X, held.Y, held.source, held.line_numbers, own_data=True)
        trained = result.run
        fold = FoldResult(i, len(trained.X), 0 if trained.X_val is None else len(trained.X_val),
                          len(trained.history), metrics, time.perf_counter() - start,
                          folder.model(i) if folder is not None else None, held.messages())
        results.append(fold)
        if done is not None:
            done(fold)
    return results
