"""Tests of nncli.data: formats, header detection, targets, and located errors."""

from __future__ import annotations

import codecs
import io
import struct
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nncli import data
from nncli.data import (Column, Dataset, ReadOptions, Schema, iter_features, load_features,
                        load_training_data, read_table)
from nncli.errors import DataError


def numeric(n: int) -> Schema:
    """A model's input columns: n numeric ones, named x0, x1, ... (a file without a header)."""
    return Schema.numeric([f"x{i}" for i in range(n)])


def write(tmp_path: Path, text: str, name: str = "d.csv") -> str:
    """A CSV file with exactly ``text`` (LF line ends unless the text has others)."""
    path = tmp_path / name
    path.write_bytes(text.encode("utf-8"))
    return str(path)


def error_of(func, *args, **kwargs) -> DataError:
    """The DataError that ``func`` raises (and nothing else)."""
    with pytest.raises(DataError) as info:
        func(*args, **kwargs)
    return info.value


def assert_well_formed(ds: Dataset) -> None:
    assert ds.X.dtype == np.float32 and ds.X.flags.c_contiguous and ds.X.ndim == 2
    assert not np.isinf(ds.X).any()  # NaN: a missing value that training fills
    if ds.Y is not None:
        assert ds.Y.dtype == np.float32 and ds.Y.flags.c_contiguous
        assert ds.Y.shape[0] == ds.X.shape[0]


# ---------------------------------------------------------------- header detection


def test_header_detected_and_last_column_is_target(tmp_path):
    path = write(tmp_path, "a,b,y\n1,2,0\n3,4,1\n")
    ds = load_training_data(path)
    assert_well_formed(ds)
    assert ds.feature_names == ["a", "b"]
    assert ds.target_names == ["y"]
    assert ds.target_columns == [2]
    assert ds.classes is None
    np.testing.assert_array_equal(ds.X, [[1, 2], [3, 4]])
    np.testing.assert_array_equal(ds.Y, [[0], [1]])
    assert ds.source == path


def test_no_header(tmp_path):
    ds = load_training_data(write(tmp_path, "1,2,0\n3.5,4,1\n"))
    assert ds.feature_names == ["x0", "x1"]
    assert ds.target_names == ["y"]
    np.testing.assert_array_equal(ds.X, [[1, 2], [3.5, 4]])


def test_header_above_string_label_column(tmp_path):
    ds = load_training_data(write(tmp_path, "f1,f2,species\n1,2,cat\n3,4,dog\n5,6,cat\n"))
    assert ds.feature_names == ["f1", "f2"]
    assert ds.classes == ["cat", "dog"]
    np.testing.assert_array_equal(ds.Y, [[0], [1], [0]])


def test_string_labels_without_header_when_first_label_repeats(tmp_path):
    ds = load_training_data(write(tmp_path, "1,2,cat\n3,4,dog\n5,6,cat\n"))
    assert ds.X.shape == (3, 2)
    assert ds.feature_names == ["x0", "x1"]
    assert ds.classes == ["cat", "dog"]


def test_all_numeric_names_with_one_text_name_is_a_header(tmp_path):
    ds = load_training_data(write(tmp_path, "0,1,2,label\n5,6,7,1\n8,9,10,0\n"))
    assert ds.feature_names == ["0", "1", "2"]
    assert ds.target_names == ["label"]
    np.testing.assert_array_equal(ds.X, [[5, 6, 7], [8, 9, 10]])


def test_all_numeric_names_with_text_labels(tmp_path):
    ds = load_training_data(write(tmp_path, "0,1,label\n5,6,a\n8,9,b\n1,1,a\n"))
    assert ds.feature_names == ["0", "1"]
    assert ds.classes == ["a", "b"]


def test_read_table_exposes_header_and_rows(tmp_path):
    table = read_table(write(tmp_path, "a,b\n\n1,2\n3,4\n"))
    assert table.kind == "csv"
    assert table.header == ["a", "b"]
    assert table.n_columns == 2 and table.n_rows == 2
    assert table.line_numbers.tolist() == [3, 4]
    assert table.column_names == ["a", "b"]


def test_csv_rows_are_kept_as_one_text_and_offset_arrays(tmp_path):
    # No Python string (or int) per row is held: the file's bytes and three int64 arrays.
    lines = [f"{i},{i % 7},{'ab'[i % 2]}" for i in range(3000)]
    table = read_table(write(tmp_path, "x,z,label\n" + "\n".join(lines) + "\n"))
    assert isinstance(table.text, bytes) and table.n_rows == 3000
    for offsets in (table.starts, table.ends, table.line_numbers):
        assert isinstance(offsets, np.ndarray) and offsets.dtype == np.int64
        assert offsets.shape == (3000,)
    assert not any(isinstance(value, list) and len(value) >= 3000
                   for value in vars(table).values())
    assert table.rows(0, 2) == lines[:2] and table.row(2999) == lines[2999]
    assert table.line_numbers[[0, -1]].tolist() == [2, 3001]
    ds = load_training_data(write(tmp_path, "x,z,label\n" + "\n".join(lines)))
    assert isinstance(ds.line_numbers, np.ndarray) and ds.classes == ["a", "b"]


def test_blank_lines_bom_and_crlf_in_the_vectorised_scan(tmp_path):
    # lines 2, 4 and 5 are blank: a no-break space, ASCII whitespace, two carriage returns
    text = "\ufeffa,b\r\n\u00a0\r\n1,2\r\n \t\x1c\r\n\r\r\n3,\u00e9\r\n"
    table = read_table(write(tmp_path, text))
    assert table.header == ["a", "b"]
    assert table.rows(0, 9) == ["1,2", "3,\u00e9"] and table.line_numbers.tolist() == [3, 6]
    err = error_of(read_table, write(tmp_path, text + "\u2003x\n"))  # a row of one column
    assert (err.line, str(err).endswith("expected 2 columns, found 1")) == (7, True)


