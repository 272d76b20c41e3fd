"""The fused loss kernel (every loss code) against the NumPy reference and the extreme-input
table of /work/shared/reference/numerics.md, and the loss table's checks in nncli.losses."""

from __future__ import annotations

import math

import numpy as np
import pytest

from nncli import kernels as K
from nncli.arch import LayerSpec
from nncli.errors import DataError, UsageError
from nncli.losses import (LOSSES, PROB_EPSILON, check_output_layer, get_loss, kernel_code,
                          prepare_targets)

try:
    import naive
except ImportError:                       # tests/ imported as a package
    from tests import naive

DTYPES = [np.float32, np.float64]
CODES = {"mse": 0, "bce_logits": 1, "bce_probs": 2, "cce_logits": 3, "cce_probs": 4}
LN2, LN3, LN10 = math.log(2), math.log(3), math.log(10)


def run(code, Out, Y, dtype=np.float64):
    """(loss sum, dOut, correct) from the kernel; dOut starts as garbage."""
    Out = np.ascontiguousarray(Out, dtype=dtype)
    Y = np.ascontiguousarray(Y, dtype=dtype)
    if Out.ndim == 1:
        Out, Y = Out[None, :], Y[None, :]
    dOut = np.full_like(Out, np.nan)
    total, correct = K.loss_forward_backward(dOut, Out, Y, code, PROB_EPSILON, None)
    return float(total), dOut, int(correct)


def one_hot(label, k):
    y = np.zeros(k)
    y[label] = 1.0
    return y


# --------------------------------------------------------------------------- against naive

def make_case(code, n, k, rng):
    """Outputs and targets typical of each loss, with no argmax ties and nothing clipped."""
    if code == 0:
        return rng.normal(size=(n, k)), rng.normal(size=(n, k))
    if code == 1:
        Y = rng.integers(0, 2, size=(n, k)).astype(float)
        Y[0, 0] = 0.3                                 # soft targets are allowed
        return rng.normal(0, 3, size=(n, k)), Y
    if code == 2:
        Y = rng.integers(0, 2, size=(n, k)).astype(float)
        Y[-1, -1] = 0.8
        return rng.uniform(0.02, 0.98, size=(n, k)), Y
    Y = np.stack([one_hot(rng.integers(0, k), k) for _ in range(n)])
    if k > 1 and n > 1:
        Y[-1] = rng.dirichlet(np.ones(k))             # soft target row
    if code == 3:
        return rng.normal(0, 3, size=(n, k)), Y
    return rng.uniform(0.1, 1.0, size=(n, k)), Y     # rows need not sum to 1 (Keras divides)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n,k", [(1, 1), (1, 3), (7, 3), (5, 1), (4, 13), (300, 10)])
@pytest.mark.parametrize("name", list(CODES))
def test_loss_against_naive(name, n, k, dtype):
    code = CODES[name]
    rng = np.random.default_rng(code * 100 + n * 10 + k)
    Out, Y = make_case(code, n, k, rng)
    Out, Y = Out.astype(dtype), Y.astype(dtype)
    total, dOut, correct = run(code, Out, Y, dtype)
    want_total, want_d = naive.loss(code, Out, Y)
    naive.assert_close(total, want_total, dtype)
    naive.assert_close(dOut, want_d, dtype)
    assert dOut.dtype == dtype
    assert correct == naive.correct(code, Out, Y)


@pytest.mark.parametrize("n,k", [(1, 3), (4, 3), (3, 1)])
@pytest.mark.parametrize("name", list(CODES))
def test_loss_gradient_matches_finite_differences(name, n, k):
    """dOut is the gradient of the MEAN loss (sum / n), checked without the reference."""
    code = CODES[name]
    rng = np.random.default_rng(code + 7 * n + k)
    Out, Y = make_case(code, n, k, rng)
    _, dOut, _ = run(code, Out, Y)
    numeric = np.empty_like(Out)
    h = 1e-6
    for idx in np.ndindex(Out.shape):
        up, down = Out.copy(), Out.copy()
        up[idx] += h
        down[idx] -= h
        numeric[idx] = (run(code, up, Y)[0] - run(code, down, Y)[0]) / (2 * h * n)
    np.testing.assert_allclose(dOut, numeric, rtol=1e-5, atol=1e-8)


