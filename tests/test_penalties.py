"""Weight penalties (--l2, --l1: Keras kernel_regularizer L2 / L1 / L1L2 on every kernel):
the kernel pair against the float64 formula, one full-batch optimizer step through
train_batches against the naive step, gradcheck of loss + penalty through the command line,
the penalty in the reported loss, val_loss and eval (computed independently), the sweep's
grid, info, and bit-identical resume."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from safetensors.numpy import load_file

from nncli import kernels as K
from nncli.losses import PROB_EPSILON
from nncli.model import Workspace
from nncli.optim import hyper_vector, settings

try:
    import naive
    from clirun import assert_one_line_error, run
    from test_conv_network import reference_net, setup_network
except ImportError:  # run as a package (python -m pytest from elsewhere)
    from tests import naive
    from tests.clirun import assert_one_line_error, run
    from tests.test_conv_network import reference_net, setup_network

# (l1, l2) of each case: each penalty alone, and both (Keras L1L2)
PENALTIES = [(0.0, 0.3), (0.2, 0.0), (0.05, 0.1)]
NETS = ["conv-local-dense", "dense-then-conv"]


def _kernels(params, model):
    return [W for _, W, _, _, _ in reference_net(params, model.arch, model.n_inputs,
                                                  model.channels)]


# ---------------------------------------------------------------- the kernel pair


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("l1, l2", PENALTIES)
@pytest.mark.parametrize("key", NETS)
def test_penalty_pair_against_the_formula(dtype, key, l1, l2):
    model, params, _, _, _ = setup_network(key, dtype, 1, seed=4)
    table = model.layer_table()
    params[int(table[0, K.W_OFF]) + 1] = 0.0     # sign(0) = 0: no L1 pull on a zero weight
    kernels = _kernels(params, model)
    naive.assert_close(K.penalty_forward(params, table, l1, l2), naive.penalty(kernels, l1, l2),
                       dtype)
    start = np.random.default_rng(1).normal(size=params.size).astype(dtype)
    grads = start.copy()
    K.penalty_backward(grads, params, table, l1, l2)
    want = start.astype(np.float64)     # the kernels' slots gain the penalty, biases do not
    for row, dW in zip(table, naive.penalty_grads(kernels, l1, l2)):
        want[row[K.W_OFF]:row[K.B_OFF]] += dW.ravel()
    naive.assert_close(grads, want, dtype)
    assert grads[int(table[0, K.W_OFF]) + 1] == start[int(table[0, K.W_OFF]) + 1]


# ---------------------------------------------------------------- one full-batch step


@pytest.mark.parametrize("optimizer, lr, momentum", [("adam", 1e-2, 0.0), ("sgd", 0.1, 0.0)])
@pytest.mark.parametrize("l1, l2", PENALTIES)
@pytest.mark.parametrize("key", NETS)
def test_one_full_batch_step_with_a_penalty(key, l1, l2, optimizer, lr, momentum):
    """train_batches on all rows at once: the loss sum gains n x the penalty of the weights
    before the step, and the step is the optimizer's on gradient + penalty gradient."""
    model, params, X, Y, code = setup_network(key, np.float32, 9, seed=2)
    n = len(X)
    before = params.astype(np.float64)
    ws = Workspace(model.layer_table(), n, np.float32)
    grads, m, v = (np.zeros_like(params) for _ in range(3))
    velocity = m if optimizer == "sgd" else None
    Xb, Yb = np.zeros_like(X), np.zeros_like(Y)
    hyper = hyper_vector(settings(optimizer, lr, momentum), l1, l2)
    loss_sum, _, step, diverged = K.train_batches(
        params, grads, m, v, velocity, Xb, Yb, ws.Z, ws.A, ws.dZ, ws.dA, ws.T, ws.table, X, Y,
        np.arange(n), 0, n, n, code, PROB_EPSILON, hyper, np.full(1, lr), 0, ws.windowed,
        None, None, ws.fused)
    assert (step, diverged) == (1, -1)

    net = reference_net(before, model.arch, model.n_inputs, model.channels)
    want_loss, layer_grads, _ = naive.forward_backward_layers(net, X, Y, code)
    kernels = [W for _, W, _, _, _ in net]
    pen_grads = naive.penalty_grads(kernels, l1, l2)
    g = np.concatenate([np.concatenate([(dW + dP).ravel(), db.ravel()])
                        for (dW, db), dP in zip(layer_grads, pen_grads)])
    want = (naive.adam_steps(before, [g], lr)[0] if optimizer == "adam"
            else naive.sgd_steps(before, [g], lr, momentum)[0])
    naive.assert_close(loss_sum, want_loss + n * naive.penalty(kernels, l1, l2), np.float32)
    naive.assert_close(params, want, np.float32)


