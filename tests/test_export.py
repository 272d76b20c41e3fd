"""ONNX export: the graph run by ONNX Runtime returns what ``nncli predict`` returns.

Library tests build small models of every layer kind, activation and loss with random weights
and a non-trivial standardisation, and compare ONNX Runtime's outputs with
``nncli.predict.predict`` on random rows (max difference under 1e-5, float32). CLI tests go
through the real entry point with a model trained by ``nncli train``.
"""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from nncli import arch
from nncli.arch import parse_arch
from nncli.cli import main
from nncli.data.schema import Column, Schema
from nncli.errors import UsageError
from nncli.export import (ACTIVATIONS, CONVERTERS, DEFAULT_OPSET, MIN_OPSET, ExportError,
                          check_opset, export_onnx, max_opset, write_onnx)
from nncli.model import Model
from nncli.modelfile import load_model
from nncli.predict import predict

try:
    from clirun import assert_one_line_error, run
except ImportError:                       # tests/ imported as a package
    from tests.clirun import assert_one_line_error, run

TOL = 1e-5
# the largest difference seen in this run, per case; printed by -s for the record
MAX_DIFF: dict[str, float] = {}


# ---------------------------------------------------------------- helpers


def session(proto) -> ort.InferenceSession:
    return ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])


def make_model(arch_string: str, n_inputs: int, loss: str, logits: bool = False,
               channels: int = 1, seed: int = 0) -> Model:
    """A model with Glorot weights, small random biases and a standardisation far from 0/1."""
    rng = np.random.default_rng(seed)
    m = Model.create(parse_arch(arch_string), n_inputs, loss, logits, seed=seed,
                     channels=channels)
    for i in range(len(m.layers)):
        b = m.bias(i)
        b[...] = rng.uniform(-0.3, 0.3, size=b.shape)
    m.mean[:] = rng.normal(0.0, 3.0, size=n_inputs)
    m.std[:] = rng.uniform(0.3, 4.0, size=n_inputs)
    return m


def raw_rows(m: Model, n: int, seed: int = 1) -> np.ndarray:
    """Rows as predict reads them: around the model's mean, spread by its std."""
    rng = np.random.default_rng(seed)
    return (m.mean + m.std * rng.normal(size=(n, m.n_inputs))).astype(np.float32)


def compare(m: Model, proto, rows: int, key: str) -> None:
    """ORT's outputs equal predict's proba (and logits, when a second output) within TOL."""
    s = session(proto)
    X = raw_rows(m, rows)
    names = [o.name for o in s.get_outputs()]
    got = s.run(None, {"features": X})
    _, proba = predict(m, X.copy(), "proba")
    diffs = [float(np.abs(got[0] - proba).max())]
    assert got[0].shape == (rows, m.n_outputs) and got[0].dtype == np.float32
    if len(got) > 1:
        assert names == ["probabilities", "logits"]
        _, logits = predict(m, X.copy(), "logits")
        diffs.append(float(np.abs(got[1] - logits).max()))
    MAX_DIFF[key] = max(MAX_DIFF.get(key, 0.0), *diffs)
    assert max(diffs) < TOL, f"{key}: max differences {diffs}"






def csv_floats(text: str) -> tuple[list[str], np.ndarray]:
    rows = list(csv.reader(io.StringIO(text)))
    return rows[0], np.array([[float(c) for c in row] for row in rows[1:]], dtype=np.float64)


# ---------------------------------------------------------------- tables


def test_every_layer_kind_and_activation_has_a_converter():
    assert set(CONVERTERS) == set(arch.LAYER_KINDS)
    assert set(ACTIVATIONS) == set(arch.ACTIVATIONS)


# ---------------------------------------------------------------- graphs against predict

