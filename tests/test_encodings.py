"""Text that is not UTF-8 (issue 18, part 2), through the real command line: a Latin-1 file is
named as text with its line and a hint, ``--encoding`` reads it on train, eval, predict and
sweep with the categories' real text, UTF-16 is recognised by its byte order mark, and
"binary" is left to files that are not text."""

from __future__ import annotations

import codecs
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from nncli.data import text
from nncli.modelfile import load_model

try:
    from clirun import assert_one_line_error, run
except ImportError:                       # tests/ imported as a package
    from tests.clirun import assert_one_line_error, run

CITIES = ("Zürich", "Genève", "Bern", "Köln")
TRAIN = ("--arch", "4relu-2linear", "--loss", "sparse_cce", "--logits", "--epochs", "2",
         "--quiet")


def cities(n: int = 40, label: str = "t") -> str:
    """A table with a text column of accented city names, and a class label that depends on
    it (``label`` "city": the city itself is the label)."""
    rows = ["a,b,city,t"] if label == "t" else ["a,b,n,city"]
    for i in range(n):
        city = CITIES[i % 4]
        if label == "t":
            rows.append(f"{i % 7},{(i * 3) % 5},{city},{int(city in ('Zürich', 'Bern'))}")
        else:
            rows.append(f"{i % 7},{(i * 3) % 5},{i % 4},{city}")
    return "\n".join(rows) + "\n"


def write(tmp_path: Path, name: str, raw: bytes) -> str:
    path = tmp_path / name
    path.write_bytes(raw)
    return str(path)


def latin1(tmp_path: Path, name: str = "latin1.csv", **kw) -> str:
    return write(tmp_path, name, cities(**kw).encode("latin-1"))


def first_accent(raw: bytes) -> int:
    """The file offset of the first byte that is not ASCII."""
    return next(i for i, b in enumerate(raw) if b >= 0x80)


# ------------------------------------------------------------------ the message without it

def test_a_latin1_file_is_text_that_is_not_utf8_with_its_line_and_a_hint(capsys, tmp_path):
    path = latin1(tmp_path)
    at = first_accent(Path(path).read_bytes())   # 'ü' of Zürich on line 2
    rc, out, err = run(capsys, "train", path, *TRAIN, "-o", tmp_path / "m.safetensors")
    assert_one_line_error(rc, out, err)
    assert err == (f"nncli: error: {path}:2: not valid UTF-8 (byte 0xfc at byte {at}); if the "
                   f"file is Latin-1 or Windows-1252, give --encoding latin-1\n")
    assert not (tmp_path / "m.safetensors").exists()


def test_windows_1252_punctuation_makes_the_hint_cp1252(capsys, tmp_path):
    # curly quotes and the euro sign are control characters in Latin-1, text in Windows-1252
    raw = cities().replace("Bern", "“Bern” €").encode("cp1252")
    path = write(tmp_path, "win.csv", raw)
    rc, out, err = run(capsys, "train", path, *TRAIN, "-o", tmp_path / "m.safetensors")
    assert_one_line_error(rc, out, err, f"{path}:2: not valid UTF-8 (byte 0xfc",
                          "give --encoding cp1252")


def test_predicts_streaming_reader_gives_the_same_message(capsys, tmp_path):
    path = latin1(tmp_path)
    model = tmp_path / "m.safetensors"
    assert run(capsys, "train", path, *TRAIN, "--encoding", "latin-1", "-o", model)[0] == 0
    rc, out, err = run(capsys, "predict", model, path)
    assert rc == 2 and "Traceback" not in err
    assert err.endswith(f"nncli: error: {path}:2: not valid UTF-8 (byte 0xfc at byte "
                        f"{first_accent(Path(path).read_bytes())}); if the file is Latin-1 or "
                        f"Windows-1252, give --encoding latin-1\n")


# ------------------------------------------------------------------ --encoding reads it

def categories(model: Path, column: str = "city") -> list[str]:
    """The categories of a model's input column, as the model file stores them."""
    return list({c.name: c for c in load_model(model).input_schema().columns}[column].categories)


def test_train_with_encoding_keeps_the_categories_real_text(capsys, tmp_path):
    path = latin1(tmp_path)
    model = tmp_path / "m.safetensors"
    rc, out, err = run(capsys, "train", path, *TRAIN, "--encoding", "latin-1", "-o", model,
                       "--json")
    assert rc == 0, err
    assert json.loads(out)["options"]["encoding"] == "latin-1"
    assert categories(model) == ["Bern", "Genève", "Köln", "Zürich"]
    rc, out, _ = run(capsys, "info", model, "--json")
    columns = {c["name"]: c for c in json.loads(out)["columns"]}
    assert columns["city"]["categories"] == ["Bern", "Genève", "Köln", "Zürich"]
    rc, _, err = run(capsys, "info", model)
    assert rc == 0 and "Zürich" in err and "Genève" in err


