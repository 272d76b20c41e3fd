"""The decision threshold on a positive class's probability that maximises F1 on the data given.

nncli calls a row positive when its probability is above the threshold, ``p > T`` (Keras's
``BinaryAccuracy``, ``Precision`` and ``Recall``, and nncli's own default T = 0.5), unlike the
thresholds of scikit-learn's curves, which call it positive at ``p >= T``. So the candidates
here are T = each distinct score of the rows weighing more than 0 (positive: the rows scoring
above it) and T = 0 (every row positive but those of probability 0); the best T is returned in
the same sense, ready for ``--threshold``. Among equal F1 the highest T wins (the fewest rows
called positive). Precision, recall and F1 follow scikit-learn's ``precision_recall_fscore_support``
for the positive class: 0 when their denominator is 0.
"""

from __future__ import annotations

import numpy as np

from nncli.scores.classification import divide
from nncli.scores.ranking import threshold_counts


def best_f1_threshold(y_true: np.ndarray, score: np.ndarray,
                      sample_weight: np.ndarray | None = None) -> dict[str, float]:
    """{threshold, f1, precision, recall} of the threshold T that maximises F1 when the rows
    with ``score > T`` are called positive (see the module docstring)."""
    fps, tps, thresholds = threshold_counts(y_true, score, sample_weight)
    # T = thresholds[i] calls positive the rows of the higher distinct scores: the counts of
    # thresholds[i - 1] in >= terms (none for the highest score)
    tp, fp = np.r_[0.0, tps[:-1]], np.r_[0.0, fps[:-1]]
    candidates = thresholds
    if thresholds[-1] > 0:
        tp, fp, candidates = np.r_[tp, tps[-1]], np.r_[fp, fps[-1]], np.r_[thresholds, 0.0]
    positives = tps[-1]
    f1 = divide(2 * tp, tp + fp + positives)
    best = int(np.argmax(f1))   # the first maximum: the highest threshold
    return {"threshold": float(candidates[best]), "f1": float(f1[best]),
            "precision": float(divide(tp[best], tp[best] + fp[best])),
            "recall": float(divide(tp[best], positives))}
