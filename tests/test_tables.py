"""Tables as people have them: categorical columns, missing values, delimiters, the column
schema the model stores, and targets standardised for mse (nncli.data.schema / features)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest

from nncli.cli import main
from nncli.data import ReadOptions, Schema, iter_features, load_features, load_training_data
from nncli.data.schema import category_order
from nncli.errors import DataError
from nncli.modelfile import load_model

try:
    from clirun import run
except ImportError:                       # tests/ imported as a package
    from tests.clirun import run

TITANIC = """age,sex,fare,embarked,survived
22,male,7.25,S,0
38,female,71.28,C,1
NA,female,7.92,S,1
35,female,,S,1
35,male,8.05,?,0
"""


def write(tmp_path: Path, text: str, name: str = "d.csv") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)




# ---------------------------------------------------------------- categorical columns


def test_text_columns_are_one_hot_in_sorted_order_with_a_missing_category(tmp_path):
    ds = load_training_data(write(tmp_path, TITANIC))
    assert ds.feature_names == ["age", "sex=female", "sex=male", "fare", "embarked=C",
                                "embarked=S", "embarked=<missing>"]
    kinds = [(c.name, c.kind, c.categories, c.missing_category) for c in ds.schema.columns]
    assert kinds == [("age", "numeric", [], False), ("sex", "categorical", ["female", "male"],
                                                     False),
                     ("fare", "numeric", [], False),
                     ("embarked", "categorical", ["C", "S"], True)]
    np.testing.assert_array_equal(ds.X[:, [1, 2]], [[0, 1], [1, 0], [1, 0], [1, 0], [0, 1]])
    np.testing.assert_array_equal(ds.X[:, 4:], [[0, 1, 0], [1, 0, 0], [0, 1, 0], [0, 1, 0],
                                                [0, 0, 1]])
    # numeric gaps stay NaN until training knows its rows' means
    assert np.isnan(ds.X[2, 0]) and np.isnan(ds.X[3, 3])
    assert ds.encoded.filled == {"age": 1, "fare": 1}
    assert ds.encoded.missing_category == {"embarked": 1}


def test_categorical_option_one_hots_a_numeric_code_by_name_or_index(tmp_path):
    path = write(tmp_path, "pclass,fare,y\n1,7,0\n3,8,1\n2,9,0\n10,3,1\n")
    for spec in ("pclass", "0"):
        ds = load_training_data(path, options=ReadOptions(categorical=(spec,)))
        assert ds.feature_names == ["pclass=1", "pclass=2", "pclass=3", "pclass=10", "fare"]
    with pytest.raises(DataError, match="--categorical y: that is a target column"):
        load_training_data(path, options=ReadOptions(categorical=("y",)))
    with pytest.raises(DataError, match="no column named 'nope'"):
        load_training_data(path, options=ReadOptions(categorical=("nope",)))


def test_category_order_is_numeric_for_numbers_and_textual_otherwise():
    assert category_order(["10", "2", "1"]) == ["1", "2", "10"]
    assert category_order(["b", "10", "a"]) == ["10", "a", "b"]


def test_an_identifier_column_is_left_out_with_a_note(tmp_path):
    rows = "".join(f"row{i},{i % 5},{i % 2}\n" for i in range(30))
    ds = load_training_data(write(tmp_path, "name,x,y\n" + rows))
    assert ds.feature_names == ["x"] and ds.schema.ignored[0].name == "name"
    assert any("left out column 'name'" in m for m in ds.messages())
    # forced categorical: kept
    ds = load_training_data(write(tmp_path, "name,x,y\n" + rows),
                            options=ReadOptions(categorical=("name",)))
    assert len(ds.feature_names) == 31


# ---------------------------------------------------------------- missing values


@pytest.mark.parametrize("cell", ["", "NA", "nan", "N/A", "?", "null", "NULL", " na "])
def test_every_spelling_of_missing_is_missing(tmp_path, cell):
    ds = load_training_data(write(tmp_path, f"a,b,y\n1,2,0\n{cell},4,1\n3,5,0\n"))
    assert np.isnan(ds.X[1, 0]) and ds.encoded.filled == {"a": 1}


def test_missing_policies(tmp_path):
    path = write(tmp_path, TITANIC)
    err = pytest.raises(DataError, load_training_data, path,
                        options=ReadOptions(missing="error")).value
    assert (err.line, err.column) == (4, 1) and "missing value ('NA')" in str(err)
    ds = load_training_data(path, options=ReadOptions(missing="drop"))
    assert ds.dropped == [4, 5, 6] and ds.line_numbers.tolist() == [2, 3]
    assert ds.Y.ravel().tolist() == [0, 1]
    assert not ds.schema.columns[3].missing_category  # nothing missing is left


def test_missing_target_is_an_error_unless_drop(tmp_path):
    path = write(tmp_path, "a,y\n1,0\n2,NA\n3,1\n")
    with pytest.raises(DataError, match=r":3:2: missing target \('NA'"):
        load_training_data(path)
    ds = load_training_data(path, options=ReadOptions(missing="drop"))
    assert ds.dropped == [3] and ds.X.ravel().tolist() == [1, 3]


def test_an_entirely_missing_column_is_an_error_naming_it(tmp_path):
    with pytest.raises(DataError, match="feature column 'b' has no value"):
        load_training_data(write(tmp_path, "a,b,y\n1,,0\n2,NA,1\n"))


# ---------------------------------------------------------------- delimiters


@pytest.mark.parametrize("sep", [";", "\t", "|", ","])
def test_the_delimiter_is_detected(tmp_path, sep):
    text = TITANIC.replace(",", sep)
    ds = load_training_data(write(tmp_path, text))
    assert ds.feature_names[:3] == ["age", "sex=female", "sex=male"]
    assert ds.Y.ravel().tolist() == [0, 1, 1, 1, 0]


def test_semicolon_file_with_decimal_commas_and_quotes(tmp_path):
    ds = load_training_data(write(tmp_path, 'a;b;y\n"x;1";2;0\n"z";3;1\n'))
    assert ds.feature_names == ["a=x;1", "a=z", "b"]


def test_tsv_name_means_tab_and_delimiter_forces_one(tmp_path):
    ds = load_training_data(write(tmp_path, "a\tb\ty\n1\t2\t0\n3\t4\t1\n", "d.tsv"))
    assert ds.X.shape == (2, 2)
    ds = load_training_data(write(tmp_path, "a:b:y\n1:2:0\n3:4:1\n"),
                            options=ReadOptions(delimiter=":"))
    assert ds.X.shape == (2, 2)


def test_a_single_column_file_suggests_the_delimiter_option(tmp_path):
    err = pytest.raises(DataError, load_training_data,
                        write(tmp_path, "a:b:y\n1:2:0\n3:4:1\n")).value
    assert "reads as a single column" in str(err) and "--delimiter" in str(err)


def test_streaming_reader_detects_the_delimiter(tmp_path):
    schema = Schema.numeric(["a", "b"])
    blocks = list(iter_features("-", schema, stdin=io.BytesIO(b"a;b\n1;2\n3;4\n")))
    np.testing.assert_array_equal(np.concatenate(blocks), [[1, 2], [3, 4]])


# ---------------------------------------------------------------- the schema at predict time


def test_schema_round_trips_through_json(tmp_path):
    ds = load_training_data(write(tmp_path, TITANIC))
    ds.schema.columns[0].fill = 31.5
    again = Schema.from_json(json.loads(json.dumps(ds.schema.to_json())))
    assert again == ds.schema


def test_unseen_categories_encode_as_zeros_and_are_counted(tmp_path):
    schema = load_training_data(write(tmp_path, TITANIC)).schema
    for c in schema.columns:
        c.fill = 0.0 if c.kind == "numeric" else None
    ds = load_features(write(tmp_path, "embarked,age,sex,fare\nQ,1,other,2\nQ,3,male,4\n",
                             "new.csv"), schema)
    np.testing.assert_array_equal(ds.X[:, 1:3], [[0, 0], [0, 1]])
    np.testing.assert_array_equal(ds.X[:, 4:], [[0, 0, 0], [0, 0, 0]])
    assert ds.encoded.unseen == {"embarked": {"Q": 2}, "sex": {"other": 1}}
    assert "3 values never seen in training" in ds.encoded.messages("new.csv")[0]


# ---------------------------------------------------------------- end to end


@pytest.fixture(scope="module")
def penguins(tmp_path_factory):
    """A model trained on the shipped penguins table (text columns and NA values)."""
    folder = tmp_path_factory.mktemp("penguins")
    model = folder / "p.safetensors"
    rc = main(["train", "datasets/penguins.csv", "--arch", "8relu-3linear", "--loss",
               "sparse_cce", "--logits", "--epochs", "30", "--validation-split", "0.2", "-q",
               "-o", str(model)])
    assert rc == 0
    return model


def test_penguins_train_says_what_it_filled_and_info_shows_column_kinds(capsys, penguins):
    m = load_model(penguins)
    kinds = {c.name: c.kind for c in m.input_schema().columns}
    assert kinds == {"island": "categorical", "bill_length_mm": "numeric",
                     "bill_depth_mm": "numeric", "flipper_length_mm": "numeric",
                     "body_mass_g": "numeric", "sex": "categorical", "year": "numeric"}
    bill = next(c for c in m.input_schema().columns if c.name == "bill_length_mm")
    rows = [line.split(",") for line in Path("datasets/penguins.csv").read_text().splitlines()]
    values = [float(r[1]) for r in rows[1:int(0.8 * 344) + 1] if r[1] != "NA"]
    assert bill.fill == pytest.approx(np.mean(values), rel=1e-6)  # the training rows' mean
    rc, out, err = run(capsys, "info", penguins, "--json")
    assert rc == 0
    columns = json.loads(out)["columns"]
    assert columns[0] == {"name": "island", "kind": "categorical", "source": 0,
                          "categories": ["Biscoe", "Dream", "Torgersen"],
                          "missing_category": False}
    rc, out, err = run(capsys, "info", penguins)
    assert "input columns" in err and "categorical" in err


def test_penguins_reordered_semicolon_file_predicts_the_same(capsys, penguins, tmp_path):
    lines = Path("datasets/penguins.csv").read_text().splitlines()
    rows = [line.split(",") for line in lines]
    order = [7, 5, 0, 3, 2, 1, 4, 6]  # the target first, every column elsewhere
    (tmp_path / "r.csv").write_text("".join(";".join(r[i] for i in order) + "\n" for r in rows))
    rc, same, _ = run(capsys, "predict", penguins, "datasets/penguins.csv")
    assert rc == 0
    rc, moved, err = run(capsys, "predict", penguins, tmp_path / "r.csv")
    assert rc == 0 and moved == same
    assert "missing values" in err  # the NA cells were filled, and the user told
    rc, a, _ = run(capsys, "eval", penguins, "datasets/penguins.csv", "--json")
    rc, b, _ = run(capsys, "eval", penguins, tmp_path / "r.csv", "--json")
    assert json.loads(a)["accuracy"] == json.loads(b)["accuracy"] > 0.8


def test_unseen_category_at_predict_is_one_warning_not_an_error(capsys, penguins, tmp_path):
    text = Path("datasets/penguins.csv").read_text().replace("Biscoe", "Atlantis", 3)
    (tmp_path / "u.csv").write_text(text)
    rc, out, err = run(capsys, "predict", penguins, tmp_path / "u.csv")
    assert rc == 0 and len(out.splitlines()) == 345
    warnings = [line for line in err.splitlines() if "never seen" in line]
    assert warnings == [f"nncli: warning: {tmp_path / 'u.csv'}: 3 values never seen in "
                        f"training, encoded as all zeros (island: 'Atlantis' 3x)"]


def test_mse_targets_are_standardised_and_predicted_in_their_units(capsys, tmp_path):
    # A diabetes-like target (mean 150, std 75): Adam moves an unscaled output bias by about
    # lr per step and never gets there; standardised, one linear unit finds least squares.
    rng = np.random.default_rng(0)
    X = rng.normal(size=(400, 5))
    y = 150 + X @ np.array([30.0, -20.0, 10.0, 0.0, 5.0]) + rng.normal(scale=50, size=400)
    path = tmp_path / "r.csv"
    path.write_text("a,b,c,d,e,y\n" + "".join(",".join(f"{v:.6f}" for v in (*x, t)) + "\n"
                                             for x, t in zip(X, y)))
    common = ["--arch", "1linear", "--loss", "mse", "--epochs", "300", "--lr", "0.05",
              "--batch-size", "300", "--validation-split", "0.25", "-q", "--json"]
    rc, out, err = run(capsys, "train", path, *common, "-o", tmp_path / "s.safetensors")
    assert rc == 0, err
    doc = json.loads(out)
    assert doc["loss_units"] == "standardized targets"
    assert doc["target_normalization"]["mean"][0] == pytest.approx(y[:300].mean(), rel=1e-5)
    rc, out, _ = run(capsys, "train", path, *common, "--no-normalize-target",
                     "-o", tmp_path / "u.safetensors")
    raw = json.loads(out)
    assert raw["loss_units"] == "targets"
    # least squares on the training rows, scored on the held-out ones
    A = np.c_[X[:300], np.ones(300)]
    coef = np.linalg.lstsq(A, y[:300], rcond=None)[0]
    held = y[300:] - np.c_[X[300:], np.ones(100)] @ coef
    r2_lstsq = 1 - (held ** 2).sum() / ((y[300:] - y[300:].mean()) ** 2).sum()
    assert doc["final"]["val_r2"] == pytest.approx(r2_lstsq, abs=0.02)
    assert raw["final"]["val_r2"] < r2_lstsq - 0.2
    rc, out, _ = run(capsys, "predict", tmp_path / "s.safetensors", path)
    predicted = np.loadtxt(io.StringIO(out), delimiter=",", skiprows=1)
    assert abs(predicted.mean() - y.mean()) < 10  # in the target's units
    rc, out, _ = run(capsys, "eval", tmp_path / "s.safetensors", path, "--json")
    report = json.loads(out)
    assert report["mse"] == pytest.approx(((predicted - y) ** 2).mean(), rel=1e-3)
