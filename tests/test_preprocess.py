"""The preprocessing stage (nncli.preprocess): fit and transform against plain NumPy, the
caller's array left alone, targets scaled and back, and the stage through the model file."""

from __future__ import annotations

import json

import numpy as np
import pytest
from safetensors import safe_open

from nncli.arch import parse_arch
from nncli.data.schema import Column, Schema
from nncli.errors import DataError
from nncli.model import Model
from nncli.modelfile import load_model, save_model
from nncli.preprocess import Preprocessing, column_means, feature_stats


def gappy_table(seed: int = 0) -> tuple[Schema, np.ndarray]:
    """Features: a | b | colour=blue colour=red | c, with NaN in a and c, a constant b."""
    rng = np.random.default_rng(seed)
    X = np.zeros((40, 5), np.float32)
    X[:, 0] = rng.normal(3.0, 2.0, 40)
    X[:, 1] = 7.0
    X[np.arange(40), 2 + rng.integers(0, 2, 40)] = 1.0
    X[:, 4] = rng.normal(-1.0, 0.5, 40)
    X[[1, 5, 9], 0] = np.nan
    X[[2, 5], 4] = np.nan
    schema = Schema([Column("a"), Column("b"),
                     Column("colour", "categorical", categories=["blue", "red"]), Column("c")])
    return schema, X


