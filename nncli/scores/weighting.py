"""Row weights as every score takes them: scikit-learn's ``sample_weight``."""

from __future__ import annotations

import numpy as np


def row_weights(sample_weight: np.ndarray | None, n: int) -> np.ndarray | None:
    """``sample_weight`` as a float64 vector of ``n`` weights, or None (every row weighs 1, and
    counts stay integers)."""
    if sample_weight is None:
        return None
    w = np.asarray(sample_weight, dtype=np.float64).reshape(-1)
    if len(w) != n:
        raise ValueError(f"{len(w)} sample weights for {n} rows")
    return w


def weighted_mean(values: np.ndarray, w: np.ndarray | None, axis: int | None = None):
    """Mean of ``values`` along ``axis``, weighted by ``w`` (np.average, as scikit-learn)."""
    return np.average(values, axis=axis, weights=w)
