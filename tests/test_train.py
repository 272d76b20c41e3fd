"""The training loop: accuracy on the shipped digits, Keras semantics of its options, and
bit-identical results at any thread count."""

from pathlib import Path

import numba
import numpy as np
import pytest

from nncli.arch import parse_arch
from nncli.data import Dataset, load_training_data
from nncli.errors import UsageError
from nncli.model import Model
from nncli.train import TrainConfig, fit, prepare

DIGITS = str(Path(__file__).parent.parent / "datasets" / "digits.csv")


def _digits_run(**overrides):
    ds = load_training_data(DIGITS)
    config = TrainConfig(**{"arch": "25relu-15relu-10linear", "loss": "sparse_cce",
                            "logits": True, "epochs": 40, "validation_split": 0.2, **overrides})
    return prepare(config, Dataset.from_arrays(ds.X, ds.Y, ds.source))


def _synthetic(n=300, d=6, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d)).astype(np.float32)
    y = (X[:, 0] - X[:, 1] > 0).astype(np.float32)[:, None]
    return X, y


def test_digits_reach_high_held_out_accuracy():
    run = _digits_run()
    reports = list(fit(run))
    assert len(reports) == 40
    assert reports[-1].val_accuracy >= 0.95
    assert reports[-1].loss < reports[0].loss


def test_same_seed_gives_bit_identical_weights_at_1_and_2_threads():
    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("needs 2 threads")
    weights = []
    before = numba.get_num_threads()
    try:
        for threads in (1, 2):
            numba.set_num_threads(threads)
            run = _digits_run(epochs=3, batch_size=64)
            list(fit(run))
            weights.append(run.model.params.copy())
    finally:
        numba.set_num_threads(before)
    assert np.array_equal(weights[0], weights[1])


def test_same_seed_repeats_and_other_seed_differs():
    a, b, c = _digits_run(epochs=2), _digits_run(epochs=2), _digits_run(epochs=2, seed=1)
    for run in (a, b, c):
        list(fit(run))
    assert np.array_equal(a.model.params, b.model.params)
    assert not np.array_equal(a.model.params, c.model.params)


def test_validation_split_takes_the_last_rows_before_shuffling():
    X, y = _synthetic(100)
    config = TrainConfig(arch="4relu-1linear", loss="bce", logits=True, epochs=0,
                         validation_split=0.2, normalize=False)
    run = prepare(config, Dataset.from_arrays(X.copy(), y, "synthetic"))
    assert np.array_equal(run.X_val, X[80:]) and np.array_equal(run.X, X[:80])


def test_normalisation_uses_training_rows_only():
    X, y = _synthetic(100)
    X[:, 2] = 5.0  # constant column: left unscaled rather than divided by ~0
    config = TrainConfig(arch="4relu-1linear", loss="bce", logits=True, epochs=0,
                         validation_split=0.5)
    run = prepare(config, Dataset.from_arrays(X.copy(), y, "synthetic"))
    mean, std = X[:50].mean(axis=0), X[:50].std(axis=0)
    assert np.allclose(run.model.mean, mean, atol=1e-6)
    assert np.allclose(run.model.std[[0, 1, 3]], std[[0, 1, 3]], rtol=1e-5)
    assert run.model.std[2] == 1.0
    assert np.allclose(run.X.mean(axis=0)[[0, 1, 3]], 0, atol=1e-5)


def test_epochs_zero_keeps_the_glorot_init():
    X, y = _synthetic()
    config = TrainConfig(arch="7relu-1linear", loss="bce", logits=True, epochs=0, seed=3)
    run = prepare(config, Dataset.from_arrays(X, y, "synthetic"))
    assert list(fit(run)) == []
    fresh = Model.create(parse_arch("7relu-1linear"), X.shape[1], "bce", True, seed=3)
    assert np.array_equal(run.model.params, fresh.params)
    limit = np.sqrt(6 / (6 + 7))
    assert np.abs(run.model.kernel(0)).max() <= limit and not run.model.bias(0).any()


def test_full_batch_when_batch_size_reaches_the_rows():
    X, y = _synthetic(64)
    results = []
    for batch in (64, 1000):
        config = TrainConfig(arch="5tanh-1linear", loss="bce", logits=True, epochs=3,
                             batch_size=batch)
        run = prepare(config, Dataset.from_arrays(X.copy(), y, "synthetic"))
        list(fit(run))
        results.append(run.model.params)
    assert np.array_equal(results[0], results[1])


