"""Tests of the model file (nncli.modelfile): round trip, layout, atomic writes, and every way a
file can be damaged or foreign raising ModelFileError with a clear message."""

from __future__ import annotations

import json
import os
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
from safetensors import safe_open
from safetensors.numpy import load_file, save_file

from nncli import __version__
from nncli.arch import parse_arch
from nncli.errors import ModelFileError, NncliError, UsageError
from nncli.model import Model
from nncli.modelfile import (FORMAT_VERSION, check_writable, load_model, read_model_file,
                             save_model)

try:
    from clirun import assert_one_line_error, run
except ImportError:                       # tests/ imported as a package
    from tests.clirun import assert_one_line_error, run

HISTORY = [
    {"epoch": 1, "loss": 1.25, "accuracy": 0.5, "val_loss": 1.5, "val_accuracy": 0.25,
     "seconds": 0.125},
    {"epoch": 2, "loss": 0.75, "accuracy": 0.75, "val_loss": 1.0, "val_accuracy": 0.5,
     "seconds": 0.0625},
]


def make_model(arch: str = "5relu-4tanh-3linear", n_inputs: int = 6, seed: int = 3) -> Model:
    """A classifier with everything a trained model carries: weights, scaling, names, history."""
    rng = np.random.default_rng(seed)
    info = {"optimizer": {"name": "adam", "learning_rate": 0.001, "beta_1": 0.9,
                          "beta_2": 0.999, "epsilon": 1e-07},
            "seed": seed, "normalize": True, "history": [dict(h) for h in HISTORY]}
    model = Model.create(parse_arch(arch), n_inputs, "sparse_cce", True, seed=seed,
                         classes=["cat", "dog", "émeu"],
                         feature_names=[f"f{i}" for i in range(n_inputs)],
                         target_names=["animal"], target_columns=[n_inputs], info=info)
    for i in range(len(model.layers)):
        model.bias(i)[...] = rng.normal(size=model.bias(i).shape)
    model.preprocessing.mean = rng.normal(size=n_inputs).astype(np.float32)
    model.preprocessing.std = rng.uniform(0.5, 2.0, size=n_inputs).astype(np.float32)
    return model


@pytest.fixture
def saved(tmp_path) -> tuple[Model, Path]:
    model = make_model()
    path = tmp_path / "m.safetensors"
    save_model(model, path)
    return model, path


def error_of(path) -> ModelFileError:
    with pytest.raises(ModelFileError) as info:
        load_model(path)
    err = info.value
    assert isinstance(err, NncliError) and err.exit_code == 2
    message = str(err)
    assert "\n" not in message
    assert str(path) in message, f"the message does not name the file: {message}"
    return err


def rewrite_metadata(path: Path, change) -> None:
    """Rewrite ``path`` with its nncli metadata passed through ``change(meta) -> meta``."""
    tensors = load_file(str(path))
    with safe_open(str(path), "np") as f:
        metadata = dict(f.metadata())
    metadata["nncli"] = json.dumps(change(json.loads(metadata["nncli"])))
    save_file(tensors, str(path), metadata=metadata)


# ---------------------------------------------------------------- round trip


def test_round_trip_keeps_everything(saved):
    model, path = saved
    loaded = load_model(path)
    assert loaded.arch == model.arch == "5relu-4tanh-3linear"
    assert loaded.layers == model.layers
    assert loaded.n_inputs == model.n_inputs
    assert loaded.loss == "sparse_cce" and loaded.logits is True
    assert loaded.params.dtype == np.float32
    np.testing.assert_array_equal(loaded.params, model.params)
    np.testing.assert_array_equal(loaded.mean, model.mean)
    np.testing.assert_array_equal(loaded.std, model.std)
    assert loaded.classes == ["cat", "dog", "émeu"]
    assert loaded.feature_names == model.feature_names
    assert loaded.target_names == ["animal"]
    assert loaded.target_columns == [6]
    assert loaded.info["history"] == HISTORY
    assert loaded.info["optimizer"] == model.info["optimizer"]
    assert loaded.info["seed"] == 3 and loaded.info["normalize"] is True


def test_round_trip_gives_the_same_outputs(saved):
    model, path = saved
    loaded = load_model(path)
    X = np.random.default_rng(0).normal(size=(7, 6)).astype(np.float32)
    np.testing.assert_array_equal(loaded.outputs(X.copy()), model.outputs(X.copy()))