# (architecture, inputs, channels, loss, --logits): every activation hidden and last, every
# loss with and without --logits, conv and local layers with strides and several channels.
CASES = [
    ("6relu-5sigmoid-4tanh-3linear-2linear", 7, 1, "mse", False),
    ("5linear-4tanh-3relu", 6, 1, "mse", False),
    ("5relu-2sigmoid", 6, 1, "mse", False),
    ("5sigmoid-2tanh", 6, 1, "mse", False),
    ("5relu-1sigmoid", 8, 1, "bce", False),
    ("5relu-1linear", 8, 1, "bce", True),
    ("6tanh-3sigmoid", 8, 1, "bce", False),
    ("6tanh-3linear", 8, 1, "bce", True),
    ("5relu-4softmax", 9, 1, "cce", False),
    ("5relu-4linear", 9, 1, "cce", True),
    ("7sigmoid-3softmax", 9, 1, "sparse_cce", False),
    ("7tanh-3linear", 9, 1, "sparse_cce", True),
    ("4conv3relu-3linear", 12, 1, "sparse_cce", True),
    ("3conv4s2tanh-2conv2s2relu-2linear", 30, 3, "mse", False),
    ("2conv2s3sigmoid-3conv1linear", 20, 2, "mse", False),
    ("4conv3s2linear", 22, 2, "cce", True),
    ("2local3s2relu-3softmax", 20, 2, "cce", False),
    ("3local4s3sigmoid-1local2linear", 24, 1, "bce", True),
    ("2local2linear-2conv3s2tanh-1local1s1relu", 15, 3, "mse", False),
    ("6relu-2conv3tanh-2local2s2linear", 10, 1, "bce", True),
    ("8relu-4conv3s2relu-3linear", 16, 4, "sparse_cce", True),
    ("7relu-dropout0.3-3linear", 9, 1, "sparse_cce", True),    # dropout: the identity
    ("4conv3relu-dropout0.5-3linear", 12, 2, "mse", False),
]


@pytest.mark.parametrize("arch_string, n_inputs, channels, loss, logits", CASES,
                         ids=[f"{c[0]}-{c[3]}{'-logits' if c[4] else ''}" for c in CASES])
def test_onnx_runtime_equals_predict(arch_string, n_inputs, channels, loss, logits):
    m = make_model(arch_string, n_inputs, loss, logits, channels)
    proto = export_onnx(m)
    outputs = [o.name for o in proto.graph.output]
    if loss == "mse":
        assert outputs == ["values"]
    else:
        assert outputs == (["probabilities", "logits"] if logits else ["probabilities"])
    key = f"{arch_string} {loss}{' --logits' if logits else ''}"
    for rows in (37, 1):   # one graph, any batch size
        compare(m, proto, rows, key)


