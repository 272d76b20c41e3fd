"""Dropout (issue 19 item 2): the ``dropout<rate>`` layer of the architecture string, its masks
against the float64 reference of tests/naive.py, its expectation, identity outside training,
and bit-identity at any thread count and across a resume."""

from __future__ import annotations

import numpy as np
import pytest

import naive
from clirun import assert_one_line_error, run
from nncli.arch import LayerSpec, format_arch, param_count, parse_arch
from nncli.errors import ArchError
from nncli.losses import PROB_EPSILON
from nncli.model import K, Model, Workspace, dropout_key


@pytest.mark.parametrize("text", ["64relu-dropout0.3-32relu-10linear", "4relu-dropout0.0-2linear",
                                  "4conv5relu-dropout0.5-8local2s2relu-dropout0.25-10linear"])
def test_dropout_round_trips_and_has_no_parameters(text):
    layers = parse_arch(text)
    assert format_arch(layers) == text
    without = [layer for layer in layers if layer.kind != "dropout"]
    assert param_count(layers, 40) == param_count(without, 40)


@pytest.mark.parametrize("text, needle", [
    ("dropout0.3-4relu-2linear", "first"), ("4relu-2linear-dropout0.3", "last"),
    ("4relu-dropout1.0-2linear", "[0, 1)"), ("4relu-dropout-2linear", "no dropout rate"),
    ("4relu-dropout0.30-2linear", "'dropout0.3'"), ("4relu-dropout.5-2linear", "'dropout0.5'")])
def test_bad_dropout_layers_are_refused(text, needle):
    with pytest.raises(ArchError, match=None) as info:
        parse_arch(text)
    assert needle in str(info.value)


def _net(dtype, rate=0.4, seed=3):
    layers = parse_arch(f"6relu-dropout{rate!r}-3linear")
    model = Model.create(layers, 5, "mse", False, seed=1, info={"seed": seed})
    rng = np.random.default_rng(0)
    X = rng.normal(size=(7, 5)).astype(dtype)
    Y = rng.normal(size=(7, 3)).astype(dtype)
    return model, X, Y


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("step", [0, 5, 123456])
def test_training_forward_backward_matches_the_reference_with_its_mask(dtype, step):
    model, X, Y = _net(dtype)
    params = model.params.astype(dtype)
    ws = Workspace(model.layer_table(), len(X), dtype)
    grads = np.full_like(params, np.nan)
    loss_sum, _ = K.network_forward_backward(grads, ws.Z, ws.A, ws.dZ, ws.dA, ws.T, params,
                                             ws.table, X, Y, ws.cap, 0, PROB_EPSILON, step,
                                             ws.windowed, None)
    W1, b1, W3, b3 = model.kernel(0), model.bias(0), model.kernel(2), model.bias(2)
    mask = naive.dropout_mask(dropout_key(3, 1), step, len(X), 6, 0.4)
    Z1 = naive.dense(X, W1, b1)
    A2 = naive.relu(Z1) * mask
    out = naive.dense(A2, W3, b3)
    rows, dOut = naive.mse(out, Y)
    dA2, dW3, db3 = naive.dense_grads(dOut, A2, W3)
    _, dW1, db1 = naive.dense_grads(naive.act_grad("relu", Z1, dA2 * mask), X, W1)
    naive.assert_close(loss_sum, rows.sum(), dtype)
    want = np.concatenate([dW1.ravel(), db1, dW3.ravel(), db3])
    naive.assert_close(grads, want, dtype)


def test_masks_scale_kept_units_and_keep_the_expectation():
    """Inverted dropout: kept units times 1 / (1 - rate), dropped ones 0, about 1 - rate of
    them kept, so the mean of the output is the mean of the input; other steps, other masks."""
    rate, n, width = 0.3, 256, 64
    X = np.ones((n, width))
    masks = []
    for step in (0, 1):
        M, A = np.empty_like(X), np.empty_like(X)
        K.dropout_forward(M, A, X, dropout_key(0, 1), step, int(rate * 2.0 ** 53))
        values = np.unique(M)   # the scale from the threshold rate * 2^53: within an ulp
        assert len(values) == 2 and values[0] == 0.0
        assert values[1] == pytest.approx(1.0 / (1.0 - rate), rel=1e-15)
        assert abs((M == 0).mean() - rate) < 0.01
        assert abs(A.mean() - 1.0) < 0.02
        np.testing.assert_allclose(M, naive.dropout_mask(dropout_key(0, 1), step, n, width, rate),
                                   rtol=1e-15)
        masks.append(M)
    assert not np.array_equal(*masks)


