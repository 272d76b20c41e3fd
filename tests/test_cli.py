"""End-to-end tests of the ``nncli`` command line.

Most tests call the real entry point in-process (``nncli.cli.main(argv) -> int``) and read
stdout/stderr with ``capsys``; a few run real subprocesses where a pipe, stdin, a signal or the
process boundary matters.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import select
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from nncli import __version__
from nncli.modelfile import load_model, read_model_file

try:
    from clirun import assert_one_line_error, run
except ImportError:                       # tests/ imported as a package
    from tests.clirun import assert_one_line_error, run

REPO = Path(__file__).resolve().parent.parent
COMMANDS = ["train", "eval", "predict", "gradcheck", "info"]
DIGITS_ARCH = ["--arch", "25relu-15relu-10linear", "--loss", "sparse_cce", "--logits"]


# ---------------------------------------------------------------- helpers






def nncli_argv() -> list[str]:
    """How to start nncli in a subprocess: the console script when installed, else -m."""
    script = Path(sys.executable).with_name("nncli")
    return [str(script)] if script.exists() else [sys.executable, "-m", "nncli"]


def sub_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("NNCLI_DEBUG", "FORCE_COLOR")}
    env.pop("_NNCLI_COMPLETE", None)
    return env


def read_csv(text: str) -> tuple[list[str], list[list[str]]]:
    rows = list(csv.reader(io.StringIO(text)))
    return rows[0], rows[1:]


def floats(rows: list[list[str]]) -> np.ndarray:
    return np.array([[float(c) for c in row] for row in rows])


def files_in(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


# ---------------------------------------------------------------- version and help


def test_version(capsys):
    rc, out, err = run(capsys, "--version")
    assert rc == 0
    assert out == f"nncli {__version__}\n"
    assert err == ""


@pytest.mark.parametrize("command", COMMANDS)
def test_help_of_every_command_shows_an_example(capsys, command):
    rc, out, err = run(capsys, command, "--help")
    assert rc == 0
    assert "Usage" in out
    assert "Example" in out
    assert err == ""


def test_root_help_lists_commands(capsys):
    rc, out, err = run(capsys, "--help")
    assert rc == 0
    for command in COMMANDS:
        assert command in out
    assert "completions" not in out  # hidden command


def test_no_arguments_shows_the_help(capsys):
    rc, out, err = run(capsys)
    assert rc == 0
    assert "Usage" in out
    assert "train" in out
    assert "Traceback" not in err


def test_root_help_shows_an_example(capsys):
    # Like every command, the root help ends with an example.
    rc, out, _ = run(capsys, "--help")
    assert rc == 0
    assert "Example" in out


def test_help_does_not_import_numba():
    code = ("import sys\n"
            "from nncli.cli import main\n"
            "import contextlib, io\n"
            "with contextlib.redirect_stdout(io.StringIO()):\n"
            "    rc = main(['--help'])\n"
            "    rc2 = main(['train', '--help'])\n"
            "print(rc, rc2, 'numba' in sys.modules)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=sub_env(), timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["0", "0", "False"]


# ---------------------------------------------------------------- train


EPOCH_LINE = re.compile(
    r"^epoch (\d+)/30  loss \d+\.\d{4}  accuracy \d\.\d{4}  val_loss \d+\.\d{4}  "
    r"val_accuracy \d\.\d{4}  \d+\.\d{3}s$")


def test_train_digits_json_and_plain_progress(capsys, tmp_path, digits_csv):
    model = tmp_path / "m.safetensors"
    rc, out, err = run(capsys, "train", digits_csv, *DIGITS_ARCH, "--epochs", "30",
                       "--validation-split", "0.2", "--json", "-o", model)
    assert rc == 0, err
    doc = json.loads(out)
    assert {"options", "final", "history"} <= doc.keys()
    assert doc["options"]["arch"] == "25relu-15relu-10linear"
    assert doc["options"]["epochs"] == 30
    assert doc["options"]["validation_split"] == 0.2
    history = doc["history"]
    assert [h["epoch"] for h in history] == list(range(1, 31))
    for h in history:
        assert {"loss", "accuracy", "val_loss", "val_accuracy", "seconds"} <= h.keys()
        assert 0.0 <= h["accuracy"] <= 1.0 and 0.0 <= h["val_accuracy"] <= 1.0
        assert h["seconds"] >= 0.0
    assert doc["final"] == history[-1]
    assert doc["final"]["val_accuracy"] >= 0.95
    assert history[-1]["loss"] < history[0]["loss"]
    assert model.is_file()
    # stderr is not a terminal: one plain line per epoch, no bar, no colour codes.
    assert "\x1b" not in err
    epoch_lines = [line for line in err.splitlines() if line.startswith("epoch ")]
    assert len(epoch_lines) == 30
    for i, line in enumerate(epoch_lines, 1):
        m = EPOCH_LINE.match(line)
        assert m, line
        assert int(m.group(1)) == i


def test_train_quiet_prints_nothing_on_stderr(capsys, tmp_path, digits_csv):
    model = tmp_path / "m.safetensors"
    rc, out, err = run(capsys, "train", digits_csv, *DIGITS_ARCH, "--epochs", "2",
                       "--quiet", "--json", "-o", model)
    assert rc == 0
    assert err == ""
    assert len(json.loads(out)["history"]) == 2
    assert model.is_file()


def test_epochs_zero_writes_a_model_that_loads_and_predicts(capsys, tmp_path, digits_csv):
    model = tmp_path / "fresh.safetensors"
    rc, _, err = run(capsys, "train", digits_csv, *DIGITS_ARCH, "--epochs", "0", "-o", model)
    assert rc == 0, err
    assert "epoch " not in err
    rc, out, _ = run(capsys, "info", model, "--json")
    assert rc == 0
    assert json.loads(out)["epochs"] == 0
    rc, out, err = run(capsys, "predict", model, digits_csv)
    assert rc == 0, err
    header, rows = read_csv(out)
    assert header == [str(i) for i in range(10)]
    assert len(rows) == 1797


# ---------------------------------------------------------------- eval


def test_eval_text_tables_go_to_stderr(capsys, digits_model, digits_csv):
    rc, out, err = run(capsys, "eval", digits_model, digits_csv)
    assert rc == 0
    assert out == ""
    assert "accuracy" in err
    assert "confusion matrix" in err
    assert "1797" in err


def test_eval_json_classifier(capsys, digits_model, digits_csv):
    rc, out, err = run(capsys, "eval", digits_model, digits_csv, "--json")
    assert rc == 0, err
    report = json.loads(out)
    assert {"loss", "accuracy", "confusion_matrix"} <= report.keys()
    cm = np.array(report["confusion_matrix"])
    assert cm.shape == (10, 10)
    assert cm.sum() == 1797
    # Rows are true classes: digits.csv has 174-183 rows of each digit.
    assert ((174 <= cm.sum(axis=1)) & (cm.sum(axis=1) <= 183)).all()
    assert report["accuracy"] == pytest.approx(np.trace(cm) / cm.sum())
    assert report["accuracy"] > 0.8
    assert report["loss"] > 0


def test_eval_json_regression(capsys, regression_model, regression_csv):
    rc, out, err = run(capsys, "eval", regression_model, regression_csv, "--json")
    assert rc == 0, err
    report = json.loads(out)
    assert {"loss", "mse", "mae", "r2"} <= report.keys()
    assert "accuracy" not in report and "confusion_matrix" not in report
    y = np.loadtxt(regression_csv, delimiter=",", skiprows=1)[:, -1]
    # the loss is in standardised units (targets / their training std), mse in the targets'
    scale = load_model(regression_model).target_std[0] ** 2
    assert report["loss_units"] == "standardized targets"
    assert report["mse"] == pytest.approx(report["loss"] * scale, rel=1e-4)
    assert 0 <= report["mae"] <= np.sqrt(report["mse"]) + 1e-9
    assert report["r2"] == pytest.approx(1 - report["mse"] / y.var(), rel=1e-4, abs=1e-6)
    assert report["r2"] > 0.5


# ---------------------------------------------------------------- predict


def test_predict_probabilities_sum_to_one(capsys, digits_model, digits_csv):
    rc, out, err = run(capsys, "predict", digits_model, digits_csv)
    assert rc == 0, err
    header, rows = read_csv(out)
    assert header == [str(i) for i in range(10)]
    assert len(rows) == 1797
    P = floats(rows)
    assert P.shape == (1797, 10)
    assert ((P >= 0) & (P <= 1)).all()
    np.testing.assert_allclose(P.sum(axis=1), 1.0, atol=1e-5)


def test_predict_logits_differ_from_proba(capsys, digits_model, digits_csv):
    _, out, _ = run(capsys, "predict", digits_model, digits_csv)
    P = floats(read_csv(out)[1])
    rc, out, err = run(capsys, "predict", digits_model, digits_csv, "--output", "logits")
    assert rc == 0, err
    header, rows = read_csv(out)
    assert header == [str(i) for i in range(10)]
    L = floats(rows)
    assert L.shape == P.shape
    assert not np.allclose(L, P)
    soft = np.exp(L - L.max(axis=1, keepdims=True))
    np.testing.assert_allclose(soft / soft.sum(axis=1, keepdims=True), P, atol=1e-5)


def test_predict_class_string_labels(capsys, breast_cancer_model, breast_cancer_csv):
    rc, out, err = run(capsys, "predict", breast_cancer_model, breast_cancer_csv, "--output",
                       "class")
    assert rc == 0, err
    header, rows = read_csv(out)
    assert header == ["diagnosis"]
    labels = [r[0] for r in rows]
    assert len(labels) == 569
    assert set(labels) == {"malignant", "benign"}
    truth = [r[-1] for r in read_csv(breast_cancer_csv.read_text())[1]]
    assert np.mean([a == b for a, b in zip(labels, truth)]) > 0.85
    # The single probability column is the second class (sorted: benign, malignant).
    _, out, _ = run(capsys, "predict", breast_cancer_model, breast_cancer_csv)
    header, rows = read_csv(out)
    assert header == ["malignant"]
    p = floats(rows)[:, 0]
    assert [("malignant" if v > 0.5 else "benign") for v in p] == labels


def test_predict_to_file_writes_nothing_on_stdout(capsys, tmp_path, digits_model, digits_csv):
    _, expected, _ = run(capsys, "predict", digits_model, digits_csv)
    target = tmp_path / "pred.csv"
    rc, out, err = run(capsys, "predict", digits_model, digits_csv, "-o", target)
    assert rc == 0, err
    assert out == ""
    assert target.read_text() == expected
    assert files_in(tmp_path) == ["pred.csv"]


def test_shell_pipeline_train_and_predict_from_stdin(tmp_path, digits_csv):
    nncli = " ".join(shlex.quote(a) for a in nncli_argv())
    data = shlex.quote(str(digits_csv))
    script = (f"set -e\n"
              f"cat {data} | {nncli} train - --arch 25relu-10linear --loss sparse_cce --logits "
              f"--epochs 3 -o m.safetensors\n"
              f"cat {data} | {nncli} predict m.safetensors - | head -3\n")
    proc = subprocess.run(["bash", "-c", script], cwd=tmp_path, capture_output=True, text=True,
                          env=sub_env(), timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) == 3
    assert lines[0] == ",".join(str(i) for i in range(10))
    P = floats([line.split(",") for line in lines[1:]])
    np.testing.assert_allclose(P.sum(axis=1), 1.0, atol=1e-5)
    assert "<stdin>" in proc.stderr or "wrote m.safetensors" in proc.stderr
    assert (tmp_path / "m.safetensors").is_file()


def test_predict_into_a_closed_pipe_exits_0_quietly(digits_model, digits_csv):
    # 1797 rows x 10 probabilities is far more than a pipe buffer: the writer meets EPIPE.
    proc = subprocess.Popen([*nncli_argv(), "predict", str(digits_model), str(digits_csv)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=sub_env())
    first = proc.stdout.readline()
    proc.stdout.close()
    err = proc.stderr.read().decode()
    rc = proc.wait(timeout=60)
    assert first.startswith(b"0,1,2")
    assert rc == 0, err
    assert err == ""


# ---------------------------------------------------------------- gradcheck


@pytest.mark.parametrize("arch, loss_args", [
    ("25relu-15relu-10linear", ["--loss", "sparse_cce", "--logits"]),
    ("25sigmoid-15sigmoid-1sigmoid", ["--loss", "bce"]),
    ("8relu-3linear", ["--loss", "mse"]),
    ("16tanh-4sigmoid", ["--loss", "bce"]),
])
def test_gradcheck_passes(capsys, arch, loss_args):
    rc, out, err = run(capsys, "gradcheck", "--arch", arch, *loss_args)
    assert rc == 0, err
    assert out == ""
    assert "gradcheck passed" in err


def test_gradcheck_fails_with_impossible_tolerance(capsys):
    rc, out, err = run(capsys, "gradcheck", "--arch", "8relu-3linear", "--loss", "mse", "--tol",
                       "1e-30", "--json")
    assert rc == 1
    assert "FAILED" in err
    doc = json.loads(out)
    assert doc["ok"] is False
    assert [t["name"] for t in doc["tensors"]] == ["layers.0.kernel", "layers.0.bias",
                                                   "layers.1.kernel", "layers.1.bias"]
    assert any(t["max_error"] > 1e-30 for t in doc["tensors"])


def test_gradcheck_json_passes(capsys):
    rc, out, _ = run(capsys, "gradcheck", "--arch", "8relu-3linear", "--loss", "mse", "--json")
    assert rc == 0
    doc = json.loads(out)
    assert doc["ok"] is True
    assert all(t["max_error"] <= doc["tol"] for t in doc["tensors"])
    assert [t["size"] for t in doc["tensors"]] == [5 * 8, 8, 8 * 3, 3]


def test_gradcheck_a_trained_model(capsys, digits_model, digits_csv):
    rc, out, err = run(capsys, "gradcheck", digits_model, digits_csv)
    assert rc == 0, err
    assert "gradcheck passed" in err


# ---------------------------------------------------------------- info


def test_info_json(capsys, digits_model):
    rc, out, err = run(capsys, "info", digits_model, "--json")
    assert rc == 0, err
    doc = json.loads(out)
    assert doc["arch"] == "25relu-15relu-10linear"
    sizes = [64, 25, 15, 10]
    assert doc["parameters"] == sum(a * b + b for a, b in zip(sizes, sizes[1:]))
    assert [l["parameters"] for l in doc["layers"]] == [64 * 25 + 25, 25 * 15 + 15, 15 * 10 + 10]
    assert doc["loss"] == "sparse_cce"
    assert doc["logits"] is True
    assert doc["classes"] is None  # the digit labels are numbers
    assert doc["inputs"] == 64 and doc["outputs"] == 10
    assert doc["epochs"] == 5


def test_info_json_string_classes(capsys, breast_cancer_model):
    rc, out, _ = run(capsys, "info", breast_cancer_model, "--json")
    assert rc == 0
    doc = json.loads(out)
    assert doc["arch"] == "8relu-1linear"
    assert doc["parameters"] == 30 * 8 + 8 + 8 * 1 + 1
    assert doc["loss"] == "bce"
    assert doc["classes"] == ["benign", "malignant"]
    assert doc["targets"] == ["diagnosis"]


def test_info_reports_the_nncli_version_that_wrote_the_model(capsys, digits_model):
    # The model file's metadata holds nncli_version; info should show it.
    rc, out, _ = run(capsys, "info", digits_model, "--json")
    assert rc == 0
    assert json.loads(out)["nncli_version"] == __version__


def test_info_text(capsys, breast_cancer_model):
    rc, out, err = run(capsys, "info", breast_cancer_model)
    assert rc == 0
    assert out == ""
    assert "8relu-1linear" in err
    assert "257" in err
    assert "malignant" in err


# ---------------------------------------------------------------- bad input


def _first_line_with_label_at_least(path: Path, k: int) -> int:
    lines = path.read_text().splitlines()
    for number, line in enumerate(lines[1:], 2):
        if int(line.rsplit(",", 1)[1]) >= k:
            return number
    raise AssertionError("no such row")


def _rewrite_metadata(source: Path, target: Path, change) -> None:
    from safetensors import safe_open

    tensors = load_file(str(source))
    with safe_open(str(source), "np") as f:
        metadata = dict(f.metadata())
    metadata["nncli"] = json.dumps(change(json.loads(metadata["nncli"])))
    save_file(tensors, str(target), metadata=metadata)


def _absurd_npz(path: Path) -> None:
    """An NPZ whose X header claims (10**12, 784) float32 but holds 12 values."""
    import zipfile

    member = io.BytesIO()
    np.lib.format.write_array_header_1_0(member, {"descr": "<f4", "fortran_order": False,
                                                  "shape": (10**12, 784)})
    member.write(np.zeros(12, np.float32).tobytes())
    y = io.BytesIO()
    np.save(y, np.zeros(3))
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("X.npy", member.getvalue())
        archive.writestr("y.npy", y.getvalue())


@pytest.fixture
def bad(tmp_path, digits_model, digits_csv):
    """Bad input files and an empty output folder."""
    (tmp_path / "out").mkdir()
    (tmp_path / "ragged.csv").write_text("a,b,y\n1,2,0\n3,4\n5,6,1\n")
    (tmp_path / "nonnum.csv").write_text("a,b,y\n1,2,0\n3,4,1\n5,x,1\n")
    (tmp_path / "nan.csv").write_text("a,b,y\n1,2,0\n3,nan,1\n5,6,1\n")
    (tmp_path / "narrow.csv").write_text("a,b,c\n1,2,3\n4,5,6\n")
    (tmp_path / "empty.csv").write_text("")
    (tmp_path / "header.csv").write_text("a,b,y\n")
    (tmp_path / "binary.csv").write_bytes(b"a,b,y\n1,2,0\n\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
    (tmp_path / "labels.csv").write_text("a,b,kind\n1,2,ant\n3,4,bee\n5,6,cat\n7,8,ant\n")
    # The digits without header (64 features, the label), two extra columns.
    rows = digits_csv.read_text().splitlines()[1:]
    (tmp_path / "wide.csv").write_text("".join(f"{r},0,0\n" for r in rows[:20]))
    np.savez(tmp_path / "nox.npz", features=np.zeros((3, 2)), y=np.zeros(3))
    _absurd_npz(tmp_path / "absurd.npz")
    data = digits_model.read_bytes()
    (tmp_path / "extra.safetensors").write_bytes(data + b"appended")
    _rewrite_metadata(digits_model, tmp_path / "newer.safetensors",
                      lambda meta: {**meta, "format_version": 99})
    _rewrite_metadata(digits_model, tmp_path / "mismatch.safetensors",
                      lambda meta: {**meta, "arch": "20relu-15relu-10linear"})
    (tmp_path / "truncated.safetensors").write_bytes(data[:len(data) // 2])
    save_file({"a": np.zeros(3, np.float32)}, str(tmp_path / "foreign.safetensors"))
    (tmp_path / "random.safetensors").write_bytes(np.random.default_rng(0).bytes(4096))
    # A header whose data_offsets is a number instead of [start, end].
    header = json.dumps({"a": {"dtype": "F32", "shape": [1], "data_offsets": 4}}).encode()
    header += b" " * (-len(header) % 8)
    (tmp_path / "crafted.safetensors").write_bytes(
        len(header).to_bytes(8, "little") + header + bytes(4))
    return tmp_path


SMALL = ["--arch", "4relu-1linear", "--loss", "mse"]

# id -> (argv with {tmp}, {digits}, {model} placeholders, needles, trains?)
BAD_INPUT = {
    "ragged-row": (["train", "{tmp}/ragged.csv", *SMALL], ["ragged.csv:3:"], True),
    # text in a numeric column is a missing value (issue 18): located under --missing error
    "non-numeric-cell": (["train", "{tmp}/narrow.csv", *SMALL, "--missing", "error",
                          "--validation-data", "{tmp}/nonnum.csv"],
                         ["nonnum.csv:4:2:", "'x'", "numeric"], True),
    "nan-feature": (["train", "{tmp}/nan.csv", *SMALL, "--missing", "error"],
                    ["nan.csv:3:2:", "missing value ('nan')"], True),
    "predict-column-count": (["predict", "{model}", "{tmp}/narrow.csv"],
                             ["narrow.csv", "64"], False),
    "label-out-of-range": (["train", "{digits}", "--arch", "5relu-3linear", "--loss",
                            "sparse_cce", "--logits"], ["digits.csv:{label_line}:"], True),
    "unknown-activation": (["train", "{digits}", "--arch", "25rleu-10linear", "--loss",
                            "sparse_cce", "--logits"], ["'rleu'", "expected one of"], True),
    "softmax-with-logits": (["train", "{digits}", "--arch", "25relu-10softmax", "--loss",
                             "sparse_cce", "--logits"], ["--logits", "linear"], True),
    "sparse-cce-one-output": (["train", "{digits}", "--arch", "25relu-1linear", "--loss",
                               "sparse_cce", "--logits"], ["sparse_cce", "at least 2"], True),
    "truncated-model": (["predict", "{tmp}/truncated.safetensors", "{digits}"],
                        ["truncated.safetensors", "truncated"], False),
    "foreign-safetensors": (["info", "{tmp}/foreign.safetensors"],
                            ["foreign.safetensors", "not an nncli model"], False),
    "random-bytes-model": (["eval", "{tmp}/random.safetensors", "{digits}"],
                           ["random.safetensors", "safetensors"], False),
    "crafted-model-header": (["info", "{tmp}/crafted.safetensors"],
                             ["crafted.safetensors"], False),
    "missing-model": (["info", "{tmp}/nope.safetensors"], ["nope.safetensors"], False),
    "missing-data": (["train", "{tmp}/nope.csv", *SMALL], ["nope.csv", "no such file"], True),
    "missing-data-predict": (["predict", "{model}", "{tmp}/nope.csv"], ["nope.csv"], False),
    "bad-option-value": (["train", "{digits}", *DIGITS_ARCH, "--epochs", "abc"],
                         ["--epochs"], True),
    "unknown-option": (["train", "{digits}", *DIGITS_ARCH, "--epochz", "3"], ["--epochz"], True),
    "missing-arch": (["train", "{digits}", "--loss", "mse"], ["--arch"], True),
    "unknown-command": (["trian", "{digits}"], ["trian"], False),
    "bad-output-choice": (["predict", "{model}", "{digits}", "--output", "probs"],
                          ["--output"], False),
    "both-validations": (["train", "{digits}", *DIGITS_ARCH, "--validation-split", "0.2",
                          "--validation-data", "{digits}"],
                         ["--validation-split", "--validation-data"], True),
    "negative-epochs": (["train", "{digits}", *DIGITS_ARCH, "--epochs", "-1"], ["--epochs"], True),
    "unknown-loss": (["train", "{digits}", "--arch", "10linear", "--loss", "hinge"],
                     ["hinge", "expected one of"], True),
    "empty-file": (["train", "{tmp}/empty.csv", *SMALL], ["empty.csv", "empty file"], True),
    "header-only": (["train", "{tmp}/header.csv", *SMALL], ["header.csv", "only a header"],
                    True),
    "binary-as-csv": (["train", "{tmp}/binary.csv", *SMALL], ["binary.csv", "binary data"],
                      True),
    "binary-as-csv-predict": (["predict", "{model}", "{tmp}/binary.csv"],
                              ["binary.csv", "binary data"], False),
    "nan-feature-hint": (["train", "{tmp}/nan.csv", *SMALL, "--missing", "error"],
                         ["--missing drop"], True),
    "missing-target": (["train", "{digits}", *DIGITS_ARCH, "--target", "nope"],
                       ["no column named 'nope'"], True),
    "more-classes-than-units": (["train", "{tmp}/labels.csv", "--arch", "4relu-2linear",
                                 "--loss", "sparse_cce", "--logits"],
                                ["labels.csv", "3 classes", "ant, bee, cat", "holds 2"], True),
    "more-features-at-predict": (["predict", "{model}", "{tmp}/wide.csv"],
                                 ["wide.csv", "expected 64 feature columns, found 67"], False),
    "npz-without-x": (["train", "{tmp}/nox.npz", *SMALL], ["nox.npz", "no array 'X'"], True),
    "npz-absurd-shape": (["train", "{tmp}/absurd.npz", *SMALL],
                         ["absurd.npz", "claims shape (1000000000000, 784)"], True),
    "model-extra-bytes": (["predict", "{tmp}/extra.safetensors", "{digits}"],
                          ["extra.safetensors", "8 unexpected bytes"], False),
    "model-newer-format": (["info", "{tmp}/newer.safetensors"],
                           ["newer.safetensors", "version 99", "newer"], False),
    "model-shape-mismatch": (["eval", "{tmp}/mismatch.safetensors", "{digits}"],
                             ["mismatch.safetensors", "layers.0.kernel", "[64, 25]"], False),
    "resume-a-finished-model": (["train", "{digits}", *DIGITS_ARCH, "--resume", "{model}"],
                                ["finished model", "--init-from"], True),
    "resume-with-init-from": (["train", "{digits}", *DIGITS_ARCH, "--resume", "{model}",
                               "--init-from", "{model}"], ["not both"], True),
    "monitor-without-validation": (["train", "{digits}", *DIGITS_ARCH, "--early-stopping", "2",
                                    "--monitor", "val_loss"], ["validation data"], True),
    "monitor-without-early-stopping": (["train", "{digits}", *DIGITS_ARCH, "--monitor", "loss"],
                                       ["--early-stopping"], True),
    "history-in-missing-folder": (["train", "{digits}", *DIGITS_ARCH, "--history",
                                   "{tmp}/nope/h.csv"], ["nope", "does not exist"], True),
    "negative-checkpoint-every": (["train", "{digits}", *DIGITS_ARCH, "--checkpoint-every",
                                   "-1"], ["--checkpoint-every"], True),
}


@pytest.mark.parametrize("case", BAD_INPUT)
def test_bad_input_is_one_line_exit_2_and_writes_no_model(capsys, bad, digits_csv, digits_model,
                                                          case):
    argv, needles, trains = BAD_INPUT[case]
    fill = {"tmp": str(bad), "digits": str(digits_csv), "model": str(digits_model),
            "label_line": str(_first_line_with_label_at_least(digits_csv, 3))}
    argv = [a.format(**fill) for a in argv]
    if trains:
        argv += ["-o", str(bad / "out" / "m.safetensors")]
    rc, out, err = run(capsys, *argv)
    assert_one_line_error(rc, out, err, *[n.format(**fill) for n in needles])
    assert files_in(bad / "out") == []


def test_output_in_missing_folder_fails_before_training(capsys, monkeypatch, tmp_path,
                                                        digits_csv):
    import nncli.train
    import nncli.train.running

    def must_not_run(*args, **kwargs):
        raise AssertionError("training started although the output folder does not exist")

    monkeypatch.setattr(nncli.train.running, "fit", must_not_run)  # as train_and_save calls it
    monkeypatch.setattr(nncli.train, "warm_up", must_not_run)
    target = tmp_path / "missing" / "m.safetensors"
    start = time.perf_counter()
    rc, out, err = run(capsys, "train", digits_csv, *DIGITS_ARCH, "--epochs", "500", "-o",
                       target)
    assert_one_line_error(rc, out, err, "missing", "does not exist")
    assert time.perf_counter() - start < 10
    assert files_in(tmp_path) == []


def test_bad_option_value_in_a_real_process(tmp_path, digits_csv):
    proc = subprocess.run([*nncli_argv(), "train", str(digits_csv), *DIGITS_ARCH, "--epochs",
                           "abc", "-o", "m.safetensors"], cwd=tmp_path, capture_output=True,
                          text=True, env=sub_env(), timeout=60)
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr.startswith("nncli: error:")
    assert proc.stderr.count("\n") == 1, proc.stderr
    assert files_in(tmp_path) == []


# ---------------------------------------------------------------- Ctrl-C


def test_keyboard_interrupt_in_process_says_interrupted(capsys, monkeypatch, tmp_path,
                                                        digits_csv):
    import nncli.train.running

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt
        yield  # pragma: no cover

    monkeypatch.setattr(nncli.train.running, "fit", interrupted)  # as train_and_save calls it
    rc, out, err = run(capsys, "train", digits_csv, *DIGITS_ARCH, "--epochs", "5", "-o",
                       tmp_path / "m.safetensors")
    assert rc == 130
    assert out == ""
    assert err == "nncli: error: interrupted\n"
    assert files_in(tmp_path) == []


def _read_line(stream, deadline: float) -> bytes:
    """One line from a pipe, or b'' at EOF or when the deadline passes."""
    line = b""
    fd = stream.fileno()
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
        if not ready:
            break
        ch = os.read(fd, 1)
        if not ch:
            break
        line += ch
        if ch == b"\n":
            break
    return line


def _big_csv(path: Path, rows: int = 20000) -> Path:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(rows, 20))
    y = (X[:, 0] + X[:, 1] > 0).astype(int)
    np.savetxt(path, np.column_stack([X, y]), delimiter=",", fmt="%.5g",
               header=",".join([f"f{i}" for i in range(20)] + ["y"]), comments="")
    return path


def _signal_after_first_epoch(argv: list[str], signum: int) -> tuple[int, bytes, bytes]:
    """Run ``nncli ARGV``, send ``signum`` once an epoch line is on stderr; (rc, out, err)."""
    proc = subprocess.Popen([*nncli_argv(), *argv], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=sub_env())
    try:
        deadline = time.monotonic() + 120
        first = b""
        while not first.startswith(b"epoch ") and time.monotonic() < deadline:
            first = _read_line(proc.stderr, deadline)
            if not first:
                break
        assert first.startswith(b"epoch 1/"), f"no epoch line before the deadline: {first!r}"
        proc.send_signal(signum)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc.returncode, out, first + err


@pytest.mark.parametrize("signum, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_during_training_writes_a_resumable_model(capsys, tmp_path, signum, code):
    data = _big_csv(tmp_path / "big.csv")
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    model = out_dir / "m.safetensors"
    rc, out, err = _signal_after_first_epoch(
        ["train", str(data), "--arch", "64relu-64relu-1linear", "--loss", "bce", "--logits",
         "--epochs", "100000", "--threads", "1", "-o", str(model)], signum)
    text = err.decode()
    assert rc == code, text
    assert "Traceback" not in text
    assert out == b""
    errors = [line for line in text.splitlines() if line.startswith("nncli: error:")]
    assert len(errors) == 1 and text.endswith(errors[0] + "\n"), text
    message = errors[0]
    assert f"interrupted by {signal.Signals(signum).name}" in message
    assert str(model) in message
    # Only the model: the backup checkpoint of the finished epochs was superseded by it.
    assert files_in(out_dir) == ["m.safetensors"]
    rc, info_out, _ = run(capsys, "info", model, "--json")
    assert rc == 0
    info = json.loads(info_out)
    done = info["checkpoint"]["epoch"]
    assert done >= 1 and info["epochs"] == done
    if signum != signal.SIGINT:
        return
    # The printed command resumes it; --epochs counts all epochs.
    command = shlex.split(message.split("resume with: ", 1)[1])
    assert command[0] == "nncli" and command[-2:] == ["--resume", str(model)]
    argv = command[1:]
    argv[argv.index("--epochs") + 1] = str(done + 1)
    rc, _, err2 = run(capsys, *argv, "-q")
    assert rc == 0, err2
    resumed = load_model(model)
    assert len(resumed.info["history"]) == done + 1
    assert read_model_file(model).state is None  # finished: a plain model again
    assert files_in(out_dir) == ["m.safetensors"]


def test_resume_through_the_cli_matches_a_straight_run(capsys, tmp_path, digits_csv):
    common = [digits_csv, "--arch", "25relu-10linear", "--loss", "sparse_cce", "--logits",
              "--validation-split", "0.2", "--batch-size", "64", "-q"]
    rc, _, err = run(capsys, "train", *common, "--epochs", "4", "-o", tmp_path / "a.safetensors")
    assert rc == 0, err
    rc, _, err = run(capsys, "train", *common, "--epochs", "2", "--checkpoint",
                     tmp_path / "k.ckpt", "-o", tmp_path / "half.safetensors")
    assert rc == 0, err
    assert files_in(tmp_path) == ["a.safetensors", "half.safetensors", "k.ckpt"]
    rc, out, err = run(capsys, "train", *common, "--epochs", "4", "--resume", tmp_path / "k.ckpt",
                       "--json", "-o", tmp_path / "b.safetensors")
    assert rc == 0, err
    assert [h["epoch"] for h in json.loads(out)["history"]] == [1, 2, 3, 4]
    a, b = load_file(str(tmp_path / "a.safetensors")), load_file(str(tmp_path / "b.safetensors"))
    assert a.keys() == b.keys()
    for key in a:
        assert a[key].tobytes() == b[key].tobytes(), key
    ha, hb = (load_model(tmp_path / f"{x}.safetensors").info["history"] for x in "ab")
    strip = lambda h: [{k: v for k, v in e.items() if k != "seconds"} for e in h]  # noqa: E731
    assert strip(ha) == strip(hb)


def test_early_stopping_and_history_csv(capsys, tmp_path, digits_csv):
    history = tmp_path / "h.csv"
    rc, out, err = run(capsys, "train", digits_csv, *DIGITS_ARCH, "--lr", "0.05",
                       "--validation-split", "0.2", "--epochs", "300", "--early-stopping", "2",
                       "--history", history, "--json", "-o", tmp_path / "m.safetensors")
    assert rc == 0, err
    doc = json.loads(out)
    es = doc["early_stopping"]
    epochs = len(doc["history"])
    assert es["monitor"] == "val_loss" and es["patience"] == 2
    assert es["stopped_epoch"] == epochs < 300
    assert es["best_epoch"] == epochs - 2
    assert f"early stopping after epoch {epochs}" in err
    assert f"restored the weights of epoch {es['best_epoch']}" in err
    best = doc["history"][es["best_epoch"] - 1]["val_loss"]
    assert es["best"] == best == min(h["val_loss"] for h in doc["history"])
    rows = list(csv.reader(history.open()))
    assert rows[0] == ["epoch", "loss", "accuracy", "val_loss", "val_accuracy", "seconds"]
    assert len(rows) == epochs + 1
    assert float(rows[es["best_epoch"]][3]) == best
    # The model holds the best epoch's weights: its validation loss is the best one.
    rows_all = digits_csv.read_text().splitlines()
    n = len(rows_all) - 1
    n_val = n - int(n * 0.8)  # Keras: train on the first int(n * (1 - split)) rows
    (tmp_path / "val.csv").write_text("\n".join([rows_all[0], *rows_all[-n_val:]]) + "\n")
    rc, out, _ = run(capsys, "eval", tmp_path / "m.safetensors", tmp_path / "val.csv", "--json")
    assert json.loads(out)["loss"] == pytest.approx(best, rel=1e-5)
    rc, out, _ = run(capsys, "info", tmp_path / "m.safetensors", "--json")
    assert json.loads(out)["early_stopping"]["best_epoch"] == es["best_epoch"]


def test_divergence_exits_1_and_keeps_the_last_finite_weights(capsys, tmp_path):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 3)) * 100
    data = tmp_path / "reg.csv"
    np.savetxt(data, np.column_stack([X, X @ [1.0, 2.0, 3.0]]), delimiter=",", fmt="%.6g")
    model = tmp_path / "out" / "m.safetensors"
    model.parent.mkdir()
    rc, out, err = run(capsys, "train", data, "--arch", "8relu-1linear", "--loss", "mse",
                       "--no-normalize", "--optimizer", "sgd", "--lr", "10", "--epochs", "50",
                       "-o", model)
    assert rc == 1
    assert out == ""
    assert err.startswith("nncli: error: the loss became NaN or infinite in epoch 1, batch ")
    assert err.count("\n") == 1
    assert str(model) in err and "hint: try a smaller --lr (it is 10)" in err
    assert files_in(model.parent) == ["m.safetensors"]
    saved = read_model_file(model)
    assert np.isfinite(saved.model.params).all()
    assert saved.state is not None  # resumable with a smaller --lr


def test_drop_invalid_rows_says_how_many(capsys, tmp_path):
    data = tmp_path / "d.csv"
    data.write_text("a,b,y\n1,2,0\n3,nan,1\n5,6,1\ninf,1,0\n7,8,0\n2,1,1\n")
    rc, out, err = run(capsys, "train", data, *SMALL, "--epochs", "1", "--drop-invalid-rows",
                       "--json", "-q", "-o", tmp_path / "m.safetensors")
    assert rc == 0, err
    assert err == (f"nncli: {data}: dropped 2 rows with missing, NaN or infinite values "
                   f"(lines 3, 5)\n")
    assert json.loads(out)["rows"] == {"train": 4, "validation": 0, "dropped": 2}


def test_bom_and_crlf_are_accepted(capsys, tmp_path):
    data = tmp_path / "d.csv"
    data.write_bytes(b"\xef\xbb\xbfa,b,y\r\n" + b"".join(
        f"{i % 7},{i % 3},{i % 2}\r\n".encode() for i in range(40)))
    model = tmp_path / "m.safetensors"
    rc, _, err = run(capsys, "train", data, *SMALL, "--epochs", "1", "-q", "-o", model)
    assert rc == 0, err
    assert load_model(model).feature_names == ["a", "b"]
    rc, out, err = run(capsys, "predict", model, data)
    assert rc == 0, err
    assert out.splitlines()[0] == "y" and len(out.splitlines()) == 41


def test_output_folder_that_cannot_be_written_fails_before_training(capsys, tmp_path,
                                                                   digits_csv):
    # /sys refuses new files even to root (os.access says yes to root everywhere).
    if not Path("/sys").is_dir():
        pytest.skip("no /sys")
    rc, out, err = run(capsys, "train", digits_csv, *DIGITS_ARCH, "--epochs", "500", "-o",
                       "/sys/nncli-test.safetensors")
    assert_one_line_error(rc, out, err, "/sys", "not writable")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_output_folder_fails_before_training(capsys, tmp_path, digits_csv):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        rc, out, err = run(capsys, "train", digits_csv, *DIGITS_ARCH, "-o",
                           folder / "m.safetensors")
    finally:
        folder.chmod(0o700)
    assert_one_line_error(rc, out, err, "not writable")


def test_a_run_that_died_leaves_its_backup_and_the_next_says_so(capsys, tmp_path, digits_csv):
    model = tmp_path / "m.safetensors"
    rc, _, _ = run(capsys, "train", digits_csv, *DIGITS_ARCH, "--epochs", "1", "-q",
                   "--checkpoint", tmp_path / "m.safetensors.ckpt", "-o", tmp_path / "x")
    assert rc == 0  # stands for the backup of a run killed with SIGKILL
    rc, _, err = run(capsys, "train", digits_csv, *DIGITS_ARCH, "--epochs", "1", "-o", model)
    assert rc == 0
    assert "m.safetensors.ckpt holds the state of an earlier run" in err
    assert "--resume" in err
    assert files_in(tmp_path) == ["m.safetensors", "x"]


# ---------------------------------------------------------------- predict streams


def test_predict_streams_rows_from_a_pipe(tmp_path, digits_model, digits_csv):
    rows = digits_csv.read_text().splitlines()
    proc = subprocess.Popen([*nncli_argv(), "predict", str(digits_model), "-"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=sub_env())
    try:
        proc.stdin.write(("\n".join(rows[:1500]) + "\n").encode())
        proc.stdin.flush()
        # Stdin stays open: a reader that waited for all of it would print nothing yet.
        deadline = time.monotonic() + 60
        got = [_read_line(proc.stdout, deadline) for _ in range(1001)]
        assert got[-1].count(b",") == 9, got[-3:]
        proc.stdin.write(("\n".join(rows[1500:]) + "\n").encode())
        proc.stdin.close()
        rest, err = proc.stdout.read(), proc.stderr.read()
        assert proc.wait(timeout=60) == 0, err.decode()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    streamed = b"".join(got) + rest
    whole = subprocess.run([*nncli_argv(), "predict", str(digits_model), str(digits_csv)],
                           capture_output=True, env=sub_env(), timeout=60).stdout
    assert streamed == whole and streamed.count(b"\n") == len(rows)


def test_predict_to_a_file_writes_nothing_when_a_row_is_bad(capsys, tmp_path, digits_model,
                                                            digits_csv):
    rows = digits_csv.read_text().splitlines()
    # an infinity: text there is a missing value, filled, since issue 18
    cells = rows[1500].split(",")
    rows[1500] = ",".join([cells[0], "inf", *cells[2:]])
    data = tmp_path / "d.csv"
    data.write_text("\n".join(rows) + "\n")
    rc, out, err = run(capsys, "predict", digits_model, data, "-o", tmp_path / "p.csv")
    assert_one_line_error(rc, out, err, "d.csv:1501:2:")
    assert files_in(tmp_path) == ["d.csv"]


# ---------------------------------------------------------------- concurrency


def test_concurrent_trains_and_predicts_do_not_interfere(tmp_path, digits_model, digits_csv):
    def start(*argv):
        return subprocess.Popen([*nncli_argv(), *map(str, argv)], cwd=tmp_path,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=sub_env())

    trains = [start("train", digits_csv, "--arch", "25relu-10linear", "--loss", "sparse_cce",
                    "--logits", "--epochs", "3", "--seed", seed, "--threads", "1", "-q", "-o",
                    f"m{seed}.safetensors") for seed in (1, 2)]
    predicts = [start("predict", digits_model, digits_csv, "--threads", "1") for _ in range(3)]
    results = [(p.communicate(timeout=120), p.returncode) for p in trains + predicts]
    for (out, err), rc in results:
        assert rc == 0, err.decode()
    outputs = {out for (out, _), _ in results[2:]}
    assert len(outputs) == 1 and next(iter(outputs)).count(b"\n") == 1798
    assert files_in(tmp_path) == ["m1.safetensors", "m2.safetensors"]
    a, b = (load_model(tmp_path / f"m{seed}.safetensors") for seed in (1, 2))
    assert len(a.info["history"]) == len(b.info["history"]) == 3
    assert not np.array_equal(a.params, b.params)


# ---------------------------------------------------------------- Numba's cache


def test_no_writable_cache_folder_still_works(tmp_path, digits_model):
    # NUMBA_CACHE_DIR where nothing can be created: nncli finds it cannot write there and
    # turns caching off, saying so (with only the user-provided locator, Numba itself would
    # raise "no locator available" at import: the same way out).
    env = {**sub_env(), "NUMBA_CACHE_DIR": "/dev/null/nncli",
           "NUMBA_CACHE_LOCATOR_CLASSES": "UserProvidedCacheLocator"}
    proc = subprocess.run([*nncli_argv(), "info", str(digits_model), "--json"],
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["arch"] == "25relu-15relu-10linear"
    assert "Traceback" not in proc.stderr
    assert "compiled on every run" in proc.stderr


# ---------------------------------------------------------------- threads


def test_threads_do_not_change_the_model(capsys, tmp_path, digits_csv, restore_threads):
    tensors = []
    for threads in ("1", "2"):
        path = tmp_path / f"t{threads}.safetensors"
        rc, _, err = run(capsys, "train", digits_csv, "--arch", "25relu-10linear", "--loss",
                         "sparse_cce", "--logits", "--epochs", "3", "--seed", "7",
                         "--validation-split", "0.1", "--threads", threads, "-q", "-o", path)
        assert rc == 0, err
        tensors.append(load_file(str(path)))
    a, b = tensors
    assert a.keys() == b.keys()
    for key in a:
        assert a[key].dtype == b[key].dtype
        assert a[key].tobytes() == b[key].tobytes(), key


def test_different_seeds_give_different_models(capsys, tmp_path, digits_csv):
    # Guards the test above: bit-identical files must not be identical by construction.
    tensors = []
    for seed in ("1", "2"):
        path = tmp_path / f"s{seed}.safetensors"
        rc, _, _ = run(capsys, "train", digits_csv, "--arch", "25relu-10linear", "--loss",
                       "sparse_cce", "--logits", "--epochs", "1", "--seed", seed, "-q", "-o",
                       path)
        assert rc == 0
        tensors.append(load_file(str(path)))
    assert not np.array_equal(tensors[0]["layers.0.kernel"], tensors[1]["layers.0.kernel"])


# ---------------------------------------------------------------- completions


@pytest.mark.parametrize("shell, committed", [
    ("bash", "nncli.bash"), ("zsh", "_nncli"), ("fish", "nncli.fish"),
])
def test_completion_scripts_match_committed_files(capsys, shell, committed):
    path = REPO / "completions" / committed
    assert path.is_file(), f"{path} is missing"
    rc, out, err = run(capsys, "completions", shell)
    assert rc == 0, err
    assert out
    assert out == path.read_text()


def test_bash_completion_request_completes_commands():
    env = {**sub_env(), "_NNCLI_COMPLETE": "complete_bash", "COMP_WORDS": "nncli tr",
           "COMP_CWORD": "1"}
    proc = subprocess.run(nncli_argv(), capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "train" in proc.stdout.split()
    assert "predict" not in proc.stdout.split()


def test_a_cold_cache_is_announced_before_compiling(capsys, tmp_path, monkeypatch, digits_csv):
    import nncli.train

    monkeypatch.setattr(nncli.train, "kernels_cached", lambda: False)
    rc, _, err = run(capsys, "train", digits_csv, "--arch", "3relu-10linear", "--loss",
                     "sparse_cce", "--logits", "--epochs", "1", "-o", tmp_path / "m.safetensors")
    assert rc == 0
    assert err.startswith("nncli: compiling kernels (first run after install")
