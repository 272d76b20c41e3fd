"""Scores of a ranking by a positive class's score: scikit-learn's ``roc_curve``,
``roc_auc_score``, ``precision_recall_curve`` and ``average_precision_score``, and ROC AUC one
class against the rest.

Every curve is built from one walk down the distinct scores (scikit-learn's
``confusion_matrix_at_thresholds``): rows sorted by decreasing score, the weighted counts of
true and false positives accumulated, and read at the last row of each run of tied scores, so
tied rows enter a curve together, in one step. Rows of weight 0 are left out first. As in
scikit-learn, a curve's thresholds mean "positive when score >= threshold".

A ROC AUC needs both classes among the true labels: with one only, it is NaN (scikit-learn warns
and returns NaN); ``nncli eval`` writes it as null.
"""

from __future__ import annotations

import numpy as np

from nncli.scores.weighting import row_weights


def threshold_counts(y_true: np.ndarray, score: np.ndarray,
                     sample_weight: np.ndarray | None = None
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(fps, tps, thresholds): the (weighted) false and true positives when the rows scoring
    ``>= thresholds[i]`` are called positive, for each distinct score, highest first."""
    truth = np.asarray(y_true).reshape(-1) != 0
    score = np.asarray(score, dtype=np.float64).reshape(-1)
    w = row_weights(sample_weight, len(truth))
    if w is not None:
        keep = w != 0
        truth, score, w = truth[keep], score[keep], w[keep]
    # Unweighted, the counts read at the end of each run of tied scores are whole numbers,
    # whatever the order inside the run: the faster unstable sort gives the same curve. Weighted
    # sums depend on that order, so they keep the rows' own.
    order = np.argsort(-score, kind="stable" if w is not None else None)
    score, truth = score[order], truth[order].astype(np.float64)
    last = np.r_[np.flatnonzero(np.diff(score)), len(score) - 1]
    if w is None:
        tps = np.cumsum(truth)[last]
        fps = 1.0 + last - tps
    else:
        w = w[order]
        tps = np.cumsum(truth * w)[last]
        # a cumulative sum of its own keeps fps non-decreasing despite rounding
        fps = np.cumsum((1.0 - truth) * w)[last]
    return fps, tps, score[last]


def roc_curve(y_true: np.ndarray, score: np.ndarray, sample_weight: np.ndarray | None = None,
              drop_intermediate: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(fpr, tpr, thresholds), from (0, 0) at threshold +inf to (1, 1); ``drop_intermediate``
    leaves out the points on a straight line between their neighbours (scikit-learn's
    default). A rate whose class is absent is NaN throughout."""
    fps, tps, thresholds = threshold_counts(y_true, score, sample_weight)
    if drop_intermediate and len(fps) > 2:
        bends = np.r_[True, np.logical_or(np.diff(fps, 2), np.diff(tps, 2)), True]
        fps, tps, thresholds = fps[bends], tps[bends], thresholds[bends]
    fps, tps = np.r_[0.0, fps], np.r_[0.0, tps]
    thresholds = np.r_[np.inf, thresholds]
    fpr = fps / fps[-1] if fps[-1] > 0 else np.full(fps.shape, np.nan)
    tpr = tps / tps[-1] if tps[-1] > 0 else np.full(tps.shape, np.nan)
    return fpr, tpr, thresholds


def trapezoid(y: np.ndarray, x: np.ndarray) -> float:
    """The area under the polyline through (x, y), x non-decreasing (scikit-learn's ``auc``)."""
    return float((np.diff(x) * (y[1:] + y[:-1]) / 2.0).sum())


def roc_auc(y_true: np.ndarray, score: np.ndarray,
            sample_weight: np.ndarray | None = None) -> float:
    """Area under the ROC curve; NaN when y_true holds one class only."""
    if len(np.unique(np.asarray(y_true).reshape(-1) != 0)) != 2:
        return float("nan")
    fpr, tpr, _ = roc_curve(y_true, score, sample_weight)
    return trapezoid(tpr, fpr)


def precision_recall_curve(y_true: np.ndarray, score: np.ndarray,
                           sample_weight: np.ndarray | None = None
                           ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(precision, recall, thresholds) by increasing threshold, as scikit-learn orders them:
    one point per distinct score, then the point (recall 0, precision 1) without a threshold.
    Precision is 0 where nothing is called positive; recall is 1 throughout when no row is
    positive."""
    fps, tps, thresholds = threshold_counts(y_true, score, sample_weight)
    called = tps + fps
    precision = np.where(called != 0, tps / np.where(called != 0, called, 1.0), 0.0)
    recall = tps / tps[-1] if tps[-1] != 0 else np.ones_like(tps)
    return np.r_[precision[::-1], 1.0], np.r_[recall[::-1], 0.0], thresholds[::-1]


def average_precision(y_true: np.ndarray, score: np.ndarray,
                      sample_weight: np.ndarray | None = None) -> float:
    """Sum over the precision-recall curve's steps of precision x the recall gained (the step
    function, not interpolated): ``average_precision_score``. 0 when no row is positive."""
    precision, recall, _ = precision_recall_curve(y_true, score, sample_weight)
    return float(max(0.0, -np.sum(np.diff(recall) * precision[:-1])))


def one_vs_rest(y_true: np.ndarray, proba: np.ndarray, score=roc_auc,
                sample_weight: np.ndarray | None = None) -> np.ndarray:
    """``score`` (roc_auc, average_precision) of each class j of ``proba`` (n, k) against the
    others: labels ``y_true == j``, scores ``proba[:, j]``; (k,), NaN where undefined. Their
    mean is scikit-learn's ``roc_auc_score(multi_class="ovr", average="macro",
    labels=range(k))``, NaN when a class is absent from y_true."""
    y_true = np.asarray(y_true).reshape(-1)
    return np.array([score(y_true == j, proba[:, j], sample_weight)
                     for j in range(proba.shape[1])])