def test_hyper_vector_takes_the_penalties_after_the_optimizer():
    assert hyper_vector(settings("sgd", 0.2, 0.5), 0.1, 0.3).tolist() == \
        [0.2, 0.0, 0.0, 0.0, 0.5, 0.1, 0.3]
    assert hyper_vector(settings("adam", None, 0.0)).tolist()[5:] == [0.0, 0.0]


# ---------------------------------------------------------------- gradcheck


ARCH = ["--arch", "3conv3s2relu-2local2tanh-4linear", "--inputs", "13", "--loss", "cce",
        "--logits"]


def test_gradcheck_checks_the_penalised_loss(capsys):
    rc, out, err = run(capsys, "gradcheck", *ARCH, "--l2", "0.3", "--l1", "0.2", "--json")
    assert rc == 0, err
    assert json.loads(out)["ok"]
    assert "--l2 0.3 --l1 0.2" in err


def test_gradcheck_fails_without_the_penalty_gradient(capsys, monkeypatch):
    """A penalty in the loss whose gradient is left out is caught (the check can fail)."""
    monkeypatch.setattr(K, "penalty_backward", lambda *args: None)
    rc, out, err = run(capsys, "gradcheck", *ARCH, "--l1", "0.2", "--json")
    assert rc == 1
    failed = {t["name"] for t in json.loads(out)["tensors"] if t["max_error"] > 1e-5}
    assert failed == {"layers.0.kernel", "layers.1.kernel", "layers.2.kernel"}


@pytest.mark.parametrize("flag", ["--l2", "--l1"])
def test_a_negative_penalty_is_one_line(capsys, flag, tmp_path, digits_csv):
    assert_one_line_error(*run(capsys, "gradcheck", *ARCH, flag, "-0.1"), flag, "0 or more")
    rc, out, err = run(capsys, "train", digits_csv, "--arch", "4relu-10linear", "--loss",
                       "sparse_cce", "--logits", flag, "nan", "-o", tmp_path / "m.safetensors")
    assert_one_line_error(rc, out, err, flag, "finite")


# ---------------------------------------------------------------- reported losses


def _forward(tensors: dict, X: np.ndarray, acts: list[str]) -> np.ndarray:
    weights = [(tensors[f"layers.{i}.kernel"], tensors[f"layers.{i}.bias"])
               for i in range(len(acts))]
    return naive.forward(weights, acts, X)[-1][1]


def _mse_plus_penalty(tensors, X, Y, acts, l1, l2) -> float:
    out = _forward(tensors, X, acts)
    kernels = [tensors[f"layers.{i}.kernel"] for i in range(len(acts))]
    return float(np.mean((out - Y) ** 2)) + naive.penalty(kernels, l1, l2)


@pytest.fixture
def table_csv(tmp_path):
    rng = np.random.default_rng(5)
    X = rng.normal(size=(40, 3))
    y = X @ np.array([0.5, -1.0, 2.0]) + 0.3
    path = tmp_path / "t.csv"
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["a", "b", "c", "y"])
        w.writerows(np.column_stack([X, y]).round(6).tolist())
    return path


