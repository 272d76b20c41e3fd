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
    shown = json.loads(out)["class_weight"]
    assert shown == pytest.approx({str(c): counts.sum() / (2 * counts[c]) for c in (0, 1)})
    rc, out, _ = run(capsys, "info", tmp_path / "plain.safetensors", "--json")
    assert json.loads(out)["class_weight"] is None


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


# ---------------------------------------------------------------- --sample-weight


def _split_params(params, model):
    try:
        from test_kernels import split_params
    except ImportError:
        from tests.test_kernels import split_params
    return split_params(params, model.layers, model.n_inputs)


def _classes_data(n=12, seed=5):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 4)).astype(np.float32)
    y = rng.integers(0, 3, size=n).astype(np.float32)
    return X, y


@pytest.mark.parametrize("class_weight", [None, "0=3,2=0.25"])
def test_one_full_batch_step_with_sample_weights_against_naive(class_weight):
    """prepare + fit, one SGD step on all rows: the reported loss is the float64 reference's
    sum of w_r x row loss over all n rows (a row weighing 0 included) divided by n, and the
    step is lr x the reference gradient of that mean; class weights multiply."""
    from nncli.data import Dataset
    from nncli.train import TrainConfig, fit, prepare

    X, y = _classes_data()
    n, lr = len(X), 0.5
    sample = np.random.default_rng(6).uniform(0.0, 4.0, size=n)
    sample[0] = 0.0
    config = TrainConfig(arch="5tanh-3linear", loss="sparse_cce", logits=True, epochs=1,
                         batch_size=n, optimizer="sgd", lr=lr, normalize=False, seed=2,
                         sample_weight="w", class_weight=class_weight)
    run = prepare(config, Dataset.from_arrays(X, y[:, None], sample_weight=sample))
    before = run.model.params.astype(np.float64)
    Y = np.eye(3)[y.astype(int)]
    w = sample * (np.array([3.0, 1.0, 0.25])[y.astype(int)] if class_weight else 1.0)
    acts = [layer.activation for layer in run.model.layers]
    want_sum, grads, _ = naive.forward_backward(_split_params(before, run.model), acts, X, Y,
                                                run.model.kernel_code, w)
    [report] = list(fit(run))
    naive.assert_close(report.loss, want_sum / n, np.float32)
    # the mean is over every row, the one weighing 0 included (sum_over_batch_size)
    assert report.loss != pytest.approx(want_sum / (n - 1), rel=1e-3)
    g = np.concatenate([np.concatenate([dW.ravel(), db]) for dW, db in grads])
    naive.assert_close(run.model.params, naive.sgd_steps(before, [g], lr)[0], np.float32)


def test_validation_split_keeps_the_training_rows_weights_only():
    from nncli.data import Dataset
    from nncli.train import TrainConfig, prepare

    X, y = _classes_data(n=10)
    sample = np.arange(10, dtype=np.float64)
    config = TrainConfig(arch="3linear", loss="sparse_cce", logits=True, validation_split=0.3,
                         sample_weight="w")
    run = prepare(config, Dataset.from_arrays(X, y[:, None], sample_weight=sample))
    assert len(run.X) == 7 and run.W.dtype == np.float32
    assert run.W.tolist() == list(range(7))


def test_all_zero_training_weights_are_refused(tmp_path):
    from nncli.data import Dataset
    from nncli.train import TrainConfig, validate

    X, y = _classes_data(n=10)
    sample = np.r_[np.zeros(7), np.ones(3)]            # only the validation rows weigh
    config = TrainConfig(arch="3linear", loss="sparse_cce", logits=True, validation_split=0.3,
                         sample_weight="w")
    with pytest.raises(UsageError, match="every training row has weight 0 under "
                                         "--sample-weight w"):
        validate(config, Dataset.from_arrays(X, y[:, None], sample_weight=sample))
    with pytest.raises(UsageError, match="read without one weight per row"):
        validate(config, Dataset.from_arrays(X, y[:, None]))


