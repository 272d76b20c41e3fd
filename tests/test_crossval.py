"""``nncli cv`` (issue 20): each fold's model is ``nncli train``'s on a file of its training
rows bit for bit (numeric digits; penguins with text columns and missing cells; NPZ), judged
as ``nncli eval`` judges its held-out rows; stratified and grouped folds through the command
line; the --json document (folds, mean and std as NumPy computes them, the pooled confusion
matrix) and -o DIR; Ctrl-C; one-line errors."""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import signal
from pathlib import Path

import numpy as np
import pytest

try:
    from clirun import assert_one_line_error, run, tensors_equal
except ImportError:                       # tests/ imported as a package
    from tests.clirun import assert_one_line_error, run, tensors_equal

from nncli.cli import main
from nncli.crossval import cross_validate, mean_and_std, plan_folds
from nncli.errors import Interrupted
from nncli.options import TrainConfig
from nncli.train import Sink

DATASETS = Path(__file__).resolve().parent.parent / "datasets"
DIGITS = DATASETS / "digits.csv"
PENGUINS = DATASETS / "penguins.csv"
# tiny networks, two epochs: the point is the equality of the models, not their quality
DIGITS_OPTIONS = {"arch": "8relu-10linear", "loss": "sparse_cce", "logits": True, "epochs": 2,
                  "seed": 3, "validation_split": 0.2}
PENGUINS_OPTIONS = {"arch": "6relu-3linear", "loss": "sparse_cce", "logits": True, "epochs": 2,
                    "batch_size": 16, "seed": 1}


def argv(options: dict) -> list[str]:
    """Train options by name as a command line."""
    out: list[str] = []
    for name, value in options.items():
        flag = "--" + name.replace("_", "-")
        if value is True:
            out.append(flag)
        elif isinstance(value, list):
            for v in value:
                out += [flag, str(v)]
        else:
            out += [flag, str(value)]
    return out


def rows_file(source: Path, lines: np.ndarray, out: Path) -> Path:
    """A CSV of ``source``'s header and the rows at these 1-based file lines, in file order."""
    text = source.read_text().splitlines(keepends=True)
    out.write_text(text[0] + "".join(text[line - 1] for line in lines.tolist()))
    return out


def columns(model: Path) -> list[dict]:
    """The model's input columns as ``nncli info --json`` lists them."""
    from nncli.modelfile import load_model

    return [c.as_dict() for c in load_model(model).input_schema().columns]


def cv_run(capsys, data: Path, k: int, options: dict, out: Path, *more: str) -> dict:
    rc, stdout, err = run(capsys, "cv", data, "--folds", k, *argv(options), *more, "-o", out,
                          "--json")
    assert rc == 0, err
    return json.loads(stdout)


def assert_folds_are_train_and_eval(capsys, tmp_path: Path, data: Path, k: int, options: dict,
                                    doc: dict, out: Path, *train_args: str) -> None:
    """Every fold's model is ``nncli train``'s on a file of its training rows, and its metrics
    are ``nncli eval``'s on a file of its held-out rows."""
    config = TrainConfig.from_options(**options, ignore=doc["options"]["ignore"] or None)
    folds = plan_folds(config, str(data), k, group=doc["options"]["group"],
                       stratify=doc["options"]["stratified"])
    for i in range(k):
        train_csv = rows_file(data, folds.lines(i), tmp_path / f"train{i + 1}.csv")
        model = tmp_path / f"train{i + 1}.safetensors"
        rc, _, err = run(capsys, "train", train_csv, *argv(options), *train_args, "--quiet",
                         "-o", model)
        assert rc == 0, err
        tensors_equal(out / f"fold{i + 1}.safetensors", model)
        assert columns(out / f"fold{i + 1}.safetensors") == columns(model)  # categories, fills
        held_csv = rows_file(data, folds.lines(i, held_out=True), tmp_path / f"held{i + 1}.csv")
        rc, stdout, err = run(capsys, "eval", model, held_csv, "--json")
        assert rc == 0, err
        judged = json.loads(stdout)
        fold = doc["folds"][i]
        assert fold["fold"] == i + 1 and fold["rows"] == len(folds.lines(i, held_out=True))
        assert fold["train_rows"] + fold["validation_rows"] == len(folds.lines(i))
        for key, value in judged.items():
            if key != "missing":      # eval's note of the cells it filled, not a metric
                assert fold[key] == value, key