def _reference_split(text: str) -> tuple[list[str], list[int], int] | str:
    """What the line loop this module used before the vectorised scan made of ``text``."""
    if text.startswith("\ufeff"):
        text = text[1:]
    lines, numbers, expected = [], [], -1
    for number, line in enumerate(text.split("\n"), 1):
        if line.endswith("\r"):
            line = line[:-1]
        if not line or line.isspace():
            continue
        found = line.count(",") + 1
        if expected < 0:
            expected = found
        elif found != expected:
            return f"{number}: expected {expected} columns, found {found}"
        lines.append(line)
        numbers.append(number)
    return lines, numbers, expected


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(alphabet="1a,,, \t\x0b\x1c\x1f\x85\u00a0\u2003\u00e9\ufeff\r\n\n", max_size=80),
       st.sampled_from([1, 2, 3, 5, 1 << 16]))
def test_vectorised_line_scan_agrees_with_a_loop_over_lines(text, window):
    raw = text.encode("utf-8")
    with pytest.MonkeyPatch.context() as mp:  # small windows: lines cross their edges
        mp.setattr(data.tokeniser, "_SCAN_BYTES", window)
        mp.setattr(data.tokeniser, "_COUNT_BYTES", min(window, (1 << 16) - 1))
        base = len(codecs.BOM_UTF8) if raw.startswith(codecs.BOM_UTF8) else 0
        data.tokeniser.check_text(raw, base, 0, "f")
        try:
            starts, ends, numbers, width = data.tokeniser._split_plain(raw, base, "f")
            found = ([raw[a:b].decode() for a, b in zip(starts, ends)], numbers.tolist(),
                     width)
        except DataError as exc:
            found = f"{exc.line}: {str(exc).split(': ', 2)[-1]}"
    assert found == _reference_split(text)


# ---------------------------------------------------------------- targets


@pytest.fixture
def four_columns(tmp_path) -> str:
    return write(tmp_path, "a,b,c,d\n1,2,3,4\n5,6,7,8\n")


def test_target_by_name(four_columns):
    ds = load_training_data(four_columns, targets=["b"])
    assert ds.feature_names == ["a", "c", "d"]
    assert ds.target_columns == [1]
    np.testing.assert_array_equal(ds.Y, [[2], [6]])
    np.testing.assert_array_equal(ds.X, [[1, 3, 4], [5, 7, 8]])


def test_target_by_index(four_columns):
    ds = load_training_data(four_columns, targets=["0"])
    assert ds.target_names == ["a"]
    assert ds.feature_names == ["b", "c", "d"]


def test_target_by_negative_index(four_columns):
    ds = load_training_data(four_columns, targets=["-2"])
    assert ds.target_columns == [2]
    np.testing.assert_array_equal(ds.Y, [[3], [7]])


def test_several_targets_keep_given_order(four_columns):
    ds = load_training_data(four_columns, targets=["d", "1"])
    assert ds.target_columns == [3, 1]
    assert ds.target_names == ["d", "b"]
    assert ds.feature_names == ["a", "c"]
    np.testing.assert_array_equal(ds.Y, [[4, 2], [8, 6]])


def test_header_name_wins_over_index(tmp_path):
    ds = load_training_data(write(tmp_path, "x,0,z\n1,2,3\n4,5,6\n"), targets=["0"])
    assert ds.target_columns == [1]


def test_missing_target_name_lists_columns(four_columns):
    err = error_of(load_training_data, four_columns, targets=["nope"])
    assert str(err) == f"{four_columns}: no column named 'nope'; the columns are: a, b, c, d"


def test_missing_target_name_lists_at_most_ten(tmp_path):
    header = ",".join(f"p{i}" for i in range(15))
    path = write(tmp_path, header + "\n" + ",".join(["1"] * 15) + "\n")
    message = str(error_of(load_training_data, path, targets=["label"]))
    assert "p0, p1, p2, p3, p4, p5, p6, p7, p8, p9, ... (15 in all)" in message
    assert "p10" not in message


def test_target_name_without_header(tmp_path):
    path = write(tmp_path, "1,2\n3,4\n")
    message = str(error_of(load_training_data, path, targets=["label"]))
    assert "no column named 'label'" in message and "no header" in message


def test_target_index_out_of_range(four_columns):
    message = str(error_of(load_training_data, four_columns, targets=["4"]))
    assert "index 4 is out of range" in message and "4 columns" in message
    assert "out of range" in str(error_of(load_training_data, four_columns, targets=["-5"]))


def test_target_given_twice(four_columns):
    assert "given twice" in str(error_of(load_training_data, four_columns, targets=["d", "-1"]))


def test_all_columns_targets(tmp_path):
    path = write(tmp_path, "a,b\n1,2\n")
    assert "no feature columns" in str(error_of(load_training_data, path, targets=["a", "b"]))


# ---------------------------------------------------------------- class labels


def test_labels_are_stripped_and_sorted(tmp_path):
    ds = load_training_data(write(tmp_path, "x,label\n1, zebra\n2,apple \n3,mango\n4,apple\n"))
    assert ds.classes == ["apple", "mango", "zebra"]
    np.testing.assert_array_equal(ds.Y[:, 0], [2, 0, 1, 0])


def test_labels_mapped_with_given_classes(tmp_path):
    path = write(tmp_path, "x,label\n1,b\n2,b\n3,c\n")
    ds = load_training_data(path, classes=["c", "b", "a"])
    assert ds.classes == ["c", "b", "a"]
    np.testing.assert_array_equal(ds.Y[:, 0], [1, 1, 0])