def test_sample_weighted_resume_is_bit_identical(tmp_path, monkeypatch):
    """The weights come from the data; a run interrupted mid-epoch and resumed from its
    checkpoint equals the one that never stopped."""
    try:
        import test_resume as R
    except ImportError:
        from tests import test_resume as R
    from nncli.data import Dataset
    from nncli.errors import Interrupted
    from nncli.modelfile import read_model_file, save_model
    from nncli.train import TrainConfig, checkpoint_parts, prepare

    monkeypatch.setattr(R.L, "ROWS_PER_CALL", 32)
    X, y = R._data()
    sample = np.random.default_rng(8).uniform(0.0, 3.0, size=len(X))
    config = TrainConfig(arch="7relu-3linear", loss="sparse_cce", logits=True, epochs=3,
                         batch_size=16, validation_split=0.2, seed=3, sample_weight="w",
                         class_weight="0=2")

    def prepared(resume=None):
        return prepare(config, Dataset.from_arrays(X.copy(), y.copy(), "synthetic",
                                                   sample_weight=sample), resume=resume)

    straight = prepared()
    list(R.fit(straight))
    first = prepared()
    with pytest.raises(Interrupted):
        list(R.fit(first, stop=R._stop_after(10)))
    assert 0 < first.state.rows_done < len(first.X)
    path = tmp_path / "ckpt.safetensors"
    save_model(first.model, path, *checkpoint_parts(first))
    rest = prepared(read_model_file(path))
    list(R.fit(rest))
    assert np.array_equal(rest.W, straight.W)
    assert np.array_equal(rest.model.params, straight.model.params)
    assert R._without_seconds(rest.history) == R._without_seconds(straight.history)


# ---------------------------------------------------------------- --sample-weight on the CLI


WEIGHTED = ["--arch", "4tanh-2linear", "--loss", "sparse_cce", "--logits", "-q"]


def _weighted_csv(path, weights, n=60, header=True):
    """Columns a, b, w (the weights), c, t (the class, 0 or 1)."""
    rng = np.random.default_rng(3)
    X = rng.normal(size=(n, 3))
    t = (X[:, 0] + 0.5 * X[:, 1] > 0).astype(int)
    w = np.broadcast_to(np.asarray(weights, dtype=float), (n,))
    rows = [f"{a:.4f},{b:.4f},{wi:g},{c:.4f},{ti}" for (a, b, c), wi, ti in zip(X, w, t)]
    path.write_text(("a,b,w,c,t\n" if header else "") + "\n".join(rows) + "\n")
    return path


def _tensors(path):
    from safetensors.numpy import load_file

    return load_file(str(path))


def _same_tensors(a, b) -> bool:
    ta, tb = _tensors(a), _tensors(b)
    return sorted(ta) == sorted(tb) and all(np.array_equal(ta[k], tb[k]) for k in ta)


def test_weights_of_one_train_the_unweighted_model_bit_for_bit(capsys, tmp_path):
    data = _weighted_csv(tmp_path / "ones.csv", 1.0)
    common = ["train", data, *WEIGHTED, "--epochs", "3", "--batch-size", "16"]
    assert run(capsys, *common, "--sample-weight", "w", "-o", tmp_path / "w.safetensors")[0] == 0
    assert run(capsys, *common, "--ignore", "w", "-o", tmp_path / "i.safetensors")[0] == 0
    assert _same_tensors(tmp_path / "w.safetensors", tmp_path / "i.safetensors")


def test_weights_of_two_under_sgd_are_twice_the_learning_rate(capsys, tmp_path):
    """SGD's step is lr x gradient, and weights of 2 double the gradient: the same weights as
    lr x 2 unweighted, and each reported loss twice that run's (val_loss the same: it is not
    weighted). Doubling is exact in binary floating point, so all of it holds bit for bit."""
    data = _weighted_csv(tmp_path / "twos.csv", 2.0)
    common = ["train", data, *WEIGHTED, "--epochs", "3", "--optimizer", "sgd",
              "--validation-split", "0.25", "--json"]
    rc, out, err = run(capsys, *common, "--lr", "0.05", "--sample-weight", "w",
                       "-o", tmp_path / "w.safetensors")
    assert rc == 0, err
    weighted = json.loads(out)["history"]
    rc, out, err = run(capsys, *common, "--lr", "0.1", "--ignore", "w",
                       "-o", tmp_path / "p.safetensors")
    assert rc == 0, err
    plain = json.loads(out)["history"]
    assert _same_tensors(tmp_path / "w.safetensors", tmp_path / "p.safetensors")
    assert len(weighted) == len(plain) == 3
    for w, p in zip(weighted, plain):
        assert (w["loss"], w["val_loss"]) == (2 * p["loss"], p["val_loss"])