def test_validation_data_is_read_with_the_same_encoding(capsys, tmp_path):
    path, val = latin1(tmp_path), latin1(tmp_path, "val.csv", n=12)
    rc, out, err = run(capsys, "train", path, *TRAIN, "--encoding", "latin-1",
                       "--validation-data", val, "-o", tmp_path / "m.safetensors", "--json")
    assert rc == 0, err
    assert json.loads(out)["final"]["val_loss"] > 0 and "never seen" not in err
    # the same validation file in UTF-8 is then not Latin-1: read with latin-1 its 'ü' is two
    # characters, a category the model never saw (a warning, not an error)
    write(tmp_path, "val.csv", cities(12).encode("utf-8"))
    rc, out, err = run(capsys, "train", path, *TRAIN, "--encoding", "latin-1",
                       "--validation-data", val, "-o", tmp_path / "m.safetensors")
    assert rc == 0 and "never seen in training" in err and "ZÃ¼rich" in err


def test_eval_and_predict_read_with_encoding(capsys, tmp_path):
    path = latin1(tmp_path, label="city")
    model = tmp_path / "m.safetensors"
    assert run(capsys, "train", path, "--arch", "8relu-4linear", "--loss", "sparse_cce",
               "--logits", "--epochs", "2", "--quiet", "--encoding", "latin-1",
               "-o", model)[0] == 0
    assert load_model(model).classes == ["Bern", "Genève", "Köln", "Zürich"]
    rc, out, err = run(capsys, "eval", model, path, "--encoding", "latin-1", "--json")
    assert rc == 0, err
    report = json.loads(out)
    assert report["rows"] == 40 and set(report["labels"]) == set(CITIES)
    rc, out, err = run(capsys, "predict", model, path, "--encoding", "latin-1")
    assert rc == 0, err
    assert out.splitlines()[0] == "Bern,Genève,Köln,Zürich" and len(out.splitlines()) == 41
    rc, out, err = run(capsys, "predict", model, path, "--encoding", "latin-1",
                       "--output", "class")
    assert rc == 0, err
    lines = out.splitlines()
    assert lines[0] == "city" and set(lines[1:]) <= set(CITIES) and len(lines) == 41
    rc, out, err = run(capsys, "eval", model, path)
    assert_one_line_error(rc, out, err, f"{path}:2: not valid UTF-8", "--encoding latin-1")


def test_predict_decodes_block_by_block(capsys, tmp_path, monkeypatch):
    # chunks of 7 bytes: characters and lines cut across chunk ends
    path = latin1(tmp_path)
    model = tmp_path / "m.safetensors"
    assert run(capsys, "train", path, *TRAIN, "--encoding", "latin-1", "-o", model)[0] == 0
    whole = run(capsys, "predict", model, path, "--encoding", "latin-1")
    utf16 = write(tmp_path, "u16.csv", cities().encode("utf-16"))
    monkeypatch.setattr(text, "_READ_BYTES", 7)
    assert run(capsys, "predict", model, path, "--encoding", "latin-1") == whole
    assert run(capsys, "predict", model, utf16) == whole


def test_a_byte_the_encoding_cannot_read_is_named_at_its_line(capsys, tmp_path):
    raw = cities().replace("Köln", "K\x81ln").encode("latin-1")   # 0x81: no cp1252 character
    path = write(tmp_path, "bad.csv", raw)
    at = raw.index(b"\x81")
    line = raw[:at].count(b"\n") + 1
    rc, out, err = run(capsys, "train", path, *TRAIN, "--encoding", "cp1252",
                       "-o", tmp_path / "m.safetensors")
    assert_one_line_error(rc, out, err)
    assert err == f"nncli: error: {path}:{line}: not valid cp1252 (byte 0x81 at byte {at})\n"


def test_npz_ignores_encoding(capsys, tmp_path):
    rng = np.random.default_rng(0)
    npz = tmp_path / "d.npz"
    np.savez(npz, X=rng.normal(size=(30, 3)).astype(np.float32), y=rng.integers(0, 2, 30))
    rc, out, err = run(capsys, "train", npz, *TRAIN, "--encoding", "utf-16",
                       "-o", tmp_path / "m.safetensors")
    assert rc == 0, err


# ------------------------------------------------------------------ byte order marks

@pytest.mark.parametrize("codec", ["utf-16", "utf-16-be", "utf-32", "utf-8-sig"])
def test_a_file_with_a_byte_order_mark_is_read_in_its_encoding(capsys, tmp_path, codec):
    raw = cities().encode(codec)
    if codec == "utf-16-be":
        raw = codecs.BOM_UTF16_BE + raw   # utf-16-be writes no mark of its own
    path = write(tmp_path, "bom.csv", raw)
    model = tmp_path / "m.safetensors"
    rc, out, err = run(capsys, "train", path, *TRAIN, "-o", model)
    assert rc == 0, err
    assert [c.name for c in load_model(model).input_schema().columns] == ["a", "b", "city"]
    assert categories(model) == ["Bern", "Genève", "Köln", "Zürich"]
    rc, out, err = run(capsys, "eval", model, path, "--json")
    assert rc == 0 and json.loads(out)["rows"] == 40, err


