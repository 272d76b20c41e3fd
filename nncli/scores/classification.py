"""Scores of class decisions: scikit-learn's ``confusion_matrix``,
``precision_recall_fscore_support``, ``accuracy_score``, ``balanced_accuracy_score`` and
``log_loss``, for classes numbered 0 to k-1.

Classes are always the k classes of the model (scikit-learn called with ``labels=range(k)``): a
class absent from the data is still listed, with support 0. A ratio whose denominator is 0 is 0
(scikit-learn's default ``zero_division="warn"``, without the warning): the precision of a class
never predicted, the recall of a class never true, the F1 of a class neither.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from nncli.scores.weighting import row_weights, weighted_mean


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, k: int,
                     sample_weight: np.ndarray | None = None) -> np.ndarray:
    """(k, k): rows are the true classes, columns the predicted ones; int64 counts, or float64
    sums of weights with ``sample_weight``."""
    y_true = np.asarray(y_true, dtype=np.int64).reshape(-1)
    y_pred = np.asarray(y_pred, dtype=np.int64).reshape(-1)
    w = row_weights(sample_weight, len(y_true))
    cells = np.bincount(y_true * k + y_pred, weights=w, minlength=k * k)
    return cells.reshape(k, k)


@dataclass(frozen=True)
class ClassScores:
    """Per-class scores from a confusion matrix, each of shape (k,)."""

    precision: np.ndarray
    recall: np.ndarray
    f1: np.ndarray
    support: np.ndarray   # rows (or weight) truly of the class

    @classmethod
    def of(cls, cm: np.ndarray) -> "ClassScores":
        """The scores of confusion matrix ``cm`` (rows true, columns predicted)."""
        tp = np.diag(cm).astype(np.float64)
        predicted, true = cm.sum(axis=0), cm.sum(axis=1)
        # F1 = 2 tp / (2 tp + fp + fn), scikit-learn's form: defined whenever the class is true
        # or predicted, even where precision or recall is 0
        return cls(divide(tp, predicted), divide(tp, true), divide(2 * tp, true + predicted),
                   true)

    def averages(self) -> dict[str, dict[str, float]]:
        """``macro`` (the plain mean over the k classes) and ``weighted`` (weighted by support)
        precision, recall and F1, as scikit-learn's ``average="macro"`` and ``"weighted"``."""
        parts = {"precision": self.precision, "recall": self.recall, "f1": self.f1}
        total = float(self.support.sum())
        return {"macro": {name: float(v.mean()) for name, v in parts.items()},
                "weighted": {name: (float(np.average(v, weights=self.support)) if total > 0
                                    else 0.0) for name, v in parts.items()}}


def divide(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """numerator / denominator, 0 where the denominator is 0 (scikit-learn's zero_division)."""
    numerator = np.asarray(numerator, dtype=np.float64)
    denominator = np.asarray(denominator, dtype=np.float64)
    safe = np.where(denominator == 0, 1.0, denominator)
    return np.where(denominator == 0, 0.0, numerator / safe)


def accuracy(cm: np.ndarray) -> float:
    """Fraction (of the weight) of rows whose class is predicted: ``accuracy_score``."""
    return float(np.trace(cm) / cm.sum())


def balanced_accuracy(cm: np.ndarray) -> float:
    """Mean recall over the classes present in the data (``balanced_accuracy_score``: a class
    with no true rows, or none weighing more than 0, is left out)."""
    true = cm.sum(axis=1)
    present = true > 0
    return float(np.mean(np.diag(cm)[present] / true[present]))


def log_loss(y_true: np.ndarray, proba: np.ndarray,
             sample_weight: np.ndarray | None = None) -> float:
    """Mean of -ln p(true class) (``log_loss``): ``proba`` (n, k) holds each row's
    probabilities of the k classes, or (n,) the positive class's of a binary problem (then
    [1 - p, p]); each probability is clipped to [eps, 1 - eps], eps the float64 machine
    epsilon, as scikit-learn does, and rows are not renormalised."""
    y_true = np.asarray(y_true, dtype=np.int64).reshape(-1)
    proba = np.asarray(proba, dtype=np.float64)
    if proba.ndim == 1 or proba.shape[1] == 1:
        p = proba.reshape(-1)
        proba = np.column_stack([1.0 - p, p])
    eps = np.finfo(np.float64).eps
    p_true = np.clip(proba[np.arange(len(y_true)), y_true], eps, 1 - eps)
    return float(weighted_mean(-np.log(p_true), row_weights(sample_weight, len(y_true))))