def test_correct_counts_by_hand():
    # cce: argmax per row
    Out = [[0.1, 2.0, -1.0], [3.0, 0.0, 0.0], [0.0, 0.0, 5.0]]
    Y = [one_hot(1, 3), one_hot(2, 3), one_hot(2, 3)]
    assert run(3, Out, Y)[2] == 2
    P = [[0.2, 0.7, 0.1], [0.5, 0.3, 0.2], [0.1, 0.1, 0.8]]
    assert run(4, P, Y)[2] == 2
    # bce on logits thresholds at 0 (not at 0.5, the Keras trap), per element
    Z = [[0.3, -0.2, 2.0], [-5.0, 0.1, -0.1]]
    Yb = [[1, 0, 0], [0, 0, 1]]
    assert run(1, Z, Yb)[2] == 3                      # 0.3 > 0 counts as class 1
    # bce on probabilities thresholds at 0.5
    Pb = [[0.6, 0.4, 0.9], [0.1, 0.55, 0.45]]
    assert run(2, Pb, Yb)[2] == 3
    # mse counts nothing
    assert run(0, Z, Yb)[2] == 0


@pytest.mark.parametrize("dtype", DTYPES)
def test_mse_by_hand(dtype):
    total, dOut, _ = run(0, [[1.0, 2.0], [0.0, 0.0]], [[0.0, 0.0], [0.0, 3.0]], dtype)
    assert total == pytest.approx((1 + 4) / 2 + 9 / 2)
    np.testing.assert_allclose(dOut, [[0.5, 1.0], [0.0, -1.5]])


# --------------------------------------------------------------------------- numerics.md table

# (logits, label, exact loss)
CE_TABLE = [
    ([1000, 0], 0, 0.0),
    ([1000, 0], 1, 1000.0),
    ([-1000, 1000], 0, 2000.0),
    ([-1000, 1000], 1, 0.0),
    ([1e4, -1e4], 1, 20000.0),
    ([0, 0], 0, LN2),
    ([0, 0], 1, LN2),
    ([0] * 10, 3, LN10),
    ([-7.25] * 10, 9, LN10),
    ([1e4, 1e4, 1e4], 0, LN3),
    ([1e4, 1e4, 1e4], 1, LN3),
    ([1e4, 1e4, 1e4], 2, LN3),
    ([10000, 10001, 10002, 10003], 0, 3.4401896985611953),
    ([89, 0], 0, 2.2273635617957437e-39),
    ([1e8, 1e8], 0, LN2),
    # logsumexp([1000, 1000]) = 1000.6931471805599, logsumexp([-1000, -1000]) = -999.30685...
    ([1000, 1000], 1, 1000.6931471805599 - 1000),
    ([-1000, -1000], 0, -999.3068528194401 + 1000),
]


def ce_id(case):
    return f"{case[0][:4]}-label{case[1]}"


