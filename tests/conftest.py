"""Shared fixtures: paths of the shipped datasets and small models trained once per session.

Only fixtures live here. Models are trained through the real entry point (``nncli.cli.main``),
quietly, so that a fixture never writes to a test's captured output.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from nncli.kernel_cache import configure

# Tests import the kernels directly too, before any command readies Numba: the same settings
# as the command line first (so no test writes cache files into the checkout, and the kernels
# compile once for both).
configure(os.environ)

DATASETS = Path(__file__).resolve().parent.parent / "datasets"


def _train(argv: list[str]) -> None:
    from nncli.cli import main

    rc = main(argv)
    assert rc == 0, f"fixture training failed: nncli {' '.join(argv)} -> {rc}"


@pytest.fixture(scope="session")
def digits_csv() -> Path:
    return DATASETS / "digits.csv"


@pytest.fixture(scope="session")
def breast_cancer_csv() -> Path:
    return DATASETS / "breast_cancer.csv"


@pytest.fixture(scope="session")
def digits_model(tmp_path_factory, digits_csv) -> Path:
    """A softmax-with-logits digits classifier (25relu-15relu-10linear, a few epochs)."""
    path = tmp_path_factory.mktemp("digits_model") / "digits.safetensors"
    _train(["train", str(digits_csv), "--arch", "25relu-15relu-10linear", "--loss",
            "sparse_cce", "--logits", "--epochs", "5", "--quiet", "-o", str(path)])
    return path


@pytest.fixture(scope="session")
def breast_cancer_model(tmp_path_factory, breast_cancer_csv) -> Path:
    """A binary classifier with string labels benign/malignant (8relu-1linear, bce --logits)."""
    path = tmp_path_factory.mktemp("bc_model") / "bc.safetensors"
    _train(["train", str(breast_cancer_csv), "--arch", "8relu-1linear", "--loss", "bce",
            "--logits", "--epochs", "10", "--quiet", "-o", str(path)])
    return path


@pytest.fixture(scope="session")
def regression_csv(tmp_path_factory) -> Path:
    """300 rows of y = 1.5 a - 2 b + 0.5 c + 3 (plus a little noise), with a header."""
    rng = np.random.default_rng(1)
    X = rng.normal(size=(300, 3))
    y = 1.5 * X[:, 0] - 2.0 * X[:, 1] + 0.5 * X[:, 2] + 3.0 + 0.01 * rng.normal(size=300)
    path = tmp_path_factory.mktemp("regression") / "reg.csv"
    np.savetxt(path, np.column_stack([X, y]), delimiter=",", fmt="%.6f", header="a,b,c,y",
               comments="")
    return path


@pytest.fixture(scope="session")
def regression_model(tmp_path_factory, regression_csv) -> Path:
    """An 8relu-1linear mse model of ``regression_csv``."""
    path = tmp_path_factory.mktemp("regression_model") / "reg.safetensors"
    _train(["train", str(regression_csv), "--arch", "8relu-1linear", "--loss", "mse",
            "--epochs", "60", "--quiet", "-o", str(path)])
    return path


@pytest.fixture
def restore_threads():
    """Give back numba's full thread pool after a test that ran with --threads."""
    yield
    import numba

    numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