def test_numeric_looking_labels_mapped_when_they_are_class_names(tmp_path):
    # A model trained on labels "1", "2", "x" has classes ["1", "2", "x"]: "2" is class 1.
    ds = load_training_data(write(tmp_path, "f,label\n1,2\n2,1\n"), classes=["1", "2", "x"])
    np.testing.assert_array_equal(ds.Y[:, 0], [1, 0])
    assert ds.classes == ["1", "2", "x"]


def test_numeric_targets_kept_with_given_classes(tmp_path):
    ds = load_training_data(write(tmp_path, "f,label\n1,0\n2,1\n"), classes=["a", "b"])
    np.testing.assert_array_equal(ds.Y[:, 0], [0, 1])
    assert ds.classes is None


def test_unknown_class_label_with_line(tmp_path):
    path = write(tmp_path, "x,label\n1,a\n\n2,zz\n")
    err = error_of(load_training_data, path, classes=["a", "b", "c"])
    assert str(err) == f"{path}:4:2: unknown class label 'zz'; the model knows: a, b, c"
    assert (err.line, err.column) == (4, 2)


def test_text_in_one_of_several_targets(tmp_path):
    path = write(tmp_path, "x,t1,t2\n1,2,3\n4,5,oops\n")
    err = error_of(load_training_data, path, targets=["t1", "t2"])
    assert (err.line, err.column) == (3, 3)
    assert "cannot read 'oops' as a number (target column 't2')" in str(err)
    assert "single target column" in str(err)


def test_empty_target_cell(tmp_path):
    path = write(tmp_path, "x,y\n1,2\n3,\n")
    err = error_of(load_training_data, path)
    assert str(err) == (f"{path}:3:2: missing target (an empty cell in target column 'y'); "
                        f"--missing drop leaves such rows out")


def test_nan_in_numeric_target(tmp_path):
    path = write(tmp_path, "x,y\n1,2\n3,nan\n")
    assert str(error_of(load_training_data, path)).startswith(
        f"{path}:3:2: missing target ('nan' in target column 'y')")


def test_hash_in_label_is_not_a_comment(tmp_path):
    ds = load_training_data(write(tmp_path, "x,label\n1,#1\n2,#2\n3,#1\n"))
    assert ds.classes == ["#1", "#2"]


# ---------------------------------------------------------------- CSV errors


def test_ragged_row(tmp_path):
    path = write(tmp_path, "1,2,3\n4,5,6\n7,8\n")
    err = error_of(load_training_data, path)
    assert str(err) == f"{path}:3: expected 3 columns, found 2"


def test_ragged_row_line_counts_header_and_blank_lines(tmp_path):
    path = write(tmp_path, "a,b,c\n1,2,3\n\n   \n4,5,6,7\n")
    err = error_of(load_training_data, path)
    assert str(err) == f"{path}:5: expected 3 columns, found 4"


def test_text_in_a_numeric_column_of_a_model_is_located(tmp_path):
    # text in a model's numeric column is a missing value (issue 18): located under --missing
    # error, counted otherwise
    path = write(tmp_path, "p1,p2,p3,y\n1,2,3,0\n4,5,abc,1\n")
    err = error_of(load_training_data, path, schema=Schema.numeric(["p1", "p2", "p3"]),
                   options=ReadOptions(missing="error"))
    assert str(err).startswith(f"{path}:3:3: cannot read 'abc' as a number (feature column "
                               f"'p3', numeric in the model); --missing mean fills it")
    assert (err.line, err.column) == (3, 3)
    ds = load_training_data(path, schema=Schema.numeric(["p1", "p2", "p3"]))
    assert np.isnan(ds.X[1, 2]) and ds.encoded.not_numbers["p3"].count == 1


def test_empty_feature_cell_with_missing_error(tmp_path):
    path = write(tmp_path, "1,2,0\n,5,1\n")
    err = error_of(load_training_data, path, options=ReadOptions(missing="error"))
    assert str(err).startswith(f"{path}:2:1: missing value (an empty cell) in feature column 1;")


def test_nan_in_features_with_missing_error(tmp_path):
    path = write(tmp_path, "a,b,y\n1,2,0\n\n3,nan,1\n")
    err = error_of(load_training_data, path, options=ReadOptions(missing="error"))
    assert str(err).startswith(f"{path}:4:2: missing value ('nan') in feature column 'b'")


def test_inf_in_features(tmp_path):
    path = write(tmp_path, "1,2,0\n-inf,3,1\n")
    err = error_of(load_training_data, path)
    assert str(err).startswith(f"{path}:2:1: infinite value in feature column 1;")


def test_float32_overflow_in_features(tmp_path):
    path = write(tmp_path, "1,2,0\n3,1e39,1\n")
    err = error_of(load_training_data, path)
    assert str(err).startswith(
        f"{path}:2:2: value 1e39 is too large for float32 in feature column 2")


def test_bad_cell_in_a_later_chunk_after_switching_to_floats(tmp_path, monkeypatch):
    # Tiny chunks: integer rows first, then floats, then a bad cell: positions must stay right.
    monkeypatch.setattr(data.cells, "CELLS_PER_CHUNK", 4)
    rows = ["1,2,0"] * 5 + ["1.5,2,1"] * 5 + ["3,x,1"]
    path = write(tmp_path, "a,b,y\n" + "\n".join(rows) + "\n")
    err = error_of(load_training_data, path, schema=Schema.numeric(["a", "b"]),
                   options=ReadOptions(missing="error"))
    assert (err.line, err.column) == (12, 2)
    rows[-1] = "3,4,1"
    ds = load_training_data(write(tmp_path, "\n".join(rows) + "\n", "ok.csv"))
    assert ds.X.shape == (11, 2)
    np.testing.assert_array_equal(ds.X[5], [1.5, 2])


