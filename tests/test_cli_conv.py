"""Conv and local layers through the real entry point (``nncli.cli.main``), as a user types it:
train, predict, eval and info on a conv network, the model file's tensor shapes and metadata,
--channels, shape errors, gradcheck, --init-from, the lecture's EKG network on a synthetic
1-D signal set, and the README's MNIST-1D comparison of a conv and a dense network."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from safetensors import safe_open
from safetensors.numpy import load_file

from nncli.cli import main
from nncli.modelfile import load_model

try:
    from clirun import assert_one_line_error, run
except ImportError:                       # tests/ imported as a package
    from tests.clirun import assert_one_line_error, run

try:
    import naive
except ImportError:                       # tests/ imported as a package
    from tests import naive

DATASETS = Path(__file__).resolve().parent.parent / "datasets"
MNIST1D_TRAIN = DATASETS / "mnist1d_train.csv"
MNIST1D_TEST = DATASETS / "mnist1d_test.csv"
CONV = "32conv5relu-32conv3s2relu-32conv3s2relu-10linear"      # the README's network
DENSE = "100relu-40relu-10linear"                              # of about the same size
LECTURE = "1local20s10relu-1local5s2relu-1sigmoid"




def ok(capsys, *argv) -> str:
    rc, out, err = run(capsys, *argv)
    assert rc == 0, f"nncli {' '.join(map(str, argv))} -> {rc}\n{err[-2000:]}"
    return out




def signals_csv(path: Path, X: np.ndarray, y: np.ndarray, target: str = "label") -> Path:
    header = ",".join([f"x{i}" for i in range(X.shape[1])] + [target])
    np.savetxt(path, np.column_stack([X, y]), delimiter=",", fmt="%.6g", header=header,
               comments="")
    return path


@pytest.fixture(scope="module")
def small_mnist1d(tmp_path_factory) -> Path:
    """The first 600 rows of MNIST-1D (40 samples x 1 channel)."""
    lines = MNIST1D_TRAIN.read_text().splitlines(keepends=True)
    path = tmp_path_factory.mktemp("mnist1d") / "small.csv"
    path.write_text("".join(lines[:601]))
    return path


@pytest.fixture(scope="module")
def conv_model(tmp_path_factory, small_mnist1d) -> Path:
    path = tmp_path_factory.mktemp("conv_model") / "conv.safetensors"
    rc = main(["train", str(small_mnist1d), "--arch", "4conv5s2relu-8conv3s2relu-10linear",
               "--loss", "sparse_cce", "--logits", "--epochs", "3", "--quiet", "-o", str(path)])
    assert rc == 0
    return path


# ---------------------------------------------------------------- train, predict, eval, info

def test_train_predict_eval_info_on_a_conv_network(capsys, tmp_path, small_mnist1d):
    model = tmp_path / "conv.safetensors"
    summary = json.loads(ok(capsys, "train", small_mnist1d, "--arch",
                            "4conv5s2relu-8conv3s2relu-10linear", "--loss", "sparse_cce",
                            "--logits", "--epochs", "5", "--validation-split", "0.2", "--quiet",
                            "--json", "-o", model))
    assert summary["options"]["channels"] == 1
    history = summary["history"]
    assert len(history) == 5 and history[-1]["loss"] < history[0]["loss"]

    out = ok(capsys, "predict", model, small_mnist1d)
    header, _, body = out.partition("\n")
    assert header.split(",") == [str(k) for k in range(10)]
    probs = np.loadtxt(io.StringIO(body), delimiter=",", ndmin=2)
    assert probs.shape == (600, 10)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)

    classes = ok(capsys, "predict", model, small_mnist1d, "--output", "class")
    predicted = np.array(classes.split()[1:], dtype=int)
    assert np.array_equal(predicted, probs.argmax(axis=1))

    report = json.loads(ok(capsys, "eval", model, small_mnist1d, "--json"))
    labels = np.loadtxt(small_mnist1d, delimiter=",", skiprows=1)[:, -1]
    assert report["rows"] == 600
    assert report["accuracy"] == pytest.approx(float(np.mean(predicted == labels)))

    info = json.loads(ok(capsys, "info", model, "--json"))
    # 40 x 1 -> 18 x 4 -> 8 x 8 -> 10
    assert info["inputs"] == 40 and info["channels"] == 1 and info["outputs"] == 10
    assert [(l["kind"], l["output_shape"], l["parameters"]) for l in info["layers"]] == [
        ("conv", [18, 4], 5 * 1 * 4 + 4), ("conv", [8, 8], 3 * 4 * 8 + 8),
        ("dense", [10], 64 * 10 + 10)]
    assert [l.get("kernel") for l in info["layers"]] == [5, 3, None]
    assert [l.get("stride") for l in info["layers"]] == [2, 2, None]
    assert info["parameters"] == 24 + 104 + 650


def test_info_text_lists_the_layers(capsys, conv_model):
    rc, out, err = run(capsys, "info", conv_model)
    assert rc == 0 and out == ""
    for needle in ("4conv5s2relu", "18 x 4", "8 x 8", "104", "650", "dense", "conv"):
        assert needle in err


def test_model_file_holds_keras_shaped_kernels(conv_model):
    tensors = load_file(conv_model)
    assert {k: v.shape for k, v in tensors.items()} == {
        "layers.0.kernel": (5, 1, 4), "layers.0.bias": (4,),
        "layers.1.kernel": (3, 4, 8), "layers.1.bias": (8,),
        "layers.2.kernel": (64, 10), "layers.2.bias": (10,),
        "normalization.mean": (40,), "normalization.std": (40,)}
    with safe_open(conv_model, "np") as f:
        meta = json.loads(f.metadata()["nncli"])
    assert meta["format_version"] == 1 and meta["channels"] == 1
    assert meta["layers"] == [
        {"kind": "conv", "units": 4, "activation": "relu", "kernel": 5, "stride": 2},
        {"kind": "conv", "units": 8, "activation": "relu", "kernel": 3, "stride": 2},
        {"kind": "dense", "units": 10, "activation": "linear"}]


def test_model_file_of_a_local_network_with_channels(capsys, tmp_path):
    rng = np.random.default_rng(3)
    data = signals_csv(tmp_path / "two.csv", rng.normal(size=(50, 60)),
                       rng.integers(0, 2, size=50))
    model = tmp_path / "local.safetensors"
    ok(capsys, "train", data, "--arch", "3local4s2tanh-2conv3relu-1linear", "--loss", "bce",
       "--logits", "--channels", "2", "--epochs", "2", "--quiet", "-o", model)
    # 30 x 2 -> 14 x 3 -> 12 x 2 -> 1
    shapes = {k: v.shape for k, v in load_file(model).items()}
    assert shapes["layers.0.kernel"] == (14, 4, 2, 3) and shapes["layers.0.bias"] == (14, 3)
    assert shapes["layers.1.kernel"] == (3, 3, 2) and shapes["layers.1.bias"] == (2,)
    assert shapes["layers.2.kernel"] == (24, 1)
    m = load_model(model)
    assert m.channels == 2
    # the model file alone reproduces the network: the NumPy reference on its tensors
    t = load_file(model)
    X = (np.loadtxt(data, delimiter=",", skiprows=1)[:5, :-1] - t["normalization.mean"]) \
        / t["normalization.std"]
    net = [("local", t["layers.0.kernel"], t["layers.0.bias"], 2, "tanh"),
           ("conv", t["layers.1.kernel"], t["layers.1.bias"], 1, "relu"),
           ("dense", t["layers.2.kernel"], t["layers.2.bias"], 1, "linear")]
    want = naive.forward_layers(net, X)[-1][1]
    logits = ok(capsys, "predict", model, data, "--output", "logits")
    got = np.loadtxt(io.StringIO(logits.partition("\n")[2]), ndmin=2)[:5]
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_old_model_files_without_channels_load_as_one_channel(tmp_path, conv_model):
    from safetensors.numpy import save_file

    with safe_open(conv_model, "np") as f:
        meta = json.loads(f.metadata()["nncli"])
    del meta["channels"]
    old = tmp_path / "old.safetensors"
    save_file(load_file(conv_model), old, metadata={"nncli": json.dumps(meta)})
    assert load_model(old).channels == 1


# ---------------------------------------------------------------- errors

def test_channels_that_do_not_divide_the_features(capsys, tmp_path, small_mnist1d):
    model = tmp_path / "m.safetensors"
    rc, out, err = run(capsys, "train", small_mnist1d, "--arch", "4conv5relu-10linear", "--loss",
                       "sparse_cce", "--logits", "--channels", "3", "-o", model)
    assert_one_line_error(rc, out, err, "40 input features cannot be read as a signal of 3 "
                          "channels", "not a multiple of 3")
    assert not model.exists()


def test_a_window_wider_than_its_input_names_the_layer(capsys, tmp_path, small_mnist1d):
    model = tmp_path / "m.safetensors"
    rc, out, err = run(capsys, "train", small_mnist1d, "--arch",
                       "4conv5s2relu-8conv20relu-10linear", "--loss", "sparse_cce", "--logits",
                       "-o", model)
    assert_one_line_error(rc, out, err, "layer 2 '8conv20relu'", "window of 20",
                          "input of length 18", "at most 18")
    assert not model.exists()


def test_init_from_refuses_other_channels(capsys, tmp_path, small_mnist1d, conv_model):
    rc, out, err = run(capsys, "train", small_mnist1d, "--arch",
                       "4conv5s2relu-8conv3s2relu-10linear", "--loss", "sparse_cce", "--logits",
                       "--channels", "2", "--init-from", conv_model, "--quiet",
                       "-o", tmp_path / "m.safetensors")
    assert_one_line_error(rc, out, err, "on 40 inputs, but", "on 40 inputs of 2 channels")


def test_init_from_the_same_conv_network_continues(capsys, tmp_path, small_mnist1d, conv_model):
    model = tmp_path / "m.safetensors"
    ok(capsys, "train", small_mnist1d, "--arch", "4conv5s2relu-8conv3s2relu-10linear", "--loss",
       "sparse_cce", "--logits", "--init-from", conv_model, "--epochs", "0", "--quiet",
       "-o", model)
    assert np.array_equal(load_model(model).params, load_model(conv_model).params)


def test_resume_refuses_other_channels_and_continues_with_the_same(capsys, tmp_path):
    rng = np.random.default_rng(4)
    data = signals_csv(tmp_path / "two.csv", rng.normal(size=(64, 60)),
                       rng.integers(0, 2, size=64))
    args = ["train", data, "--arch", "3conv4s2tanh-1linear", "--loss", "bce", "--logits",
            "--quiet", "-o", tmp_path / "m.safetensors"]
    ckpt = tmp_path / "run.ckpt"
    ok(capsys, *args, "--channels", "2", "--epochs", "2", "--checkpoint", ckpt)
    rc, out, err = run(capsys, *args, "--epochs", "3", "--resume", ckpt)
    assert_one_line_error(rc, out, err, "on 60 inputs of 2 channels, but this run is",
                          "on 60 inputs; they must match")
    ok(capsys, *args, "--channels", "2", "--epochs", "3", "--resume", ckpt)
    resumed = load_model(tmp_path / "m.safetensors")
    assert resumed.channels == 2 and len(resumed.info["history"]) == 3


# ---------------------------------------------------------------- gradcheck

@pytest.mark.parametrize("argv", [
    ["--arch", "4conv5s2relu-8conv3s2relu-10linear", "--loss", "sparse_cce", "--logits",
     "--inputs", "40"],
    ["--arch", LECTURE, "--loss", "bce", "--inputs", "100"],
    ["--arch", "3conv3s2tanh-2local2sigmoid-2linear", "--loss", "mse", "--inputs", "26",
     "--channels", "2"],
])
def test_gradcheck_of_conv_and_local_networks(capsys, argv):
    rc, out, err = run(capsys, "gradcheck", *argv, "--json")
    assert rc == 0, err
    doc = json.loads(out)
    assert doc["ok"] and len(doc["tensors"]) == 6


def test_gradcheck_channels_error(capsys, conv_model, small_mnist1d):
    rc, out, err = run(capsys, "gradcheck", "--arch", "2conv3relu-1linear", "--loss", "mse",
                       "--inputs", "9", "--channels", "2")
    assert_one_line_error(rc, out, err, "9 input features", "2 channels")
    rc, out, err = run(capsys, "gradcheck", conv_model, small_mnist1d, "--channels", "2")
    assert_one_line_error(rc, out, err, "--channels applies to --arch")


def test_gradcheck_of_a_trained_conv_model(capsys, conv_model, small_mnist1d):
    rc, _, err = run(capsys, "gradcheck", conv_model, small_mnist1d)
    assert rc == 0 and "gradcheck passed" in err


# ---------------------------------------------------------------- the lecture's EKG network

def beat_signals(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """EKG-like strips of 100 samples: noise, and in half of them (label 1) one beat, a narrow
    bump at a random place."""
    t = np.arange(100)
    y = rng.integers(0, 2, size=n)
    centre = rng.uniform(8, 92, size=n)
    bump = 1.5 * np.exp(-0.5 * ((t - centre[:, None]) / 2.5) ** 2)
    return 0.3 * rng.normal(size=(n, 100)) + y[:, None] * bump, y


def test_the_lecture_network_learns_to_find_a_beat(capsys, tmp_path):
    X, y = beat_signals(600, np.random.default_rng(0))
    data = signals_csv(tmp_path / "beats.csv", X, y, target="beat")
    model = tmp_path / "ekg.safetensors"
    summary = json.loads(ok(capsys, "train", data, "--arch", LECTURE, "--loss", "bce",
                            "--epochs", "100", "--validation-split", "0.25", "--quiet",
                            "--json", "-o", model))
    # seed 0: val_accuracy 0.953 after 100 epochs (chance: 0.5)
    assert summary["final"]["val_accuracy"] >= 0.85
    info = json.loads(ok(capsys, "info", model, "--json"))
    assert [l["output_shape"] for l in info["layers"]] == [[9, 1], [3, 1], [1]]
    assert info["parameters"] == (9 * 20 + 9) + (3 * 5 + 3) + (3 + 1)


# ---------------------------------------------------------------- MNIST-1D (README)

def test_mnist1d_conv_beats_a_dense_network_of_the_same_size(capsys, tmp_path):
    """The README's commands: seed 0 reaches 0.910 (conv) and 0.601 (dense) test accuracy."""
    common = [MNIST1D_TRAIN, "--validation-data", MNIST1D_TEST, "--loss", "sparse_cce",
              "--logits", "--epochs", "30", "--quiet", "--json"]
    conv = json.loads(ok(capsys, "train", *common, "--arch", CONV, "-o", tmp_path / "c"))
    dense = json.loads(ok(capsys, "train", *common, "--arch", DENSE, "-o", tmp_path / "d"))
    conv_acc, dense_acc = conv["final"]["val_accuracy"], dense["final"]["val_accuracy"]
    assert conv_acc >= 0.88, conv_acc
    assert dense_acc <= 0.70, dense_acc
    info = json.loads(ok(capsys, "info", tmp_path / "c", "--json"))
    assert info["parameters"] == 8970
    assert json.loads(ok(capsys, "info", tmp_path / "d", "--json"))["parameters"] == 8550
    report = json.loads(ok(capsys, "eval", tmp_path / "c", MNIST1D_TEST, "--json"))
    assert report["accuracy"] == pytest.approx(conv_acc)