def numpy_reference(X: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(fill values, mean, std) of the gappy table by the formulas, in float64."""
    X = X.astype(np.float64)
    fill = np.nanmean(X, axis=0)
    filled = np.where(np.isnan(X), fill, X)
    mean, std = filled.mean(axis=0), filled.std(axis=0)
    mean[2:4], std[2:4] = 0.0, 1.0     # one-hot features are not standardised
    std[1] = 1.0                       # a constant column is left unscaled (MIN_STD)
    return fill, mean, std


def test_fit_matches_numpy_and_leaves_its_input_alone():
    schema, X = gappy_table()
    before = X.copy()
    Y = np.random.default_rng(1).normal(5.0, 3.0, size=(40, 2)).astype(np.float32)
    stage = Preprocessing.fit(schema, X, Y, normalize=True, normalize_target=True)
    fill, mean, std = numpy_reference(X)
    assert np.array_equal(X, before, equal_nan=True)
    assert [c.fill for c in schema.columns if c.kind == "numeric"] == \
        pytest.approx([fill[0], fill[1], fill[4]], rel=1e-6)
    np.testing.assert_allclose(stage.mean, mean, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(stage.std, std, rtol=1e-5)
    np.testing.assert_allclose(stage.target_mean, Y.mean(axis=0), rtol=1e-6)
    np.testing.assert_allclose(stage.target_std, Y.astype(np.float64).std(axis=0), rtol=1e-6)
    assert stage.mean.dtype == stage.std.dtype == stage.target_mean.dtype == np.float32


def test_fit_without_normalisation_keeps_fill_values_only():
    schema, X = gappy_table()
    stage = Preprocessing.fit(schema, X, None, normalize=False)
    assert not stage.mean.any() and (stage.std == 1).all() and not stage.scales_targets
    fill = stage.fill_values()
    assert np.isnan(fill[2:4]).all()   # categorical features are never filled
    np.testing.assert_allclose(fill[[0, 1, 4]], np.nanmean(X, axis=0)[[0, 1, 4]], rtol=1e-6)


def test_a_column_with_no_value_cannot_be_fitted():
    schema, X = gappy_table()
    X[:, 4] = np.nan
    with pytest.raises(DataError, match="column 'c' has no value in the training rows"):
        Preprocessing.fit(schema, X)


def test_transform_fills_and_standardises_into_a_new_array():
    schema, X = gappy_table()
    stage = Preprocessing.fit(schema, X)
    before = X.copy()
    out = stage.transform(X, "test")
    fill = stage.fill_values()
    expected = (np.where(np.isnan(X), fill, X) - stage.mean) / stage.std
    assert out is not X and np.array_equal(X, before, equal_nan=True)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, expected.astype(np.float32))
    # the in-place variant gives the same numbers, in the caller's array
    mine = X.copy()
    assert stage.transform_in_place(mine, "test") is mine
    np.testing.assert_array_equal(mine, out)
    assert stage.transform(X.astype(np.float64)).dtype == np.float64


def test_transform_into_a_buffer_of_any_input_dtype_or_layout_gives_the_same_bits():
    schema, X = gappy_table()
    stage = Preprocessing.fit(schema, X)
    want = stage.transform(X)
    buffer = np.empty((64, 5), np.float32)
    assert stage.transform(X, out=buffer[:40]).base is buffer
    assert buffer[:40].view(np.uint32).tolist() == want.view(np.uint32).tolist()
    wide = np.zeros((40, 10), np.float64)
    wide[:, ::2] = X                          # float64, not contiguous: rounded to float32 first
    assert stage.transform(wide[:, ::2], out=np.empty((40, 5), np.float32)).tolist() == \
        want.tolist()
    counts = np.round(np.nan_to_num(X)).astype(np.int16)
    np.testing.assert_array_equal(stage.transform(counts),
                                  stage.transform(counts.astype(np.float32)))


def test_a_missing_category_stays_missing_without_an_error():
    schema, X = gappy_table()
    stage = Preprocessing.fit(schema, X)
    X[0, 2] = np.nan                          # one-hot features are never filled
    out = stage.transform(X, "test")
    assert np.isnan(out[0, 2]) and np.isfinite(np.delete(out, 2, axis=1)).all()


def test_transform_refuses_a_missing_number_without_a_fill_value():
    stage = Preprocessing.identity(2, Schema.numeric(["a", "b"]))
    X = np.array([[1.0, np.nan]], np.float32)
    with pytest.raises(DataError, match="missing value.*column 'b'"):
        stage.transform(X, "new.csv")


def test_targets_scale_and_unscale():
    stage = Preprocessing.identity(3)
    Y = np.array([[1.0, 2.0], [3.0, 6.0]], np.float32)
    assert stage.scale_targets(Y) is Y and stage.unscale_outputs(Y) is Y
    stage.target_mean = np.array([2.0, 4.0], np.float32)
    stage.target_std = np.array([1.0, 2.0], np.float32)
    scaled = stage.scale_targets(Y)
    np.testing.assert_array_equal(scaled, [[-1.0, -1.0], [1.0, 1.0]])
    np.testing.assert_array_equal(stage.unscale_outputs(scaled), Y)


def test_feature_stats_are_population_statistics():
    X = np.array([[1.0, 2.0], [3.0, 2.0]], np.float32)
    mean, std = feature_stats(X)
    assert mean.tolist() == [2.0, 2.0] and std.tolist() == [1.0, 1.0]


def test_feature_stats_in_blocks_match_numpy(monkeypatch):
    import nncli.preprocess as P

    rng = np.random.default_rng(4)
    X = (rng.normal(3.0, 2.0, size=(101, 7))).astype(np.float32)
    monkeypatch.setattr(P, "STATS_BLOCK", 7 * 10)  # 10 rows a block, the last one short
    mean, std = feature_stats(X)
    assert np.allclose(mean, X.astype(np.float64).mean(axis=0), rtol=1e-6)
    assert np.allclose(std, X.astype(np.float64).std(axis=0), rtol=1e-6)
    X[[3, 50, 99], 2] = np.nan
    fill = np.full(7, 0.5, np.float32)
    filled = np.where(np.isnan(X), fill, X)
    assert np.array_equal(np.stack(feature_stats(X, fill)), np.stack(feature_stats(filled)))
    np.testing.assert_allclose(column_means(X), np.nanmean(X.astype(np.float64), axis=0),
                               rtol=1e-6)


def test_the_stage_round_trips_through_the_model_file(tmp_path):
    schema, X = gappy_table()
    Y = np.random.default_rng(2).normal(size=(40, 1)).astype(np.float32)
    stage = Preprocessing.fit(schema, X, Y, normalize=True, normalize_target=True)
    model = Model.create(parse_arch("3tanh-1linear"), 5, "mse", False, preprocessing=stage)
    path = tmp_path / "m.safetensors"
    save_model(model, path)
    loaded = load_model(path).preprocessing
    for name in ("mean", "std", "target_mean", "target_std"):
        np.testing.assert_array_equal(getattr(loaded, name), getattr(stage, name))
    assert loaded.schema == stage.schema
    np.testing.assert_array_equal(loaded.transform(X), stage.transform(X))
    with safe_open(str(path), "np") as f:
        assert set(f.keys()) >= {"normalization.mean", "normalization.std",
                                 "normalization.target_mean", "normalization.target_std"}
        meta = json.loads(f.metadata()["nncli"])
    assert [c.get("fill") for c in meta["schema"]["columns"]] == \
        [c.fill if c.kind == "numeric" else None for c in schema.columns]


def test_a_file_without_schema_or_target_scaling_loads_an_identity_filling_nothing(tmp_path):
    model = Model.create(parse_arch("2relu-1linear"), 3, "mse", False)
    path = tmp_path / "old.safetensors"
    save_model(model, path)
    with safe_open(str(path), "np") as f:
        assert json.loads(f.metadata()["nncli"])["schema"] is None
        assert "normalization.target_mean" not in f.keys()
    stage = load_model(path).preprocessing
    assert stage.schema is None and not stage.scales_targets
    assert np.isnan(stage.fill_values()).all()
    X = np.array([[1.0, np.nan, 3.0]], np.float32)
    np.testing.assert_array_equal(stage.transform(X), X)  # nothing to fill it with: NaN stays