def test_empty_file(tmp_path):
    path = write(tmp_path, "")
    assert str(error_of(load_training_data, path)) == f"{path}: empty file"
    assert "empty file" in str(error_of(load_training_data, write(tmp_path, "\n \n", "e.csv")))


def test_header_only(tmp_path):
    path = write(tmp_path, "a,b,label\n")
    assert str(error_of(load_training_data, path)) == f"{path}: no data rows (only a header)"


def test_bom_and_crlf(tmp_path):
    path = tmp_path / "win.csv"
    path.write_bytes(b"\xef\xbb\xbfa,b,y\r\n1,2,0\r\n3,4,1\r\n\r\n")
    ds = load_training_data(str(path))
    assert ds.feature_names == ["a", "b"]
    np.testing.assert_array_equal(ds.X, [[1, 2], [3, 4]])


def test_crlf_ragged_line_number(tmp_path):
    path = tmp_path / "win.csv"
    path.write_bytes(b"a,b,y\r\n1,2,0\r\n\r\n3,1\r\n")
    assert error_of(load_training_data, str(path)).line == 4


def test_binary_file_with_nul(tmp_path):
    path = tmp_path / "x.csv"
    path.write_bytes(b"1,2\n\x00\x01\x02")
    err = error_of(load_training_data, str(path))
    assert str(err) == f"{path}: not a text CSV file (binary data at byte 4)"


def test_file_not_utf8(tmp_path):
    # text in another encoding (issue 18): named as such, at its line, no longer "binary"
    path = tmp_path / "x.csv"
    path.write_bytes(b"\xef\xbb\xbfa,b\n1,\xff\n")
    err = error_of(load_training_data, str(path))
    assert str(err) == (f"{path}:2: not valid UTF-8 (byte 0xff at byte 9); if the file is "
                        f"Latin-1 or Windows-1252, give --encoding latin-1")


def test_quoted_fields(tmp_path):
    text = '"a","b","label"\n1,"2","New York, NY"\n3,4,"Paris"\n5,6,"New York, NY"\n'
    ds = load_training_data(write(tmp_path, text))
    assert ds.feature_names == ["a", "b"]
    assert ds.classes == ["New York, NY", "Paris"]
    np.testing.assert_array_equal(ds.X, [[1, 2], [3, 4], [5, 6]])
    np.testing.assert_array_equal(ds.Y[:, 0], [0, 1, 0])


def test_quoted_fields_line_numbers_after_multiline_cell(tmp_path):
    text = 'a,b,label\n1,2,"two\nlines"\n\n3,"x",ok\n'
    err = error_of(load_training_data, write(tmp_path, text), schema=Schema.numeric(["a", "b"]),
                   options=ReadOptions(missing="error"))
    assert (err.line, err.column) == (5, 2)
    assert "cannot read 'x' as a number" in str(err)


def test_quoted_ragged_row(tmp_path):
    err = error_of(load_training_data, write(tmp_path, '"a","b"\n1,2\n"3"\n'))
    assert (err.line, str(err).endswith("expected 2 columns, found 1")) == (3, True)


# ---------------------------------------------------------------- files and stdin


def test_missing_file(tmp_path):
    path = str(tmp_path / "nope.csv")
    assert str(error_of(load_training_data, path)) == f"{path}: no such file"
    assert "no such file" in str(error_of(load_training_data, str(tmp_path / "nope.npz")))


def test_directory(tmp_path):
    assert "directory" in str(error_of(load_training_data, str(tmp_path)))


def test_stdin(tmp_path):
    ds = load_training_data("-", stdin=io.BytesIO(b"a,y\n1,0\n2,1\n"))
    assert ds.source == "<stdin>"
    np.testing.assert_array_equal(ds.X, [[1], [2]])


def test_stdin_error_is_located(tmp_path):
    err = error_of(load_training_data, "-", stdin=io.BytesIO(b"a,y\n1,0\nq,1\n"),
                   schema=Schema.numeric(["a"]), options=ReadOptions(missing="error"))
    assert str(err).startswith("<stdin>:3:1: cannot read 'q' as a number (feature column 'a', "
                               "numeric in the model)")


# ---------------------------------------------------------------- NPZ / NPY


def test_npz_with_1d_y(tmp_path):
    path = str(tmp_path / "d.npz")
    np.savez(path, X=np.arange(6, dtype=np.float64).reshape(3, 2), y=np.array([0, 1, 0]))
    ds = load_training_data(path)
    assert_well_formed(ds)
    assert ds.Y.shape == (3, 1)
    assert ds.feature_names == ["x0", "x1"] and ds.target_names == ["y"]
    assert ds.target_columns == [] and ds.classes is None


def test_npz_with_2d_y(tmp_path):
    path = str(tmp_path / "d.npz")
    np.savez_compressed(path, X=np.ones((2, 3), np.int64), y=np.zeros((2, 2)))
    ds = load_training_data(path)
    assert ds.Y.shape == (2, 2) and ds.target_names == ["y0", "y1"]


def test_npz_without_x(tmp_path):
    path = str(tmp_path / "d.npz")
    np.savez(path, a=np.ones(2), b=np.ones(2))
    assert str(error_of(load_training_data, path)) == f"{path}: NPZ file has no array 'X' (found: a, b)"


def test_npz_without_y(tmp_path):
    path = str(tmp_path / "d.npz")
    np.savez(path, X=np.ones((2, 2)))
    assert "no array 'y'" in str(error_of(load_training_data, path))


def test_npz_object_array(tmp_path):
    path = str(tmp_path / "d.npz")
    np.savez(path, X=np.array([[1, "a"]], dtype=object), y=np.ones(1))
    message = str(error_of(load_training_data, path))
    assert "array 'X'" in message and "pickle" in message