@pytest.fixture(scope="module")
def digits_cv(tmp_path_factory):
    """nncli cv on the digits, 3 folds, kept in a folder: (the --json document, the folder).
    Run once for the tests that read it; capsys is a test's own, so the output is caught by
    hand."""
    out = tmp_path_factory.mktemp("digits_cv") / "cv"
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(io.StringIO()):
        rc = main(["cv", str(DIGITS), "--folds", "3", *argv(DIGITS_OPTIONS), "-o", str(out),
                   "--json"])
    assert rc == 0
    return json.loads(stdout.getvalue()), out


def test_each_digits_fold_is_nncli_train_on_its_rows_bit_for_bit(capsys, tmp_path, digits_cv):
    doc, out = digits_cv
    assert sorted(p.name for p in out.iterdir()) == [
        "cv.json", "fold1.safetensors", "fold2.safetensors", "fold3.safetensors"]
    assert json.loads((out / "cv.json").read_text()) == doc
    assert [f["model"] for f in doc["folds"]] == [str(out / f"fold{i}.safetensors")
                                                 for i in (1, 2, 3)]
    assert all(f["validation_rows"] > 0 for f in doc["folds"])   # --validation-split per fold
    assert_folds_are_train_and_eval(capsys, tmp_path, DIGITS, 3, DIGITS_OPTIONS, doc, out)


def test_penguin_folds_learn_categories_and_fill_values_from_their_own_rows(capsys, tmp_path):
    # text columns (island, sex) and NA cells; one penguin on an island no other row has and
    # one whose island is missing: the fold holding either out has no such category in its
    # training rows (its model reads the island as unseen, or has no 'missing' island), as
    # train's on a file of those rows. Each fold's columns, categories, fill means and
    # standardisation come from its training rows alone.
    lines = PENGUINS.read_text().splitlines()
    lines[1] = lines[1].replace("Biscoe,", "Anvers,", 1)
    lines[2] = lines[2].replace("Dream,", "NA,", 1)
    data = tmp_path / "penguins.csv"
    data.write_text("\n".join(lines) + "\n")
    out = tmp_path / "cv"
    doc = cv_run(capsys, data, 3, PENGUINS_OPTIONS, out)
    assert doc["options"]["stratified"] is True
    islands = [[c["categories"], c["missing_category"]] for i in (1, 2, 3)
               for c in columns(out / f"fold{i}.safetensors") if c["name"] == "island"]
    whole = [["Anvers", "Biscoe", "Dream", "Torgersen"], True]
    assert whole in islands and any(i != whole for i in islands)   # each fold's own
    assert_folds_are_train_and_eval(capsys, tmp_path, data, 3, PENGUINS_OPTIONS, doc, out)