def assert_table_value(got, exact, dtype):
    assert math.isfinite(got)
    if dtype == np.float64:
        np.testing.assert_allclose(got, exact, rtol=1e-12, atol=0)
    else:
        np.testing.assert_allclose(got, exact, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", CE_TABLE, ids=ce_id)
def test_ce_table(case, dtype):
    logits, label, exact = case
    total, dOut, _ = run(3, logits, one_hot(label, len(logits)), dtype)
    assert_table_value(total, exact, dtype)
    assert np.isfinite(dOut).all()


@pytest.mark.parametrize("dtype", DTYPES)
def test_ce_of_equal_huge_logits_is_ln3_in_float32_too(dtype):
    for label in range(3):
        total = run(3, [1e4, 1e4, 1e4], one_hot(label, 3), dtype)[0]
        assert abs(total - LN3) <= 1e-6 * LN3


@pytest.mark.parametrize("dtype", DTYPES)
def test_log_softmax_rows_via_ce(dtype):
    # -log_softmax of [10000..10003] equals that of [0..3]: [3.4401896, 2.4401896, ...]
    exact = -naive.log_softmax([0.0, 1.0, 2.0, 3.0])
    np.testing.assert_allclose(exact, [3.4401896, 2.4401896, 1.4401896, 0.44018966], rtol=1e-7)
    for row in ([0, 1, 2, 3], [10000, 10001, 10002, 10003]):
        for label in range(4):
            total = run(3, row, one_hot(label, 4), dtype)[0]
            naive.assert_close(total, exact[label], dtype, scale=1.0)


@pytest.mark.parametrize("dtype", DTYPES)
def test_ce_at_the_exp_overflow_edge(dtype):
    # ln(FLT_MAX) / ln(DBL_MAX): exp of the logit itself would overflow just past it
    edge = 88.72283905206835 if dtype == np.float32 else 709.782712893384
    for x in (edge, edge + 1.0, 2 * edge):
        total, dOut, _ = run(3, [x, 0.0], one_hot(1, 2), dtype)
        assert math.isfinite(total) and np.isfinite(dOut).all()
        np.testing.assert_allclose(total, float(dtype(x)), rtol=1e-6)


@pytest.mark.parametrize("dtype", DTYPES)
def test_ce_gradients_table(dtype):
    _, d, _ = run(3, [1000, 0], one_hot(1, 2), dtype)
    np.testing.assert_allclose(d, [[1.0, -1.0]], rtol=1e-12, atol=0)
    _, d, _ = run(3, [0, 0], one_hot(0, 2), dtype)
    np.testing.assert_allclose(d, [[-0.5, 0.5]], rtol=1e-12, atol=0)


# (logit, target, exact loss)
BCE_TABLE = [
    (0, 0, LN2),
    (0, 1, LN2),
    (-120, 1, 120.0),
    # numerics.md lists 7.6676479494776052e-53, which is off in the 8th digit: log1p(exp(-120))
    # = exp(-120)(1 - ...) = 7.6676480737219996e-53 (mpmath, 80 digits)
    (-120, 0, 7.6676480737219996e-53),
    (100, 1, 3.720075976020836e-44),
    (100, 0, 100.0),
    (20, 0, 20.000000002061154),
    (20, 1, 2.0611536203143807e-09),
    (1000, 1, 0.0),
    (-1000, 0, 0.0),
    (1000, 0, 1000.0),
    (-1000, 1, 1000.0),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", BCE_TABLE, ids=lambda c: f"x{c[0]}-y{c[1]}")
def test_bce_table(case, dtype):
    x, y, exact = case
    total, dOut, _ = run(1, [x], [y], dtype)
    assert_table_value(total, exact, dtype)
    assert np.isfinite(dOut).all()


@pytest.mark.parametrize("dtype", DTYPES)
def test_bce_table_as_one_batch(dtype):
    # the same cases as rows of one batch, and as outputs of one row: sums and means
    x = np.array([c[0] for c in BCE_TABLE], dtype=float)
    y = np.array([c[1] for c in BCE_TABLE], dtype=float)
    exact = np.array([c[2] for c in BCE_TABLE])
    total, dOut, _ = run(1, x[:, None], y[:, None], dtype)
    naive.assert_close(total, exact.sum(), dtype)
    naive.assert_close(dOut[:, 0], (naive.sigmoid(x) - y) / len(x), dtype)
    total, dOut, _ = run(1, x[None, :], y[None, :], dtype)
    naive.assert_close(total, exact.mean(), dtype)


@pytest.mark.parametrize("x", [-30.0, -5.0, 0.0, 3.0, 20.0])
def test_two_class_ce_equals_bce(x):
    """CE([x, 0]) with label 0 is BCE(x, 1) = log1p(exp(-x)) exactly: the two stable kernels
    must agree to float64 rounding, also where the loss is tiny (a confident right answer)."""
    ce = run(3, [x, 0.0], one_hot(0, 2))[0]
    bce = run(1, [x], [1.0])[0]
    exact = math.log1p(math.exp(-x)) if x > -30 else -x + math.log1p(math.exp(x))
    np.testing.assert_allclose(bce, exact, rtol=1e-12, atol=0)
    np.testing.assert_allclose(ce, exact, rtol=1e-12, atol=0)


@pytest.mark.parametrize("dtype", DTYPES)
def test_bce_gradients_table(dtype):
    assert run(1, [1000], [0], dtype)[1][0, 0] == 1.0
    assert run(1, [-1000], [1], dtype)[1][0, 0] == -1.0


# --------------------------------------------------------------------------- Keras clipping

@pytest.mark.parametrize("dtype", DTYPES)
def test_bce_probs_clipped_at_0_and_1(dtype):
    assert PROB_EPSILON == 1e-7
    worst = -math.log(1e-7)                           # 16.118..., what Keras gives
    for p, y, want in ((0.0, 1, worst), (1.0, 0, worst), (0.0, 0, 0.0), (1.0, 1, 0.0)):
        total, dOut, correct = run(2, [p], [y], dtype)
        assert math.isfinite(total) and np.isfinite(dOut).all()
        np.testing.assert_allclose(total, want, rtol=1e-6, atol=1e-6)
        assert dOut[0, 0] == 0.0                      # the clip is active: no gradient
    Out = np.array([[0.0, 1.0, 0.0, 1.0]])
    Y = np.array([[1.0, 0.0, 0.0, 1.0]])
    total, dOut, _ = run(2, Out, Y)
    want_total, want_d = naive.bce_probs(Out, Y)
    np.testing.assert_allclose(total, want_total.sum(), rtol=1e-10)
    assert np.array_equal(dOut, want_d)


@pytest.mark.parametrize("dtype", DTYPES)
def test_cce_probs_clipped_at_0_and_1(dtype):
    worst = -math.log(1e-7)
    total, dOut, _ = run(4, [1.0, 0.0, 0.0], one_hot(1, 3), dtype)
    assert math.isfinite(total) and np.isfinite(dOut).all()
    np.testing.assert_allclose(total, worst, rtol=1e-6)
    total, dOut, _ = run(4, [0.0, 1.0, 0.0], one_hot(1, 3), dtype)
    assert math.isfinite(total) and np.isfinite(dOut).all()
    np.testing.assert_allclose(total, 0.0, atol=1e-6)
    Out = np.array([[1.0, 0.0, 0.0], [0.0, 2.0, 0.0], [0.2, 0.3, 0.5]])
    Y = np.stack([one_hot(1, 3), one_hot(1, 3), one_hot(2, 3)])
    total, dOut, _ = run(4, Out, Y)
    want_total, want_d = naive.cce_probs(Out, Y)
    np.testing.assert_allclose(total, want_total.sum(), rtol=1e-10)
    np.testing.assert_allclose(dOut, want_d, rtol=1e-10, atol=1e-15)


# --------------------------------------------------------------------------- the loss table

def test_kernel_codes_of_the_table():
    assert kernel_code(get_loss("mse"), False) == 0
    assert kernel_code(get_loss("bce"), True) == 1
    assert kernel_code(get_loss("bce"), False) == 2
    assert kernel_code(get_loss("cce"), True) == 3
    assert kernel_code(get_loss("cce"), False) == 4
    assert kernel_code(get_loss("sparse_cce"), True) == 3
    assert kernel_code(get_loss("sparse_cce"), False) == 4
    with pytest.raises(UsageError, match="unknown loss"):
        get_loss("hinge")


@pytest.mark.parametrize("loss,logits,last", [
    ("cce", True, LayerSpec(3, "softmax")),           # softmax last layer with --logits
    ("sparse_cce", True, LayerSpec(1, "linear")),     # one unit for a categorical loss
    ("sparse_cce", False, LayerSpec(1, "softmax")),
    ("bce", False, LayerSpec(1, "linear")),           # probabilities wanted, logits given
    ("cce", False, LayerSpec(3, "linear")),
    ("bce", True, LayerSpec(1, "sigmoid")),
    ("mse", True, LayerSpec(1, "linear")),            # --logits means nothing for mse
])
def test_check_output_layer_rejects(loss, logits, last):
    with pytest.raises(UsageError):
        check_output_layer(LOSSES[loss], logits, [LayerSpec(4, "relu"), last])


def test_check_output_layer_messages():
    with pytest.raises(UsageError, match="linear last layer"):
        check_output_layer(LOSSES["cce"], True, [LayerSpec(3, "softmax")])
    with pytest.raises(UsageError, match="at least 2 output units"):
        check_output_layer(LOSSES["sparse_cce"], True, [LayerSpec(1, "linear")])
    with pytest.raises(UsageError, match="sigmoid last layer"):
        check_output_layer(LOSSES["bce"], False, [LayerSpec(1, "linear")])
    with pytest.raises(UsageError, match="--logits"):
        check_output_layer(LOSSES["mse"], True, [LayerSpec(1, "linear")])


@pytest.mark.parametrize("loss,logits,last", [
    ("mse", False, LayerSpec(1, "linear")),
    ("mse", False, LayerSpec(3, "tanh")),
    ("bce", True, LayerSpec(1, "linear")),
    ("bce", False, LayerSpec(2, "sigmoid")),
    ("cce", True, LayerSpec(3, "linear")),
    ("cce", False, LayerSpec(3, "softmax")),
    ("sparse_cce", True, LayerSpec(2, "linear")),
    ("sparse_cce", False, LayerSpec(10, "softmax")),
])
def test_check_output_layer_accepts(loss, logits, last):
    check_output_layer(LOSSES[loss], logits, [LayerSpec(4, "relu"), last])


@pytest.mark.parametrize("loss", ["sparse_cce", "cce"])
def test_prepare_targets_one_hots_labels(loss):
    Y = prepare_targets(LOSSES[loss], np.array([[0.0], [2.0], [1.0], [2.0]]), 3, "t.csv")
    assert Y.dtype == np.float32 and Y.flags.c_contiguous
    assert np.array_equal(Y, [[1, 0, 0], [0, 0, 1], [0, 1, 0], [0, 0, 1]])


def test_prepare_targets_keeps_one_hot_columns():
    Y0 = np.array([[0.0, 1.0, 0.0], [0.2, 0.3, 0.5]])
    Y = prepare_targets(LOSSES["cce"], Y0, 3, "t.csv")
    assert Y.dtype == np.float32 and np.array_equal(Y, Y0.astype(np.float32))


def test_prepare_targets_rejects_label_out_of_range_with_its_line():
    labels = np.array([[3.0], [10.0], [9.0]])
    with pytest.raises(DataError) as info:
        prepare_targets(LOSSES["sparse_cce"], labels, 10, "data.csv", lines=[5, 7, 8])
    err = info.value
    assert err.line == 7
    assert "data.csv:7" in str(err)
    assert "10" in str(err)


@pytest.mark.parametrize("bad", [-1.0, 1.5, 3.0])
def test_prepare_targets_rejects_bad_labels(bad):
    with pytest.raises(DataError):
        prepare_targets(LOSSES["sparse_cce"], np.array([[0.0], [bad]]), 3, "d.csv", [2, 3])


@pytest.mark.parametrize("bad", [-0.1, 1.5, 2.0])
def test_prepare_targets_rejects_bce_targets_outside_0_1(bad):
    Y = np.array([[0.0, 1.0], [0.5, 1.0], [1.0, bad]])
    with pytest.raises(DataError, match=r"\[0, 1\]") as info:
        prepare_targets(LOSSES["bce"], Y, 2, "b.csv", lines=[2, 3, 4])
    assert info.value.line == 4


def test_prepare_targets_accepts_soft_bce_targets():
    Y0 = np.array([[0.0], [0.25], [1.0]])
    assert np.array_equal(prepare_targets(LOSSES["bce"], Y0, 1, "b.csv"),
                          Y0.astype(np.float32))


def test_prepare_targets_rejects_wrong_column_count():
    with pytest.raises(DataError, match="target column"):
        prepare_targets(LOSSES["mse"], np.zeros((4, 2)), 3, "m.csv")
