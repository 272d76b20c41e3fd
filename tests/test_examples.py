"""The networks of the course (README "Course examples", issue 4), each through the real entry
point (``nncli.cli.main``) on a dataset shipped in ``datasets/``, with fewer epochs than the
README where that keeps the file fast. Thresholds sit a little below what seed 0 reaches.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest

from nncli import kernels as K
from nncli.arch import ACTIVATIONS
from nncli.cli import main
from nncli.losses import PROB_EPSILON

DATASETS = Path(__file__).resolve().parent.parent / "datasets"
DIGITS_LOGITS = ["--arch", "25relu-15relu-10linear", "--loss", "sparse_cce", "--logits"]


# ---------------------------------------------------------------- helpers

def run(capsys, *argv) -> str:
    """stdout of ``nncli ARGV`` run in-process; the exit code must be 0."""
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert rc == 0, f"nncli {' '.join(map(str, argv))} -> {rc}\n{err[-2000:]}"
    return out


def train(capsys, data, model, *argv) -> dict:
    """Train quietly into ``model``; return the ``--json`` summary."""
    return json.loads(run(capsys, "train", data, *argv, "--quiet", "--json", "-o", model))


def evaluate(capsys, model, data) -> dict:
    return json.loads(run(capsys, "eval", model, data, "--json"))


def predict(capsys, model, data, *argv) -> tuple[list[str], np.ndarray]:
    """(header, values as a 2-D float array) of ``nncli predict``."""
    out = run(capsys, "predict", model, data, *argv)
    header, _, body = out.partition("\n")
    return header.split(","), np.loadtxt(io.StringIO(body), delimiter=",", ndmin=2)


def held_out(data: Path, n_val: int, tmp_path: Path) -> Path:
    """The last ``n_val`` rows of ``data`` (what --validation-split held out), with the header."""
    lines = data.read_text().splitlines(keepends=True)
    path = tmp_path / f"heldout_{data.name}"
    path.write_text(lines[0] + "".join(lines[-n_val:]))
    return path


def read_csv(data: Path) -> tuple[list[str], np.ndarray]:
    with open(data) as f:
        header = f.readline().strip().split(",")
    return header, np.loadtxt(data, delimiter=",", skiprows=1, ndmin=2)


def sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


# ---------------------------------------------------------------- 1. digit 0 or 1

def test_digit01_sigmoid_output_and_logits_form(capsys, tmp_path):
    data = DATASETS / "digits01.csv"
    probs_model, logits_model = tmp_path / "sigmoid.safetensors", tmp_path / "logits.safetensors"
    a = train(capsys, data, probs_model, "--arch", "25sigmoid-15sigmoid-1sigmoid", "--loss", "bce",
              "--epochs", "30")
    b = train(capsys, data, logits_model, "--arch", "25sigmoid-15sigmoid-1linear", "--loss", "bce",
              "--logits", "--epochs", "30")
    for summary in (a, b):          # seed 0, 30 epochs: loss 0.056, accuracy 1.0
        assert summary["history"][-1]["loss"] < 0.1
        assert summary["history"][-1]["loss"] < summary["history"][0]["loss"]
        assert summary["final"]["accuracy"] >= 0.99
    # the same function of the same weights, so the same losses up to rounding
    assert a["final"]["loss"] == pytest.approx(b["final"]["loss"], rel=1e-4)
    assert evaluate(capsys, logits_model, data)["accuracy"] >= 0.99

    y = read_csv(data)[1][:, -1]
    header, proba = predict(capsys, logits_model, data)
    _, logits = predict(capsys, logits_model, data, "--output", "logits")
    _, classes = predict(capsys, logits_model, data, "--output", "class")
    assert header == ["digit"] and proba.shape == logits.shape == (len(y), 1)
    assert proba.min() >= 0.0 and proba.max() <= 1.0        # probabilities, not logits
    assert np.abs(logits).max() > 1.0 and logits.min() < 0.0
    np.testing.assert_allclose(proba, sigmoid(logits), atol=1e-6)
    np.testing.assert_array_equal(classes[:, 0], (proba[:, 0] > 0.5).astype(float))
    assert (classes[:, 0] == y).mean() >= 0.99


# ---------------------------------------------------------------- 2. digits with softmax

def test_digits_softmax_output_and_logits_reach_similar_accuracy(capsys, tmp_path):
    data = DATASETS / "digits.csv"
    common = ["--loss", "sparse_cce", "--epochs", "20", "--validation-split", "0.2"]
    soft = train(capsys, data, tmp_path / "soft.safetensors", "--arch", "25relu-15relu-10softmax",
                 *common)
    logit = train(capsys, data, tmp_path / "logit.safetensors", "--arch", "25relu-15relu-10linear",
                  "--logits", *common)
    # seed 0: both 0.969 after 20 epochs, 0.972 after 40
    assert soft["final"]["val_accuracy"] >= 0.94
    assert logit["final"]["val_accuracy"] >= 0.94
    assert abs(soft["final"]["val_accuracy"] - logit["final"]["val_accuracy"]) <= 0.02


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_loss_from_logits_stays_exact_where_softmax_probabilities_saturate(dtype):
    """Logit 200 for class 0, true class 1: the cross-entropy is 200. From logits it is exactly
    that, with the gradient softmax - onehot = [1, -1, 0]. Through softmax probabilities the
    true class gets probability e^-200, clipped to 1e-7: the loss is capped at -log(1e-7) = 16.1
    and, the clip being flat, no gradient reaches the logits at all."""
    Z = np.array([[200.0, 0.0, 0.0]], dtype)
    Y = np.array([[0.0, 1.0, 0.0]], dtype)

    dZ = np.full_like(Z, np.nan)
    loss, correct = K.loss_forward_backward(dZ, Z, Y, 3, PROB_EPSILON, None)    # cce from logits
    assert loss == 200.0 and correct == 0
    np.testing.assert_allclose(dZ, [[1.0, -1.0, 0.0]], rtol=0, atol=1e-12)

    P = np.empty_like(Z)
    K.act_forward(P, Z, ACTIVATIONS["softmax"])
    assert P[0, 1] < PROB_EPSILON                                          # saturated
    dP = np.full_like(Z, np.nan)
    loss_p, _ = K.loss_forward_backward(dP, P, Y, 4, PROB_EPSILON, None)       # cce from probabilities
    assert loss_p == pytest.approx(-np.log(PROB_EPSILON), rel=1e-6)       # 16.118, not 200
    dZ_p = np.full_like(Z, np.nan)
    K.act_backward(dZ_p, dP, P, Z, ACTIVATIONS["softmax"])
    np.testing.assert_array_equal(dZ_p, np.zeros_like(Z))                 # the gradient vanished


# ---------------------------------------------------------------- 3. MNIST

def test_mnist_logits_held_out_accuracy(capsys, tmp_path):
    data = DATASETS / "mnist5k.csv.gz"
    s = train(capsys, data, tmp_path / "mnist.safetensors", *DIGITS_LOGITS, "--lr", "0.001",
              "--epochs", "5", "--validation-split", "0.2")
    assert s["rows"]["train"] + s["rows"]["validation"] == 5000
    assert s["rows"]["validation"] == 1000
    # seed 0: 0.881 after 5 epochs, 0.902 after 10 (the README's command)
    assert s["final"]["val_accuracy"] >= 0.85
    assert s["history"][-1]["loss"] < s["history"][0]["loss"]


# ---------------------------------------------------------------- 4. regression

def test_regression_linear_output_fits_negative_targets_relu_output_cannot(capsys, tmp_path):
    data = DATASETS / "macro_realint.csv"
    y = read_csv(data)[1][:, -1]
    assert (y < 0).sum() == 52
    # the course's point (a relu output cannot go below 0) holds for targets as they are
    common = ["--loss", "mse", "--epochs", "300", "--validation-split", "0.2",
              "--no-normalize-target"]
    lin, relu = tmp_path / "linear.safetensors", tmp_path / "relu.safetensors"
    s = train(capsys, data, lin, "--arch", "16relu-1linear", *common)
    train(capsys, data, relu, "--arch", "16relu-1relu", *common)
    val = held_out(data, s["rows"]["validation"], tmp_path)

    m_lin, m_relu = evaluate(capsys, lin, val), evaluate(capsys, relu, val)
    assert set(m_lin) >= {"mse", "mae", "r2"}
    # seed 0, 300 epochs: linear R^2 0.970, relu 0.694 on the 40 held-out rows (README, 500
    # epochs: 0.985 and 0.697)
    assert m_lin["r2"] >= 0.95 and m_lin["mae"] < 0.5
    assert m_relu["r2"] < m_lin["r2"] - 0.15
    assert m_relu["mse"] > 5 * m_lin["mse"]

    _, p_lin = predict(capsys, lin, data)
    _, p_relu = predict(capsys, relu, data)
    assert p_relu.min() == 0.0                         # a relu output cannot go below 0 ...
    neg = y < 0
    assert (p_relu[neg, 0] == 0.0).mean() >= 0.8       # ... so it predicts 0 for the negatives
    assert (p_lin[neg, 0] < 0).mean() >= 0.8           # which the linear output follows
    # seed 0: 0.885 and 0.904 of the 52


def test_regression_relu_output_on_a_non_negative_target(capsys, tmp_path):
    data = DATASETS / "grunfeld.csv"
    model = tmp_path / "grunfeld.safetensors"
    s = train(capsys, data, model, "--arch", "16relu-1relu", "--loss", "mse", "--lr", "0.01",
              "--epochs", "200", "--validation-split", "0.2", "--no-normalize-target")
    m = evaluate(capsys, model, held_out(data, s["rows"]["validation"], tmp_path))
    # seed 0: R^2 0.550, MAE 68.6 on the 44 held-out rows (least squares: R^2 0.578)
    assert m["r2"] >= 0.45
    assert m["mae"] < 80
    _, p = predict(capsys, model, data)
    assert p.min() >= 0.0 and p.max() > 500


# ---------------------------------------------------------------- 5. multi-label

def test_multilabel_probabilities_classes_and_per_label_accuracy(capsys, tmp_path):
    data = DATASETS / "digits_multilabel.csv"
    model = tmp_path / "ml.safetensors"
    labels = ["even", "ge5", "prime"]
    targets = [arg for name in labels for arg in ("--target", name)]
    s = train(capsys, data, model, *targets, "--arch", "16relu-3linear", "--loss", "bce",
              "--logits", "--epochs", "20", "--validation-split", "0.2")
    assert s["final"]["val_accuracy"] >= 0.94          # seed 0: 0.959 (0.974 after 40 epochs)

    header, truth = read_csv(data)
    truth = truth[:, [header.index(name) for name in labels]]
    names, proba = predict(capsys, model, data)
    _, classes = predict(capsys, model, data, "--output", "class")
    _, logits = predict(capsys, model, data, "--output", "logits")
    assert names == labels and proba.shape == classes.shape == (1797, 3)
    assert proba.min() >= 0.0 and proba.max() <= 1.0
    np.testing.assert_allclose(proba, sigmoid(logits), atol=1e-6)
    assert set(np.unique(classes)) <= {0.0, 1.0}
    np.testing.assert_array_equal(classes, (proba > 0.5).astype(float))
    # several labels can be 1 at once (an 8 is even and >= 5), unlike a softmax
    assert (classes.sum(axis=1) >= 2).any()

    m = evaluate(capsys, model, held_out(data, s["rows"]["validation"], tmp_path))
    assert list(m["label_accuracy"]) == labels
    for name in labels:                                 # seed 0: 0.950 0.961 0.967
        assert m["label_accuracy"][name] >= 0.93
    assert m["accuracy"] == pytest.approx(np.mean(list(m["label_accuracy"].values())))


# ---------------------------------------------------------------- 6. why activations matter

def test_all_linear_network_learns_the_least_squares_fit(capsys, tmp_path):
    """8linear-4linear-1linear is one affine map of the inputs, so full-batch training converges
    to the least-squares fit: predictions within 0.05 of it (seed 0: 0.017; the target spans
    -6.8..11.0, std 2.7)."""
    data = DATASETS / "macro_realint.csv"
    model = tmp_path / "linear.safetensors"
    s = train(capsys, data, model, "--arch", "8linear-4linear-1linear", "--loss", "mse",
              "--batch-size", "1000", "--lr", "0.1", "--epochs", "1000")
    _, D = read_csv(data)
    X, y = np.c_[D[:, :-1], np.ones(len(D))], D[:, -1]
    w, *_ = np.linalg.lstsq(X, y, rcond=None)
    ols = X @ w
    _, p = predict(capsys, model, data)
    assert np.abs(p[:, 0] - ols).max() < 0.05
    # and it fits about as well: least squares MSE 2.4e-5, the network's 5e-5
    assert s["final"]["loss"] < 1e-3


def test_linear_hidden_layers_with_sigmoid_output_is_logistic_regression(capsys, tmp_path):
    data = DATASETS / "breast_cancer.csv"
    X = np.loadtxt(data, delimiter=",", skiprows=1, usecols=range(30))
    label = np.loadtxt(data, delimiter=",", skiprows=1, usecols=30, dtype=str)
    y = (label == "malignant").astype(float)     # the second name in sorted order: the positive
    # logistic regression on the standardised features: Newton steps, a little L2 (the classes
    # are almost separable, so without it the weights would grow without bound)
    A = np.c_[(X - X.mean(0)) / X.std(0), np.ones(len(X))]
    ridge = 1e-3 * np.diag(np.r_[np.ones(30), 0.0])
    w = np.zeros(A.shape[1])
    for _ in range(30):
        p = sigmoid(A @ w)
        grad = A.T @ (p - y) / len(y) + ridge @ w
        hess = (A * (p * (1 - p))[:, None]).T @ A / len(y) + ridge
        w -= np.linalg.solve(hess, grad)
    p_lr = sigmoid(A @ w)
    assert ((p_lr > 0.5) == y).mean() >= 0.97

    model = tmp_path / "logreg.safetensors"
    train(capsys, data, model, "--arch", "4linear-1sigmoid", "--loss", "bce", "--epochs", "50")
    header, p = predict(capsys, model, data)
    assert header == ["malignant"]
    # seed 0: the same class on 99.8% of the rows, probabilities 0.008 apart on average
    assert ((p[:, 0] > 0.5) == (p_lr > 0.5)).mean() >= 0.97
    assert np.abs(p[:, 0] - p_lr).mean() < 0.05


# ---------------------------------------------------------------- 7. Adam against SGD

def test_adam_and_sgd_both_decrease_the_loss_adam_faster(capsys, tmp_path):
    data = DATASETS / "digits.csv"
    final = {}
    for optimizer in ("sgd", "adam"):
        s = train(capsys, data, tmp_path / f"{optimizer}.safetensors", *DIGITS_LOGITS,
                  "--optimizer", optimizer, "--epochs", "10", "--validation-split", "0.2")
        assert s["optimizer"]["name"] == optimizer
        losses = [h["loss"] for h in s["history"]]
        assert len(losses) == 10
        assert losses[-1] < 0.8 * losses[0], (optimizer, losses)
        final[optimizer] = losses[-1]
    # seed 0, 10 epochs at the default rates (sgd 0.01, adam 0.001): 1.368 against 0.223
    assert final["adam"] < 0.5 * final["sgd"]