def test_validation_rows_are_unweighted_and_their_weights_unused(capsys, tmp_path):
    """--validation-split 0.25 of 60 rows: the last 15 validate. Their weights change
    nothing, and val_loss is nncli eval's (unweighted) loss on those rows."""
    weights = np.random.default_rng(4).uniform(0.5, 2.0, size=60).round(3)
    heavy = weights.copy()
    heavy[45:] = 1000.0
    common = [*WEIGHTED, "--epochs", "2", "--validation-split", "0.25", "--sample-weight", "w"]
    models = []
    for name, w in (("a", weights), ("b", heavy)):
        data = _weighted_csv(tmp_path / f"{name}.csv", w)
        models.append(tmp_path / f"{name}.safetensors")
        rc, out, err = run(capsys, "train", data, *common, "--json", "-o", models[-1])
        assert rc == 0, err
    assert _same_tensors(*models)
    val_loss = json.loads(out)["final"]["val_loss"]
    lines = (tmp_path / "b.csv").read_text().splitlines()
    (tmp_path / "val.csv").write_text("\n".join([lines[0], *lines[-15:]]) + "\n")
    rc, out, err = run(capsys, "eval", models[-1], tmp_path / "val.csv", "--json")
    assert rc == 0, err
    assert json.loads(out)["loss"] == pytest.approx(val_loss, rel=1e-5)


def test_the_weight_column_is_no_feature_for_eval_predict_and_info(capsys, tmp_path):
    data = _weighted_csv(tmp_path / "d.csv", np.linspace(0.1, 3.0, 60))
    model = tmp_path / "m.safetensors"
    rc, out, err = run(capsys, "train", data, *WEIGHTED, "--epochs", "2", "--sample-weight",
                       "w", "--class-weight", "1=2", "--json", "-o", model)
    assert rc == 0, err
    assert json.loads(out)["options"]["sample_weight"] == "w"
    rc, out, _ = run(capsys, "info", model, "--json")
    doc = json.loads(out)
    assert [c["name"] for c in doc["columns"]] == ["a", "b", "c"]
    assert {"name": "w", "why": "--sample-weight"} in doc["left_out"]
    assert doc["sample_weight"] == "w" and doc["class_weight"] == {"0": 1.0, "1": 2.0}
    rc, _, err = run(capsys, "info", model)
    assert "sample_weight" in err and "0=1, 1=2" in err and "w (--sample-weight)" in err
    # eval and predict read files with the column (by name, or by position) and without it
    lines = data.read_text().splitlines()
    without = tmp_path / "without.csv"
    without.write_text("\n".join(",".join(c for j, c in enumerate(line.split(",")) if j != 2)
                                 for line in lines) + "\n")
    headerless = tmp_path / "headerless.csv"
    headerless.write_text("\n".join(lines[1:]) + "\n")
    rc, want, err = run(capsys, "predict", model, data)
    assert rc == 0, err
    for other in (without, headerless):
        rc, out, err = run(capsys, "predict", model, other)
        assert rc == 0, err
        assert out.splitlines()[1:] == want.splitlines()[1:]
    rc, out, _ = run(capsys, "eval", model, data, "--json")
    loss = json.loads(out)["loss"]
    for other in (without, headerless):
        rc, out, err = run(capsys, "eval", model, other, "--json")
        assert rc == 0, err
        assert json.loads(out)["loss"] == loss


def test_resume_rereads_the_weight_column_bit_for_bit(capsys, tmp_path):
    data = _weighted_csv(tmp_path / "d.csv", np.linspace(0.0, 3.0, 60))
    common = ["train", data, *WEIGHTED, "--sample-weight", "w", "--batch-size", "8"]
    assert run(capsys, *common, "--epochs", "2", "--checkpoint", tmp_path / "c.ckpt",
               "-o", tmp_path / "first.safetensors")[0] == 0
    rc, _, err = run(capsys, *common, "--epochs", "4", "--resume", tmp_path / "c.ckpt",
                     "-o", tmp_path / "resumed.safetensors")
    assert rc == 0, err
    assert run(capsys, *common, "--epochs", "4", "-o", tmp_path / "straight.safetensors")[0] == 0
    assert _same_tensors(tmp_path / "resumed.safetensors", tmp_path / "straight.safetensors")
    # a run that starts from a model cannot weigh by one of its input columns
    assert_one_line_error(*run(capsys, "train", data, *WEIGHTED, "--sample-weight", "a",
                               "--epochs", "4", "--resume", tmp_path / "c.ckpt",
                               "-o", tmp_path / "x.safetensors"),
                          "--sample-weight a: column 'a' is an input column of the model")


