"""What the MODELS of ``nncli plot`` stand for: each a model file (or checkpoint), a sweep's
folder (its best trials' models) or a cross-validation's folder (its folds' models), expanded
into *members*, one per model drawn, each with its legend label."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

from nncli.errors import UsageError

if TYPE_CHECKING:
    from nncli.crossval import Folds
    from nncli.model import Model


@dataclass
class CvSource:
    """A cross-validation's folder (``nncli cv -o DIR``): its ``cv.json`` document, and the
    folds it recorded, planned again on demand (``folds``)."""

    path: Path
    label: str
    document: dict
    _folds: "Folds | None" = field(default=None, repr=False)

    @property
    def k(self) -> int:
        return len(self.document.get("folds") or [])

    def folds(self, data: str | None = None) -> "Folds":
        """The rows of each fold, dealt again from the data file recorded in cv.json (or
        ``data``, the same file moved) as ``nncli cv`` dealt them."""
        if self._folds is None:
            from nncli.crossval import replan

            self._folds = replan(self.document["options"], data, str(self.path / "cv.json"))
        return self._folds


@dataclass
class Member:
    """One model to draw: its legend label and file; a fold of a cross-validation also says
    which (``fold``, 1-based) and of which folder."""

    label: str
    path: Path
    fold: int | None = None
    cv: CvSource | None = None
    _model: "Model | None" = field(default=None, repr=False)

    @property
    def model(self) -> "Model":
        """The model, read once."""
        if self._model is None:
            from nncli.modelfile import load_model

            self._model = load_model(self.path)
        return self._model


@dataclass(frozen=True)
class Need:
    """What a member must have to be drawn, and how the message says it (``with a
    history``): a sweep's trials without it are passed over."""

    test: Callable[[Member], bool]
    says: str


def members(paths: Sequence[str | os.PathLike], labels: Sequence[str] | None = None,
            top: int = 5, need: Need | None = None) -> list[Member]:
    """The members of MODELS: a model file is one, labelled by ``labels`` or by its file name
    (the path as given where two files share a name); a sweep's folder stands for its ``top``
    best trials (those meeting ``need``), labelled by their options; a cross-validation's
    folder for its folds, ``fold 1`` ... (after its label when ``labels`` or several MODELS are
    given)."""
    if labels and len(labels) != len(paths):
        raise UsageError(f"expected one --label per model ({len(paths)}), received "
                         f"{len(labels)}")
    named = bool(labels) or len(paths) > 1
    if not labels:
        names = [Path(p).name for p in paths]
        labels = [n if names.count(n) == 1 else str(p) for n, p in zip(names, paths)]
    out: list[Member] = []
    for path, label in zip(paths, labels):
        path = Path(path)
        if not path.is_dir():
            out.append(Member(label, path))
        elif (path / "cv.json").is_file():
            out += cv_members(read_cv(path, label), named)
        elif (path / "leaderboard.csv").is_file():
            out += sweep_members(path, top, need)
        else:
            raise UsageError(f"{path}: a folder, but not a sweep's (no leaderboard.csv) nor a "
                             f"cross-validation's (no cv.json)")
    return out


def sweep_members(folder: Path, top: int, need: Need | None = None) -> list[Member]:
    """The ``top`` best trials of a sweep's folder that have a model (meeting ``need``), from
    its leaderboard.csv (best first), each labelled by the options that vary (``--arch
    25relu-10linear --lr 0.01``); a cross-validated sweep's trial by its first fold's model."""
    from nncli.sweep.results import read_leaderboard

    board = folder / "leaderboard.csv"
    rows = read_leaderboard(board)
    if not rows:
        raise UsageError(f"{board}: no trial to plot")
    out: list[Member] = []
    for row in rows:
        if len(out) == top:
            break
        if not row.model:
            continue
        label = " ".join(f"--{name.replace('_', '-')} {value}"
                         for name, value in row.config.items()) or row.trial_id
        path = Path(row.model)
        if path.is_dir():   # a cross-validated trial: its folds' models, drawn by the first
            path, label = path / "fold1.safetensors", f"{label} (fold 1)"
        member = Member(label, path)
        if need is None or need.test(member):
            out.append(member)
    if not out:
        says = f" {need.says}" if need is not None else ""
        raise UsageError(f"{folder}: no trial of the sweep has a model{says}")
    return out


def read_cv(folder: Path, label: str) -> CvSource:
    """The cross-validation kept in ``folder``; a damaged cv.json is one line."""
    path = folder / "cv.json"
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise UsageError(f"{path}: not a cross-validation's document ({e})") from None
    if not (isinstance(document, dict) and isinstance(document.get("folds"), list)
            and isinstance(document.get("options"), dict) and document["folds"]):
        raise UsageError(f"{path}: not a cross-validation's document (no 'folds' and "
                         f"'options')")
    return CvSource(folder, label, document)


def cv_members(cv: CvSource, named: bool) -> list[Member]:
    """One member per fold of ``cv``: its model ``foldI.safetensors`` in the folder."""
    from nncli.crossval import fold_file

    prefix = f"{cv.label} " if named else ""
    return [Member(f"{prefix}fold {i}", cv.path / fold_file(i), i, cv)
            for i in range(1, cv.k + 1)]
