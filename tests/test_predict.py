"""nncli.predict's writing: write_csv gives np.savetxt(fmt='%.9g')'s bytes (what it wrote before
the compiled formatter) through a text stream and through a file's byte buffer, a block of rows
at a time; write_predictions gives the same CSV whatever the blocks and buffers."""

from __future__ import annotations

import io

import numpy as np
import pytest

import nncli.predict as P
from nncli.arch import parse_arch
from nncli.data.schema import Schema
from nncli.model import Model
from nncli.preprocess import Preprocessing


def savetxt_csv(columns: list[str], values: np.ndarray) -> str:
    """The reference: the header, then np.savetxt's rows."""
    text = io.StringIO()
    text.write(",".join(columns) + "\n")
    np.savetxt(text, values, fmt="%.9g", delimiter=",")
    return text.getvalue()


def mixed_values(rows: int, cols: int, dtype, seed: int = 0) -> np.ndarray:
    """Values of many magnitudes, signs, exact ties, zeros and NaN/inf."""
    rng = np.random.default_rng(seed)
    values = rng.standard_normal((rows, cols)) * 10.0 ** rng.integers(-8, 9, (rows, cols))
    values[rng.random((rows, cols)) < 0.05] = 0.0
    values.flat[:4] = [np.nan, np.inf, -np.inf, 1000000.125]
    with np.errstate(over="ignore"):     # float16: the large ones become infinite
        return values.astype(dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16])
def test_write_csv_is_savetxt_s_text(dtype, monkeypatch):
    monkeypatch.setattr(P, "CSV_ROWS", 7)          # several blocks, the last one short
    values = mixed_values(30, 3, dtype)
    text = io.StringIO()
    P.write_csv(text, ["a", "b,c", "d"], values)
    assert text.getvalue() == savetxt_csv(["a", '"b,c"', "d"], values)


def test_a_file_gets_the_same_bytes_through_its_byte_buffer(tmp_path, monkeypatch):
    monkeypatch.setattr(P, "CSV_ROWS", 5)
    values = mixed_values(23, 4, np.float32, seed=1)
    path = tmp_path / "p.csv"
    with open(path, "w", newline="") as f:
        assert P._byte_sink(f) is f.buffer
        P.write_csv(f, list("wxyz"), values)
        P.write_csv(f, list("wxyz"), values[:2], header=False)
    assert path.read_text() == savetxt_csv(list("wxyz"), np.vstack([values, values[:2]]))


def test_a_stream_whose_bytes_are_not_ascii_gets_text(tmp_path):
    path = tmp_path / "p.csv"
    values = mixed_values(6, 2, np.float32, seed=2)
    with open(path, "w", encoding="utf-16", newline="") as f:
        assert P._byte_sink(f) is None
        P.write_csv(f, ["p", "q"], values)
    assert path.read_text(encoding="utf-16") == savetxt_csv(["p", "q"], values)


def test_labels_and_an_empty_block_keep_their_layout():
    text = io.StringIO()
    P.write_csv(text, ["class"], np.array([["a,b"], ["c"]], dtype=object))
    P.write_csv(text, ["p"], np.zeros((0, 1), np.float32), header=False)
    assert text.getvalue() == 'class\n"a,b"\nc\n'


def small_model() -> Model:
    rng = np.random.default_rng(3)
    stage = Preprocessing(rng.normal(size=6).astype(np.float32),
                          rng.uniform(0.5, 2.0, size=6).astype(np.float32),
                          Schema.numeric([f"x{i}" for i in range(6)]))
    return Model.create(parse_arch("9tanh-3linear"), 6, "sparse_cce", True, seed=4,
                        preprocessing=stage)


def test_predictions_do_not_depend_on_the_blocks_or_the_buffers():
    model = small_model()
    X = np.random.default_rng(5).normal(size=(50, 6)).astype(np.float32)
    whole = io.StringIO()
    P.write_predictions(whole, model, [X])
    blocks = io.StringIO()
    P.write_predictions(blocks, model, [X[:7], X[7:40], X[40:]])   # a longer block remakes
    assert blocks.getvalue() == whole.getvalue()
    columns, values = P.predict(model, X)
    assert whole.getvalue() == savetxt_csv(columns, values)
    assert np.array_equal(values, model.probabilities(model.outputs(
        model.preprocessing.transform(X))))