def test_npz_folds_are_train_on_their_rows(capsys, tmp_path):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 4)).astype(np.float32)
    y = (X @ np.array([1.0, -2.0, 0.5, 0.0]) + 0.1 * rng.normal(size=60)).astype(np.float32)
    X[5, 2] = np.nan                                  # a missing cell, filled per fold
    data = tmp_path / "reg.npz"
    np.savez(data, X=X, y=y)
    options = {"arch": "4relu-1linear", "loss": "mse", "epochs": 2, "batch_size": 8}
    out = tmp_path / "cv"
    doc = cv_run(capsys, data, 3, options, out)
    assert doc["options"]["stratified"] is False                 # regression: plain folds
    assert set(doc["mean"]) >= {"loss", "mse", "mae", "r2"}
    folds = plan_folds(TrainConfig.from_options(**options), str(data), 3)
    for i in range(3):
        rows = folds.lines(i)                        # 0-based rows of an NPZ
        part = tmp_path / f"train{i}.npz"
        np.savez(part, X=X[rows], y=y[rows])
        model = tmp_path / f"train{i}.safetensors"
        rc, _, err = run(capsys, "train", part, *argv(options), "--quiet", "-o", model)
        assert rc == 0, err
        tensors_equal(out / f"fold{i + 1}.safetensors", model)


def test_the_mean_and_std_are_numpys_over_the_folds(digits_cv):
    doc, _ = digits_cv
    assert set(doc) == {"folds", "mean", "std", "pooled", "options"}
    assert len(doc["folds"]) == 3
    for key in ("loss", "accuracy", "rows", "train_rows", "epochs"):
        values = [f[key] for f in doc["folds"]]
        assert doc["mean"][key] == pytest.approx(np.mean(values), rel=1e-12)
        assert doc["std"][key] == pytest.approx(np.std(values), rel=1e-12, abs=1e-15)
    assert "fold" not in doc["mean"] and "confusion_matrix" not in doc["mean"]
    pooled = np.sum([f["confusion_matrix"] for f in doc["folds"]], axis=0)
    assert doc["pooled"]["confusion_matrix"] == pooled.tolist()
    assert pooled.sum() == 1797                      # every row held out exactly once
    assert doc["options"]["folds"] == 3 and doc["options"]["arch"] == "8relu-10linear"


def test_mean_and_std_recurse_into_objects_and_skip_lists_and_partial_keys():
    folds = [{"fold": 1, "f1": 0.5, "macro": {"f1": 0.2, "recall": 1.0}, "labels": ["a"],
              "per_class": {"a": {"f1": 0.1}}, "only_here": 3.0, "flag": True},
             {"fold": 2, "f1": 0.7, "macro": {"f1": 0.4, "recall": 0.0}, "labels": ["a"],
              "per_class": {"a": {"f1": 0.3}}, "flag": False}]
    mean, std = mean_and_std(folds)
    assert mean == {"f1": pytest.approx(0.6), "macro": {"f1": pytest.approx(0.3),
                                                        "recall": 0.5},
                    "per_class": {"a": {"f1": pytest.approx(0.2)}}}
    assert std["macro"]["recall"] == 0.5 and std["f1"] == pytest.approx(0.1)   # ddof 0


def test_a_classifiers_folds_are_stratified_unless_told_not_to(capsys, tmp_path):
    counts = np.bincount(np.loadtxt(DIGITS, delimiter=",", skiprows=1)[:, -1].astype(int))
    k = 4
    options = {**DIGITS_OPTIONS, "epochs": 1, "validation_split": 0.0}
    for more, stratified in (((), True), (("--no-stratify",), False)):
        rc, stdout, err = run(capsys, "cv", DIGITS, "--folds", k, *argv(options), *more,
                              "--json", "--quiet")
        assert rc == 0, err
        doc = json.loads(stdout)
        assert doc["options"]["stratified"] is stratified
        # a confusion matrix's row sums: each class's held-out rows in that fold
        per_fold = np.array([np.sum(f["confusion_matrix"], axis=1) for f in doc["folds"]])
        within_one = np.all(np.abs(per_fold - counts / k) < 1)
        assert within_one is np.True_ if stratified else not within_one


