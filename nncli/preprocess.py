"""The preprocessing stage: what a model does to raw features before its first layer, and to
targets around its last, fitted once on the training rows and stored in the model file.

Features: a missing number (NaN) in a numeric feature becomes its column's fill value (the
column's mean over the training rows, kept in the column schema), then every feature is
standardised ``(x - mean) / std`` (one-hot features keep mean 0 and std 1, so they stay 0/1).
Targets (mse only, unless --no-normalize-target): the network learns ``(Y - target_mean) /
target_std`` and its outputs are mapped back. Training, validation, eval, predict, gradcheck on
a model and the ONNX exporter all go through this one stage, so they cannot disagree.

``transform`` returns a new array and never changes the caller's; ``transform_in_place`` is for
a caller that owns its array (training on a large data set must not hold two copies of it).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from nncli.data.schema import Schema
from nncli.errors import DataError

# A feature whose spread is below this is left unscaled rather than blown up (Keras divides by
# max(std, 1e-7), which turns a constant column seen differently at predict time into +-1e7).
MIN_STD = 1e-7
# Cells per block when computing feature statistics: bounds the float64 temporaries.
STATS_BLOCK = 1 << 20


@dataclass
class Preprocessing:
    """A model's fitted preprocessing: fill values (in ``schema``), feature standardisation and
    target scaling. Arrays are float32; ``mean``/``std`` have one entry per feature,
    ``target_mean``/``target_std`` one per output (None: the targets are used as they are)."""

    mean: np.ndarray                          # (n_features,) 0 without normalisation
    std: np.ndarray                           # (n_features,) 1 without
    schema: Schema | None = None              # the input columns and their fill values; None:
    #                                           files from before schemas (no fill values)
    target_mean: np.ndarray | None = None     # (n_outputs,) mse: the targets' mean
    target_std: np.ndarray | None = None      # (n_outputs,) and population std

    @classmethod
    def identity(cls, n_features: int, schema: Schema | None = None) -> "Preprocessing":
        """A stage that changes nothing (a new model before fitting, or --no-normalize)."""
        return cls(np.zeros(n_features, np.float32), np.ones(n_features, np.float32), schema)

    @classmethod
    def fit(cls, schema: Schema, X: np.ndarray, Y: np.ndarray | None = None,
            normalize: bool = True, normalize_target: bool = False) -> "Preprocessing":
        """Fit on the training rows ``X`` (raw features, NaN where missing) and targets ``Y``:
        each numeric column's fill value is its mean; with ``normalize`` the features' mean and
        population std are taken on the filled values, numeric features only; with
        ``normalize_target`` the targets' too. ``schema``'s fill values are set; X and Y are
        left as they are. DataError when a numeric column has no value at all."""
        means, gaps = _column_totals(X)
        for column, at in zip(schema.columns, schema.offsets()):
            if column.kind == "numeric":
                if not np.isfinite(means[at]):
                    raise DataError(f"column '{column.name}' has no value in the training rows "
                                    f"(every one is missing); leave it out")
                column.fill = float(means[at])
        stage = cls.identity(X.shape[1], schema)
        if normalize:
            # the statistics see the filled values, as every later transform gives them
            mean, std = feature_stats(X, stage.fill_values() if gaps else None)
            numeric = schema.numeric_features()
            stage.mean = np.where(numeric, mean, 0.0).astype(np.float32)
            stage.std = np.where(numeric, std, 1.0).astype(np.float32)
        if normalize_target and Y is not None:
            stage.target_mean, stage.target_std = feature_stats(Y)
        return stage

    # ------------------------------------------------------------------ features
    def fill_values(self) -> np.ndarray:
        """Per feature, float32: what a missing number becomes; NaN where nothing does
        (categorical features, or a column without a fill value)."""
        fill = np.full(len(self.mean), np.nan, np.float32)
        if self.schema is not None:
            for column, at in zip(self.schema.columns, self.schema.offsets()):
                if column.kind == "numeric" and column.fill is not None:
                    fill[at] = column.fill
        return fill

    def transform(self, X: np.ndarray, source: str = "", out: np.ndarray | None = None,
                  fill: np.ndarray | None = None) -> np.ndarray:
        """Raw features X -> the network's inputs, as a new array (X is not changed): float64
        stays float64 (gradcheck), anything else becomes float32, in one compiled pass over X
        (into ``out``, float32 rows of X's shape, when given: a buffer reused from block to
        block; ``fill``: ``fill_values()``, kept by such a caller, as it walks every column).
        DataError (naming ``source``) for a missing number in a column without a fill value."""
        if X.dtype == np.float64 and out is None:
            return self._numpy_transform(np.array(X), source)
        if out is None:
            out = np.empty(X.shape, np.float32)
        return self._compiled_transform(out, X, source, fill)

    def transform_in_place(self, X: np.ndarray, source: str = "") -> np.ndarray:
        """``transform`` written into X itself, which is returned: only for a caller that owns
        X (training's copy of its data set), so a large data set is not held twice."""
        if X.dtype == np.float32 and X.flags.c_contiguous:
            return self._compiled_transform(X, X, source)
        return self._numpy_transform(X, source)

    def _compiled_transform(self, out: np.ndarray, X: np.ndarray, source: str,
                            fill: np.ndarray | None = None) -> np.ndarray:
        """One pass of nncli.kernels_preprocess: the bits of _numpy_transform (on X as float32),
        without its copy and its three passes over the rows."""
        from nncli.model import K  # the kernels load once Numba is ready (nncli.model)

        if self.mean.dtype != np.float32 or self.std.dtype != np.float32:
            out[...] = X   # a stage built by hand with float64 statistics: NumPy's arithmetic
            return self._numpy_transform(out, source)
        if X.dtype not in (np.float32, np.float64) or not X.flags.c_contiguous:
            X = np.ascontiguousarray(X, dtype=np.float32)   # one compiled variant per dtype
        fill = self.fill_values() if fill is None else fill
        left = K.fill_standardise(out, X, fill, self.mean, self.std)
        if left and self.schema is not None:
            # NaN stays only in categorical features and in numeric columns without a fill value:
            # the schema raises its own error for the latter (and fills nothing else)
            self.schema.fill_missing(out, source)
        return out

    def _numpy_transform(self, X: np.ndarray, source: str) -> np.ndarray:
        """Fill, then standardise, X in place (float64 rows: gradcheck's, with the exact fill
        values)."""
        if self.schema is not None:
            self.schema.fill_missing(X, source)
        X -= self.mean
        X /= self.std
        return X

    # ------------------------------------------------------------------ targets
    @property
    def scales_targets(self) -> bool:
        """Does the network learn standardised targets (mse)?"""
        return self.target_mean is not None

    def scale_targets(self, Y: np.ndarray) -> np.ndarray:
        """Targets in the units the network learns: standardised when the stage scales them,
        else as they are. Returns a new array (or Y itself when nothing changes)."""
        if self.target_mean is None:
            return Y
        return ((Y - self.target_mean) / self.target_std).astype(np.float32)

    def unscale_outputs(self, out: np.ndarray) -> np.ndarray:
        """The network's outputs in the targets' own units (inverse of scale_targets)."""
        if self.target_mean is None:
            return out
        return (out * self.target_std + self.target_mean).astype(out.dtype)


def column_means(X: np.ndarray) -> np.ndarray:
    """Each column's mean over its non-NaN values (float64 sums, a block of rows at a time);
    NaN for a column with no value."""
    return _column_totals(X)[0]


def feature_stats(X: np.ndarray,
                  fill: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Mean and population std of each column (float64 sums); tiny spreads become 1. With
    ``fill`` (one value per column), NaN cells count as their column's fill value.

    Two passes over blocks of rows: np.std of the whole array would allocate a float64 copy of
    it (twice the data), which dominated the peak memory of training on a large set.
    """
    n = max(len(X), 1)
    total = np.zeros(X.shape[1], np.float64)
    for block in _blocks(X, fill):
        total += block.sum(axis=0, dtype=np.float64)
    mean = total / n
    squares = np.zeros(X.shape[1], np.float64)
    for block in _blocks(X, fill):
        squares += ((block - mean) ** 2).sum(axis=0)
    std = np.sqrt(squares / n)
    std[std < MIN_STD] = 1.0
    return mean.astype(np.float32), std.astype(np.float32)


def _blocks(X: np.ndarray, fill: np.ndarray | None) -> Iterator[np.ndarray]:
    """X a block of rows at a time; with ``fill``, a block with NaN is a filled copy."""
    step = max(1, STATS_BLOCK // max(1, X.shape[1]))
    for lo in range(0, len(X), step):
        block = X[lo:lo + step]
        if fill is not None:
            gaps = np.isnan(block)
            if gaps.any():
                block = np.where(gaps, fill, block)
        yield block


def _column_totals(X: np.ndarray) -> tuple[np.ndarray, bool]:
    """(each column's mean over its non-NaN values, whether any cell is NaN)."""
    total = np.zeros(X.shape[1], np.float64)
    count = np.zeros(X.shape[1], np.int64)
    any_gap = False
    for block in _blocks(X, None):
        gaps = np.isnan(block)
        if gaps.any():
            any_gap = True
            total += np.where(gaps, 0.0, block).sum(axis=0, dtype=np.float64)
            count += (~gaps).sum(axis=0)
        else:
            total += block.sum(axis=0, dtype=np.float64)
            count += len(block)
    with np.errstate(invalid="ignore", divide="ignore"):
        return total / count, any_gap
