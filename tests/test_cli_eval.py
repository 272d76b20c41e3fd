"""``nncli eval``'s scores through the command line: the JSON layout of binary, multi-class,
multi-label and regression models, each number against scikit-learn on a real model's
probabilities, --threshold (eval and predict --output class), --sample-weight, and the tables on
stderr."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest

from nncli.cli import main
from nncli.data import ReadOptions, load_training_data
from nncli.decision import probabilities
from nncli.losses import prepare_targets
from nncli.modelfile import load_model

try:
    from clirun import assert_one_line_error, run
    from sklearn_ref import importorskip
except ImportError:                       # tests/ imported as a package
    from tests.clirun import assert_one_line_error, run
    from tests.sklearn_ref import importorskip

DATASETS = Path(__file__).resolve().parent.parent / "datasets"
CLASS_KEYS = {"precision", "recall", "f1", "support"}
AVERAGE_KEYS = {"precision", "recall", "f1"}
LABEL_KEYS = {"precision", "recall", "f1", "roc_auc", "average_precision", "support",
              "best_threshold"}
BEST_KEYS = {"threshold", "f1", "precision", "recall"}
REGRESSION_KEYS = {"mse", "rmse", "mae", "r2", "max_error"}


@pytest.fixture(scope="module")
def sk():
    return importorskip("sklearn.metrics")


def train(tmp_path_factory, name: str, *argv) -> Path:
    """A model trained once for the module, quietly (as conftest's fixtures are)."""
    path = tmp_path_factory.mktemp(name) / f"{name}.safetensors"
    assert main(["train", *map(str, argv), "--quiet", "-o", str(path)]) == 0
    return path


@pytest.fixture(scope="module")
def binary_model(tmp_path_factory) -> Path:
    return train(tmp_path_factory, "binary", DATASETS / "digits01.csv", "--arch",
                 "4relu-1linear", "--loss", "bce", "--logits", "--epochs", "1")


@pytest.fixture(scope="module")
def multilabel_model(tmp_path_factory) -> Path:
    targets = [a for name in ("even", "ge5", "prime") for a in ("--target", name)]
    return train(tmp_path_factory, "multilabel", DATASETS / "digits_multilabel.csv", *targets,
                 "--arch", "8relu-3sigmoid", "--loss", "bce", "--epochs", "2")


@pytest.fixture(scope="module")
def two_output_csv(tmp_path_factory) -> Path:
    rng = np.random.default_rng(3)
    X = rng.normal(size=(200, 3))
    Y = np.column_stack([X @ [1.0, -2.0, 0.5] + 3, 10 * X[:, 0] * X[:, 1]])
    path = tmp_path_factory.mktemp("two_outputs") / "two.csv"
    np.savetxt(path, np.column_stack([X, Y]), delimiter=",", fmt="%.6f",
               header="a,b,c,u,v", comments="")
    return path


@pytest.fixture(scope="module")
def two_output_model(tmp_path_factory, two_output_csv) -> Path:
    return train(tmp_path_factory, "two_outputs", two_output_csv, "--target", "u", "--target",
                 "v", "--arch", "8relu-2linear", "--loss", "mse", "--epochs", "3")


def eval_json(capsys, model, data, *argv) -> dict:
    rc, out, err = run(capsys, "eval", model, data, "--json", *argv)
    assert rc == 0, err
    return json.loads(out)


def scored(model: Path, data: Path, weight: str | None = None):
    """(truth (n, t) as eval prepares it, float64 probabilities or values, row weights) of
    ``model`` on ``data``, computed in-process as the reference's input."""
    m = load_model(model)
    ds = load_training_data(str(data), classes=m.classes, schema=m.input_schema(),
                            model_targets=m.target_lookup(),
                            options=ReadOptions(sample_weight=weight))
    out = m.outputs(m.preprocessing.transform(ds.X, ds.source))
    Y = prepare_targets(m.loss_spec, ds.Y, m.n_outputs, ds.source)
    if not m.loss_spec.classifier:
        return Y, m.preprocessing.unscale_outputs(out).astype(np.float64), ds.sample_weight
    return Y, probabilities(m, out), ds.sample_weight


def with_column(src: Path, dst: Path, name: str, values: np.ndarray,
                keep=None) -> Path:
    """``src`` with one more column (and only the rows ``keep`` says, when given)."""
    rows = list(csv.reader(io.StringIO(src.read_text())))
    keep = np.ones(len(rows) - 1, bool) if keep is None else keep
    lines = [",".join(rows[0] + [name])]
    lines += [",".join(r + [repr(float(v))]) for r, v, k in zip(rows[1:], values, keep) if k]
    dst.write_text("\n".join(lines) + "\n")
    return dst


def check_binary_report(sk, report, y, p, w, threshold=0.5):
    """Every number of a binary classifier's report against scikit-learn."""
    predicted = (p > threshold).astype(int)
    labels = [0, 1]
    kw = dict(sample_weight=w)
    np.testing.assert_allclose(report["confusion_matrix"], sk.confusion_matrix(
        y, predicted, labels=labels, **kw), rtol=0, atol=1e-9)
    expected = {
        "accuracy": sk.accuracy_score(y, predicted, **kw),
        "balanced_accuracy": sk.balanced_accuracy_score(y, predicted, **kw),
        "log_loss": sk.log_loss(y, p, labels=labels, **kw),
        "precision": sk.precision_score(y, predicted, **kw),
        "recall": sk.recall_score(y, predicted, **kw),
        "f1": sk.f1_score(y, predicted, **kw),
        "roc_auc": sk.roc_auc_score(y, p, **kw),
        "average_precision": sk.average_precision_score(y, p, **kw)}
    assert {k: report[k] for k in expected} == pytest.approx(expected, abs=1e-9)
    P, R, F, S = sk.precision_recall_fscore_support(y, predicted, labels=labels, **kw)
    got = [[report["per_class"][name][k] for name in report["labels"]]
           for k in ("precision", "recall", "f1", "support")]
    np.testing.assert_allclose(got, [P, R, F, S], rtol=0, atol=1e-9)
    for average in ("macro", "weighted"):
        P, R, F, _ = sk.precision_recall_fscore_support(y, predicted, labels=labels,
                                                        average=average, **kw)
        assert report[average] == pytest.approx({"precision": P, "recall": R, "f1": F},
                                                abs=1e-9)


# ---------------------------------------------------------------- binary


def test_binary_report_layout_and_every_number_equal_sklearn(capsys, sk, binary_model):
    data = DATASETS / "digits01.csv"
    report = eval_json(capsys, binary_model, data)
    assert {"rows", "loss", "accuracy", "balanced_accuracy", "log_loss", "precision", "recall",
            "f1", "roc_auc", "average_precision", "per_class", "macro", "weighted",
            "confusion_matrix", "labels", "threshold", "best_threshold"} <= report.keys()
    assert report["labels"] == ["0", "1"] and report["threshold"] == 0.5
    assert all(set(v) == CLASS_KEYS for v in report["per_class"].values())
    assert set(report["macro"]) == set(report["weighted"]) == AVERAGE_KEYS
    assert set(report["best_threshold"]) == BEST_KEYS
    Y, P, _ = scored(binary_model, data)
    y, p = (Y[:, 0] >= 0.5).astype(int), P[:, 0]
    check_binary_report(sk, report, y, p, None)
    # the positive class of the top level is the second one (scikit-learn's pos_label=1)
    assert report["recall"] == report["per_class"]["1"]["recall"]
    rc, out, err = run(capsys, "eval", binary_model, data)
    assert rc == 0 and out == ""
    for needle in ("balanced_accuracy", "best_threshold", "per class", "macro avg",
                   "weighted avg", "confusion matrix"):
        assert needle in err


def test_threshold_moves_the_decisions_and_best_threshold_reproduces_its_f1(capsys, sk,
                                                                           binary_model):
    data = DATASETS / "digits01.csv"
    Y, P, _ = scored(binary_model, data)
    y, p = (Y[:, 0] >= 0.5).astype(int), P[:, 0]
    default = eval_json(capsys, binary_model, data)
    t = float(np.quantile(p, 0.8))          # a threshold that calls far fewer rows positive
    moved = eval_json(capsys, binary_model, data, "--threshold", str(t))
    assert moved["threshold"] == t
    predicted = (p > t).astype(int)
    expected = np.zeros((2, 2), int)
    np.add.at(expected, (y, predicted), 1)
    assert moved["confusion_matrix"] == expected.tolist() != default["confusion_matrix"]
    check_binary_report(sk, moved, y, p, None, threshold=t)
    for key in ("roc_auc", "average_precision", "log_loss", "loss", "best_threshold"):
        assert moved[key] == default[key]      # scores of the probabilities, not the decisions
    best = default["best_threshold"]
    at_best = eval_json(capsys, binary_model, data, "--threshold", repr(best["threshold"]))
    assert {k: at_best[k] for k in ("f1", "precision", "recall")} == pytest.approx(
        {k: best[k] for k in ("f1", "precision", "recall")}, abs=1e-12)
    assert best["f1"] >= max(default["f1"], moved["f1"])


def test_sample_weight_weighs_every_score_but_the_loss(capsys, sk, tmp_path, binary_model):
    data = DATASETS / "digits01.csv"
    n = len(data.read_text().splitlines()) - 1
    w = np.random.default_rng(0).uniform(0.1, 3.0, n)
    weighted = with_column(data, tmp_path / "w.csv", "w", w)
    plain = eval_json(capsys, binary_model, weighted)
    report = eval_json(capsys, binary_model, weighted, "--sample-weight", "w")
    assert report["sample_weight"] == "w" and report["loss"] == plain["loss"]
    Y, P, read = scored(binary_model, weighted, "w")
    np.testing.assert_allclose(read, w, rtol=1e-15)
    check_binary_report(sk, report, (Y[:, 0] >= 0.5).astype(int), P[:, 0], w)
    assert report["accuracy"] != plain["accuracy"]
    assert isinstance(report["per_class"]["1"]["support"], float)
    rc, out, err = run(capsys, "eval", binary_model, weighted, "--sample-weight", "nope")
    assert_one_line_error(rc, out, err, "--sample-weight nope")
    zeros = with_column(data, tmp_path / "zeros.csv", "w", 0 * w)
    rc, out, err = run(capsys, "eval", binary_model, zeros, "--sample-weight", "w")
    assert_one_line_error(rc, out, err, "zeros.csv", "sum to 0")


def test_predict_class_threshold_decides_as_eval(capsys, binary_model):
    data = DATASETS / "digits01.csv"
    Y, P, _ = scored(binary_model, data)
    for t in ("0.2", "0.9"):
        rc, out, err = run(capsys, "predict", binary_model, data, "--output", "class",
                           "--threshold", t)
        assert rc == 0, err
        classes = np.loadtxt(io.StringIO(out), skiprows=1).astype(int)
        np.testing.assert_array_equal(classes, (P[:, 0] > float(t)).astype(int))
        cm = eval_json(capsys, binary_model, data, "--threshold", t)["confusion_matrix"]
        assert np.array(cm).sum(axis=0).tolist() == np.bincount(classes, minlength=2).tolist()
    _, proba, _ = run(capsys, "predict", binary_model, data)
    np.testing.assert_allclose(np.loadtxt(io.StringIO(proba), skiprows=1), P[:, 0], atol=1e-6)


@pytest.mark.parametrize("argv, needles", [
    (["eval", "{binary}", "{data}", "--threshold", "1.5"], ["--threshold 1.5", "[0, 1]"]),
    (["eval", "{binary}", "{data}", "--threshold", "-0.1"], ["[0, 1]"]),
    (["eval", "{digits}", "{digits_csv}", "--threshold", "0.3"], ["argmax", "sparse_cce"]),
    (["eval", "{regression}", "{regression_csv}", "--threshold", "0.3"], ["regression"]),
    (["predict", "{binary}", "{data}", "--threshold", "0.3"], ["--output class"]),
    (["predict", "{binary}", "{data}", "--output", "class", "--threshold", "2"], ["[0, 1]"]),
    (["predict", "{digits}", "{digits_csv}", "--output", "class", "--threshold", "0.3"],
     ["argmax"]),
])
def test_a_bad_threshold_is_a_one_line_error(capsys, binary_model, digits_model, digits_csv,
                                            regression_model, regression_csv, argv, needles):
    paths = {"binary": binary_model, "data": DATASETS / "digits01.csv", "digits": digits_model,
             "digits_csv": digits_csv, "regression": regression_model,
             "regression_csv": regression_csv}
    rc, out, err = run(capsys, *(a.format(**paths) for a in argv))
    assert_one_line_error(rc, out, err, *needles)


# ---------------------------------------------------------------- multi-class


def test_multiclass_layout_and_one_vs_rest_roc_auc(capsys, sk, digits_model, digits_csv):
    report = eval_json(capsys, digits_model, digits_csv)
    assert report["labels"] == [str(d) for d in range(10)]
    assert list(report["per_class"]) == report["labels"]
    assert "threshold" not in report and "best_threshold" not in report
    assert "precision" not in report and "average_precision" not in report
    Y, P, _ = scored(digits_model, digits_csv)
    y, predicted = Y.argmax(axis=1), P.argmax(axis=1)
    labels = list(range(10))
    assert report["roc_auc"] == pytest.approx(sk.roc_auc_score(
        y, P, multi_class="ovr", average="macro", labels=labels), abs=1e-9)
    assert report["log_loss"] == pytest.approx(sk.log_loss(y, P, labels=labels), abs=1e-9)
    assert report["balanced_accuracy"] == pytest.approx(
        sk.balanced_accuracy_score(y, predicted), abs=1e-9)
    for average in ("macro", "weighted"):
        p, r, f, _ = sk.precision_recall_fscore_support(y, predicted, labels=labels,
                                                        average=average)
        assert report[average] == pytest.approx({"precision": p, "recall": r, "f1": f},
                                                abs=1e-9)
    # accuracy as before: the trace of the confusion matrix over its sum
    cm = np.array(report["confusion_matrix"])
    assert report["accuracy"] == pytest.approx(np.trace(cm) / cm.sum())


def test_a_class_absent_from_the_data_is_listed_and_its_auc_is_undefined(capsys, sk, tmp_path,
                                                                        digits_model,
                                                                        digits_csv):
    rows = digits_csv.read_text().splitlines()
    no_nines = tmp_path / "no9.csv"
    no_nines.write_text("\n".join([rows[0]] + [r for r in rows[1:]
                                               if not r.endswith(",9")]) + "\n")
    report = eval_json(capsys, digits_model, no_nines)
    assert report["per_class"]["9"]["support"] == 0
    assert report["per_class"]["9"]["recall"] == 0.0
    assert report["roc_auc"] is None              # scikit-learn: NaN for an absent class
    Y, P, _ = scored(digits_model, no_nines)
    y, predicted = Y.argmax(axis=1), P.argmax(axis=1)
    p, r, f, _ = sk.precision_recall_fscore_support(y, predicted, labels=list(range(10)),
                                                    average="macro", zero_division=0.0)
    assert report["macro"] == pytest.approx({"precision": p, "recall": r, "f1": f}, abs=1e-9)
    rc, out, err = run(capsys, "eval", digits_model, no_nines)
    assert rc == 0 and "roc_auc" in err and "n/a" in err


# ---------------------------------------------------------------- multi-label


def test_multilabel_layout_and_per_label_scores(capsys, sk, multilabel_model):
    data = DATASETS / "digits_multilabel.csv"
    report = eval_json(capsys, multilabel_model, data)
    names = ["even", "ge5", "prime"]
    assert list(report["per_label"]) == list(report["label_accuracy"]) == names
    assert all(set(v) == LABEL_KEYS for v in report["per_label"].values())
    assert set(report["macro"]) == {"precision", "recall", "f1", "roc_auc", "average_precision"}
    assert report["threshold"] == 0.5 and "confusion_matrix" not in report
    assert report["accuracy"] == pytest.approx(np.mean(list(report["label_accuracy"].values())))
    Y, P, _ = scored(multilabel_model, data)
    truth, predicted = (Y >= 0.5).astype(int), (P > 0.5).astype(int)
    p, r, f, s = sk.precision_recall_fscore_support(truth, predicted)
    auc = sk.roc_auc_score(truth, P, average=None)
    ap = sk.average_precision_score(truth, P, average=None)
    got = np.array([[report["per_label"][n][k] for n in names]
                    for k in ("precision", "recall", "f1", "support", "roc_auc",
                              "average_precision")])
    np.testing.assert_allclose(got, [p, r, f, s, auc, ap], rtol=0, atol=1e-9)
    assert report["macro"]["roc_auc"] == pytest.approx(sk.roc_auc_score(truth, P), abs=1e-9)
    assert report["subset_accuracy"] == pytest.approx(sk.accuracy_score(truth, predicted),
                                                      abs=1e-9)
    assert report["log_loss"] == pytest.approx(np.mean([sk.log_loss(truth[:, j], P[:, j])
                                                        for j in range(3)]), abs=1e-9)
    moved = eval_json(capsys, multilabel_model, data, "--threshold", "0.8")
    assert moved["label_accuracy"]["even"] == pytest.approx(
        np.mean((P[:, 0] > 0.8) == truth[:, 0]), abs=1e-12)
    assert moved["per_label"]["ge5"]["roc_auc"] == report["per_label"]["ge5"]["roc_auc"]
    rc, out, err = run(capsys, "eval", multilabel_model, data)
    assert rc == 0 and "per label" in err and "prime" in err


# ---------------------------------------------------------------- regression


def test_regression_one_output_has_the_five_scores_and_no_per_output(capsys, sk,
                                                                   regression_model,
                                                                   regression_csv):
    report = eval_json(capsys, regression_model, regression_csv)
    assert REGRESSION_KEYS <= report.keys() and "per_output" not in report
    Y, out, _ = scored(regression_model, regression_csv)
    y = Y[:, 0].astype(np.float64)
    assert report["rmse"] == pytest.approx(sk.root_mean_squared_error(y, out[:, 0]), abs=1e-9)
    assert report["max_error"] == pytest.approx(sk.max_error(y, out[:, 0]), abs=1e-9)
    assert report["r2"] == pytest.approx(sk.r2_score(y, out[:, 0]), abs=1e-9)


def test_regression_per_output_equals_sklearn(capsys, sk, two_output_model, two_output_csv):
    report = eval_json(capsys, two_output_model, two_output_csv)
    assert list(report["per_output"]) == ["u", "v"]
    assert all(set(v) == REGRESSION_KEYS for v in report["per_output"].values())
    Y, out, _ = scored(two_output_model, two_output_csv)
    Y = Y.astype(np.float64)
    for j, name in enumerate(("u", "v")):
        expected = {"mse": sk.mean_squared_error(Y[:, j], out[:, j]),
                    "rmse": sk.root_mean_squared_error(Y[:, j], out[:, j]),
                    "mae": sk.mean_absolute_error(Y[:, j], out[:, j]),
                    "r2": sk.r2_score(Y[:, j], out[:, j]),
                    "max_error": sk.max_error(Y[:, j], out[:, j])}
        assert report["per_output"][name] == pytest.approx(expected, abs=1e-9)
    assert report["mse"] == pytest.approx(sk.mean_squared_error(Y, out), abs=1e-9)
    rc, out, err = run(capsys, "eval", two_output_model, two_output_csv)
    assert rc == 0 and "per output" in err and "max_error" in err


# ---------------------------------------------------------------- one pass of the network

CASES = {"binary": ("binary_model", None), "multilabel": ("multilabel_model", None),
         "digits": ("digits_model", "digits_csv"), "regression": ("regression_model",
                                                                  "regression_csv"),
         "two_outputs": ("two_output_model", "two_output_csv")}
DATA = {"binary": DATASETS / "digits01.csv", "multilabel": DATASETS / "digits_multilabel.csv"}


@pytest.mark.parametrize("case", list(CASES))
def test_the_loss_is_model_evaluate_s_bit_for_bit(capsys, request, case):
    """eval runs the network once for the loss and the scores (Model.evaluate_outputs): its loss
    is still Model.evaluate's, to the last bit, and its outputs Model.outputs'."""
    model_name, data_name = CASES[case]
    model = request.getfixturevalue(model_name)
    data = request.getfixturevalue(data_name) if data_name else DATA[case]
    report = eval_json(capsys, model, data)
    m = load_model(model)
    ds = load_training_data(str(data), classes=m.classes, schema=m.input_schema(),
                            model_targets=m.target_lookup())
    X = m.preprocessing.transform(ds.X, ds.source)
    Y = m.preprocessing.scale_targets(prepare_targets(m.loss_spec, ds.Y, m.n_outputs,
                                                      ds.source))
    loss, accuracy = m.evaluate(X, Y)
    assert report["loss"] == loss                        # JSON keeps a float's every bit
    once = m.evaluate_outputs(X, Y)
    assert once[:2] == (loss, accuracy)
    assert once[2].view(np.uint32).tolist() == m.outputs(X).view(np.uint32).tolist()
