"""Choosing and reading columns through the real command line (issue 18): a typo in a numeric
column is a missing value named in a note (not hundreds of categories), --numeric and
--categorical force a kind, --ignore and --features choose the columns, and eval/predict read
a model's columns from files with typos or other columns."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest

from nncli.modelfile import load_model
from nncli.sweep.space import options_from_args, parse_space

try:
    from clirun import assert_one_line_error, run
except ImportError:                       # tests/ imported as a package
    from tests.clirun import assert_one_line_error, run

SMALL = ["--arch", "4relu-2linear", "--loss", "sparse_cce", "--logits", "--epochs", "1", "-q"]


def table(tmp_path: Path, name: str, header: list[str], rows: list[list[str]]) -> str:
    path = tmp_path / name
    path.write_text("\n".join(",".join(r) for r in [header, *rows]) + "\n")
    return str(path)


def numbers(n: int, seed: int) -> list[str]:
    return [f"{v:.3f}" for v in np.random.default_rng(seed).normal(size=n)]


@pytest.fixture
def typo(tmp_path) -> str:
    """The issue's table: 300 rows, column c all numbers but 'abc' on line 10."""
    a, b, c = numbers(300, 1), numbers(300, 2), numbers(300, 3)
    c[8] = "abc"
    return table(tmp_path, "typo.csv", ["a", "b", "c", "t"],
                 [[a[i], b[i], c[i], str(i % 2)] for i in range(300)])


def train(capsys, data, model, *extra) -> tuple[int, str, str]:
    return run(capsys, "train", data, *SMALL, "-o", model, *extra)


def info(capsys, model) -> dict:
    rc, out, _ = run(capsys, "info", model, "--json")
    assert rc == 0
    return json.loads(out)


# ------------------------------------------------------------ a typo in a numeric column


def test_a_typo_in_a_numeric_column_is_a_missing_value_named_in_a_note(capsys, tmp_path, typo):
    model = tmp_path / "m.safetensors"
    rc, out, err = train(capsys, typo, model)
    assert rc == 0 and out == ""
    assert (f"nncli: note: {typo}: column 'c': 1 cell is not a number ('abc' at line 10); "
            f"treated as missing (filled with the training mean)\n") in err
    assert "missing value" not in err      # not counted twice as an ordinary gap
    assert load_model(model).n_inputs == 3  # not 297 one-hot categories
    assert [c["kind"] for c in info(capsys, model)["columns"]] == ["numeric"] * 3


def test_a_typo_under_missing_error_is_located(capsys, tmp_path, typo):
    rc, out, err = train(capsys, typo, tmp_path / "m.safetensors", "--missing", "error")
    assert_one_line_error(rc, out, err, f"{typo}:10:3: cannot read 'abc' as a number "
                                        "(feature column 'c', numeric: 299 of its 300 values "
                                        "are numbers); --missing mean fills it")
    assert not (tmp_path / "m.safetensors").exists()


def test_a_typo_under_missing_drop_leaves_its_row_out(capsys, tmp_path, typo):
    rc, _, err = train(capsys, typo, tmp_path / "m.safetensors", "--missing", "drop")
    assert rc == 0
    assert "('abc' at line 10); treated as missing (its row left out)" in err
    assert "299 training rows" in err or "dropped 1 row" in err


def test_several_typos_are_counted_and_the_first_shown(capsys, tmp_path):
    c = numbers(100, 4)
    for i, bad in ((3, "n/d"), (20, "12 kg"), (40, "-"), (70, "1,5")):
        c[i] = f'"{bad}"' if "," in bad else bad
    path = table(tmp_path, "d.csv", ["c", "t"], [[c[i], str(i % 2)] for i in range(100)])
    rc, _, err = train(capsys, path, tmp_path / "m.safetensors")
    assert rc == 0
    assert (f"note: {path}: column 'c': 4 cells are not numbers ('n/d' at line 5, '12 kg' at "
            f"line 22, '-' at line 42, ...); treated as missing") in err


def test_a_column_mostly_of_words_stays_categorical(capsys, tmp_path):
    # 3 numbers among 10 words: under the 90% share, a column of categories
    rows = [[w, str(i % 2)] for i, w in enumerate(["red", "blue", "1", "red", "2", "blue",
                                                   "red", "3", "blue", "red"])]
    model = tmp_path / "m.safetensors"
    assert train(capsys, table(tmp_path, "d.csv", ["colour", "t"], rows), model)[0] == 0
    assert info(capsys, model)["columns"][0]["kind"] == "categorical"