def test_utf16_that_breaks_off_inside_a_character(capsys, tmp_path):
    raw = cities(4).encode("utf-16") + b"7"
    path = write(tmp_path, "cut.csv", raw)
    rc, out, err = run(capsys, "train", path, *TRAIN, "-o", tmp_path / "m.safetensors")
    assert_one_line_error(rc, out, err)
    assert err == (f"nncli: error: {path}:6: not valid utf-16 (the text ends inside a "
                   f"character at byte {len(raw) - 1})\n")


# ------------------------------------------------------------------ binary stays binary

def test_a_nul_byte_is_still_binary(capsys, tmp_path):
    path = write(tmp_path, "nul.csv", b"a,b,t\n1,2,0\n3,\x004,1\n")
    rc, out, err = run(capsys, "train", path, *TRAIN, "-o", tmp_path / "m.safetensors")
    assert_one_line_error(rc, out, err)
    assert err == f"nncli: error: {path}: not a text CSV file (binary data at byte 14)\n"


def test_bytes_no_text_holds_are_binary_even_when_not_utf8(capsys, tmp_path):
    path = write(tmp_path, "bin.csv", b"a,b,t\n1,2,0\n3,\xff\x02\x9c,1\n")
    rc, out, err = run(capsys, "train", path, *TRAIN, "-o", tmp_path / "m.safetensors")
    assert_one_line_error(rc, out, err)
    assert err == f"nncli: error: {path}: not a text CSV file (binary data at byte 14)\n"


def test_a_nul_character_in_decoded_text_is_binary(capsys, tmp_path):
    raw = "a,b,t\n1,2,0\n3,\x004,1\n".encode("utf-16")
    path = write(tmp_path, "nul16.csv", raw)
    rc, out, err = run(capsys, "train", path, *TRAIN, "-o", tmp_path / "m.safetensors")
    assert_one_line_error(rc, out, err)
    assert err == (f"nncli: error: {path}:3: not a text CSV file (a NUL character in the text "
                   f"read as utf-16)\n")


# ------------------------------------------------------------------ the option itself

@pytest.mark.parametrize("command", ["train", "eval", "predict"])
@pytest.mark.parametrize("name", ["klingon", "base64"])
def test_an_unknown_encoding_is_one_line(capsys, tmp_path, command, name):
    path = latin1(tmp_path)
    model = tmp_path / "m.safetensors"
    if command != "train":
        assert run(capsys, "train", path, *TRAIN, "--encoding", "latin-1", "-o", model)[0] == 0
        argv = [command, model, path]
    else:
        argv = [command, path, *TRAIN, "-o", model]
    rc, out, err = run(capsys, *argv, "--encoding", name)
    assert_one_line_error(rc, out, err)
    assert err == (f"nncli: error: --encoding {name}: not a text encoding Python knows (e.g. "
                   f"utf-8, latin-1, cp1252, utf-16)\n")


@pytest.fixture
def no_ray(monkeypatch):
    """Ray as if not installed: a sweep that gets as far as starting it says so."""
    import nncli.sweep

    monkeypatch.setitem(sys.modules, "ray", None)
    monkeypatch.delitem(sys.modules, "nncli.sweep.tuning", raising=False)
    monkeypatch.delattr(nncli.sweep, "tuning", raising=False)


def test_sweep_reads_with_encoding(capsys, tmp_path, no_ray):
    path = latin1(tmp_path)
    argv = ["sweep", path, "--arch", "4relu-2linear,8relu-2linear", "--loss", "sparse_cce",
            "--logits", "--epochs", "1", "--validation-split", "0.25",
            "--out-dir", tmp_path / "out", "-o", tmp_path / "best.safetensors"]
    rc, out, err = run(capsys, *argv)
    assert_one_line_error(rc, out, err, f"{path}:2: not valid UTF-8", "--encoding latin-1")
    # read and checked: what stops it now is Ray's absence
    rc, out, err = run(capsys, *argv, "--encoding", "latin-1")
    assert_one_line_error(rc, out, err, "pip install 'nncli[sweep]'")
    rc, out, err = run(capsys, *argv, "--encoding", "klingon")
    assert_one_line_error(rc, out, err, "--encoding klingon: not a text encoding")
    rc, out, err = run(capsys, *argv, "--encoding", "latin-1,cp1252")
    assert_one_line_error(rc, out, err, "--encoding")
