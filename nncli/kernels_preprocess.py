"""The fitted preprocessing stage (nncli.preprocess) as one compiled pass: a missing number
filled, then every feature standardised, read once and written once, in float32.

It gives the bits NumPy's three passes gave (``X[gaps, j] = fill[j]``, ``X -= mean``,
``X /= std`` on a float32 array): each cell is rounded to float32 first (as
``np.array(X, dtype=np.float32)``), then one float32 subtraction and one float32 division,
without fastmath (a reciprocal or a fused operation would change the last bit).

This module imports only numpy, numba and the compile flags (nncli.kernel_flags), and reads no
module globals but those flags.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from nncli.kernel_flags import PARALLEL


# out[r, j] = ((X[r, j], or fill[j] where X[r, j] is NaN and fill[j] is not) - mean[j]) / std[j]
# X (n, d) float32 or float64 (out may be X itself); fill, mean, std (d,) float32 -> out (n, d)
# float32; returns the number of NaN cells left in out (those of columns without a fill value)
@njit(**PARALLEL)
def fill_standardise(out, X, fill, mean, std):
    n, d = X.shape
    left = 0
    for r in prange(n):
        row_left = 0
        for j in range(d):
            v = np.float32(X[r, j])
            if v != v:
                if fill[j] == fill[j]:
                    v = fill[j]
                else:
                    row_left += 1
            out[r, j] = (v - mean[j]) / std[j]
        left += row_left
    return left