def test_numeric_forces_a_column_to_numbers(capsys, tmp_path):
    c = numbers(40, 5)
    c[::2] = ["x"] * 20                    # half of it text: categorical without --numeric
    path = table(tmp_path, "d.csv", ["c", "t"], [[c[i], str(i % 2)] for i in range(40)])
    model = tmp_path / "m.safetensors"
    rc, _, err = train(capsys, path, model, "--numeric", "c")
    assert rc == 0 and "column 'c': 20 cells are not numbers" in err
    assert load_model(model).n_inputs == 1
    rc, out, err = train(capsys, path, model, "--missing", "error", "--numeric", "0")
    assert_one_line_error(rc, out, err, f"{path}:2:1: cannot read 'x' as a number (feature "
                                        "column 'c', numeric by --numeric)")


def test_categorical_still_forces_a_column_with_a_typo(capsys, tmp_path, typo):
    model = tmp_path / "m.safetensors"
    rc, _, err = train(capsys, typo, model, "--categorical", "c")
    assert rc == 0 and "not a number" not in err and "categories in" not in err
    assert info(capsys, model)["columns"][2]["kind"] == "categorical"


def test_a_column_of_very_many_categories_gets_a_note(capsys, tmp_path):
    w = numbers(200, 6)
    w[::3] = [f"w{i}" for i in range(0, 200, 3)]   # a third text: categorical, ~200 values
    path = table(tmp_path, "d.csv", ["w", "t"], [[w[i], str(i % 2)] for i in range(200)])
    rc, _, err = train(capsys, path, tmp_path / "m.safetensors")
    assert rc == 0
    n = len(set(w))                                  # a few numbers repeat
    assert n > 100
    assert (f"nncli: note: {path}: column 'w' is categorical with {n} categories in 200 rows "
            f"({n} one-hot features); if it is an identifier or free text, leave it out with "
            f"--ignore w; --categorical w keeps it without this note\n") in err
    rc, _, err = train(capsys, path, tmp_path / "m.safetensors", "--categorical", "w")
    assert rc == 0 and "categories in" not in err


# ------------------------------------------------------------ a model's numeric columns


def test_eval_and_predict_read_a_typo_as_missing_with_one_warning(capsys, tmp_path):
    a, b = numbers(60, 7), numbers(60, 8)
    clean = table(tmp_path, "clean.csv", ["a", "b", "t"],
                  [[a[i], b[i], str(i % 2)] for i in range(60)])
    model = tmp_path / "m.safetensors"
    assert train(capsys, clean, model)[0] == 0
    fill_b = info(capsys, model)["columns"][1]["fill"]
    bad, filled = list(b), list(b)
    bad[4], bad[9], filled[4], filled[9] = "oops", "12 kg", str(fill_b), str(fill_b)
    a[2] = "x"
    typos = table(tmp_path, "typos.csv", ["a", "b", "t"],
                  [[a[i], bad[i], str(i % 2)] for i in range(60)])
    rc, out, err = run(capsys, "predict", model, typos)
    assert rc == 0
    assert err == (f"nncli: warning: {typos}: column 'a': 1 cell is not a number ('x' at "
                   f"line 4); column 'b': 2 cells are not numbers ('oops' at line 6, '12 kg' at "
                   f"line 11); treated as missing (filled with the training mean)\n")
    a[2] = str(info(capsys, model)["columns"][0]["fill"])
    reference = table(tmp_path, "filled.csv", ["a", "b", "t"],
                      [[a[i], filled[i], str(i % 2)] for i in range(60)])
    rc, expected, _ = run(capsys, "predict", model, reference)
    assert rc == 0 and out == expected
    rc, out, err = run(capsys, "eval", model, typos, "--json")
    assert rc == 0 and err.count("nncli: warning:") == 1
    assert json.loads(out)["missing"]["not_numbers"] == {"a": 1, "b": 2}


# ------------------------------------------------------------ --ignore and --features


@pytest.fixture
def with_id(tmp_path) -> str:
    a, b, w = numbers(50, 9), numbers(50, 10), numbers(50, 11)
    return table(tmp_path, "d.csv", ["id", "a", "b", "w", "t"],
                 [[str(1000 + i), a[i], b[i], w[i], str(i % 2)] for i in range(50)])


def test_ignore_leaves_columns_out_by_name_or_index(capsys, tmp_path, with_id):
    model = tmp_path / "m.safetensors"
    rc, _, err = train(capsys, with_id, model, "--ignore", "id", "--ignore", "3")
    assert rc == 0
    doc = info(capsys, model)
    assert [c["name"] for c in doc["columns"]] == ["a", "b"]
    assert doc["left_out"] == [{"name": "id", "why": "--ignore"}, {"name": "w", "why": "--ignore"}]
    rc, _, err = run(capsys, "info", model)
    assert "left out: id (--ignore), w (--ignore)" in err