def test_all_zero_weights_on_the_command_line_are_one_line(capsys, tmp_path):
    data = _weighted_csv(tmp_path / "zeros.csv", 0.0)
    assert_one_line_error(*run(capsys, "train", data, *WEIGHTED, "--sample-weight", "w",
                               "-o", tmp_path / "m.safetensors"),
                          "zeros.csv: every training row has weight 0 under --sample-weight w")


def test_gradcheck_checks_the_weighted_gradient_of_a_model(capsys, tmp_path):
    data = _weighted_csv(tmp_path / "d.csv", np.linspace(0.0, 3.0, 60))
    model = tmp_path / "m.safetensors"
    assert run(capsys, "train", data, *WEIGHTED, "--epochs", "1", "--sample-weight", "w",
               "-o", model)[0] == 0
    rc, out, err = run(capsys, "gradcheck", model, data, "--sample-weight", "w",
                       "--class-weight", "balanced", "--batch", "6", "--json")
    assert rc == 0, err
    assert json.loads(out)["ok"]
    assert "--class-weightbalanced--sample-weightw" in "".join(err.split())   # the title
    assert_one_line_error(*run(capsys, "gradcheck", "--arch", "2linear", "--loss", "mse",
                               "--sample-weight", "w"), "MODEL DATA")


def test_gradcheck_on_data_weighs_each_row():
    """gradcheck_on_data's loss is the weighted one: rows weighing 0 add nothing."""
    from nncli import gradcheck as gc
    from nncli.arch import parse_arch

    X, y = _classes_data(n=6)
    model = Model.create(parse_arch("3linear"), 4, "sparse_cce", True, seed=1)
    seen = {}
    real = gc.gradcheck_model

    def spy(model, X, Y, l1=0.0, l2=0.0, weights=None):
        seen["weights"] = weights
        return real(model, X, Y, l1, l2, weights)

    try:
        gc.gradcheck_model = spy
        checks = gc.gradcheck_on_data(model, X, y[:, None], "t.csv", (0.0, 0.0), "0=2",
                                      np.arange(6.0))
    finally:
        gc.gradcheck_model = real
    assert all(c.max_error < 1e-6 for c in checks)
    assert seen["weights"].tolist() == [(2.0 if c == 0 else 1.0) * r
                                        for r, c in enumerate(y.astype(int))]


def test_sweep_takes_the_sample_weight_the_same_for_every_trial():
    from nncli.sweep.space import options_from_args, parse_space

    args = ["--arch", "4relu-2linear", "--loss", "sparse_cce", "--sample-weight", "w"]
    space = parse_space(options_from_args(args))
    assert space.fixed["sample_weight"] == "w" and not space.varying
    with pytest.raises(UsageError, match="--sample-weight cannot vary in a sweep"):
        parse_space(options_from_args([*args[:4], "--sample-weight", "w,v"]))


def test_validation_data_is_read_with_or_without_the_weight_column(capsys, tmp_path):
    """--validation-data is unweighted: its weight column, if any, is no feature either."""
    data = _weighted_csv(tmp_path / "d.csv", np.linspace(0.5, 2.0, 60))
    val = _weighted_csv(tmp_path / "val.csv", 1000.0, n=20)
    lines = val.read_text().splitlines()
    without = tmp_path / "without.csv"
    without.write_text("\n".join(",".join(c for j, c in enumerate(line.split(",")) if j != 2)
                                 for line in lines) + "\n")
    losses = []
    for other in (val, without):
        rc, out, err = run(capsys, "train", data, *WEIGHTED, "--epochs", "2", "--sample-weight",
                           "w", "--validation-data", other, "--json",
                           "-o", tmp_path / "m.safetensors")
        assert rc == 0, err
        losses.append(json.loads(out)["final"]["val_loss"])
    assert losses[0] == losses[1]
