"""nncli.scores against scikit-learn (a test-only dependency): every score within 1e-9, on random
decisions and scores, tied scores, a class absent from the data, one-row classes, multi-label
targets, and random positive sample weights."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

try:
    from sklearn_ref import importorskip
except ImportError:                       # tests/ imported as a package
    from tests.sklearn_ref import importorskip

sklearn_metrics = importorskip("sklearn.metrics")
sklearn_calibration = importorskip("sklearn.calibration")

from nncli.scores import calibration, classification, ranking, regression  # noqa: E402
from nncli.scores.thresholds import best_f1_threshold  # noqa: E402

TOL = dict(rtol=0, atol=1e-9)


@pytest.fixture(autouse=True)
def quiet_sklearn():
    # scikit-learn warns on every zero division and undefined score these tests provoke
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def weights_or_none(rng, n: int, weighted: bool) -> np.ndarray | None:
    return rng.uniform(0.1, 3.0, n) if weighted else None


def decisions(rng, n: int = 200, k: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """True and predicted classes of 0..k-1 where class k-1 is in neither, class k-2 is never
    true (only predicted) and class 0 is true on one row only."""
    y_true = rng.integers(1, k - 2, n)
    y_pred = np.where(rng.random(n) < 0.6, y_true, rng.integers(0, k - 1, n))
    y_true[rng.integers(n)] = 0
    return y_true, y_pred


def probabilities(rng, n: int, k: int, decimals: int | None = None) -> np.ndarray:
    p = rng.dirichlet(np.ones(k), n)
    if decimals is not None:   # ties: rounded, then renormalised as scikit-learn wants
        p = np.round(p, decimals) + 1e-3
        p = p / p.sum(axis=1, keepdims=True)
    return p


# ---------------------------------------------------------------- classification


@pytest.mark.parametrize("weighted", [False, True])
def test_confusion_and_class_scores_equal_sklearn_with_every_class_listed(weighted):
    rng = np.random.default_rng(0)
    k = 5
    y_true, y_pred = decisions(rng, k=k)
    w = weights_or_none(rng, len(y_true), weighted)
    labels = list(range(k))
    cm = classification.confusion_matrix(y_true, y_pred, k, w)
    np.testing.assert_allclose(cm, sklearn_metrics.confusion_matrix(
        y_true, y_pred, labels=labels, sample_weight=w), **TOL)
    assert cm.dtype == (np.float64 if weighted else np.int64)
    scores = classification.ClassScores.of(cm)
    p, r, f, s = sklearn_metrics.precision_recall_fscore_support(
        y_true, y_pred, labels=labels, sample_weight=w, zero_division="warn")
    for mine, theirs in zip((scores.precision, scores.recall, scores.f1, scores.support),
                            (p, r, f, s)):
        np.testing.assert_allclose(mine, theirs, **TOL)
    assert scores.support[k - 1] == 0 and scores.precision[k - 1] == 0   # absent: listed, 0
    averages = scores.averages()
    for average in ("macro", "weighted"):
        p, r, f, _ = sklearn_metrics.precision_recall_fscore_support(
            y_true, y_pred, labels=labels, average=average, sample_weight=w)
        assert averages[average] == pytest.approx({"precision": p, "recall": r, "f1": f},
                                                  abs=1e-9)
    assert classification.accuracy(cm) == pytest.approx(
        sklearn_metrics.accuracy_score(y_true, y_pred, sample_weight=w), abs=1e-9)
    assert classification.balanced_accuracy(cm) == pytest.approx(
        sklearn_metrics.balanced_accuracy_score(y_true, y_pred, sample_weight=w), abs=1e-9)


@pytest.mark.parametrize("weighted", [False, True])
def test_the_positive_class_scores_are_sklearns_binary_defaults(weighted):
    rng = np.random.default_rng(1)
    y_true = rng.integers(0, 2, 150)
    y_pred = np.where(rng.random(150) < 0.7, y_true, 1 - y_true)
    w = weights_or_none(rng, 150, weighted)
    scores = classification.ClassScores.of(classification.confusion_matrix(y_true, y_pred, 2, w))
    assert scores.precision[1] == pytest.approx(
        sklearn_metrics.precision_score(y_true, y_pred, sample_weight=w), abs=1e-9)
    assert scores.recall[1] == pytest.approx(
        sklearn_metrics.recall_score(y_true, y_pred, sample_weight=w), abs=1e-9)
    assert scores.f1[1] == pytest.approx(
        sklearn_metrics.f1_score(y_true, y_pred, sample_weight=w), abs=1e-9)


def test_a_class_never_predicted_nor_true_scores_zero_as_sklearns_zero_division():
    y = np.array([0, 0, 1])
    scores = classification.ClassScores.of(classification.confusion_matrix(y, y, 3))
    p, r, f, s = sklearn_metrics.precision_recall_fscore_support(y, y, labels=[0, 1, 2])
    np.testing.assert_array_equal(scores.precision, p)
    np.testing.assert_array_equal(scores.f1, f)
    assert scores.f1.tolist() == [1.0, 1.0, 0.0]


@pytest.mark.parametrize("weighted", [False, True])
def test_log_loss_equals_sklearn_multiclass_and_binary_with_clipping(weighted):
    rng = np.random.default_rng(2)
    n, k = 120, 4
    y = rng.integers(0, k - 1, n)      # class k-1 absent
    y[0] = 0
    w = weights_or_none(rng, n, weighted)
    P = probabilities(rng, n, k)
    assert classification.log_loss(y, P, w) == pytest.approx(
        sklearn_metrics.log_loss(y, P, labels=list(range(k)), sample_weight=w), abs=1e-9)
    # binary: the positive class's probability only, with exact 0s and 1s that are clipped
    yb = rng.integers(0, 2, n)
    p = rng.random(n)
    p[:4] = [0.0, 1.0, 0.0, 1.0]
    yb[:4] = [1, 0, 0, 1]
    mine = classification.log_loss(yb, p, w)
    assert mine == pytest.approx(sklearn_metrics.log_loss(yb, p, sample_weight=w), abs=1e-9)
    assert mine > 30 / n                 # the two wrong certain rows count -ln(eps) each


# ---------------------------------------------------------------- ranking


def binary_cases():
    """(name, y_true, score, weights): random scores, scores tied to one decimal, weights
    with zeros among them."""
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 300)
    noisy = np.clip(0.3 * y + rng.normal(0.35, 0.25, 300), 0, 1)
    w = rng.uniform(0.1, 3.0, 300)
    w0 = w.copy()
    w0[rng.integers(0, 300, 30)] = 0.0
    return [("random", y, noisy, None), ("ties", y, np.round(noisy, 1), None),
            ("weights", y, noisy, w), ("ties and weights", y, np.round(noisy, 1), w),
            ("zero weights", y, np.round(noisy, 1), w0),
            ("one-row class", np.r_[1, np.zeros(40, int)], np.round(rng.random(41), 1), None)]


@pytest.mark.parametrize("name, y, score, w", binary_cases(), ids=lambda c: str(c)[:18])
def test_curves_auc_and_average_precision_equal_sklearn(name, y, score, w):
    for drop in (True, False):
        mine = ranking.roc_curve(y, score, w, drop_intermediate=drop)
        theirs = sklearn_metrics.roc_curve(y, score, sample_weight=w, drop_intermediate=drop)
        for a, b in zip(mine, theirs):
            np.testing.assert_allclose(a, b, **TOL)
    for a, b in zip(ranking.precision_recall_curve(y, score, w),
                    sklearn_metrics.precision_recall_curve(y, score, sample_weight=w)):
        np.testing.assert_allclose(a, b, **TOL)
    assert ranking.roc_auc(y, score, w) == pytest.approx(
        sklearn_metrics.roc_auc_score(y, score, sample_weight=w), abs=1e-9)
    assert ranking.average_precision(y, score, w) == pytest.approx(
        sklearn_metrics.average_precision_score(y, score, sample_weight=w), abs=1e-9)


def test_tied_scores_enter_the_curve_together():
    y = np.array([1, 0, 1, 0, 0])
    score = np.array([0.8, 0.8, 0.5, 0.5, 0.1])
    fps, tps, thresholds = ranking.threshold_counts(y, score)
    assert thresholds.tolist() == [0.8, 0.5, 0.1]
    assert tps.tolist() == [1, 2, 2] and fps.tolist() == [1, 2, 3]


def test_roc_auc_with_one_class_is_nan_as_sklearn():
    y, score = np.ones(10, int), np.linspace(0, 1, 10)
    assert np.isnan(ranking.roc_auc(y, score))
    assert np.isnan(sklearn_metrics.roc_auc_score(y, score))
    # average precision stays defined: 1 with positives only, 0 without any
    assert ranking.average_precision(y, score) == sklearn_metrics.average_precision_score(
        y, score) == 1.0
    assert ranking.average_precision(0 * y, score) == sklearn_metrics.average_precision_score(
        0 * y, score) == 0.0


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("decimals", [None, 1])
def test_one_vs_rest_roc_auc_macro_equals_sklearn_ovr(weighted, decimals):
    rng = np.random.default_rng(4)
    n, k = 250, 4
    y = rng.integers(0, k, n)
    y[:3] = [0, 1, 2]
    P = probabilities(rng, n, k, decimals)
    P[np.arange(n), y] += 0.3          # some skill
    P /= P.sum(axis=1, keepdims=True)
    w = weights_or_none(rng, n, weighted)
    labels = list(range(k))
    per_class = ranking.one_vs_rest(y, P, ranking.roc_auc, w)
    assert float(np.mean(per_class)) == pytest.approx(sklearn_metrics.roc_auc_score(
        y, P, multi_class="ovr", average="macro", labels=labels, sample_weight=w), abs=1e-9)
    # a class absent from the data: undefined, as scikit-learn's (NaN)
    y[y == k - 1] = 0
    mean = float(np.mean(ranking.one_vs_rest(y, P, ranking.roc_auc, w)))
    theirs = sklearn_metrics.roc_auc_score(y, P, multi_class="ovr", labels=labels,
                                           sample_weight=w)
    assert np.isnan(mean) and np.isnan(theirs)


@pytest.mark.parametrize("weighted", [False, True])
def test_multilabel_per_label_scores_equal_sklearn(weighted):
    rng = np.random.default_rng(5)
    n, L = 200, 3
    Y = (rng.random((n, L)) < [0.5, 0.2, 0.05]).astype(int)
    P = np.round(np.clip(0.4 * Y + rng.random((n, L)) * 0.6, 0, 1), 1)
    w = weights_or_none(rng, n, weighted)
    auc = [ranking.roc_auc(Y[:, j], P[:, j], w) for j in range(L)]
    ap = [ranking.average_precision(Y[:, j], P[:, j], w) for j in range(L)]
    np.testing.assert_allclose(auc, sklearn_metrics.roc_auc_score(Y, P, average=None,
                                                                  sample_weight=w), **TOL)
    np.testing.assert_allclose(ap, sklearn_metrics.average_precision_score(
        Y, P, average=None, sample_weight=w), **TOL)
    assert np.mean(auc) == pytest.approx(
        sklearn_metrics.roc_auc_score(Y, P, average="macro", sample_weight=w), abs=1e-9)
    predicted = (P > 0.5).astype(int)
    p, r, f, s = sklearn_metrics.precision_recall_fscore_support(Y, predicted, sample_weight=w)
    for j in range(L):
        scores = classification.ClassScores.of(
            classification.confusion_matrix(Y[:, j], predicted[:, j], 2, w))
        assert [scores.precision[1], scores.recall[1], scores.f1[1], scores.support[1]] == \
            pytest.approx([p[j], r[j], f[j], s[j]], abs=1e-9)


# ---------------------------------------------------------------- thresholds


def brute_force_best(y, score, w):
    """Every candidate threshold tried with scikit-learn: the rows above it positive."""
    keep = np.ones(len(y), bool) if w is None else w > 0
    candidates = sorted(set(score[keep].tolist()) | {0.0}, reverse=True)
    best = None
    for t in candidates:
        p, r, f, _ = sklearn_metrics.precision_recall_fscore_support(
            y, (score > t).astype(int), average="binary", sample_weight=w)
        if best is None or f > best["f1"] + 1e-12:   # ties keep the higher threshold
            best = {"threshold": t, "f1": f, "precision": p, "recall": r}
    return best


@pytest.mark.parametrize("name, y, score, w", binary_cases(), ids=lambda c: str(c)[:18])
def test_best_threshold_equals_a_brute_force_scan(name, y, score, w):
    best = best_f1_threshold(y, score, w)
    assert best == pytest.approx(brute_force_best(y, score, w), abs=1e-9)
    # the threshold reproduces its F1 when used as a decision threshold
    f = sklearn_metrics.f1_score(y, (score > best["threshold"]).astype(int), sample_weight=w)
    assert f == pytest.approx(best["f1"], abs=1e-9)


def test_best_threshold_prefers_the_highest_of_equal_f1():
    # the top row alone (T = 0.8) and every row (T = 0) both give F1 2/3; in between less
    y = np.array([1, 0, 0, 1])
    score = np.array([0.9, 0.8, 0.7, 0.6])
    assert best_f1_threshold(y, score) == pytest.approx(
        {"threshold": 0.8, "f1": 2 / 3, "precision": 1.0, "recall": 0.5})
    # every row positive, at T = 0, beats any cut
    assert best_f1_threshold(np.array([1, 1]), np.array([0.4, 0.4]))["threshold"] == 0.0


# ---------------------------------------------------------------- regression


@pytest.mark.parametrize("weighted", [False, True])
def test_regression_scores_per_output_and_overall_equal_sklearn(weighted):
    rng = np.random.default_rng(6)
    n = 80
    Y = rng.normal(size=(n, 3)) * [1.0, 10.0, 0.1]
    pred = Y + rng.normal(size=(n, 3)) * [0.5, 2.0, 0.3]
    w = weights_or_none(rng, n, weighted)
    per = regression.per_output(Y, pred, w)
    raw = dict(multioutput="raw_values", sample_weight=w)
    np.testing.assert_allclose(per["mse"], sklearn_metrics.mean_squared_error(Y, pred, **raw),
                               **TOL)
    np.testing.assert_allclose(per["rmse"], sklearn_metrics.root_mean_squared_error(
        Y, pred, **raw), **TOL)
    np.testing.assert_allclose(per["mae"], sklearn_metrics.mean_absolute_error(Y, pred, **raw),
                               **TOL)
    np.testing.assert_allclose(per["r2"], sklearn_metrics.r2_score(Y, pred, **raw), **TOL)
    np.testing.assert_allclose(per["max_error"], [sklearn_metrics.max_error(Y[:, j], pred[:, j])
                                                  for j in range(3)], **TOL)
    every = regression.overall(Y, pred, w)
    assert every["mse"] == pytest.approx(
        sklearn_metrics.mean_squared_error(Y, pred, sample_weight=w), abs=1e-9)
    assert every["rmse"] == pytest.approx(
        sklearn_metrics.root_mean_squared_error(Y, pred, sample_weight=w), abs=1e-9)
    assert every["mae"] == pytest.approx(
        sklearn_metrics.mean_absolute_error(Y, pred, sample_weight=w), abs=1e-9)
    assert every["max_error"] == pytest.approx(np.abs(Y - pred).max(), abs=1e-12)
    # r2 over all outputs pools them (nncli's own, as before): 1 - SS_res / SS_tot
    ww = np.ones(n) if w is None else w
    mean = np.average(Y, axis=0, weights=ww)
    pooled = 1 - (ww[:, None] * (Y - pred) ** 2).sum() / (ww[:, None] * (Y - mean) ** 2).sum()
    assert every["r2"] == pytest.approx(pooled, abs=1e-12)
    # one output: the same as scikit-learn's r2_score
    assert regression.overall(Y[:, :1], pred[:, :1], w)["r2"] == pytest.approx(
        sklearn_metrics.r2_score(Y[:, 0], pred[:, 0], sample_weight=w), abs=1e-9)


def test_r2_of_a_constant_column_is_sklearns_force_finite():
    Y = np.column_stack([np.full(5, 2.0), np.full(5, 3.0), np.arange(5.0)])
    pred = Y.copy()
    pred[:, 1] += 0.5
    np.testing.assert_array_equal(regression.per_output(Y, pred)["r2"],
                                  sklearn_metrics.r2_score(Y, pred, multioutput="raw_values"))
    assert regression.per_output(Y, pred)["r2"].tolist() == [1.0, 0.0, 1.0]


# ---------------------------------------------------------------- calibration


@pytest.mark.parametrize("strategy", ["uniform", "quantile"])
def test_calibration_bins_equal_sklearn(strategy):
    rng = np.random.default_rng(7)
    p = np.round(rng.random(300) ** 2, 2)
    y = (rng.random(300) < p).astype(int)
    positive, mean, rows = calibration.calibration_curve(y, p, n_bins=7, strategy=strategy)
    theirs = sklearn_calibration.calibration_curve(y, p, n_bins=7, strategy=strategy)
    np.testing.assert_allclose(positive, theirs[0], **TOL)
    np.testing.assert_allclose(mean, theirs[1], **TOL)
    assert rows.sum() == 300 and len(rows) == len(positive)