def test_npz_mismatched_rows(tmp_path):
    path = str(tmp_path / "d.npz")
    np.savez(path, X=np.ones((3, 2)), y=np.ones(4))
    assert "different numbers of rows (3 and 4)" in str(error_of(load_training_data, path))


def test_npz_nan(tmp_path):
    path = str(tmp_path / "d.npz")
    X = np.ones((3, 2))
    X[2, 1] = np.nan
    np.savez(path, X=X, y=np.ones(3))
    err = error_of(load_training_data, path, options=ReadOptions(missing="error"))
    assert str(err).startswith(f"{path}: NaN (a missing value) in array 'X' at row 2, column 1 "
                               f"(0-based)")
    assert err.line is None
    ds = load_training_data(path)  # --missing mean: left for training to fill
    assert np.isnan(ds.X[2, 1]) and ds.encoded.filled == {"x1": 1}


def test_npz_infinite_y(tmp_path):
    path = str(tmp_path / "d.npz")
    np.savez(path, X=np.ones((3, 2)), y=np.array([1.0, np.inf, 0.0]))
    assert "infinite value in array 'y' at row 1, column 0" in str(error_of(load_training_data, path))


def test_npz_x_not_2d_or_not_numeric(tmp_path):
    path = str(tmp_path / "d.npz")
    np.savez(path, X=np.ones(3), y=np.ones(3))
    assert "must be 2-D" in str(error_of(load_training_data, path))
    np.savez(path, X=np.array([["a", "b"]]), y=np.ones(1))
    assert "must hold numbers" in str(error_of(load_training_data, path))


def test_npz_corrupt(tmp_path):
    path = tmp_path / "d.npz"
    path.write_bytes(b"PK\x03\x04 this is not really a zip file")
    assert "cannot read the NPZ file" in str(error_of(load_training_data, str(path)))
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("X.npy", b"\x93NUMPY garbage")
    assert "array 'X'" in str(error_of(load_training_data, str(path)))


def test_npz_targets_option_refused(tmp_path):
    path = str(tmp_path / "d.npz")
    np.savez(path, X=np.ones((2, 2)), y=np.ones(2))
    assert "array 'y'" in str(error_of(load_training_data, path, targets=["0"]))


def test_npz_sample_weight_is_a_named_array(tmp_path):
    path = str(tmp_path / "d.npz")
    X = np.arange(8, dtype=np.float64).reshape(4, 2)
    X[1, 0] = np.nan
    np.savez(path, X=X, y=np.array([0, 1, 0, 1]), w=np.array([0.5, 2, 0, 3]))
    ds = load_training_data(path, options=ReadOptions(sample_weight="w"))
    assert ds.sample_weight.dtype == np.float64 and ds.sample_weight.tolist() == [0.5, 2, 0, 3]
    assert ds.X.shape == (4, 2)                  # the weights are no feature
    # --missing drop leaves a row's weight out with it
    ds = load_training_data(path, options=ReadOptions(missing="drop", sample_weight="w"))
    assert ds.dropped == [1] and ds.sample_weight.tolist() == [0.5, 0, 3]
    assert load_training_data(path).sample_weight is None


@pytest.mark.parametrize("arrays, name, needle", [
    ({}, "v", "--sample-weight v: the NPZ file has no array 'v' (found: X, y)"),
    ({}, "X", "--sample-weight X: array 'X' holds the features"),
    ({"w": np.ones((4, 1))}, "w", "array 'w' (--sample-weight) must be 1-D (a weight per row), "
                                  "found shape (4, 1)"),
    ({"w": np.ones(3)}, "w", "arrays 'X' and 'w' have different numbers of rows (4 and 3)"),
    ({"w": np.array([1, np.nan, 1, 1])}, "w", "NaN in array 'w' (--sample-weight) at row 1"),
    ({"w": np.array([1, 1, -2, 1])}, "w", "negative weight -2 in array 'w' (--sample-weight) at "
                                          "row 2 (0-based)"),
    ({"w": np.array(["a"] * 4)}, "w", "array 'w' (--sample-weight) must hold numbers"),
], ids=["absent", "features", "2-D", "rows", "nan", "negative", "text"])
def test_npz_sample_weight_errors(tmp_path, arrays, name, needle):
    path = str(tmp_path / "d.npz")
    np.savez(path, X=np.ones((4, 2)), y=np.ones(4), **arrays)
    message = str(error_of(load_training_data, path, options=ReadOptions(sample_weight=name)))
    assert message.startswith(f"{path}: ") and needle in message


def test_csv_sample_weights_line_up_with_the_rows_left(tmp_path):
    """--missing drop leaves out a row with a missing feature and one with a missing weight;
    the weights read afterwards belong to the rows that are left."""
    path = write(tmp_path, "a,w,b,t\n1,0.5,2,0\n2,1.5,NA,1\n3,,4,0\n4,2.5,5,1\n5,0,6,0\n")
    ds = load_training_data(path, options=ReadOptions(missing="drop", sample_weight="w"))
    assert ds.dropped == [3, 4] and ds.line_numbers.tolist() == [2, 5, 6]
    assert ds.sample_weight.tolist() == [0.5, 2.5, 0.0] and ds.X[:, 0].tolist() == [1, 4, 5]
    assert ds.feature_names == ["a", "b"]
    assert [(c.name, c.source, c.why) for c in ds.schema.ignored] == [("w", 1, "--sample-weight")]
    # otherwise a missing weight is an error at its cell
    err = error_of(load_training_data, path, options=ReadOptions(sample_weight="1"))
    assert (err.line, err.column) == (4, 2)
    assert "missing weight (an empty cell in --sample-weight column 'w'); --missing drop" in str(err)
    # every row without a weight or a target: nothing left
    path = write(tmp_path, "a,w,t\n1,,0\n2,NA,1\n", "gaps.csv")
    assert "every one of the 2 rows has a missing target or weight" in str(
        error_of(load_training_data, path, options=ReadOptions(missing="drop", sample_weight="w")))