def test_features_choose_columns_in_order_and_predict_finds_them_by_name(capsys, tmp_path,
                                                                          with_id):
    model = tmp_path / "m.safetensors"
    assert train(capsys, with_id, model, "--features", "w,a")[0] == 0
    doc = info(capsys, model)
    assert [c["name"] for c in doc["columns"]] == ["w", "a"]
    assert {c["name"]: c["why"] for c in doc["left_out"]} == {"id": "not in --features",
                                                              "b": "not in --features"}
    rc, expected, _ = run(capsys, "predict", model, with_id)
    assert rc == 0
    # the same rows with other columns around, in another order
    rows = list(csv.reader(io.StringIO(Path(with_id).read_text())))
    other = table(tmp_path, "other.csv", ["note", "a", "t", "w", "extra"],
                  [[f"n{r[0]}", r[1], r[4], r[3], "q"] for r in rows[1:]])
    rc, out, err = run(capsys, "predict", model, other)
    assert (rc, out, err) == (0, expected, "")
    rc, out, _ = run(capsys, "eval", model, other, "--json")
    assert rc == 0 and json.loads(out)["rows"] == 50


@pytest.mark.parametrize("extra, needles", [
    (["--ignore", "nope"], ["d.csv: --ignore nope: no column named 'nope'; the columns are: "
                            "id, a, b, w, t"]),
    (["--ignore", "9"], ["d.csv: --ignore 9: column index 9 is out of range",
                         "the columns are: id, a, b, w, t"]),
    (["--features", "a,zz"], ["d.csv: --features zz: no column named 'zz'"]),
    (["--features", "a,b", "--ignore", "b"], ["column 'b' is both in --features and in "
                                              "--ignore"]),
    (["--features", "a,t"], ["--features t: that is a target column"]),
    (["--ignore", "t"], ["--ignore t: that is a target column"]),
    (["--features", "a,1"], ["--features: column 'a' is given twice"]),
    (["--numeric", "a", "--categorical", "a"], ["column 'a' is given to both --categorical "
                                                "and --numeric"]),
    (["--ignore", "a", "--numeric", "a"], ["--numeric a: column 'a' is not a feature "
                                           "(--ignore)"]),
    (["--ignore", "id", "--ignore", "a", "--ignore", "b", "--ignore", "w"],
     ["no feature columns left"]),
], ids=["unknown-name", "index-out-of-range", "unknown-feature", "features-and-ignore",
        "target-as-feature", "ignore-target", "feature-twice", "numeric-and-categorical",
        "forced-but-ignored", "nothing-left"])
def test_column_choices_that_cannot_be_are_one_line(capsys, tmp_path, with_id, extra, needles):
    rc, out, err = train(capsys, with_id, tmp_path / "m.safetensors", *extra)
    assert_one_line_error(rc, out, err, *needles)
    assert not (tmp_path / "m.safetensors").exists()


def test_sweep_takes_ignore_and_features_the_same_for_every_trial(capsys, tmp_path, with_id):
    args = ["--arch", "4relu-2linear", "--loss", "sparse_cce", "--features", "w,a",
            "--ignore", "id", "--numeric", "w"]
    space = parse_space(options_from_args(args))
    assert space.fixed["features"] == ["w,a"] and space.fixed["ignore"] == ["id"]
    assert space.fixed["numeric"] == ["w"] and not space.varying
    # the data is read with them before Ray starts: a bad column is one line, at once
    rc, out, err = run(capsys, "sweep", with_id, "--arch", "4relu-2linear", "--loss",
                       "sparse_cce", "--logits", "--ignore", "nope", "--out-dir",
                       tmp_path / "out")
    assert_one_line_error(rc, out, err, "--ignore nope: no column named 'nope'")
    assert not (tmp_path / "out").exists()


def test_an_empty_column_suggests_ignore_which_trains(capsys, tmp_path):
    path = table(tmp_path, "d.csv", ["a", "b", "t"],
                 [[str(i), "NA", str(i % 2)] for i in range(10)])
    rc, out, err = train(capsys, path, tmp_path / "m.safetensors")
    assert_one_line_error(rc, out, err, "feature column 'b' has no value",
                          "leave it out with --ignore b")
    rc, _, _ = train(capsys, path, tmp_path / "m.safetensors", "--ignore", "b")
    assert rc == 0 and load_model(tmp_path / "m.safetensors").n_inputs == 1


# ------------------------------------------------------------ --sample-weight


@pytest.fixture
def weighted(tmp_path) -> str:
    """with_id's columns, w holding row weights (0.5 to 2)."""
    a, b = numbers(50, 9), numbers(50, 10)
    return table(tmp_path, "d.csv", ["id", "a", "b", "w", "t"],
                 [[str(1000 + i), a[i], b[i], f"{0.5 + (i % 4) / 2:g}", str(i % 2)]
                  for i in range(50)])


