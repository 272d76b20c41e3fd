"""What the folds add up to: the mean and standard deviation of every metric over the folds,
the confusion matrices summed, and the document ``--json`` prints and ``cv.json`` holds."""

from __future__ import annotations

from typing import Any

import numpy as np

from nncli.crossval.running import FoldResult

# A fold's entry's keys that are not measurements of its model: left out of the mean and std.
_NOT_MEASURED = ("fold", "seconds")


def mean_and_std(folds: list[dict]) -> tuple[dict, dict]:
    """The mean and the population standard deviation (ddof 0, as ``np.std`` and the users of
    scikit-learn's ``cross_validate`` compute it) of every number present in every fold's
    entry, nested objects (``macro``, ``per_class``) included, lists (the confusion matrix)
    and text left out. A NaN in any fold makes that mean NaN."""
    mean: dict = {}
    std: dict = {}
    if not folds:
        return mean, std
    for key in folds[0]:
        if key in _NOT_MEASURED or not all(key in f for f in folds):
            continue
        values = [f[key] for f in folds]
        if all(isinstance(v, dict) for v in values):
            inner = mean_and_std(values)
            if inner[0]:
                mean[key], std[key] = inner
        elif all(is_number(v) for v in values):
            array = np.array(values, dtype=np.float64)
            mean[key], std[key] = float(array.mean()), float(array.std())
    return mean, std


def pooled_confusion(folds: list[dict]) -> dict | None:
    """The folds' confusion matrices summed (every held-out row counted once), with their
    labels, when every fold has one of the same labels; else None."""
    if not folds or not all("confusion_matrix" in f for f in folds):
        return None
    labels = folds[0].get("labels")
    if any(f.get("labels") != labels for f in folds):
        return None
    total = np.sum([np.array(f["confusion_matrix"], dtype=np.int64) for f in folds], axis=0)
    return {"confusion_matrix": total.tolist(), "labels": labels}


def document(results: list[FoldResult], options: dict[str, Any]) -> dict:
    """The cross-validation as ``--json`` prints it: ``folds`` (each fold's entry),
    ``mean`` and ``std`` of each metric, ``pooled`` (the summed confusion matrix, classifiers
    with one) and ``options``."""
    folds = [r.as_dict() for r in results]
    mean, std = mean_and_std(folds)
    doc = {"folds": folds, "mean": mean, "std": std}
    pooled = pooled_confusion(folds)
    if pooled is not None:
        doc["pooled"] = pooled
    doc["options"] = options
    return doc


def is_number(value: Any) -> bool:
    """A metric's value (an int or a float, not a bool)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)