def test_npy_is_features_only(tmp_path):
    path = str(tmp_path / "d.npy")
    np.save(path, np.ones((4, 3)))
    message = str(error_of(load_training_data, path))
    assert "targets are needed" in message and "NPZ" in message and "CSV" in message
    ds = load_features(path, numeric(3))
    assert_well_formed(ds)
    assert ds.Y is None and ds.X.shape == (4, 3)


def test_npy_wrong_count(tmp_path):
    path = str(tmp_path / "d.npy")
    np.save(path, np.ones((4, 3)))
    assert str(error_of(load_features, path, numeric(5))) == f"{path}: expected 5 feature columns, found 3"


def test_npy_object_array(tmp_path):
    path = str(tmp_path / "d.npy")
    np.save(path, np.array([[1, None]], dtype=object), allow_pickle=True)
    assert "pickle" in str(error_of(load_features, path, numeric(2)))


def test_npz_for_features_ignores_y(tmp_path):
    path = str(tmp_path / "d.npz")
    np.savez(path, X=np.ones((2, 3)), y=np.array([[1, None]], dtype=object))
    ds = load_features(path, numeric(3))
    assert ds.X.shape == (2, 3) and ds.Y is None


# ---------------------------------------------------------------- load_features


def test_features_by_header_names(tmp_path):
    path = write(tmp_path, "label,b,extra,a\n9,2,7,1\n9,4,7,3\n")
    ds = load_features(path, Schema.numeric(["a", "b"]))
    assert ds.Y is None
    assert ds.feature_names == ["a", "b"]
    np.testing.assert_array_equal(ds.X, [[1, 2], [3, 4]])


def test_features_by_count(tmp_path):
    ds = load_features(write(tmp_path, "1,2,3\n4,5,6\n"), Schema.numeric(["p", "q", "r"]))
    assert ds.feature_names == ["p", "q", "r"]
    np.testing.assert_array_equal(ds.X, [[1, 2, 3], [4, 5, 6]])


def test_features_drop_target_columns(tmp_path):
    ds = load_features(write(tmp_path, "1,cat,3\n4,dog,6\n1,cat,1\n"), numeric(2), target_columns=[1])
    np.testing.assert_array_equal(ds.X, [[1, 3], [4, 6], [1, 1]])


def test_features_wrong_count(tmp_path):
    path = write(tmp_path, "a,b,c,d\n1,2,3,4\n")
    err = error_of(load_features, path, Schema.numeric(["a", "z"]), target_columns=[0])
    message = str(err)
    assert message.startswith(f"{path}: expected 2 feature columns, found 4")
    assert "a, z" in message and "lacks z" in message
    assert "would need 3" in message


def test_features_wrong_count_without_header(tmp_path):
    message = str(error_of(load_features, write(tmp_path, "1,2\n"),
                            Schema.numeric(["a", "b", "c"])))
    assert "expected 3 feature columns, found 2" in message and "no header" in message


def test_features_with_numeric_model_header(tmp_path):
    # "0,1,2" cannot be told from data in general, but it spells the model's feature names.
    ds = load_features(write(tmp_path, "0,1,2\n5,6,7\n"), Schema.numeric(["0", "1", "2"]))
    np.testing.assert_array_equal(ds.X, [[5, 6, 7]])
    ds = load_features(write(tmp_path, "0,1,7\n5,6,7\n", "t.csv"), Schema.numeric(["0", "1"]),
                       target_columns=[2])
    np.testing.assert_array_equal(ds.X, [[5, 6]])


def test_features_bad_cell_is_located(tmp_path):
    path = write(tmp_path, "a,b\n1,2\n3,?\n")
    err = error_of(load_features, path, Schema.numeric(["a", "b"]))
    assert "missing value(s) in column 'b', but the model has no value" in str(err)
    ds = load_features(path, Schema([Column("a", fill=0.5), Column("b", fill=7.0)]))
    np.testing.assert_array_equal(ds.X, [[1, 2], [3, 7]])
    assert ds.encoded.filled == {"b": 1}
    # text in a numeric column is a missing value too (issue 18): filled and counted
    path = write(tmp_path, "a,b\n1,2\n3,x\n")
    ds = load_features(path, Schema([Column("a", fill=0.5), Column("b", fill=7.0)]))
    np.testing.assert_array_equal(ds.X, [[1, 2], [3, 7]])
    assert ds.encoded.filled == {} and ds.encoded.not_numbers["b"].first == [("'x'", 3)]
    err = error_of(load_features, path, Schema.numeric(["a", "b"]))
    assert "missing value(s) in column 'b', but the model has no value" in str(err)


def test_features_from_stdin(tmp_path):
    ds = load_features("-", numeric(2), stdin=io.BytesIO(b"1,2\n3,4\n"))
    assert ds.source == "<stdin>" and ds.X.shape == (2, 2)


def test_text_file_named_npz(tmp_path):
    path = write(tmp_path, "a,b\n1,2\n", "d.npz")
    assert str(error_of(load_training_data, path)) == (
        f"{path}: cannot read the NPZ file: it is not a NumPy file")


def test_npz_archive_named_npy(tmp_path):
    path = tmp_path / "d.npy"
    with open(path, "wb") as f:
        np.savez(f, X=np.ones((2, 2)))
    assert "not an NPY array" in str(error_of(load_features, str(path), numeric(2)))


def test_integer_and_float_cells_mix(tmp_path):
    ds = load_training_data(write(tmp_path, "1,2.5,0\n007,-3,1\n1e3,.5,0\n"))
    np.testing.assert_array_equal(ds.X, [[1, 2.5], [7, -3], [1000, 0.5]])


