"""scikit-learn, the reference of nncli's scores (a test-only dependency), imported in a test
process: the tests that need it skip without it."""

from __future__ import annotations

import sys

import pytest

_BLAS = "scipy.linalg.cython_blas"


def importorskip(name: str):
    """``pytest.importorskip(name)`` for a scikit-learn module. nncli tells its own process that
    SciPy's BLAS is absent (kernel_cache.configure: Numba needs none of it); scikit-learn does
    need it, so that marker is taken back first."""
    if _BLAS in sys.modules and sys.modules[_BLAS] is None:
        del sys.modules[_BLAS]
    return pytest.importorskip(name)
