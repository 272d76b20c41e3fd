"""Row weights (--class-weight, Keras class_weight): the weighted fused loss and its gradient
against the float64 reference for every loss code, the unweighted path unchanged by weights of
1, finite differences of a weighted network's loss, the class weights nncli.weights computes,
and the option through the command line (the rare class's recall, string labels, the model
file, errors)."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from nncli import kernels as K
from nncli.errors import UsageError
from nncli.gradcheck import check_gradients, model_gradient_fn
from nncli.losses import PROB_EPSILON, get_loss
from nncli.model import Model
from nncli import weights, weightspec

try:
    import naive
    from clirun import assert_one_line_error, run
    from test_losses import CODES, make_case
except ImportError:  # run as a package
    from tests import naive
    from tests.clirun import assert_one_line_error, run
    from tests.test_losses import CODES, make_case


def _kernel(code, Out, Y, w, dtype):
    Out, Y = np.ascontiguousarray(Out, dtype), np.ascontiguousarray(Y, dtype)
    dOut = np.full_like(Out, np.nan)
    w = None if w is None else np.ascontiguousarray(w, dtype)
    total, correct = K.loss_forward_backward(dOut, Out, Y, code, PROB_EPSILON, w)
    return float(total), dOut, int(correct)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n,k", [(1, 1), (7, 3), (5, 1)])
@pytest.mark.parametrize("name", list(CODES))
def test_weighted_loss_against_naive(name, n, k, dtype):
    code = CODES[name]
    rng = np.random.default_rng(code * 31 + n + k)
    Out, Y = make_case(code, n, k, rng)
    w = rng.uniform(0.0, 3.0, size=n)
    w[0] = 0.0                                    # a row weighing nothing adds nothing
    total, dOut, correct = _kernel(code, Out, Y, w, dtype)
    want_total, want_d = naive.weighted_loss(code, Out.astype(dtype), Y.astype(dtype),
                                             w.astype(dtype))
    naive.assert_close(total, want_total, dtype)
    naive.assert_close(dOut, want_d, dtype)
    assert not dOut[0].any()
    # accuracy is not weighted
    assert correct == naive.correct(code, Out.astype(dtype), Y.astype(dtype))


@pytest.mark.parametrize("name", list(CODES))
def test_weights_of_one_are_the_unweighted_loss_bit_for_bit(name):
    code = CODES[name]
    Out, Y = make_case(code, 6, 3, np.random.default_rng(code))
    plain = _kernel(code, Out, Y, None, np.float32)
    ones = _kernel(code, Out, Y, np.ones(6), np.float32)
    assert plain[0] == ones[0] and plain[2] == ones[2]
    assert np.array_equal(plain[1], ones[1])


@pytest.mark.parametrize("loss,logits,arch", [("mse", False, "3tanh-2linear"),
                                              ("bce", True, "3tanh-1linear"),
                                              ("sparse_cce", True, "3tanh-3linear"),
                                              ("cce", False, "3tanh-3softmax")])
def test_weighted_network_gradient_against_finite_differences(loss, logits, arch):
    from nncli.arch import parse_arch

    rng = np.random.default_rng(4)
    model = Model.create(parse_arch(arch), 4, loss, logits, seed=1)
    X = rng.normal(size=(6, 4))
    if model.n_outputs == 1:
        Y = rng.integers(0, 2, size=(6, 1)).astype(float)
    elif loss == "mse":
        Y = rng.normal(size=(6, 2))
    else:
        Y = np.eye(3)[rng.integers(0, 3, size=6)]
    w = rng.uniform(0.1, 4.0, size=6)
    fn = model_gradient_fn(model, X, Y, weights=w)
    params = model.params.astype(np.float64)
    checks = check_gradients(fn, params, {"all": slice(0, params.size)})
    assert checks[0].max_error < 1e-6
    # and the weighted mean is what it says: sum of w_r x row loss over the rows
    plain = model_gradient_fn(model, X[:1], Y[:1])(params)[0]
    one = model_gradient_fn(model, X[:1], Y[:1], weights=w[:1])(params)[0]
    assert one == pytest.approx(w[0] * plain, rel=1e-12)


def test_balanced_is_scikit_learns_formula():
    Y = np.eye(3)[[0, 0, 0, 0, 1, 1, 2, 0]]       # 5, 2, 1 rows
    got = weights.class_weights("balanced", get_loss("sparse_cce"), Y, None, "t.csv")
    assert got == pytest.approx({"0": 8 / (3 * 5), "1": 8 / (3 * 2), "2": 8 / 3})
    binary = np.array([[0.0], [1.0], [0.0], [0.0]])
    got = weights.class_weights("balanced", get_loss("bce"), binary, ["benign", "malignant"],
                                "t.csv")
    assert got == pytest.approx({"benign": 4 / 6, "malignant": 2.0})
    W = weights.row_weights(got, get_loss("bce"), binary, None)
    assert W.dtype == np.float32 and W.tolist() == pytest.approx([4 / 6, 2, 4 / 6, 4 / 6])


def test_labels_name_classes_by_value_or_text():
    Y = np.eye(3)[[0, 1, 2]]
    got = weights.class_weights("2=5, 1.0=0.5", get_loss("cce"), Y, None, "t.csv")
    assert got == {"0": 1.0, "1": 0.5, "2": 5.0}
    for spec in ("3=1", "a=2"):
        with pytest.raises(UsageError, match="has no class"):
            weights.class_weights(spec, get_loss("cce"), Y, None, "t.csv")
    for spec in ("1=-2", "1=x", "=3", "1"):
        with pytest.raises(UsageError, match="LABEL=W"):
            weightspec.check_class_weight(spec)
    assert weightspec.check_class_weight("None") is None


# ---------------------------------------------------------------- the command line


@pytest.fixture(scope="module")
def nines_csv(tmp_path_factory, digits_csv):
    """digits as 'is it a 9' (about 10% positive)."""
    path = tmp_path_factory.mktemp("nines") / "nines.csv"
    with open(digits_csv, newline="") as f, open(path, "w", newline="") as out:
        rows = csv.reader(f)
        w = csv.writer(out)
        header = next(rows)
        w.writerow(header[:-1] + ["nine"])
        for row in rows:
            w.writerow(row[:-1] + [int(row[-1] == "9")])
    return path


def _recall(capsys, model, data) -> float:
    rc, out, _ = run(capsys, "predict", model, data, "--output", "class")
    assert rc == 0
    predicted = [line.split(",")[-1].strip() for line in out.splitlines()[1:]]
    with open(data, newline="") as f:
        truth = [row[-1] for row in list(csv.reader(f))[1:]]
    hits = [p == "1" for p, t in zip(predicted, truth) if t == "1"]
    return sum(hits) / len(hits)


def test_balanced_raises_the_rare_class_recall(capsys, tmp_path, nines_csv):
    common = ["train", nines_csv, "--arch", "1linear", "--loss", "bce", "--logits",
              "--epochs", "2", "--batch-size", "64", "-q"]
    assert run(capsys, *common, "-o", tmp_path / "plain.safetensors")[0] == 0
    rc, out, err = run(capsys, *common, "--class-weight", "balanced", "--json",
                       "-o", tmp_path / "w.safetensors")
    assert rc == 0, err
    doc = json.loads(out)
    assert doc["options"]["class_weight"] == "balanced"
    plain = _recall(capsys, tmp_path / "plain.safetensors", nines_csv)
    weighted = _recall(capsys, tmp_path / "w.safetensors", nines_csv)
    assert weighted > plain
    rc, out, _ = run(capsys, "info", tmp_path / "w.safetensors", "--json")
    assert rc == 0
    with open(nines_csv, newline="") as f:
        counts = np.bincount([int(row[-1]) for row in list(csv.reader(f))[1:]])
    shown = json.loads(out)["row_weights"]["class_weight"]
    assert shown == pytest.approx({str(c): counts.sum() / (2 * counts[c]) for c in (0, 1)})
    rc, out, _ = run(capsys, "info", tmp_path / "plain.safetensors", "--json")
    assert json.loads(out)["row_weights"] is None


def test_string_labels_and_the_model_file(capsys, tmp_path, breast_cancer_csv):
    from nncli.modelfile import load_model

    rc, _, err = run(capsys, "train", breast_cancer_csv, "--arch", "1linear", "--loss", "bce",
                     "--logits", "--epochs", "1", "--class-weight", "malignant=3", "-q",
                     "-o", tmp_path / "m.safetensors")
    assert rc == 0, err
    model = load_model(tmp_path / "m.safetensors")
    assert model.info["class_weight"] == {"benign": 1.0, "malignant": 3.0}
    assert model.info["options"]["class_weight"] == "malignant=3"


@pytest.mark.parametrize("extra,needles", [
    (["--class-weight", "maybe=2"], ["--class-weight", "no class 'maybe'", "benign"]),
    (["--class-weight", "malignant=-1"], ["--class-weight", "LABEL=W"]),
])
def test_class_weight_errors_are_one_line(capsys, tmp_path, breast_cancer_csv, extra, needles):
    assert_one_line_error(*run(capsys, "train", breast_cancer_csv, "--arch", "1linear",
                               "--loss", "bce", "--logits", "--epochs", "1", *extra,
                               "-o", tmp_path / "m.safetensors"), *needles)
    assert not (tmp_path / "m.safetensors").exists()


def test_class_weight_on_a_regression_is_one_line(capsys, tmp_path, regression_csv):
    assert_one_line_error(*run(capsys, "train", regression_csv, "--arch", "1linear", "--loss",
                               "mse", "--epochs", "1", "--class-weight", "balanced",
                               "-o", tmp_path / "m.safetensors"), "classifier losses")


def test_weighted_resume_is_bit_identical(tmp_path, monkeypatch):
    """The row weights come from the data and the options, so a resumed run recomputes them."""
    try:
        import test_resume as R
    except ImportError:
        from tests import test_resume as R
    from nncli.errors import Interrupted

    monkeypatch.setattr(R.L, "ROWS_PER_CALL", 32)
    kw = {"class_weight": "0=3,1=0.5"}
    plain = R._run(epochs=3)
    list(R.fit(plain))
    straight = R._run(epochs=3, **kw)
    assert straight.W is not None and set(straight.W.tolist()) == {3.0, 0.5}
    list(R.fit(straight))
    assert not np.array_equal(straight.model.params, plain.model.params)
    first = R._run(epochs=3, **kw)
    with pytest.raises(Interrupted):
        list(R.fit(first, stop=R._stop_after(10)))
    assert 0 < first.state.rows_done < len(first.X)
    rest = R._resumed(tmp_path, first, epochs=3)
    list(R.fit(rest))
    assert np.array_equal(rest.model.params, straight.model.params)
    assert R._without_seconds(rest.history) == R._without_seconds(straight.history)


def test_sweep_varies_the_class_weight():
    from nncli.sweep.space import options_from_args, parse_space

    args = ["--arch", "4relu-2linear", "--loss", "sparse_cce", "--class-weight", "none,balanced"]
    space = parse_space(options_from_args(args))
    assert space.grid["class_weight"] == ["none", "balanced"]