# ---------------------------------------------------------------- dropping invalid rows


def test_missing_value_error_names_the_other_policies(tmp_path):
    path = write(tmp_path, "a,b,y\n1,2,0\n3,nan,1\n")
    message = str(error_of(load_training_data, path, options=ReadOptions(missing="error")))
    assert "--missing mean" in message and "--missing drop" in message


def test_drop_invalid_rows_csv(tmp_path):
    path = write(tmp_path, "a,b,y\n1,2,0\n3,nan,1\n\n5,-inf,x\n7,8,1\n9,1e39,0\n2,2,1\n")
    ds = load_training_data(path, options=ReadOptions(missing="drop"))
    assert_well_formed(ds)
    np.testing.assert_array_equal(ds.X, [[1, 2], [7, 8], [2, 2]])
    np.testing.assert_array_equal(ds.Y, [[0], [1], [1]])  # the dropped 'x' label is not read
    assert ds.line_numbers.tolist() == [2, 6, 8]
    assert ds.dropped == [3, 5, 7]
    assert ds.dropped_message() == (f"{path}: dropped 3 rows with missing, NaN or infinite "
                                    "values (lines 3, 5, 7)")


def test_drop_invalid_rows_keeps_other_errors(tmp_path):
    path = write(tmp_path, "a,b,y\n1,2,0\n3,4\n")
    assert "expected 3 columns" in str(error_of(load_training_data, path,
                                                options=ReadOptions(missing="drop")))
    path = write(tmp_path, "a,b,y\n1,nan,0\n3,inf,1\n")
    assert "nothing is left" in str(error_of(load_training_data, path,
                                             options=ReadOptions(missing="drop")))


def test_drop_invalid_rows_npz(tmp_path):
    X = np.arange(12, dtype=np.float64).reshape(4, 3)
    X[1, 2] = np.nan
    X[3, 0] = np.inf
    np.savez(tmp_path / "d.npz", X=X, y=np.arange(4))
    ds = load_training_data(str(tmp_path / "d.npz"), options=ReadOptions(missing="drop"))
    np.testing.assert_array_equal(ds.X, X[[0, 2]])
    np.testing.assert_array_equal(ds.Y, [[0], [2]])
    assert ds.dropped == [1, 3]
    assert "0-based rows 1, 3" in ds.dropped_message()
    assert "--missing drop" in str(error_of(load_training_data, str(tmp_path / "d.npz")))


# ---------------------------------------------------------------- headers that lie


def _npy_header(shape, descr="<f4") -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": descr, "fortran_order": False,
                                               "shape": shape})
    return buf.getvalue()


@pytest.mark.parametrize("compression", [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED])
def test_npz_header_claiming_an_absurd_shape_is_refused_before_loading(tmp_path, monkeypatch,
                                                                      compression):
    path = tmp_path / "absurd.npz"
    with zipfile.ZipFile(path, "w", compression) as archive:
        archive.writestr("X.npy", _npy_header((10**12, 784)) + bytes(48))
        archive.writestr("y.npy", _npy_header((3,), "<f8") + bytes(24))

    def no_load(*args, **kwargs):
        raise AssertionError("np.load was called on a lying header")

    monkeypatch.setattr(np, "load", no_load)
    err = error_of(load_training_data, str(path))
    assert "array 'X'" in str(err) and "(1000000000000, 784)" in str(err)
    assert "holds only 48 bytes" in str(err)


def test_npz_member_claiming_an_impossible_compression_ratio(tmp_path):
    path = tmp_path / "bomb.npz"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("X.npy", _npy_header((4, 3)) + bytes(48))
    raw = bytearray(path.read_bytes())
    # Patch the declared uncompressed size (local header and central directory) to 1 TB.
    size = struct.pack("<I", 0xFFFFFFF0)
    for sig, at in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):
        i = raw.find(sig)
        raw[i + at:i + at + 4] = size
    path.write_bytes(bytes(raw))
    assert "uncompressed" in str(error_of(load_training_data, str(path)))


def test_npy_header_claiming_more_than_the_file_holds(tmp_path):
    path = tmp_path / "absurd.npy"
    path.write_bytes(_npy_header((10**9, 10**9)) + bytes(40))
    for read in (lambda: load_features(str(path), numeric(4)),
                 lambda: list(data.iter_features(str(path), numeric(4)))):
        assert "claims shape (1000000000, 1000000000)" in str(error_of(read))


# ---------------------------------------------------------------- streaming (predict)


