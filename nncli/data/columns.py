"""Which of a table's columns are features at training, and which are forced to a kind: the
columns named by ``--features``, ``--ignore``, ``--categorical`` and ``--numeric`` (each by
header name or 0-based index, as ``--target``), resolved against the file's columns and checked
against each other, the targets and the ``--sample-weight`` column once, before any cell is
read as a number.

Columns left out this way are recorded in the model's schema (``Schema.ignored``, with why), so
``eval`` and ``predict`` read the model's columns by name from a file with any other columns.
"""

from __future__ import annotations

from dataclasses import dataclass

from nncli.data.schema import IGNORED, NOT_SELECTED, SAMPLE_WEIGHT
from nncli.data.table import Table, column_label
from nncli.data.targets import resolve_targets
from nncli.errors import DataError

# Per option naming columns: why it cannot name a target column (the end of the error).
_TARGET_CLASH = {
    "--features": "a column cannot be both a target and a feature",
    "--ignore": "targets are chosen with --target",
    "--categorical": "class labels are categories already",
    "--numeric": "the loss decides how targets are read",
}
# Per option naming columns: why it cannot name the --sample-weight column.
_WEIGHT_CLASH = {
    "--features": "the row weights are not a feature",
    "--ignore": "it is left out of the features already",
    "--categorical": "the row weights are numbers",
    "--numeric": "it is read as numbers already",
}
# The kind each forcing option gives its columns.
KIND_OPTIONS = {"--categorical": "categorical", "--numeric": "numeric"}


@dataclass
class ColumnChoice:
    """The feature columns of a training table, as the options chose them."""

    features: list[int]                 # table columns, in feature order
    left_out: list[tuple[int, str]]     # (table column, why) for columns the options leave out
    kinds: dict[int, str]               # table column -> "categorical" or "numeric" (forced)


def split_names(values: tuple[str, ...]) -> list[str]:
    """``--features a,b --features c`` -> ["a", "b", "c"]."""
    return [part.strip() for value in values for part in value.split(",") if part.strip()]


def choose_columns(table: Table, target_cols: list[int], features: tuple[str, ...] = (),
                   ignore: tuple[str, ...] = (), forced: dict[str, tuple[str, ...]] | None = None,
                   weight: int | None = None) -> ColumnChoice:
    """The feature columns of ``table``: those of ``features`` in that order when given, else
    every column but the targets; less those of ``ignore`` and ``weight`` (the --sample-weight
    column, resolved by the caller). ``forced`` maps --categorical and --numeric to the columns
    they name. Anything contradictory is a one-line DataError."""
    targets = set(target_cols)
    chosen = _resolve_each(table, "--features", split_names(features), targets, weight)
    ignored = _resolve_each(table, "--ignore", list(ignore), targets, weight)
    both = [name for name, j in chosen if j in {i for _, i in ignored}]
    if both:
        raise DataError(f"column {column_label(table, dict(chosen)[both[0]])} is both in "
                        f"--features and in --ignore; give it to one of them", table.source)
    out = {j for _, j in ignored}
    left_out = [(j, IGNORED) for _, j in ignored]
    if weight is not None:
        out.add(weight)
        left_out.append((weight, SAMPLE_WEIGHT))
    if chosen:
        cols = [j for _, j in chosen]
        left_out += [(j, NOT_SELECTED) for j in range(table.n_columns)
                     if j not in targets and j not in out and j not in cols]
    else:
        cols = [j for j in range(table.n_columns) if j not in targets and j not in out]
    if not cols:
        by = " and ".join(flag for flag, given in (("--ignore", ignored),
                                                    ("--sample-weight", weight is not None))
                          if given)
        why = (f"all {table.n_columns} columns are targets" if not out else
               f"of its {table.n_columns} columns, {len(out)} are left out by {by} and "
               f"the others are targets")
        raise DataError(f"no feature columns left: {why}", table.source)
    left_out.sort()
    return ColumnChoice(cols, left_out,
                        _kinds(table, forced or {}, targets, weight, dict(left_out)))


def _kinds(table: Table, forced: dict[str, tuple[str, ...]], targets: set[int],
           weight: int | None, left_out: dict[int, str]) -> dict[int, str]:
    """Table column -> the kind --categorical or --numeric forces on it."""
    kinds: dict[int, str] = {}
    for flag, names in forced.items():
        for name, j in _resolve_each(table, flag, list(names), targets, weight, repeats=True):
            if j in left_out:
                raise DataError(f"{flag} {name}: column {column_label(table, j)} is not a "
                                f"feature ({left_out[j]})", table.source)
            if kinds.get(j, KIND_OPTIONS[flag]) != KIND_OPTIONS[flag]:
                raise DataError(f"column {column_label(table, j)} is given to both "
                                f"--categorical and --numeric", table.source)
            kinds[j] = KIND_OPTIONS[flag]
    return kinds


def _resolve_each(table: Table, flag: str, names: list[str], targets: set[int],
                  weight: int | None, repeats: bool = False) -> list[tuple[str, int]]:
    """(name as typed, table column) for each name an option gives, refusing targets and the
    --sample-weight column ``weight`` (and, unless ``repeats``, a column named twice)."""
    out: list[tuple[str, int]] = []
    for name in names:
        j = resolve_targets(table, [name], what="column", option=flag)[0]
        if j in targets:
            raise DataError(f"{flag} {name}: that is a target column; {_TARGET_CLASH[flag]}",
                            table.source)
        if j == weight:
            raise DataError(f"{flag} {name}: that is the --sample-weight column; "
                            f"{_WEIGHT_CLASH[flag]}", table.source)
        if not repeats and j in {i for _, i in out}:
            raise DataError(f"{flag}: column {column_label(table, j)} is given twice",
                            table.source)
        out.append((name, j))
    return out