def test_a_group_stays_in_one_fold_and_is_not_a_feature(capsys, tmp_path):
    # digits with a 'writer' column: 30 writers; each writer's rows must share a fold
    lines = DIGITS.read_text().splitlines()
    data = tmp_path / "writers.csv"
    data.write_text("\n".join([f"writer,{lines[0]}"] + [f"w{i % 30},{line}"
                                                       for i, line in enumerate(lines[1:])])
                    + "\n")
    out = tmp_path / "cv"
    options = {**DIGITS_OPTIONS, "validation_split": 0.0}
    doc = cv_run(capsys, data, 3, options, out, "--group", "writer")
    assert doc["options"]["group"] == "writer" and doc["options"]["ignore"] == ["writer"]
    assert doc["options"]["stratified"] is False
    folds = plan_folds(TrainConfig.from_options(**options, ignore=["writer"]), str(data), 3,
                       group="writer")
    writers = np.array([f"w{i % 30}" for i in range(len(lines) - 1)])
    for w in np.unique(writers):
        assert len(set(folds.fold[writers[folds.rows] == w].tolist())) == 1, w
    rc, stdout, _ = run(capsys, "info", out / "fold1.safetensors", "--json")
    assert "writer" not in [c["name"] for c in json.loads(stdout)["columns"]]
    # and the fold is train's with --ignore writer, bit for bit
    assert_folds_are_train_and_eval(capsys, tmp_path, data, 3, options, doc, out,
                                    "--ignore", "writer")


def test_ctrl_c_keeps_the_finished_folds_and_writes_no_summary(tmp_path):
    class CtrlC(Sink):
        def __init__(self, fold):
            self.fold = fold

        def epoch(self, run, report):
            if self.fold == 2:
                os.kill(os.getpid(), signal.SIGINT)   # caught: the fold stops after its chunk

    out = tmp_path / "cv"
    with pytest.raises(Interrupted, match=r"interrupted in fold 2 of 3; the 1 finished folds'"):
        cross_validate(str(DIGITS), 3, {**DIGITS_OPTIONS, "epochs": 3}, out_dir=out,
                       display=CtrlC)
    assert sorted(p.name for p in out.iterdir()) == ["fold1.safetensors"]


def test_an_earlier_cv_in_the_folder_is_replaced_and_other_files_refused(capsys, tmp_path):
    out = tmp_path / "cv"
    out.mkdir()
    for name in ("fold1.safetensors", "fold7.safetensors", "cv.json"):
        (out / name).write_text("old")
    options = {**DIGITS_OPTIONS, "epochs": 1}
    # a run that fails before its first fold is trained leaves the earlier one alone
    rc, stdout, err = run(capsys, "cv", DIGITS, "--folds", 2, *argv(options),
                          "--validation-data", DIGITS, "-o", out)
    assert_one_line_error(rc, stdout, err, "not both")
    assert (out / "fold7.safetensors").read_text() == "old"
    cv_run(capsys, DIGITS, 2, options, out)
    assert sorted(p.name for p in out.iterdir()) == ["cv.json", "fold1.safetensors",
                                                    "fold2.safetensors"]
    (out / "notes.txt").write_text("mine")
    rc, stdout, err = run(capsys, "cv", DIGITS, "--folds", 2, *argv(options), "-o", out)
    assert_one_line_error(rc, stdout, err, "notes.txt", "new or empty folder")
    assert (out / "cv.json").exists() and (out / "notes.txt").read_text() == "mine"


@pytest.mark.parametrize("more, needles", [
    (["--folds", "1"], ["--folds must be at least 2"]),
    (["--folds", "2000"], ["--folds 2000 is more than the 1797 rows"]),
    (["--group", "nosuch"], ["--group nosuch", "no column named 'nosuch'"]),
    (["--group", "digit"], ["--group digit", "is a target"]),
    (["--resume", "x.safetensors"], ["nncli cv takes no --resume", "from the start"]),
    (["--checkpoint", "x.ckpt"], ["nncli cv takes no --checkpoint", "no checkpoints"]),
    (["--history", "h.csv"], ["nncli cv takes no --history", "in its model file"]),
])
def test_impossible_requests_are_one_line_errors(capsys, tmp_path, more, needles):
    rc, stdout, err = run(capsys, "cv", DIGITS, *argv(DIGITS_OPTIONS), *more,
                          "-o", tmp_path / "cv")
    assert_one_line_error(rc, stdout, err, *needles)
    assert not (tmp_path / "cv").exists()


