"""Gradcheck: every activation x loss passes, several outputs included, conv and local stacks
of every activation (the issue-5 networks too), and a wrong gradient fails."""

import numpy as np
import pytest

from nncli.arch import ACTIVATIONS, param_count, parse_arch
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


# --------------------------------------------------------------------------- conv and local

def _windowed_cases():
    """Conv and local stacks with every hidden activation, each kind before and after the
    other and before a dense layer, strides 1 and > 1, one and several channels."""
    for act in HIDDEN:
        yield f"3conv3s2{act}-2local2{act}-3linear", "mse", False, 12, 1
        yield f"2local3{act}-3conv2s2{act}-4linear", "sparse_cce", True, 14, 2
        yield f"3conv4s3{act}-2sigmoid", "bce", False, 15, 3
        yield f"2local5s2{act}", "mse", False, 11, 1            # a windowed last layer
        yield f"2conv3{act}-3local2s2linear", "bce", True, 16, 2


@pytest.mark.parametrize("arch, loss, logits, inputs, channels", list(_windowed_cases()))
def test_conv_and_local_stacks_pass(arch, loss, logits, inputs, channels):
    layers = parse_arch(arch)
    results = gradcheck_arch(layers, loss, logits, n_inputs=inputs, batch=3, seed=2,
                             channels=channels)
    assert len(results) == 2 * len(layers)
    worst = max(r.max_error for r in results)
    assert worst < DEFAULT_TOL, (arch, loss, [(r.name, r.max_error) for r in results])


@pytest.mark.parametrize("arch, loss, logits, inputs, channels", [
    ("4conv5s2relu-8conv3s2relu-10linear", "sparse_cce", True, 40, 1),
    ("1local20s10relu-1local5s2relu-1sigmoid", "bce", False, 100, 1),
    ("4conv5s2relu-8conv3s2relu-10linear", "sparse_cce", True, 40, 2),
    ("1local20s10relu-1local5s2relu-1sigmoid", "bce", False, 200, 2),
])
def test_issue_5_networks(arch, loss, logits, inputs, channels):
    results = gradcheck_arch(parse_arch(arch), loss, logits, n_inputs=inputs, batch=4,
                             channels=channels)
    assert all(r.ok(DEFAULT_TOL) for r in results), [(r.name, r.max_error) for r in results]
    # every parameter is checked: the tensors add up to the whole flat buffer
    assert sum(r.size for r in results) == param_count(parse_arch(arch), inputs, channels)