def test_eval_and_predict_are_the_identity():
    model, X, Y = _net(np.float32)
    plain = Model(parse_arch("6relu-3linear"), 5, "mse", False, model.params.copy(),
                  model.preprocessing)
    np.testing.assert_array_equal(model.outputs(X), plain.outputs(X))
    assert model.evaluate(X, Y) == plain.evaluate(X, Y)


COMMON = ["--arch", "16relu-dropout0.3-10linear", "--loss", "sparse_cce", "--logits",
          "--validation-split", "0.2", "--batch-size", "64", "-q"]


def test_dropout_training_is_bit_identical_at_1_and_2_threads_and_changes_the_weights(
        capsys, tmp_path, digits_csv, restore_threads):
    from safetensors.numpy import load_file
    paths = []
    for arch, threads in (("16relu-dropout0.3-10linear", 1), ("16relu-dropout0.3-10linear", 2),
                          ("16relu-10linear", 1)):
        path = tmp_path / f"{threads}-{len(arch)}.safetensors"
        rc, _, err = run(capsys, "train", digits_csv, *COMMON, "--arch", arch, "--epochs", "2",
                         "--threads", str(threads), "-o", path)
        assert rc == 0, err
        paths.append(load_file(str(path)))
    one, two, plain = paths
    assert all(one[k].tobytes() == two[k].tobytes() for k in one)
    assert one["layers.0.kernel"].tobytes() != plain["layers.0.kernel"].tobytes()
    assert one["layers.1.kernel"].shape == (0,)


def test_resume_with_dropout_matches_a_straight_run(capsys, tmp_path, digits_csv):
    from safetensors.numpy import load_file
    rc, _, err = run(capsys, "train", digits_csv, *COMMON, "--epochs", "3",
                     "-o", tmp_path / "a.safetensors")
    assert rc == 0, err
    rc, _, err = run(capsys, "train", digits_csv, *COMMON, "--epochs", "1", "--checkpoint",
                     tmp_path / "k.ckpt", "-o", tmp_path / "half.safetensors")
    assert rc == 0, err
    rc, _, err = run(capsys, "train", digits_csv, *COMMON, "--epochs", "3", "--resume",
                     tmp_path / "k.ckpt", "-o", tmp_path / "b.safetensors")
    assert rc == 0, err
    a, b = load_file(str(tmp_path / "a.safetensors")), load_file(str(tmp_path / "b.safetensors"))
    assert a.keys() == b.keys()
    assert all(a[k].tobytes() == b[k].tobytes() for k in a)


def test_info_lists_the_layer_and_gradcheck_passes(capsys, tmp_path, digits_csv):
    import json
    path = tmp_path / "m.safetensors"
    rc, _, err = run(capsys, "train", digits_csv, *COMMON, "--epochs", "1", "-o", path)
    assert rc == 0, err
    rc, out, err = run(capsys, "info", path, "--json")
    assert rc == 0, err
    layer = json.loads(out)["layers"][1]
    assert layer["kind"] == "dropout" and layer["rate"] == 0.3 and layer["parameters"] == 0
    rc, out, err = run(capsys, "gradcheck", "--arch", "6tanh-dropout0.5-4tanh-3linear",
                       "--loss", "mse")
    assert rc == 0, err + out


def test_a_bad_dropout_rate_is_a_one_line_error(capsys, tmp_path, digits_csv):
    rc, out, err = run(capsys, "train", digits_csv, *COMMON, "--arch",
                       "16relu-dropout1.5-10linear", "-o", tmp_path / "m.safetensors")
    assert_one_line_error(rc, out, err, "dropout rate", "[0, 1)")


def test_gradients_through_dropout_after_conv_and_local_layers_match_finite_differences():
    # the backward pass of windowed layers under one fixed mask, against central differences
    # in float64; the masks must drop something, or the check would not reach them
    from nncli.gradcheck import check_gradients, model_gradient_fn, tensor_slices
    layers = parse_arch("3conv3tanh-dropout0.4-2local2s1tanh-dropout0.3-3linear")
    model = Model.create(layers, 12, "mse", False, seed=2, channels=2, info={"seed": 7})
    rng = np.random.default_rng(1)
    X, Y = rng.normal(size=(5, 12)), rng.normal(size=(5, 3))
    params = model.params.astype(np.float64)
    loss_fn = model_gradient_fn(model, X, Y)
    assert loss_fn(params)[0] != pytest.approx(model.evaluate(X, Y)[0], rel=1e-3)
    checks = check_gradients(loss_fn, params, tensor_slices(model))
    assert checks and all(check.ok(1e-6) for check in checks), checks
