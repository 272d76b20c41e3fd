"""The rows of a cross-validation and their folds: the data file read once, the rows ``nncli
train`` would train on, each dealt into a fold (``plan_folds``), and each fold's training and
held-out rows as tables of their own, read through the same code as a file of those rows."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np

from nncli.data import Dataset, Table, read_table, training_data
from nncli.data.cells import column_text
from nncli.data.columns import split_names
from nncli.data.table import column_label
from nncli.data.targets import resolve_targets
from nncli.errors import DataError, UsageError
from nncli.folds import assign_folds, smallest_class
from nncli.losses import Loss, get_loss
from nncli.options import TrainConfig
from nncli.train.inputs import read_options


@dataclass
class Folds:
    """A data file's rows dealt into ``k`` folds.

    ``rows`` are the table's rows that ``nncli train`` on the whole file would train on (those
    ``--missing drop`` leaves out are in no fold), in file order; ``fold`` holds each one's
    0-based fold. ``config`` is the run's, with the ``group`` column added to ``ignore``.
    """

    table: Table
    rows: np.ndarray
    fold: np.ndarray
    k: int
    config: TrainConfig
    stratified: bool = False
    group: str | None = None
    messages: list[str] = field(default_factory=list)

    def training_rows(self, i: int) -> Table:
        """Fold ``i``'s training rows (every other fold's), in file order."""
        return self._rows(self.fold != i)

    def held_out_rows(self, i: int) -> Table:
        """Fold ``i``'s own rows, which its model is judged on."""
        return self._rows(self.fold == i)

    def lines(self, i: int, held_out: bool = False) -> np.ndarray:
        """The 1-based file lines (CSV) or 0-based rows (NPZ) of fold ``i``'s training rows,
        or of its held-out ones."""
        rows = self.rows[(self.fold == i) == held_out]
        return self.table.line_numbers[rows] if self.table.kind == "csv" else rows

    def _rows(self, chosen: np.ndarray) -> Table:
        keep = np.zeros(self.table.n_rows, dtype=bool)
        keep[self.rows[chosen]] = True
        return self.table.subset(keep)


def plan_folds(config: TrainConfig, data: str, k: int, targets: list[str] | None = None,
               stratify: bool = True, group: str | None = None, stdin=None) -> Folds:
    """Read ``data`` (``-``: standard input) once and deal its rows into ``k`` folds, seeded by
    ``config.seed``: stratified by class for a classifier with one class per row unless
    ``stratify`` is False, kept together by the values of column ``group`` when given (then
    not stratified). Everything ``nncli train`` would refuse in the file is refused here, before
    any fold trains."""
    loss = get_loss(config.loss)
    weight = config.sample_weight
    table = read_table(data, stdin, config.delimiter, config.encoding,
                       members=(weight,) if weight else ())
    if group is not None:
        config = _ignore_group(config, table, group, targets)
    whole = training_data(table.subset(np.ones(table.n_rows, dtype=bool)), targets,
                          options=read_options(config))
    rows = np.flatnonzero(_kept(table, whole))
    strata = _strata(loss, whole.Y) if stratify and group is None else None
    groups = column_text(table, _column(table, group))[rows] if group is not None else None
    fold = assign_folds(len(rows), k, config.seed, strata, groups)
    messages = whole.messages()
    if strata is not None:
        name, count = smallest_class(_named(strata, whole))
        if count < k:
            # scikit-learn's StratifiedKFold warns alike and goes on
            shown = f"{name:g}" if isinstance(name, float) else name
            messages.append(f"note: the least populated class ({shown}) has only {count} "
                            f"row{'s' if count > 1 else ''}, fewer than the {k} folds: some "
                            f"folds hold none of it")
    if whole.classes is not None:
        _check_classes_in_training(whole, fold, k)
    return Folds(table, rows, fold, k, config, strata is not None, group, messages)


def _ignore_group(config: TrainConfig, table: Table, group: str,
                  targets: list[str] | None) -> TrainConfig:
    """The config with the group column left out of the features, as --ignore does (unless
    --ignore names it already, or --features leaves it out)."""
    if table.kind != "csv":
        raise UsageError(f"--group {group}: an NPZ file has no named columns; --group needs a "
                         f"CSV column")
    j = _column(table, group)
    where = column_label(table, j)
    if j in resolve_targets(table, targets):
        raise UsageError(f"--group {group}: column {where} is a target; the group column "
                         f"says which rows belong together")
    features = split_names(tuple(config.features))
    if features:
        if j in {_column(table, name) for name in features}:
            raise UsageError(f"--group {group}: column {where} is in --features; the group "
                             f"column cannot be a feature")
        return config
    if j in {_column(table, name) for name in config.ignore}:
        return config
    return dataclasses.replace(config, ignore=[*config.ignore, group])


def _column(table: Table, name: str) -> int:
    return resolve_targets(table, [name], what="column", option="--group")[0]


def _kept(table: Table, whole: Dataset) -> np.ndarray:
    """Per table row: is it one of the whole file's training rows (not dropped)?"""
    if table.kind == "csv":
        return np.isin(table.line_numbers, whole.line_numbers)
    return ~np.isin(np.arange(table.n_rows), whole.dropped)


def _strata(loss: Loss, Y: np.ndarray) -> np.ndarray | None:
    """Each row's class, what a classifier's folds are stratified by; None where a row has no
    one class (regression, several bce labels)."""
    if not loss.classifier:
        return None
    if Y.shape[1] == 1:
        return Y[:, 0] >= 0.5 if loss.targets == "binary" else Y[:, 0]
    return Y.argmax(axis=1) if loss.targets == "onehot" else None


def _named(strata: np.ndarray, whole: Dataset) -> np.ndarray:
    """The classes as the file spells them (text labels), for messages."""
    if whole.classes is None:
        return strata.astype(np.float64) if strata.dtype == bool else strata
    return np.array(whole.classes)[strata.astype(np.int64)]


def _check_classes_in_training(whole: Dataset, fold: np.ndarray, k: int) -> None:
    """Text class labels: every fold's training rows must hold every class, or its model
    would number the classes differently and could not read its held-out labels."""
    codes = whole.Y[:, 0].astype(np.int64)
    for i in range(k):
        present = np.unique(codes[fold != i])
        if len(present) < len(whole.classes):
            lacking = sorted(set(range(len(whole.classes))) - set(present.tolist()))
            name = whole.classes[lacking[0]]
            raise DataError(f"fold {i + 1}'s training rows hold no row of class '{name}' (it "
                            f"has {int((codes == lacking[0]).sum())} in all); give it more "
                            f"rows or use fewer folds", whole.source)