def test_loaded_parameters_are_one_flat_buffer_with_views(saved):
    _, path = saved
    loaded = load_model(path)
    loaded.kernel(0)[0, 0] = 42.0
    assert loaded.params[0] == 42.0


def test_save_again_is_byte_identical(saved, tmp_path):
    _, path = saved
    again = tmp_path / "again.safetensors"
    save_model(load_model(path), again)
    assert again.read_bytes() == path.read_bytes()


# ---------------------------------------------------------------- layout


def test_tensor_names_shapes_and_plain_safetensors_loading(saved):
    model, path = saved
    tensors = load_file(str(path))  # plain safetensors, no nncli code
    sizes = [6, 5, 4, 3]
    expected = {"normalization.mean", "normalization.std"}
    for i, (n_in, n_out) in enumerate(zip(sizes, sizes[1:])):
        expected |= {f"layers.{i}.kernel", f"layers.{i}.bias"}
        kernel, bias = tensors[f"layers.{i}.kernel"], tensors[f"layers.{i}.bias"]
        assert kernel.shape == (n_in, n_out)
        assert bias.shape == (n_out,)
        assert kernel.dtype == bias.dtype == np.float32
        np.testing.assert_array_equal(kernel, model.kernel(i))
        np.testing.assert_array_equal(bias, model.bias(i))
    assert set(tensors) == expected
    np.testing.assert_array_equal(tensors["normalization.mean"], model.mean)
    np.testing.assert_array_equal(tensors["normalization.std"], model.std)


def test_kernel_is_in_by_out_as_used_by_the_forward_pass(saved):
    # x @ kernel + bias, layer by layer, must reproduce the model's own outputs.
    model, path = saved
    t = load_file(str(path))
    X = np.random.default_rng(1).normal(size=(5, 6)).astype(np.float32)
    a = X.astype(np.float64)
    acts = {"relu": lambda z: np.maximum(z, 0), "tanh": np.tanh, "linear": lambda z: z}
    for i, layer in enumerate(model.layers):
        a = acts[layer.activation](a @ t[f"layers.{i}.kernel"] + t[f"layers.{i}.bias"])
    np.testing.assert_allclose(a, model.outputs(X.copy()), rtol=1e-5, atol=1e-5)


def test_metadata_is_one_json_document(saved):
    _, path = saved
    with safe_open(str(path), "np") as f:
        metadata = f.metadata()
    assert set(metadata) == {"nncli"}
    meta = json.loads(metadata["nncli"])
    assert meta["format_version"] == FORMAT_VERSION
    assert meta["nncli_version"] == __version__
    assert meta["arch"] == "5relu-4tanh-3linear"
    assert meta["n_inputs"] == 6
    assert meta["classes"] == ["cat", "dog", "émeu"]


def test_file_is_header_plus_raw_tensors_and_no_pickle(saved, monkeypatch):
    model, path = saved
    data = path.read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    body = data[8 + n:]
    # Every byte after the JSON header is some tensor's raw little-endian float32 data.
    tensors = load_file(str(path))
    covered = 0
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        start, stop = entry["data_offsets"]
        assert entry["dtype"] == "F32"
        assert body[start:stop] == tensors[name].astype("<f4").tobytes()
        covered += stop - start
    assert covered == len(body)
    # No pickle stream anywhere: protocol 2+ starts with PROTO (0x80) and the version byte.
    for protocol in range(2, pickle.HIGHEST_PROTOCOL + 1):
        assert bytes([0x80, protocol]) not in data[8:8 + n]
    # And loading never unpickles.
    def no_pickle(*args, **kwargs):
        raise AssertionError("load_model unpickled something")

    monkeypatch.setattr(pickle, "loads", no_pickle)
    monkeypatch.setattr(pickle, "load", no_pickle)
    monkeypatch.setattr(pickle, "Unpickler", no_pickle)
    load_model(path)


def test_file_of_known_weights_holds_no_pickle_header(tmp_path):
    # With weights whose bytes are known, the whole file (not just the header) is pickle-free.
    # Multiples of 1/4 have zero low mantissa bytes, so their float32 bytes are 00 00 xx 3e/3f/bf.
    model = make_model()
    model.params[...] = np.resize(np.array([-1, -0.5, -0.25, 0, 0.25, 0.5, 1], np.float32),
                                  model.params.size)
    model.mean[...] = 0.25
    model.std[...] = 1.0
    path = tmp_path / "known.safetensors"
    save_model(model, path)
    data = path.read_bytes()
    (n,) = struct.unpack("<Q", data[:8])  # the length prefix is a number, not a stream
    assert 8 + n < len(data)
    for protocol in range(2, pickle.HIGHEST_PROTOCOL + 1):
        assert bytes([0x80, protocol]) not in data[8:]
    assert b"numpy.core.multiarray" not in data and b"_reconstruct" not in data