def test_the_sample_weight_column_is_left_out_of_the_features(capsys, tmp_path, weighted):
    model = tmp_path / "m.safetensors"
    assert train(capsys, weighted, model, "--sample-weight", "w", "--ignore", "id")[0] == 0
    doc = info(capsys, model)
    assert [c["name"] for c in doc["columns"]] == ["a", "b"]
    assert doc["left_out"] == [{"name": "id", "why": "--ignore"},
                               {"name": "w", "why": "--sample-weight"}]
    # with --features that do not list it, it is the weight column all the same
    assert train(capsys, weighted, model, "--sample-weight", "3", "--features", "b")[0] == 0
    doc = info(capsys, model)
    assert [c["name"] for c in doc["columns"]] == ["b"]
    assert {c["name"]: c["why"] for c in doc["left_out"]} == {
        "id": "not in --features", "a": "not in --features", "w": "--sample-weight"}


def _with_cell(path: str, line: int, cell: str) -> str:
    """The file with column w's cell on 1-based ``line`` replaced."""
    lines = Path(path).read_text().splitlines()
    cells = lines[line - 1].split(",")
    cells[3] = cell
    lines[line - 1] = ",".join(cells)
    out = Path(path).with_name("bad.csv")
    out.write_text("\n".join(lines) + "\n")
    return str(out)


@pytest.mark.parametrize("cell, needle", [
    ("-0.5", "bad.csv:7:4: negative weight -0.5 in --sample-weight column 'w'"),
    ("heavy", "bad.csv:7:4: cannot read 'heavy' as a number (--sample-weight column 'w')"),
    ("NaN", "bad.csv:7:4: missing weight ('NaN' in --sample-weight column 'w'); --missing drop "
            "leaves such rows out"),
    ("", "bad.csv:7:4: missing weight (an empty cell in --sample-weight column 'w')"),
    ("inf", "bad.csv:7:4: infinite value in --sample-weight column 'w'"),
    ("1e39", "bad.csv:7:4: value 1e39 is too large for float32 in --sample-weight column 'w'"),
], ids=["negative", "text", "nan", "missing", "infinite", "beyond-float32"])
def test_a_bad_weight_is_one_line_at_its_cell(capsys, tmp_path, weighted, cell, needle):
    bad = _with_cell(weighted, 7, cell)
    rc, out, err = train(capsys, bad, tmp_path / "m.safetensors", "--sample-weight", "w")
    assert_one_line_error(rc, out, err, needle)
    assert not (tmp_path / "m.safetensors").exists()


def test_a_missing_weight_under_missing_drop_leaves_its_row_out(capsys, tmp_path, weighted):
    bad = _with_cell(weighted, 7, "NA")
    rc, out, err = train(capsys, bad, tmp_path / "m.safetensors", "--sample-weight", "w",
                         "--missing", "drop", "--json")
    assert rc == 0, err
    assert json.loads(out)["rows"] == {"train": 49, "validation": 0, "dropped": 1}
    assert "dropped 1 row" in err and "(line 7)" in err


@pytest.mark.parametrize("extra, needles", [
    (["--sample-weight", "nope"], ["d.csv: --sample-weight nope: no column named 'nope'; the "
                                   "columns are: id, a, b, w, t"]),
    (["--sample-weight", "7"], ["--sample-weight 7: column index 7 is out of range"]),
    (["--sample-weight", "t"], ["--sample-weight t: that is a target column"]),
    (["--sample-weight", "w", "--features", "a,w"],
     ["--features w: that is the --sample-weight column; the row weights are not a feature"]),
    (["--sample-weight", "w", "--categorical", "w"],
     ["--categorical w: that is the --sample-weight column"]),
    (["--sample-weight", "w", "--numeric", "3"], ["--numeric 3: that is the --sample-weight "
                                                  "column"]),
    (["--sample-weight", "w", "--ignore", "w"], ["--ignore w: that is the --sample-weight "
                                                 "column; it is left out of the features "
                                                 "already"]),
    (["--sample-weight", "w", "--ignore", "id", "--ignore", "a", "--ignore", "b"],
     ["no feature columns left", "left out by --ignore and --sample-weight"]),
], ids=["unknown", "index-out-of-range", "target", "in-features", "categorical", "numeric",
        "ignored", "nothing-left"])
def test_sample_weight_columns_that_cannot_be_are_one_line(capsys, tmp_path, weighted, extra,
                                                          needles):
    rc, out, err = train(capsys, weighted, tmp_path / "m.safetensors", *extra)
    assert_one_line_error(rc, out, err, *needles)