@pytest.mark.parametrize("optimizer, lr", [("adam", 0.01), ("sgd", 0.1)])
def test_both_optimizers_reduce_the_loss(optimizer, lr):
    X, y = _synthetic(400)
    config = TrainConfig(arch="8relu-1linear", loss="bce", logits=True, epochs=15,
                         optimizer=optimizer, lr=lr)
    run = prepare(config, Dataset.from_arrays(X, y, "synthetic"))
    reports = list(fit(run))
    assert reports[-1].loss < 0.7 * reports[0].loss
    assert reports[-1].accuracy > 0.9


def test_regression_fits_a_linear_target():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(500, 3)).astype(np.float32)
    y = (X @ np.array([1.5, -2.0, 0.5]) + 0.3).astype(np.float32)[:, None]
    config = TrainConfig(arch="1linear", loss="mse", epochs=200, batch_size=500, lr=0.05)
    run = prepare(config, Dataset.from_arrays(X, y, "synthetic"))
    reports = list(fit(run))
    assert reports[-1].loss < 1e-3 and reports[-1].accuracy is None


def test_init_from_needs_the_same_architecture():
    X, y = _synthetic()
    other = Model.create(parse_arch("3relu-1linear"), X.shape[1], "bce", True)
    config = TrainConfig(arch="4relu-1linear", loss="bce", logits=True, epochs=1)
    with pytest.raises(UsageError, match="must match"):
        prepare(config, Dataset.from_arrays(X, y, "synthetic"), init_from=other)


def test_init_from_starts_from_the_saved_weights():
    X, y = _synthetic()
    config = TrainConfig(arch="4relu-1linear", loss="bce", logits=True, epochs=0, seed=5)
    base = prepare(config, Dataset.from_arrays(X.copy(), y, "synthetic")).model
    base.params += 1.0
    run = prepare(TrainConfig(**{**config.__dict__, "seed": 9}),
                  Dataset.from_arrays(X.copy(), y, "synthetic"), init_from=base)
    assert np.array_equal(run.model.params, base.params)
    assert np.array_equal(run.model.mean, base.mean)


def test_kernels_cached_looks_at_numba_s_cache_index(monkeypatch, tmp_path):
    from nncli import kernels as K
    from nncli.train import kernels_cached

    cache_file = K.train_batches._cache._cache_file
    monkeypatch.setattr(cache_file, "_index_path", str(tmp_path / "missing.nbi"))
    assert kernels_cached() is False
    (tmp_path / "present.nbi").write_bytes(b"")
    monkeypatch.setattr(cache_file, "_index_path", str(tmp_path / "present.nbi"))
    assert kernels_cached() is True


def test_runs_in_step_are_each_run_alone_bit_for_bit():
    # a cross-validated trial's folds: side by side, epoch by epoch, each as if it ran alone;
    # the one that stops early (patience 0 and a change of 10 to count) sits out the rest
    from nncli.train import Sink, run_in_step, run_prepared

    settings = [dict(epochs=4, seed=1), dict(epochs=3, seed=2, batch_size=64),
                dict(epochs=4, early_stopping=0, min_delta=10.0)]

    class Epochs(Sink):
        def __init__(self):
            self.epochs, self.finished_with = [], None

        def epoch(self, run, report):
            self.epochs.append(report.epoch)

        def finished(self, result):
            self.finished_with = result.last["epoch"]

    alone = []
    for s in settings:
        run = _digits_run(**s)
        run_prepared(run)
        alone.append(run)
    sinks = [Epochs() for _ in settings]
    rounds: list[list[int]] = []
    results = run_in_step([_digits_run(**s) for s in settings], sinks,
                          lambda: rounds.append([len(k.epochs) for k in sinks]))
    for single, result, sink in zip(alone, results, sinks):
        assert np.array_equal(single.model.params, result.model.params)
        assert sink.epochs == list(range(1, len(single.history) + 1))
        assert sink.finished_with == len(single.history)
    stopped = len(alone[2].history)
    assert stopped < 4, "the third run was meant to stop early"
    assert rounds == [[e, min(e, 3), min(e, stopped)] for e in range(1, 5)]