# ---------------------------------------------------------------- atomic write


def test_save_leaves_only_the_model_file(saved, tmp_path):
    _, path = saved
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.safetensors"]
    assert (path.stat().st_mode & 0o777) == 0o644


def test_overwrite_is_atomic_when_the_write_fails(saved, tmp_path, monkeypatch):
    _, path = saved
    before = path.read_bytes()

    def broken_replace(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError):
        save_model(make_model(seed=9), path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.safetensors"]


def test_save_into_a_missing_folder_is_a_usage_error(tmp_path):
    with pytest.raises(UsageError, match="does not exist"):
        save_model(make_model(), tmp_path / "missing" / "m.safetensors")
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------- damaged and foreign files


def test_missing_file(tmp_path):
    err = error_of(tmp_path / "nope.safetensors")
    assert "no such" in str(err)


def test_folder_instead_of_file(tmp_path):
    err = error_of(tmp_path)
    assert "folder" in str(err)


@pytest.mark.parametrize("keep", [0, 5, 8, 100, "half", -1])
def test_truncated(saved, keep):
    _, path = saved
    data = path.read_bytes()
    cut = {"half": len(data) // 2, -1: len(data) - 1}.get(keep, keep)
    path.write_bytes(data[:cut])
    err = error_of(path)
    if keep == 8:  # only the length prefix is left: cannot tell truncated from foreign
        assert "truncated" in str(err) or "not a safetensors file" in str(err)
    else:
        assert "truncated" in str(err)


@pytest.mark.parametrize("extra", [b"\0", b"garbage appended", bytes(4096)])
def test_extra_trailing_bytes(saved, extra):
    _, path = saved
    path.write_bytes(path.read_bytes() + extra)
    err = error_of(path)
    assert f"{len(extra)} unexpected bytes" in str(err)


def test_foreign_safetensors_file(tmp_path):
    path = tmp_path / "foreign.safetensors"
    save_file({"a": np.zeros(3, np.float32)}, str(path))
    err = error_of(path)
    assert "not an nncli model" in str(err)


def test_foreign_safetensors_file_with_other_metadata(tmp_path):
    path = tmp_path / "foreign.safetensors"
    save_file({"weight": np.ones((2, 2), np.float32)}, str(path), metadata={"format": "pt"})
    err = error_of(path)
    assert "not an nncli model" in str(err)


@pytest.mark.parametrize("content", [
    b"",
    b"hello, world\n1,2,3\n",
    np.random.default_rng(0).bytes(4096),
    pickle.dumps({"layers.0.kernel": [1.0, 2.0]}),
    struct.pack("<Q", 2) + b"[]",
    struct.pack("<Q", 4) + b"\xff\xfe\xfd\xfc",
])
def test_not_a_safetensors_file(tmp_path, content):
    path = tmp_path / "junk.safetensors"
    path.write_bytes(content)
    err = error_of(path)
    message = str(err)
    assert "safetensors" in message or "truncated" in message


def test_newer_format_version(saved):
    _, path = saved
    rewrite_metadata(path, lambda meta: {**meta, "format_version": 99})
    err = error_of(path)
    message = str(err)
    assert "99" in message and "newer" in message


def test_damaged_metadata(saved):
    _, path = saved
    tensors = load_file(str(path))
    save_file(tensors, str(path), metadata={"nncli": "{not json"})
    err = error_of(path)
    assert "metadata" in str(err)


def test_shape_mismatch_when_metadata_arch_changed(saved):
    _, path = saved
    rewrite_metadata(path, lambda meta: {**meta, "arch": "7relu-4tanh-3linear"})
    err = error_of(path)
    message = str(err)
    assert "layers.0.kernel" in message
    assert "7relu-4tanh-3linear" in message
    assert "[6, 5]" in message and "[6, 7]" in message


def test_shape_mismatch_when_n_inputs_changed(saved):
    _, path = saved
    rewrite_metadata(path, lambda meta: {**meta, "n_inputs": 9})
    err = error_of(path)
    assert "layers.0.kernel" in str(err)


def test_missing_tensor(saved):
    _, path = saved
    tensors = load_file(str(path))
    with safe_open(str(path), "np") as f:
        metadata = f.metadata()
    del tensors["layers.2.bias"]
    save_file(tensors, str(path), metadata=metadata)
    err = error_of(path)
    assert "layers.2.bias" in str(err) and "missing" in str(err)


def test_wrong_dtype(saved):
    _, path = saved
    tensors = load_file(str(path))
    with safe_open(str(path), "np") as f:
        metadata = f.metadata()
    tensors["layers.1.kernel"] = tensors["layers.1.kernel"].astype(np.float64)
    save_file(tensors, str(path), metadata=metadata)
    err = error_of(path)
    assert "layers.1.kernel" in str(err) and "float32" in str(err)


def test_unparsable_arch_in_metadata(saved):
    _, path = saved
    rewrite_metadata(path, lambda meta: {**meta, "arch": "5rleu-3linear"})
    err = error_of(path)
    assert "metadata" in str(err)


def _raw_file(path: Path, header: dict, body: bytes = b"") -> Path:
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    path.write_bytes(struct.pack("<Q", len(text)) + text + body)
    return path


def _meta(**fields) -> dict:
    return {"__metadata__": {"nncli": json.dumps(fields)}}


CRAFTED_HEADERS = {
    "data-offsets-not-a-list": {"a": {"dtype": "F32", "shape": [1], "data_offsets": 4}},
    "data-offsets-empty": {"a": {"dtype": "F32", "shape": [1], "data_offsets": []}},
    "data-offsets-text": {"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, "4"]}},
    "metadata-not-an-object": {"__metadata__": "nncli"},
    "nncli-metadata-not-text": {"__metadata__": {"nncli": 5}},
    "nncli-metadata-a-list": {"__metadata__": {"nncli": "[1, 2]"}},
    "format-version-null": _meta(format_version=None),
    "arch-missing": _meta(format_version=1),
    "arch-a-number": _meta(format_version=1, arch=5, n_inputs=3, loss="mse", logits=False),
}


@pytest.mark.parametrize("case", CRAFTED_HEADERS)
def test_crafted_header_is_a_model_file_error(tmp_path, case):
    # A damaged or hostile header must be reported, never crash with a TypeError & co.
    body = bytes(4) if case.startswith("data-offsets") else b""
    path = _raw_file(tmp_path / f"{case}.safetensors", CRAFTED_HEADERS[case], body)
    error_of(path)


def test_unknown_loss_in_metadata(saved):
    # load_model promises that every problem of the file is a ModelFileError naming it; a loss
    # this nncli does not know would otherwise surface later, at predict, without the file.
    _, path = saved
    rewrite_metadata(path, lambda meta: {**meta, "loss": "hinge"})
    err = error_of(path)
    assert "hinge" in str(err)


# ---------------------------------------------------------------- checkpoints


def _checkpoint(tmp_path, model=None) -> tuple[Model, Path, dict]:
    model = model or make_model()
    state = {"epoch": 2, "rows_done": 64, "step": 9, "rng": {"bit_generator": "PCG64"}}
    tensors = {"optimizer.m": np.arange(model.params.size, dtype=np.float32),
               "optimizer.v": np.ones(model.params.size, np.float32)}
    path = tmp_path / "c.safetensors"
    save_model(model, path, state, tensors)
    return model, path, state


def test_checkpoint_round_trip(tmp_path):
    model, path, state = _checkpoint(tmp_path)
    saved = read_model_file(path)
    assert saved.is_checkpoint and saved.state == state
    assert set(saved.tensors) == {"optimizer.m", "optimizer.v"}
    np.testing.assert_array_equal(saved.tensors["optimizer.m"], np.arange(model.params.size))
    np.testing.assert_array_equal(saved.model.params, model.params)
    assert "training_state" not in saved.model.info


def test_checkpoint_is_read_as_a_model_everywhere(tmp_path):
    model, path, _ = _checkpoint(tmp_path)
    loaded = load_model(path)
    np.testing.assert_array_equal(loaded.params, model.params)
    assert loaded.info["history"] == HISTORY
    # Saving the loaded model gives a plain model file, byte for byte like the original's.
    save_model(loaded, tmp_path / "plain.safetensors")
    save_model(model, tmp_path / "direct.safetensors")
    assert (tmp_path / "plain.safetensors").read_bytes() == \
        (tmp_path / "direct.safetensors").read_bytes()
    assert not read_model_file(tmp_path / "plain.safetensors").is_checkpoint


def test_checkpoint_state_tensor_of_the_wrong_size(tmp_path):
    model, path, state = _checkpoint(tmp_path)
    tensors = load_file(str(path))
    with safe_open(str(path), "np") as f:
        metadata = f.metadata()
    tensors["optimizer.v"] = tensors["optimizer.v"][:-1]
    save_file(tensors, str(path), metadata=metadata)
    err = error_of(path)
    assert "optimizer.v" in str(err)


def test_checkpoint_state_that_is_not_an_object(tmp_path):
    _, path, _ = _checkpoint(tmp_path)
    rewrite_metadata(path, lambda meta: {**meta, "training_state": [1, 2]})
    assert "training state" in str(error_of(path))


def test_save_refuses_tensors_that_are_not_training_state(tmp_path):
    model = make_model()
    for name in ("layers.0.kernel", "weights"):
        with pytest.raises(ValueError):
            save_model(model, tmp_path / "m.safetensors", {}, {name: model.params})
    assert list(tmp_path.iterdir()) == []


def test_check_writable_tries_a_file_in_the_folder(tmp_path, monkeypatch):
    import tempfile

    check_writable(tmp_path / "m.safetensors")
    assert list(tmp_path.iterdir()) == []  # the probe is gone

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    with pytest.raises(UsageError, match="not writable .Permission denied"):
        check_writable(tmp_path / "m.safetensors", "the history")


def test_layer_records_are_views_of_every_layer():
    model = Model.create(parse_arch("2conv3s2relu-3local2tanh-4linear"), 16, "mse", False,
                         seed=1, channels=2)
    records = model.layer_records()
    assert [r.index for r in records] == [0, 1, 2]
    assert [r.spec for r in records] == model.layers
    assert [r.shape for r in records] == model.shapes()
    for r in records:
        assert np.array_equal(r.kernel, model.kernel(r.index))
        assert np.array_equal(r.bias, model.bias(r.index))
    records[1].bias[...] = 7.0   # a view: the model's parameters change with it
    assert np.all(model.bias(1) == 7.0)


# ---------------------------------------------------------------- crafted metadata, by command
#
# Model files are meant to be safe to load from strangers: whatever their metadata holds, every
# command answers with one line and exit 2, never a traceback.

DEEP = "[" * 200_000 + "]" * 200_000


def _with_raw_metadata(source: Path, target: Path, raw: str) -> Path:
    save_file(load_file(str(source)), str(target), metadata={"nncli": raw})
    return target


def _with_deep_header(source: Path, target: Path) -> Path:
    """``source`` with a 200000-level JSON array added to its safetensors header itself."""
    data = source.read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    text = data[8:8 + n].rstrip()[:-1] + b', "x": ' + DEEP.encode() + b"}"
    text += b" " * (-len(text) % 8)
    target.write_bytes(struct.pack("<Q", len(text)) + text + data[8 + n:])
    return target


def _commands(path: Path, data: Path, out: Path) -> dict[str, list]:
    return {"info": ["info", path], "eval": ["eval", path, data],
            "predict": ["predict", path, data], "export": ["export", path, "-o", out]}


@pytest.mark.parametrize("command", ["info", "eval", "predict", "export"])
@pytest.mark.parametrize("where", ["metadata", "header"])
def test_deeply_nested_json_is_one_line_for_every_command(capsys, tmp_path, digits_model,
                                                          digits_csv, command, where):
    path = tmp_path / "m.safetensors"
    if where == "metadata":
        _with_raw_metadata(digits_model, path, DEEP)
        needle = "m.safetensors: damaged model metadata: JSON nested more than 64 levels deep"
    else:
        _with_deep_header(digits_model, path)
        needle = "m.safetensors: damaged safetensors header (JSON nested more than 64 levels"
    argv = _commands(path, digits_csv, tmp_path / "m.onnx")[command]
    assert_one_line_error(*run(capsys, *argv), needle)
    assert not (tmp_path / "m.onnx").exists()


@pytest.mark.parametrize("key, value, command, message", [
    ("classes", 1.5, "predict",
     "'classes' must be null or a list of at most 10 names, found 1.5"),
    ("classes", ["a"] * 11, "predict",
     "'classes' must be null or a list of at most 10 names, found [\"a\", "),
    ("target_columns", 3, "predict", "'target_columns' must be null or a list of 1 column "
     "numbers (0-based, one per target name), found 3"),
    ("history", 7, "info", "'history' must be a list of objects of numbers, each with its "
     "'epoch', found 7"),
    ("history", [{"epoch": "one", "loss": 1.0}], "info", "'history' must be"),
    ("feature_names", ["p0"], "info", "'feature_names' must be null or a list of 64 names"),
    ("optimizer", {"name": "adam", "learning_rate": "fast"}, "info",
     "'optimizer' must be an object of an optimizer's name and its numbers (adam: "
     "learning_rate, beta_1, beta_2, epsilon; sgd: learning_rate, momentum)"),
    ("optimizer", {"name": ["adam"]}, "info", "'optimizer' must be an object of an "),
    ("options", [1], "info", "'options' must be an object (the training options), found [1]"),
    ("n_inputs", "64", "info", "'n_inputs' must be a whole number of at least 1, found \"64\""),
    ("logits", "yes", "eval", "'logits' must be true or false, found \"yes\""),
    ("schema", {"columns": [{"name": "p0", "fill": "x"}]}, "predict",
     "'schema': column 1: 'fill' must be null or a finite number, found \"x\""),
], ids=["classes-number", "classes-too-many", "target-columns-number", "history-number",
        "history-epoch-text", "feature-names-short", "optimizer-settings", "optimizer-name-list",
        "options-list",
        "n-inputs-text", "logits-text", "schema-fill-text"])
def test_metadata_of_the_wrong_type_is_one_line(capsys, tmp_path, digits_model, digits_csv,
                                                key, value, command, message):
    path = tmp_path / "m.safetensors"
    path.write_bytes(digits_model.read_bytes())
    rewrite_metadata(path, lambda meta: {**meta, key: value})
    argv = _commands(path, digits_csv, tmp_path / "m.onnx")[command]
    line = assert_one_line_error(*run(capsys, *argv), message)
    assert line.startswith(f"nncli: error: {path}: damaged model metadata: ")


@pytest.mark.parametrize("value", [7, 2.5, True], ids=["int", "float", "true"])
def test_any_key_of_a_digits_model_as_a_number_is_a_result_or_one_line(capsys, tmp_path,
                                                                        digits_model,
                                                                        digits_csv, value):
    with safe_open(str(digits_model), "np") as f:
        keys = sorted(json.loads(f.metadata()["nncli"]))
    assert len(keys) >= 19   # the count; --missing has added one since
    for key in keys:
        path = tmp_path / f"{key}.safetensors"
        path.write_bytes(digits_model.read_bytes())
        rewrite_metadata(path, lambda meta: {**meta, key: value})
        for argv in (["info", path], ["predict", path, digits_csv, "--output", "class"]):
            rc, out, err = run(capsys, *argv)
            if rc != 0:
                assert_one_line_error(rc, out, err, str(path))


def test_fewer_classes_than_output_units_predicts_every_unit(capsys, tmp_path):
    # text labels of 3 classes on 5 output units (allowed at training): predict names the
    # units beyond the labels by their index, rather than indexing past the labels
    data = tmp_path / "labels.csv"
    data.write_text("a,b,kind\n" + "".join(f"{i % 7},{i % 3},{'abc'[i % 3]}\n"
                                          for i in range(30)))
    model = tmp_path / "m.safetensors"
    rc, _, err = run(capsys, "train", data, "--arch", "5linear", "--loss", "sparse_cce",
                     "--logits", "--epochs", "0", "--quiet", "-o", model)
    assert rc == 0, err
    rc, out, err = run(capsys, "predict", model, data)
    assert rc == 0, err
    assert out.splitlines()[0] == "a,b,c,3,4"
    rc, out, err = run(capsys, "predict", model, data, "--output", "class")
    assert rc == 0, err
    assert set(out.splitlines()[1:]) <= {"a", "b", "c", "3", "4"}


@pytest.mark.parametrize("field, value", [("epoch", float("inf")), ("rows", "many"),
                                          ("rng", 5)])
def test_resume_from_a_crafted_training_state_is_one_line(capsys, tmp_path, digits_csv, field,
                                                          value):
    ckpt = tmp_path / "c.safetensors"
    train = ["train", digits_csv, "--arch", "8relu-10linear", "--loss", "sparse_cce",
             "--logits", "--epochs", "1", "--quiet", "-o", tmp_path / "m.safetensors"]
    rc, _, err = run(capsys, *train, "--checkpoint", ckpt)
    assert rc == 0, err
    rewrite_metadata(ckpt, lambda meta: {**meta, "training_state": {
        **meta["training_state"], field: value}})
    rc, out, err = run(capsys, *train[:-2], "--epochs", "2", "-o", tmp_path / "m2.safetensors",
                       "--resume", ckpt)
    assert_one_line_error(rc, out, err, f"{ckpt}: damaged training state")
