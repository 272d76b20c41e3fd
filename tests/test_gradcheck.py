"""Gradcheck: every activation x loss passes, several outputs included, and a wrong gradient
fails."""

import numpy as np
import pytest

from nncli.arch import ACTIVATIONS, parse_arch
from nncli.gradcheck import DEFAULT_TOL, check_gradients, gradcheck_arch
from nncli.losses import LOSSES

HIDDEN = [a for a in ACTIVATIONS if a != "softmax"]


def _cases():
    for hidden in HIDDEN:
        for units in (1, 3):
            yield f"6{hidden}-{units}linear", "mse", False
            yield f"6{hidden}-{units}relu", "mse", False
            yield f"6{hidden}-{units}sigmoid", "bce", False
            yield f"6{hidden}-{units}linear", "bce", True
        yield f"6{hidden}-4softmax", "sparse_cce", False
        yield f"6{hidden}-4linear", "sparse_cce", True
        yield f"6{hidden}-3softmax", "cce", False
        yield f"6{hidden}-3linear", "cce", True
        yield f"5{hidden}-4{hidden}-3tanh", "mse", False


@pytest.mark.parametrize("arch, loss, logits", list(_cases()))
def test_every_activation_and_loss_passes(arch, loss, logits):
    results = gradcheck_arch(parse_arch(arch), loss, logits, n_inputs=4, batch=5, seed=1)
    assert len(results) == 2 * len(parse_arch(arch))
    worst = max(r.max_error for r in results)
    assert worst < DEFAULT_TOL, (arch, loss, [(r.name, r.max_error) for r in results])


def test_every_loss_is_covered():
    assert {loss for _, loss, _ in _cases()} == set(LOSSES)


@pytest.mark.parametrize("arch, loss, logits", [
    ("25relu-15relu-10linear", "sparse_cce", True),
    ("25sigmoid-15sigmoid-1sigmoid", "bce", False),
    ("8relu-3linear", "mse", False),
    ("16tanh-4sigmoid", "bce", False),
])
def test_issue_networks(arch, loss, logits):
    assert all(r.ok(DEFAULT_TOL) for r in gradcheck_arch(parse_arch(arch), loss, logits))


def test_a_wrong_gradient_fails():
    rng = np.random.default_rng(0)
    A = rng.normal(size=(4, 4))
    A = A @ A.T

    def right(p):
        return 0.5 * p @ A @ p, A @ p

    def wrong(p):  # off by a factor, like a forgotten 1/n_outputs
        return 0.5 * p @ A @ p, 1.05 * (A @ p)

    p = rng.normal(size=4)
    tensors = {"p": slice(0, 4)}
    assert check_gradients(right, p.copy(), tensors)[0].ok(DEFAULT_TOL)
    assert not check_gradients(wrong, p.copy(), tensors)[0].ok(DEFAULT_TOL)


def test_parameters_are_restored():
    p = np.arange(3.0)
    check_gradients(lambda q: (float(q @ q), 2 * q), p, {"p": slice(0, 3)})
    assert np.array_equal(p, np.arange(3.0))
