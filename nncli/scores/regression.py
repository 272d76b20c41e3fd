"""Regression scores: scikit-learn's ``mean_squared_error``, ``root_mean_squared_error``,
``mean_absolute_error``, ``r2_score`` and ``max_error``, per output and over all outputs.

Per output they are scikit-learn's for that column (R^2 with its ``force_finite``: 1 for a
constant column predicted exactly, else 0 when the column is constant). Over all outputs: mse and
mae averaged over the outputs (scikit-learn's ``multioutput="uniform_average"``), rmse the mean of
the outputs' RMSE (the same), max_error the largest over every output; r2 is nncli's own,
1 - SS_res / SS_tot summed over all outputs (Keras's R2Score pools them alike), NaN when every
target column is constant. ``max_error`` takes no weights, as scikit-learn's.
"""

from __future__ import annotations

import numpy as np

from nncli.scores.weighting import row_weights, weighted_mean

PER_OUTPUT = ("mse", "rmse", "mae", "r2", "max_error")


def _columns(y_true: np.ndarray, y_pred: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y_true = np.asarray(y_true, dtype=np.float64)
    y_pred = np.asarray(y_pred, dtype=np.float64)
    return y_true.reshape(len(y_true), -1), y_pred.reshape(len(y_pred), -1)


def _sums_of_squares(y_true: np.ndarray, y_pred: np.ndarray,
                     w: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Per column: (weighted sum of squared errors, of squared deviations from the weighted
    mean)."""
    ww = np.ones(len(y_true)) if w is None else w
    residual = (ww[:, None] * (y_true - y_pred) ** 2).sum(axis=0)
    total = (ww[:, None] * (y_true - weighted_mean(y_true, w, axis=0)) ** 2).sum(axis=0)
    return residual, total


def per_output(y_true: np.ndarray, y_pred: np.ndarray,
               sample_weight: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Each score of ``PER_OUTPUT`` for each column of (n, t) targets and predictions, (t,)."""
    y_true, y_pred = _columns(y_true, y_pred)
    w = row_weights(sample_weight, len(y_true))
    err = y_pred - y_true
    mse = weighted_mean(err ** 2, w, axis=0)
    residual, total = _sums_of_squares(y_true, y_pred, w)
    r2 = np.ones(len(residual))
    defined = (total != 0) & (residual != 0)
    r2[defined] = 1.0 - residual[defined] / total[defined]
    r2[(residual != 0) & (total == 0)] = 0.0
    return {"mse": mse, "rmse": np.sqrt(mse), "mae": weighted_mean(np.abs(err), w, axis=0),
            "r2": r2, "max_error": np.abs(err).max(axis=0)}


def overall(y_true: np.ndarray, y_pred: np.ndarray,
            sample_weight: np.ndarray | None = None) -> dict[str, float]:
    """mse, rmse, mae, r2 and max_error over all outputs (see the module docstring)."""
    y_true, y_pred = _columns(y_true, y_pred)
    w = row_weights(sample_weight, len(y_true))
    columns = per_output(y_true, y_pred, w)
    residual, total = _sums_of_squares(y_true, y_pred, w)
    r2 = 1.0 - residual.sum() / total.sum() if total.sum() > 0 else float("nan")
    return {"mse": float(columns["mse"].mean()), "rmse": float(columns["rmse"].mean()),
            "mae": float(columns["mae"].mean()), "r2": float(r2),
            "max_error": float(columns["max_error"].max())}