def test_iter_features_blocks_agree_with_load_features(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.integers(-50, 50, size=(2500, 3))
    text = "a,b,c,y\n" + "".join(f"{r[0]},{r[1]}.5,{r[2]},lab\n" for r in X)
    path = write(tmp_path, text)
    whole = load_features(path, Schema.numeric(["a", "b", "c"]), [3]).X
    blocks = list(data.iter_features(path, Schema.numeric(["a", "b", "c"]), [3], block_rows=700))
    assert [len(b) for b in blocks] == [1000, 700, 700, 100]  # the first: header look-ahead
    np.testing.assert_array_equal(np.concatenate(blocks), whole)
    assert all(b.dtype == np.float32 and b.flags.c_contiguous for b in blocks)


def test_iter_features_error_in_a_later_block_names_its_line(tmp_path):
    lines = ["a,b"] + [f"{i},{i}" for i in range(3000)]
    lines[2500] = "1,inf"   # text there is a missing value since issue 18; infinity is not
    path = write(tmp_path, "\n".join(lines) + "\n")
    blocks = data.iter_features(path, numeric(2), block_rows=500)
    got = [next(blocks) for _ in range(3)]  # lines 2-2001: 1000 + 2 x 500 rows
    assert sum(len(b) for b in got) == 2000
    err = error_of(next, blocks)
    assert (err.line, err.column) == (2501, 2) and "infinite value" in str(err)
    lines[2500] = "1,2,3"
    path = write(tmp_path, "\n".join(lines) + "\n")
    err = error_of(lambda: list(data.iter_features(path, numeric(2), block_rows=500)))
    assert err.line == 2501 and "expected 2 columns, found 3" in str(err)


def test_iter_features_npy_is_memory_mapped_in_blocks(tmp_path, monkeypatch):
    X = np.arange(30, dtype=np.float64).reshape(10, 3)
    np.save(tmp_path / "x.npy", X)
    calls = []
    real_load = np.load

    def spy(*args, **kwargs):
        calls.append(kwargs.get("mmap_mode"))
        return real_load(*args, **kwargs)

    monkeypatch.setattr(np, "load", spy)
    blocks = list(data.iter_features(str(tmp_path / "x.npy"), numeric(3), block_rows=4))
    assert calls == ["r"] and [len(b) for b in blocks] == [4, 4, 2]
    np.testing.assert_array_equal(np.concatenate(blocks), X)
    X[7, 1] = np.nan
    np.save(tmp_path / "x.npy", X)
    X[7, 1] = np.inf
    np.save(tmp_path / "x.npy", X)
    assert "row 7, column 1" in str(error_of(lambda: list(data.iter_features(
        str(tmp_path / "x.npy"), numeric(3), block_rows=4))))


def _peak_streaming(path: Path, n_features: int) -> tuple[int, int]:
    import tracemalloc

    tracemalloc.start()
    try:
        rows = sum(len(b) for b in data.iter_features(str(path), numeric(n_features)))
        return tracemalloc.get_traced_memory()[1], rows
    finally:
        tracemalloc.stop()


def test_streaming_memory_is_bounded_by_the_block(tmp_path, monkeypatch):
    monkeypatch.setattr(data.cells, "CELLS_PER_CHUNK", 20000)  # blocks of 2000 rows
    monkeypatch.setattr(data.text, "_READ_BYTES", 1 << 16)
    rng = np.random.default_rng(0)
    peaks = []
    for rows in (5000, 40000):
        path = tmp_path / f"{rows}.csv"
        np.savetxt(path, rng.normal(size=(rows, 10)), delimiter=",", fmt="%.6f")
        peak, seen = _peak_streaming(path, 10)
        assert seen == rows
        peaks.append(peak)
    # Eight times the rows, the same memory: a block (2000 rows), loadtxt's buffers, a read.
    assert peaks[1] < 1.3 * peaks[0], peaks
    assert peaks[1] < path.stat().st_size / 2, peaks


def _training_load_peak(tmp_path) -> tuple[int, int, object]:
    """(peak traced bytes, file size, Dataset) of loading a generated 5000 x 100 pixel CSV."""
    import tracemalloc

    rng = np.random.default_rng(0)
    path = tmp_path / "big.csv"
    np.savetxt(path, rng.integers(0, 255, size=(5000, 100)), delimiter=",", fmt="%d")
    tracemalloc.start()
    try:
        ds = load_training_data(str(path))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak, path.stat().st_size, ds


def test_loading_for_training_takes_memory_proportional_to_the_file(tmp_path):
    peak, size, ds = _training_load_peak(tmp_path)
    assert ds.X.shape == (5000, 99)
    # The bytes, the float32 array and one chunk's strings and numbers: a few times the file.
    assert peak < 5 * size, f"peak {peak} bytes for a file of {size}"


def test_loading_holds_the_file_and_the_features_plus_one_chunk(tmp_path, monkeypatch):
    monkeypatch.setattr(data.cells, "CELLS_PER_CHUNK", 20000)  # 200 rows of 100 cells per chunk
    peak, size, ds = _training_load_peak(tmp_path)
    # A string per row (about the file again, before the float32 array) would not fit.
    assert peak < size + ds.X.nbytes + size // 2, f"peak {peak}, file {size}, X {ds.X.nbytes}"


def test_a_chunk_of_rows_is_parsed_into_an_array_of_its_final_size():
    """Issue 18: without the row count, np.loadtxt grows a buffer as it parses, which held
    1.2 times the result at its peak on NumPy 2.4 and 2.2 times on 2.5 (Python 3.12 and
    newer), enough to take loading a one-chunk file past 5 times the file."""
    import tracemalloc

    rows = np.random.default_rng(0).integers(0, 255, size=(2000, 100))
    lines = [",".join(map(str, row)) for row in rows]
    tracemalloc.start()
    try:
        block = data.cells._loadtxt(lines, ",", list(range(99)), np.int32)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert np.array_equal(block, rows[:, :99])
    assert peak < 1.05 * block.nbytes, f"peak {peak} bytes for a result of {block.nbytes}"


def test_gzipped_csv_reads_like_the_plain_file(tmp_path):
    import gzip

    text = "a,b,label\n1,2,x\n3,4,y\n5,6,x\n"
    plain = tmp_path / "d.csv"
    plain.write_text(text)
    packed = tmp_path / "d.csv.gz"
    packed.write_bytes(gzip.compress(text.encode()))
    a, b = load_training_data(str(plain)), load_training_data(str(packed))
    assert np.array_equal(a.X, b.X) and np.array_equal(a.Y, b.Y) and a.classes == b.classes
    blocks = list(iter_features(str(packed), Schema.numeric(["a", "b"]), [2]))
    assert np.array_equal(np.concatenate(blocks), a.X)


def test_a_damaged_gzip_file_is_a_data_error(tmp_path):
    bad = tmp_path / "d.csv.gz"
    bad.write_bytes(b"\x1f\x8b\x08\x00garbage")
    with pytest.raises(DataError, match="not a valid gzip file"):
        load_training_data(str(bad))
