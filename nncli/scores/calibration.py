"""Reliability-diagram bins: scikit-learn's ``calibration_curve``, with each bin's row count.

The probabilities are cut into ``n_bins`` bins, of equal width (``uniform``) or holding equal
numbers of rows (``quantile``); for each bin holding a row: the fraction of its rows truly
positive, their mean probability and their count. Like scikit-learn's, it takes no weights.
"""

from __future__ import annotations

import numpy as np

STRATEGIES = ("uniform", "quantile")


def calibration_curve(y_true: np.ndarray, proba: np.ndarray, n_bins: int = 5,
                      strategy: str = "uniform") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(fraction positive, mean probability, rows) of each non-empty bin, lowest first."""
    _, positive, mean, total = calibration_bins(y_true, proba, n_bins, strategy)
    filled = total != 0
    return positive[filled], mean[filled], total[filled]


def calibration_bins(y_true: np.ndarray, proba: np.ndarray, n_bins: int = 5,
                     strategy: str = "uniform"
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(edges (n_bins + 1,), fraction positive, mean probability, rows) of every bin, empty
    ones included (their fraction and mean NaN): what a histogram of the probabilities
    beside the reliability diagram needs."""
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}; expected one of {STRATEGIES}")
    truth = (np.asarray(y_true).reshape(-1) != 0).astype(np.float64)
    proba = np.asarray(proba, dtype=np.float64).reshape(-1)
    edges = (np.linspace(0.0, 1.0, n_bins + 1) if strategy == "uniform"
             else np.percentile(proba, np.linspace(0, 1, n_bins + 1) * 100))
    bins = np.searchsorted(edges[1:-1], proba)
    total = np.bincount(bins, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        positive = np.bincount(bins, weights=truth, minlength=n_bins) / total
        mean = np.bincount(bins, weights=proba, minlength=n_bins) / total
    return edges, positive, mean, total
