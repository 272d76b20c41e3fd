"""The one-pass preprocessing kernel (nncli.kernels_preprocess) against NumPy's three passes,
bit for bit: fill the missing numbers, subtract the mean, divide by the std, in float32."""

from __future__ import annotations

import numpy as np
import pytest

from nncli.model import K


def numpy_passes(X: np.ndarray, fill: np.ndarray, mean: np.ndarray,
                 std: np.ndarray) -> np.ndarray:
    """What Preprocessing.transform did before the kernel: a float32 copy, NaN filled where
    the column has a fill value, then two in-place float32 operations."""
    out = np.array(X, dtype=np.float32)
    for j in np.flatnonzero(~np.isnan(fill)):
        out[np.isnan(out[:, j]), j] = fill[j]
    out -= mean
    out /= std
    return out


def stage_arrays(d: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(fill, mean, std) float32 of d features, two of them without a fill value."""
    rng = np.random.default_rng(seed)
    fill = rng.normal(size=d).astype(np.float32)
    fill[[1, d - 1]] = np.nan
    mean = rng.normal(size=d).astype(np.float32)
    std = rng.uniform(1e-3, 30.0, size=d).astype(np.float32)
    std[0] = 1.0
    return fill, mean, std


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(1, 3), (7, 13), (1001, 37)])
def test_fill_and_standardise_are_numpy_s_bits(dtype, shape):
    rng = np.random.default_rng(shape[0])
    X = (rng.normal(size=shape) * 10.0 ** rng.integers(-3, 4, size=shape)).astype(dtype)
    X[rng.random(shape) < 0.1] = np.nan
    fill, mean, std = stage_arrays(shape[1], 1)
    out = np.full(shape, -7.0, np.float32)
    left = K.fill_standardise(out, X, fill, mean, std)
    want = numpy_passes(X, fill, mean, std)
    assert out.view(np.uint32).tolist() == want.view(np.uint32).tolist()   # NaN bits too
    assert left == int(np.isnan(X[:, np.isnan(fill)]).sum())


def test_in_place_gives_the_same_bits():
    rng = np.random.default_rng(5)
    X = rng.normal(size=(50, 9)).astype(np.float32)
    X[3, 4] = X[7, 1] = np.nan
    fill, mean, std = stage_arrays(9, 2)
    want = numpy_passes(X, fill, mean, std)
    assert K.fill_standardise(X, X, fill, mean, std) == 1      # column 1 has no fill value
    assert X.view(np.uint32).tolist() == want.view(np.uint32).tolist()


def test_float64_cells_are_rounded_to_float32_first():
    X = np.array([[1.0 + 2.0**-30, 3.0000000001]])
    fill, mean, std = (np.zeros(2, np.float32), np.array([1.0, 0.0], np.float32),
                       np.array([1.0, 3.0], np.float32))
    out = np.empty((1, 2), np.float32)
    K.fill_standardise(out, X, fill, mean, std)
    assert out.tolist() == [[0.0, 1.0]]     # float64 arithmetic would leave 2^-30
