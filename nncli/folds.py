"""Dealing rows into K folds for cross-validation: ``assign_folds``, pure NumPy, deterministic
by its seed; what ``nncli cv`` and a cross-validated sweep both use.

Three ways, as scikit-learn's splitters (the rows that land in each fold differ from theirs):

* plain (``KFold(shuffle=True)``): the rows shuffled, then dealt round-robin, so the folds'
  sizes differ by at most one;
* stratified (``StratifiedKFold(shuffle=True)``): each class's rows shuffled and dealt
  round-robin, the deal going on from class to class, so each class's count in each fold differs
  by at most one from count / K, and the folds' sizes by at most one;
* grouped (``GroupKFold``): rows with equal group values stay in one fold; the groups are
  shuffled, then taken largest first (a stable sort, so equal sizes keep the shuffled order),
  each into the fold that holds the fewest rows so far (the lowest-numbered on a tie).
"""

from __future__ import annotations

import numpy as np

from nncli.errors import UsageError


def assign_folds(n_rows: int, k: int, seed: int, classes: np.ndarray | None = None,
                 groups: np.ndarray | None = None) -> np.ndarray:
    """The 0-based fold of each of ``n_rows`` rows, an int64 array.

    ``classes`` (one label per row, any type ``np.unique`` sorts) stratifies; ``groups`` (one
    value per row) keeps each group's rows together and excludes ``classes``. A fold is never
    empty: K must lie in 2..rows (2..groups). Raises UsageError otherwise.
    """
    if classes is not None and groups is not None:
        raise UsageError("folds are either stratified by class or grouped, not both")
    if k < 2:
        raise UsageError(f"--folds must be at least 2, received {k}")
    if k > n_rows:
        raise UsageError(f"--folds {k} is more than the {n_rows} rows: a fold would be empty")
    rng = np.random.default_rng(seed)
    if groups is not None:
        return _grouped(np.asarray(groups), k, rng)
    labels = np.zeros(n_rows, dtype=np.int64) if classes is None else np.asarray(classes)
    if len(labels) != n_rows:
        raise ValueError(f"{len(labels)} class labels for {n_rows} rows")
    _, inverse = np.unique(labels, return_inverse=True)
    inverse = inverse.reshape(-1)
    fold = np.empty(n_rows, dtype=np.int64)
    start = 0
    for c in range(int(inverse.max()) + 1 if n_rows else 0):
        rows = rng.permutation(np.flatnonzero(inverse == c))
        fold[rows] = (start + np.arange(len(rows))) % k
        start = (start + len(rows)) % k
    return fold


def _grouped(groups: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    names, inverse = np.unique(groups, return_inverse=True)
    inverse = inverse.reshape(-1)
    if k > len(names):
        raise UsageError(f"--folds {k} is more than the {len(names)} groups: a fold would be "
                         f"empty")
    sizes = np.bincount(inverse, minlength=len(names))
    order = rng.permutation(len(names))
    order = order[np.argsort(-sizes[order], kind="stable")]
    fold_of_group = np.empty(len(names), dtype=np.int64)
    load = np.zeros(k, dtype=np.int64)
    for g in order.tolist():
        f = int(np.argmin(load))
        fold_of_group[g] = f
        load[f] += sizes[g]
    return fold_of_group[inverse]


def smallest_class(classes: np.ndarray) -> tuple[object, int]:
    """The least populated class and its count (the first in sorted order on a tie)."""
    names, counts = np.unique(np.asarray(classes), return_counts=True)
    i = int(np.argmin(counts))
    return names[i].item() if hasattr(names[i], "item") else names[i], int(counts[i])