def test_a_fold_without_a_class_in_its_training_rows_is_refused(capsys, tmp_path):
    # all Gentoo penguins live on Biscoe: holding out Biscoe leaves none to train on
    rc, stdout, err = run(capsys, "cv", PENGUINS, "--folds", 3, *argv(PENGUINS_OPTIONS),
                          "--group", "island")
    assert_one_line_error(rc, stdout, err, "training rows hold no row of class 'Gentoo'")


def test_rare_classes_get_scikit_learns_note(capsys, tmp_path):
    lines = DIGITS.read_text().splitlines()
    data = tmp_path / "rare.csv"
    # keep two rows of digit 9 only
    nines = [line for line in lines[1:] if line.endswith(",9")][:2]
    data.write_text("\n".join([lines[0]] + [line for line in lines[1:]
                                            if not line.endswith(",9")] + nines) + "\n")
    rc, _, err = run(capsys, "cv", data, "--folds", 3, *argv({**DIGITS_OPTIONS, "epochs": 1}))
    assert rc == 0, err
    assert "the least populated class (9) has only 2 rows, fewer than the 3 folds" in err
    # a line per fold with its metrics, then the table of their mean and std
    for i in (1, 2, 3):
        line = rf"^fold {i}/3: \d+ training rows \(\+\d+ validation\), \d+ held out, 1 epoch: loss "
        assert re.search(line, err, re.MULTILINE), err
    assert "cross-validation over 3 folds" in err and "std (ddof 0)" in err


def test_sample_weighted_folds_are_train_on_their_rows(capsys, tmp_path):
    # --sample-weight's column is read with the table once and dealt with its rows: each fold
    # is `nncli train --sample-weight w` on a file of its rows (the column no feature of it)
    lines = DIGITS.read_text().splitlines()
    weighted = ["w," + lines[0]] + [f"{0.25 + 0.5 * (i % 3)},{line}"
                                    for i, line in enumerate(lines[1:])]
    data = tmp_path / "weighted.csv"
    data.write_text("\n".join(weighted) + "\n")
    options = {**DIGITS_OPTIONS, "sample_weight": "w"}
    out = tmp_path / "cv"
    doc = cv_run(capsys, data, 2, options, out)
    assert all("w" not in [c["name"] for c in columns(out / f"fold{i}.safetensors")]
               for i in (1, 2))
    assert_folds_are_train_and_eval(capsys, tmp_path, data, 2, options, doc, out)


def test_npz_sample_weights_follow_their_fold(capsys, tmp_path):
    rng = np.random.default_rng(1)
    X = rng.normal(size=(40, 3)).astype(np.float32)
    y = (X[:, 0] > 0).astype(np.float32)
    w = rng.uniform(0.5, 2.0, size=40)
    data = tmp_path / "w.npz"
    np.savez(data, X=X, y=y, w=w)
    options = {"arch": "3relu-2linear", "loss": "sparse_cce", "logits": True, "epochs": 2,
               "batch_size": 8, "sample_weight": "w"}
    out = tmp_path / "cv"
    cv_run(capsys, data, 2, options, out)
    folds = plan_folds(TrainConfig.from_options(**options), str(data), 2)
    for i in range(2):
        rows = folds.lines(i)
        part = tmp_path / f"train{i}.npz"
        np.savez(part, X=X[rows], y=y[rows], w=w[rows])
        model = tmp_path / f"train{i}.safetensors"
        rc, _, err = run(capsys, "train", part, *argv(options), "--quiet", "-o", model)
        assert rc == 0, err
        tensors_equal(out / f"fold{i + 1}.safetensors", model)