def test_loss_val_loss_and_eval_include_the_penalty(capsys, tmp_path, table_csv):
    """Keras: history's loss (full batch: the loss of the weights before the step), val_loss
    and evaluate's loss (the final weights) all include the kernels' penalty."""
    data = np.loadtxt(table_csv, delimiter=",", skiprows=1)
    X, Y = data[:, :3], data[:, 3:]
    common = [table_csv, "--arch", "4tanh-1linear", "--loss", "mse", "--no-normalize",
              "--no-normalize-target", "--seed", "4", "--validation-split", "0.25", "-q"]
    rc, _, err = run(capsys, "train", *common, "--epochs", "0", "-o", tmp_path / "init.safetensors")
    assert rc == 0, err
    l1, l2 = 0.1, 0.5
    rc, out, err = run(capsys, "train", *common, "--epochs", "1", "--batch-size", "100",
                       "--optimizer", "sgd", "--lr", "0.05", "--l2", str(l2), "--l1", str(l1),
                       "--json", "-o", tmp_path / "m.safetensors")
    assert rc == 0, err
    doc = json.loads(out)
    assert (doc["options"]["l2"], doc["options"]["l1"]) == (l2, l1)
    history = doc["history"][0]
    acts = ["tanh", "linear"]
    init, final = load_file(str(tmp_path / "init.safetensors")), load_file(str(tmp_path / "m.safetensors"))
    want_loss = _mse_plus_penalty(init, X[:30], Y[:30], acts, l1, l2)
    want_val = _mse_plus_penalty(final, X[30:], Y[30:], acts, l1, l2)
    assert naive.penalty([init["layers.0.kernel"]], l1, l2) > 0.5   # the check is not idle
    assert history["loss"] == pytest.approx(want_loss, rel=1e-5)
    assert history["val_loss"] == pytest.approx(want_val, rel=1e-5)

    val_csv = tmp_path / "val.csv"
    lines = table_csv.read_text().splitlines()
    val_csv.write_text("\n".join([lines[0], *lines[31:]]) + "\n")
    rc, out, err = run(capsys, "eval", tmp_path / "m.safetensors", val_csv, "--json")
    assert rc == 0, err
    report = json.loads(out)
    assert report["loss"] == pytest.approx(want_val, rel=1e-5)
    kernels = [final[f"layers.{i}.kernel"] for i in range(2)]
    assert report["penalty"] == pytest.approx(naive.penalty(kernels, l1, l2), rel=1e-6)


def test_info_shows_the_penalties(capsys, tmp_path, digits_csv):
    base = [digits_csv, "--arch", "4relu-10linear", "--loss", "sparse_cce", "--logits",
            "--epochs", "1", "-q"]
    assert run(capsys, "train", *base, "--l2", "1e-3", "-o", tmp_path / "r.safetensors")[0] == 0
    assert run(capsys, "train", *base, "-o", tmp_path / "p.safetensors")[0] == 0
    rc, out, err = run(capsys, "info", tmp_path / "r.safetensors", "--json")
    assert json.loads(out)["regularization"] == {"l2": 1e-3, "l1": 0.0}
    rc, out, err = run(capsys, "info", tmp_path / "r.safetensors")
    assert "regularization" in err and '"l2": 0.001' in err
    rc, out, err = run(capsys, "info", tmp_path / "p.safetensors", "--json")
    assert json.loads(out)["regularization"] is None


# ---------------------------------------------------------------- sweeps


def test_sweep_varies_the_penalties():
    from nncli.sweep.space import options_from_args, parse_space

    args = ["--arch", "4relu-2linear", "--loss", "sparse_cce", "--l2", "0,1e-3",
            "--l1", "log:1e-5:1e-2"]
    space = parse_space(options_from_args(args))
    assert space.grid["l2"] == [0.0, 1e-3]
    assert "l1" in space.ranges and space.varying == ["l2", "l1"]


def test_sweep_refuses_a_negative_penalty_before_it_starts(capsys, tmp_path, digits_csv):
    rc, out, err = run(capsys, "sweep", digits_csv, "--arch", "4relu-10linear", "--loss",
                       "sparse_cce", "--logits", "--validation-split", "0.2", "--l2", "0,-1",
                       "--out-dir", tmp_path / "out")
    assert_one_line_error(rc, out, err, "--l2", "0 or more")
    assert not (tmp_path / "out").exists()


def test_penalised_training_is_bit_identical_at_1_and_2_threads(digits_csv, restore_threads):
    import numba

    from nncli.data import Dataset, load_training_data
    from nncli.train import TrainConfig, fit, prepare

    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("needs 2 threads")
    ds = load_training_data(str(digits_csv))
    config = TrainConfig(arch="25relu-10linear", loss="sparse_cce", logits=True, epochs=2,
                         batch_size=64, validation_split=0.2, l2=1e-3, l1=1e-4)
    results = []
    for threads in (1, 2):
        numba.set_num_threads(threads)
        run = prepare(config, Dataset.from_arrays(ds.X, ds.Y, ds.source))
        reports = list(fit(run))
        results.append((run.model.params.copy(), [r.metrics for r in reports]))
    assert np.array_equal(results[0][0], results[1][0])
    assert results[0][1] == results[1][1]