@pytest.mark.parametrize("opset", sorted({MIN_OPSET, DEFAULT_OPSET, max_opset()}))
def test_every_supported_opset_runs(opset):
    m = make_model("3conv3s2relu-2local2s1tanh-4linear", 18, "sparse_cce", True, channels=2)
    proto = export_onnx(m, opset)
    assert [o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")] == [opset]
    compare(m, proto, 5, f"opset {opset}")


def test_without_normalisation_the_graph_has_no_standardisation_nodes():
    m = Model.create(parse_arch("4relu-2linear"), 5, "mse", False, seed=3)
    proto = export_onnx(m)
    ops = [n.op_type for n in proto.graph.node]
    assert "Sub" not in ops and "Div" not in ops
    compare(m, proto, 11, "no normalisation")


def test_target_standardisation_is_undone_inside_the_graph():
    m = make_model("6tanh-3linear", 5, "mse")
    m.preprocessing.target_mean = np.array([10.0, -2.0, 0.5], np.float32)
    m.preprocessing.target_std = np.array([3.0, 0.25, 7.0], np.float32)
    X = raw_rows(m, 23)
    got = session(export_onnx(m)).run(["values"], {"features": X})[0]
    expected = m.outputs(m.preprocessing.transform(X)) * m.target_std + m.target_mean
    MAX_DIFF["target standardisation"] = float(np.abs(got - expected).max())
    assert np.abs(got - expected).max() < TOL * 10   # values of size ~10
    assert np.abs(got - expected).max() / np.abs(expected).max() < TOL


def test_metadata_names_the_inputs_outputs_classes_and_features():
    m = make_model("5relu-3linear", 4, "sparse_cce", True)
    m.classes = ["cat", "dog", "eel"]
    m.feature_names = ["a", "b", "c", "d"]
    m.target_names = ["animal"]
    proto = export_onnx(m)
    props = {p.key: p.value for p in proto.metadata_props}
    assert props["arch"] == "5relu-3linear" and props["loss"] == "sparse_cce"
    assert json.loads(props["logits"]) is True
    assert json.loads(props["classes"]) == ["cat", "dog", "eel"]
    assert json.loads(props["feature_names"]) == ["a", "b", "c", "d"]
    assert json.loads(props["target_names"]) == ["animal"]
    assert json.loads(props["outputs"]) == ["probabilities", "logits"]
    assert json.loads(props["output_columns"]) == predict(m, raw_rows(m, 1), "proba")[0]
    assert props["nncli_version"]
    (inp,) = proto.graph.input
    assert inp.name == "features"
    dims = inp.type.tensor_type.shape.dim
    assert dims[0].dim_param == "N" and dims[1].dim_value == 4
    assert inp.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    for out in proto.graph.output:
        assert [d.dim_param or d.dim_value for d in out.type.tensor_type.shape.dim] == ["N", 3]
    assert proto.producer_name == "nncli"
    onnx.checker.check_model(proto, full_check=True)


# ---------------------------------------------------------------- what cannot be exported


def column(name: str, kind: str = "numeric", **kw) -> Column:
    """A column record as the model's schema holds them (name, kind, fill, categories)."""
    return Column(name, kind, fill=kw.get("fill"), categories=kw.get("categories", []),
                  missing_category=kw.get("missing_category", False))


def test_categorical_columns_take_the_encoded_layout_and_only_numbers_are_filled():
    # features: height | colour=blue colour=red colour=<missing> | weight
    m = make_model("4tanh-3linear", 5, "sparse_cce", True)
    m.preprocessing.schema = Schema([
        column("height", fill=1.5),
        column("colour", "categorical", categories=["blue", "red"], missing_category=True),
        column("weight", fill=-2.0)])
    m.mean[1:4] = 0.0
    m.std[1:4] = 1.0
    proto = export_onnx(m)
    props = {p.key: p.value for p in proto.metadata_props}
    assert json.loads(props["feature_names"]) == ["height", "colour=blue", "colour=red",
                                                  "colour=<missing>", "weight"]
    assert json.loads(props["input_layout"])[1:4] == [
        {"feature": "colour=blue", "column": "colour", "category": "blue"},
        {"feature": "colour=red", "column": "colour", "category": "red"},
        {"feature": "colour=<missing>", "column": "colour", "category": "<missing>"}]
    X = raw_rows(m, 6)
    X[:, 1:4] = np.eye(3, dtype=np.float32)[[0, 1, 2, 0, 1, 2]]
    X[5, 1:4] = 0.0                      # unseen category: all zeros
    X[[0, 2], 0] = np.nan
    X[[1, 2], 4] = np.nan
    filled = X.copy()
    filled[[0, 2], 0] = 1.5
    filled[[1, 2], 4] = -2.0
    probs, logits = session(proto).run(None, {"features": X})
    assert np.abs(probs - predict(m, filled.copy(), "proba")[1]).max() < TOL
    assert np.abs(logits - predict(m, filled.copy(), "logits")[1]).max() < TOL


def test_a_schema_that_does_not_match_the_inputs_is_refused_in_one_line():
    m = make_model("3relu-1linear", 2, "mse")
    m.preprocessing.schema = Schema([column("height"),
                                     column("colour", "categorical",
                                            categories=["blue", "red"])])
    with pytest.raises(ExportError, match="the model's schema makes 3 features for 2 "
                                          "inputs; cannot export it") as e:
        export_onnx(m)
    assert "\n" not in str(e.value)


def test_missing_numbers_are_filled_inside_the_graph_as_predict_fills_them():
    m = make_model("4tanh-3linear", 3, "sparse_cce", True)
    m.preprocessing.schema = Schema([column("a", fill=1.25), column("b"),
                                     column("c", fill=-7.5)])
    X = raw_rows(m, 9)
    X[[0, 3, 4], 0] = np.nan
    X[[3, 8], 2] = np.nan
    probs, logits = session(export_onnx(m)).run(None, {"features": X})
    filled = X.copy()
    filled[[0, 3, 4], 0] = 1.25
    filled[[3, 8], 2] = -7.5
    assert np.abs(probs - predict(m, filled.copy(), "proba")[1]).max() < TOL
    assert np.abs(logits - predict(m, filled.copy(), "logits")[1]).max() < TOL
    # a column without a fill value: predict refuses a missing cell; the graph returns NaN
    X[5, 1] = np.nan
    probs = session(export_onnx(m)).run(["probabilities"], {"features": X})[0]
    assert np.isnan(probs[5]).all() and not np.isnan(np.delete(probs, 5, axis=0)).any()


def test_a_numeric_schema_without_fill_values_exports_unchanged():
    m = make_model("3relu-1linear", 2, "mse")
    m.preprocessing.schema = Schema.numeric(["height", "width"])
    proto = export_onnx(m)
    assert "IsNaN" not in [n.op_type for n in proto.graph.node]
    compare(m, proto, 3, "numeric schema")


@pytest.mark.parametrize("opset", [MIN_OPSET - 1, 0, max_opset() + 1])
def test_unsupported_opsets_are_refused(opset):
    with pytest.raises(ExportError, match=f"--opset {opset} is not supported: nncli exports "
                                          f"ONNX opsets {MIN_OPSET} to {max_opset()}"):
        check_opset(opset)


# ---------------------------------------------------------------- writing


def test_write_onnx_is_atomic_and_checked(tmp_path):
    m = make_model("3relu-2linear", 4, "mse")
    path = tmp_path / "m.onnx"
    path.write_bytes(b"old")
    size = write_onnx(m, path)
    assert size == path.stat().st_size
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx"]
    loaded = onnx.load(str(path))
    onnx.checker.check_model(loaded, full_check=True)
    compare(m, loaded, 4, "written")


def test_write_onnx_checks_the_path_before_building(tmp_path, monkeypatch):
    import nncli.export

    monkeypatch.setattr(nncli.export, "export_onnx", lambda *a: pytest.fail("built anyway"))
    m = make_model("3relu-2linear", 4, "mse")
    with pytest.raises(UsageError, match="folder .* does not exist"):
        write_onnx(m, tmp_path / "missing" / "m.onnx")
    with pytest.raises(UsageError, match="it is a folder"):
        write_onnx(m, tmp_path)


# ---------------------------------------------------------------- the command line


@pytest.fixture(scope="module")
def digits_1epoch(tmp_path_factory, digits_csv) -> Path:
    """A digits classifier trained for one epoch by ``nncli train`` (softmax with logits)."""
    path = tmp_path_factory.mktemp("export") / "digits.safetensors"
    rc = main(["train", str(digits_csv), "--arch", "25relu-15relu-10linear", "--loss",
               "sparse_cce", "--logits", "--epochs", "1", "--quiet", "-o", str(path)])
    assert rc == 0
    return path


def test_exported_digits_model_equals_nncli_predict(capsys, digits_1epoch, digits_csv):
    rc, out, err = run(capsys, "export", digits_1epoch)
    onnx_path = digits_1epoch.with_suffix(".onnx")
    assert rc == 0 and out == ""
    assert err == f"wrote {onnx_path} (25relu-15relu-10linear, {onnx_path.stat().st_size} " \
                  f"bytes)\n"
    X = np.loadtxt(digits_csv, delimiter=",", skiprows=1, dtype=np.float32)[:, :-1]
    probs, logits = session(onnx.load(str(onnx_path))).run(["probabilities", "logits"],
                                                            {"features": X})
    rc, out, _ = run(capsys, "predict", digits_1epoch, digits_csv)
    columns, expected = csv_floats(out)
    rc2, out2, _ = run(capsys, "predict", digits_1epoch, digits_csv, "--output", "logits")
    _, expected_logits = csv_floats(out2)
    assert rc == rc2 == 0
    props = {p.key: p.value for p in onnx.load(str(onnx_path)).metadata_props}
    assert json.loads(props["output_columns"]) == columns
    # predict prints 9 significant digits: a float32 rounded to them is within 3e-9 relative
    MAX_DIFF["digits via CLI"] = max(float(np.abs(probs - expected).max()),
                                     float(np.abs(logits - expected_logits).max()))
    assert np.abs(probs - expected).max() < TOL
    assert np.abs(logits - expected_logits).max() < TOL


def test_binary_model_with_string_labels_exports_its_positive_class(
        capsys, tmp_path, breast_cancer_model, breast_cancer_csv):
    out_path = tmp_path / "bc.onnx"
    rc, _, _ = run(capsys, "export", breast_cancer_model, "-o", out_path, "--opset", MIN_OPSET)
    assert rc == 0
    m = load_model(breast_cancer_model)
    proto = onnx.load(str(out_path))
    props = {p.key: p.value for p in proto.metadata_props}
    assert json.loads(props["output_columns"]) == ["malignant"]
    assert json.loads(props["classes"]) == m.classes
    compare(m, proto, 50, "breast cancer via CLI")


def test_penguins_model_with_categorical_columns_takes_the_encoded_layout(capsys, tmp_path):
    """A model trained by ``nncli train`` on text columns (island, sex, with NA cells) takes
    the features as ``predict`` reads them from NPY: categorical columns one-hot, NaN in
    numeric features filled inside the graph."""
    from nncli.data import load_features

    penguins = Path(__file__).resolve().parent.parent / "datasets" / "penguins.csv"
    model_path = tmp_path / "p.safetensors"
    assert main(["train", str(penguins), "--arch", "8relu-3linear", "--loss", "sparse_cce",
                 "--logits", "--epochs", "3", "-o", str(model_path), "-q"]) == 0
    capsys.readouterr()
    m = load_model(model_path)
    schema = m.input_schema()
    kinds = {c.name: c.kind for c in schema.columns}
    assert kinds["island"] == kinds["sex"] == "categorical"
    onnx_path = tmp_path / "p.onnx"
    rc, out, err = run(capsys, "export", model_path, "-o", onnx_path)
    assert rc == 0 and out == "" and err.startswith(f"wrote {onnx_path} ")
    proto = onnx.load(str(onnx_path))
    (inp,) = proto.graph.input
    assert inp.type.tensor_type.shape.dim[1].dim_value == schema.n_features == m.n_inputs
    props = {p.key: p.value for p in proto.metadata_props}
    assert json.loads(props["feature_names"]) == schema.feature_names()
    layout = json.loads(props["input_layout"])
    assert [f["feature"] for f in layout] == schema.feature_names()
    assert {f["column"] for f in layout if f["category"] is not None} >= {"island", "sex"}
    assert all(f["feature"] == f"{f['column']}={f['category']}" for f in layout
               if f["category"] is not None)

    X = load_features(str(penguins), schema, m.target_columns).X
    assert not np.isnan(X).any()
    numeric = np.flatnonzero(schema.numeric_features())
    gappy = X.copy()
    rng = np.random.default_rng(0)
    for j in numeric:                    # a few missing cells in every numeric feature
        gappy[rng.choice(len(X), 7, replace=False), j] = np.nan
    filled = gappy.copy()
    schema.fill_missing(filled, "test")
    s = session(proto)
    for key, rows, expected_in in [("penguins", X, X), ("penguins with NaN", gappy, filled)]:
        probs, logits = s.run(["probabilities", "logits"], {"features": rows})
        diffs = [float(np.abs(probs - predict(m, expected_in.copy(), "proba")[1]).max()),
                 float(np.abs(logits - predict(m, expected_in.copy(), "logits")[1]).max())]
        MAX_DIFF[key] = max(diffs)
        assert max(diffs) < TOL, f"{key}: max differences {diffs}"
    # the same rows, NaN and all, as an NPY file through nncli predict
    # (float64: a float32 NPY with NaN is memory-mapped read-only and predict cannot fill it)
    npy = tmp_path / "gappy.npy"
    np.save(npy, gappy.astype(np.float64))
    rc, out, _ = run(capsys, "predict", model_path, npy, "--output", "logits")
    assert rc == 0
    _, printed = csv_floats(out)
    logits = s.run(["logits"], {"features": gappy})[0]
    assert np.abs(logits - printed).max() < TOL


def test_missing_model_is_a_one_line_error(capsys, tmp_path):
    rc, out, err = run(capsys, "export", tmp_path / "nope.safetensors")
    assert_one_line_error(rc, out, err, "nope.safetensors: no such model file")
    assert list(tmp_path.iterdir()) == []


def test_unwritable_output_is_a_one_line_error(capsys, tmp_path, digits_1epoch):
    rc, out, err = run(capsys, "export", digits_1epoch, "-o", tmp_path / "no" / "m.onnx")
    assert_one_line_error(rc, out, err, "cannot write the ONNX model", "does not exist")
    rc, out, err = run(capsys, "export", digits_1epoch, "-o", tmp_path)
    assert_one_line_error(rc, out, err, "it is a folder")


def test_the_model_file_itself_is_never_overwritten(capsys, tmp_path, digits_1epoch):
    model = tmp_path / "m.onnx"
    model.write_bytes(digits_1epoch.read_bytes())
    rc, out, err = run(capsys, "export", model)
    assert_one_line_error(rc, out, err, "refusing to write the ONNX graph over the model file")
    assert model.read_bytes() == digits_1epoch.read_bytes()


@pytest.mark.parametrize("opset", [str(MIN_OPSET - 1), str(max_opset() + 1)])
def test_unsupported_opset_is_a_one_line_error(capsys, tmp_path, digits_1epoch, opset):
    rc, out, err = run(capsys, "export", digits_1epoch, "-o", tmp_path / "m.onnx", "--opset",
                       opset)
    assert_one_line_error(rc, out, err, f"--opset {opset} is not supported")
    assert list(tmp_path.iterdir()) == []


def test_without_onnx_the_error_names_the_extra(capsys, monkeypatch, tmp_path, digits_1epoch):
    monkeypatch.setitem(sys.modules, "onnx", None)      # import onnx -> ImportError
    monkeypatch.delitem(sys.modules, "nncli.export")    # restored after the test
    rc, out, err = run(capsys, "export", digits_1epoch, "-o", tmp_path / "m.onnx")
    assert_one_line_error(rc, out, err)
    assert err == "nncli: error: nncli export needs onnx: pip install 'nncli[onnx]'\n"


def test_help_shows_an_example_and_the_default_opset_without_importing_onnx():
    code = ("import sys\nfrom nncli.cli import main\nrc = main(['export', '--help'])\n"
            "assert rc == 0, rc\nassert 'onnx' not in sys.modules\n"
            "assert 'nncli.export' not in sys.modules\n")
    env = {**os.environ, "COLUMNS": "200"}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, env=env, check=False)
    assert proc.returncode == 0, proc.stderr
    assert "Example: nncli export" in proc.stdout
    assert f"[default: {DEFAULT_OPSET}]" in proc.stdout


def teardown_module(module):
    if MAX_DIFF:
        worst = max(MAX_DIFF, key=MAX_DIFF.get)
        print(f"\nlargest ONNX Runtime vs predict difference: {MAX_DIFF[worst]:.3g} ({worst}); "
              f"{len(MAX_DIFF)} cases")
