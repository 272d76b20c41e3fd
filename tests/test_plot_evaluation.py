"""``nncli plot --kind roc|pr|confusion|calibration`` and ``nncli.plot.evaluation``: the figure's
structure (panels, curves, legend texts, heat map cells), its numbers against ``nncli eval
--json``'s and ``nncli cv``'s for the same models and rows, each format, several models, a
cross-validation's folder, and one-line errors.

In an SVG every curve carries the id ``curve-PANEL-CURVE``, every confusion cell's text
``cell-PANEL-ROW-COLUMN``, every axes matplotlib's ``axes_N``; texts stay text.
"""

from __future__ import annotations

import json
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

from nncli.cli import main
from nncli.cli.plotting import Kind
from nncli.errors import UsageError
from nncli.plot import KINDS, plot_evaluation

try:
    from clirun import assert_one_line_error, run, sweep_folder
except ImportError:                       # tests/ imported as a package
    from tests.clirun import assert_one_line_error, run, sweep_folder

pytest.importorskip("matplotlib")

DATASETS = Path(__file__).resolve().parent.parent / "datasets"
DIGITS01 = DATASETS / "digits01.csv"
DIGITS = DATASETS / "digits.csv"
MULTILABEL = DATASETS / "digits_multilabel.csv"
SVG = "{http://www.w3.org/2000/svg}"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
LABELS = ["--target", "even", "--target", "ge5", "--target", "prime"]


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    """Tiny models, two epochs: two binary ones (one sigmoid output) of digits01, a ten-class
    softmax of digits and a three-label one of digits_multilabel."""
    folder = tmp_path_factory.mktemp("eval_plot_models")
    out = {}
    for name, data, argv in [
            ("bin", DIGITS01, ["--arch", "4relu-1linear", "--loss", "bce", "--logits"]),
            ("bin2", DIGITS01, ["--arch", "6relu-1linear", "--loss", "bce", "--logits",
                                "--seed", "5"]),
            ("multi", DIGITS, ["--arch", "8relu-10linear", "--loss", "sparse_cce",
                               "--logits"]),
            ("labels", MULTILABEL, [*LABELS, "--arch", "8relu-3linear", "--loss", "bce",
                                    "--logits"])]:
        path = folder / f"{name}.safetensors"
        assert main(["train", str(data), *argv, "--epochs", "2", "--quiet", "-o",
                     str(path)]) == 0
        out[name] = path
    return out


@pytest.fixture(scope="module")
def cv_dir(tmp_path_factory) -> Path:
    """A 3-fold cross-validation of a binary digits01 model kept with -o."""
    out = tmp_path_factory.mktemp("eval_plot_cv") / "cv"
    assert main(["cv", str(DIGITS01), "--folds", "3", "--arch", "4relu-1linear", "--loss",
                 "bce", "--logits", "--epochs", "1", "--quiet", "-o", str(out)]) == 0
    return out


def eval_json(capsys, model: Path, data: Path, *more) -> dict:
    rc, out, err = run(capsys, "eval", model, data, "--json", *more)
    assert rc == 0, err
    return json.loads(out)


def plot_json(capsys, *argv) -> dict:
    rc, out, err = run(capsys, "plot", *argv, "--json")
    assert rc == 0, err
    doc = json.loads(out)
    assert err.startswith(f"wrote {doc['path']} ({doc['kind']}: ")
    return doc


def svg_axes(path: Path) -> list[ET.Element]:
    root = ET.parse(path).getroot()
    return [g for g in root.iter(f"{SVG}g") if g.get("id", "").startswith("axes_")]


def svg_ids(element: ET.Element, prefix: str) -> list[str]:
    return [e.get("id") for e in element.iter() if e.get("id", "").startswith(prefix)]


def svg_texts(element: ET.Element) -> list[str]:
    return [t.text or "" for t in element.iter(f"{SVG}text")]


def cell_texts(path: Path, panel: int, k: int) -> list[list[str]]:
    """The heat map's cell texts of ``panel``, a k x k grid."""
    root = ET.parse(path).getroot()
    cells = {g.get("id"): "".join(svg_texts(g)) for g in root.iter(f"{SVG}g")
             if g.get("id", "").startswith(f"cell-{panel}-")}
    assert len(cells) == k * k
    return [[cells[f"cell-{panel}-{i}-{j}"] for j in range(k)] for i in range(k)]


# ---------------------------------------------------------------- ROC and precision-recall


def test_binary_models_overlay_in_one_roc_panel_with_evals_auc(capsys, tmp_path, models):
    out = tmp_path / "roc.svg"
    doc = plot_json(capsys, models["bin"], models["bin2"], "--label", "a", "--label",
                    "b", "--kind", "roc", "--data", DIGITS01, "-o", out)
    assert doc["kind"] == "roc" and doc["labels"] == ["a", "b"]
    [panel] = doc["panels"]
    assert panel["title"] == "ROC, positive class 1"
    axes = svg_axes(out)
    assert len(axes) == 1
    assert svg_ids(axes[0], "curve-") == ["curve-0-0", "curve-0-1"]
    assert svg_ids(axes[0], "chance-") == ["chance-0"]
    legend = svg_texts(axes[0])
    for curve, name in zip(panel["curves"], ("bin", "bin2")):
        auc = eval_json(capsys, models[name], DIGITS01)["roc_auc"]
        assert curve["roc_auc"] == auc
        assert curve["label"] == f"{curve['model']} (AUC {auc:.3f})"
        assert curve["label"] in legend
        assert curve["rows"] == 360 and curve["class"] == "1"


def test_pr_curve_gives_evals_average_precision_and_the_prevalence(capsys, tmp_path, models):
    out = tmp_path / "pr.svg"
    doc = plot_json(capsys, models["bin"], "--kind", "pr", "--data", DIGITS01,
                    "-o", out)
    [curve] = doc["panels"][0]["curves"]
    report = eval_json(capsys, models["bin"], DIGITS01)
    assert curve["average_precision"] == report["average_precision"]
    ones = report["per_class"]["1"]["support"]
    assert curve["prevalence"] == ones / report["rows"]
    [axes] = svg_axes(out)
    assert svg_ids(axes, "baseline-") == ["baseline-0-0"]
    assert f"AP {report['average_precision']:.3f}" in " ".join(svg_texts(axes))


def test_multiclass_has_one_curve_per_class_whose_mean_auc_is_evals(capsys, tmp_path, models):
    out = tmp_path / "roc.svg"
    doc = plot_json(capsys, models["multi"], "--kind", "roc", "--data", DIGITS, "-o",
                    out)
    [panel] = doc["panels"]
    assert panel["title"] == "ROC: multi.safetensors"
    assert [c["class"] for c in panel["curves"]] == [str(i) for i in range(10)]
    assert [len(svg_ids(ax, "curve-")) for ax in svg_axes(out)] == [10]
    report = eval_json(capsys, models["multi"], DIGITS)
    aucs = [c["roc_auc"] for c in panel["curves"]]
    assert float(np.mean(aucs)) == pytest.approx(report["roc_auc"], abs=1e-12)


def test_a_binary_and_a_multiclass_model_get_a_panel_each(capsys, tmp_path, models):
    out = tmp_path / "roc.svg"
    doc = plot_json(capsys, models["bin"], models["multi"], "--kind", "roc",
                    "--data", DIGITS01, "-o", out)
    assert [len(p["curves"]) for p in doc["panels"]] == [1, 10]
    assert [len(svg_ids(ax, "curve-")) for ax in svg_axes(out)] == [1, 10]
    # digits01 holds classes 0 and 1 only: the others' AUC is undefined
    assert [c["roc_auc"] is None for c in doc["panels"][1]["curves"]] == [False] * 2 + [True] * 8
    assert "2 (AUC n/a)" in svg_texts(svg_axes(out)[1])


@pytest.mark.parametrize("kind, score", [("roc", "roc_auc"), ("pr", "average_precision")])
def test_multilabel_has_one_curve_per_label_with_evals_scores(capsys, tmp_path, models, kind,
                                                              score):
    doc = plot_json(capsys, models["labels"], "--kind", kind, "--data", MULTILABEL,
                    "-o", tmp_path / "f.png")
    report = eval_json(capsys, models["labels"], MULTILABEL)
    curves = doc["panels"][0]["curves"]
    assert [c["class"] for c in curves] == ["even", "ge5", "prime"]
    assert [c[score] for c in curves] == [report["per_label"][n][score]
                                          for n in ("even", "ge5", "prime")]


# ---------------------------------------------------------------- confusion


def test_confusion_cells_are_evals_matrix(capsys, tmp_path, models):
    out = tmp_path / "cm.svg"
    doc = plot_json(capsys, models["multi"], models["bin"], "--kind", "confusion",
                    "--data", DIGITS01, "-o", out)
    assert len(svg_axes(out)) == 2
    for p, name in enumerate(("multi", "bin")):
        report = eval_json(capsys, models[name], DIGITS01)
        k = len(report["labels"])
        assert doc["panels"][p]["matrix"] == report["confusion_matrix"]
        assert doc["panels"][p]["labels"] == report["labels"]
        assert cell_texts(out, p, k) == [[str(v) for v in row]
                                         for row in report["confusion_matrix"]]
    assert [p["threshold"] for p in doc["panels"]] == [None, 0.5]


def test_confusion_threshold_is_evals(capsys, tmp_path, models):
    doc = plot_json(capsys, models["bin"], "--kind", "confusion", "--threshold", "0.3",
                    "--data", DIGITS01, "-o", tmp_path / "cm.svg")
    report = eval_json(capsys, models["bin"], DIGITS01, "--threshold", "0.3")
    assert doc["panels"][0]["matrix"] == report["confusion_matrix"]
    assert doc["panels"][0]["threshold"] == 0.3


def test_multilabel_confusion_is_a_two_by_two_per_label(capsys, tmp_path, models):
    out = tmp_path / "cm.svg"
    doc = plot_json(capsys, models["labels"], "--kind", "confusion", "--data",
                    MULTILABEL, "-o", out)
    report = eval_json(capsys, models["labels"], MULTILABEL)
    assert [p["title"] for p in doc["panels"]] == ["labels.safetensors: even",
                                                   "labels.safetensors: ge5",
                                                   "labels.safetensors: prime"]
    for p, (name, scores) in enumerate(report["per_label"].items()):
        (tn, fp), (fn, tp) = doc["panels"][p]["matrix"]
        assert tp + fn == scores["support"]
        assert tp / (tp + fn) == pytest.approx(scores["recall"], abs=1e-12)
        assert cell_texts(out, p, 2) == [[str(tn), str(fp)], [str(fn), str(tp)]]


# ---------------------------------------------------------------- calibration


def test_reliability_diagram_has_bins_and_a_histogram_below(capsys, tmp_path, models):
    out = tmp_path / "cal.svg"
    doc = plot_json(capsys, models["bin"], models["bin2"], "--kind", "calibration",
                    "--bins", "4", "--data", DIGITS01, "-o", out)
    [panel] = doc["panels"]
    assert panel["bins"] == 4
    for curve in panel["curves"]:
        assert sum(curve["count"]) == curve["rows"] == 360
        assert 1 <= len(curve["count"]) <= 4
        assert all(0 <= v <= 1 for v in curve["fraction_positive"] + curve["mean_probability"])
    top, below = svg_axes(out)
    assert svg_ids(top, "curve-") == ["curve-0-0", "curve-0-1"]
    assert svg_ids(below, "bins-") == ["bins-0-0", "bins-0-1"]
    assert "perfectly calibrated" in svg_texts(top)


def test_multiclass_reliability_is_the_top_class(capsys, tmp_path, models):
    doc = plot_json(capsys, models["multi"], "--kind", "calibration", "--data", DIGITS,
                    "-o", tmp_path / "cal.png")
    [panel] = doc["panels"]
    assert panel["title"] == "reliability, top class"
    [curve] = panel["curves"]
    assert len(curve["count"]) <= 10 and sum(curve["count"]) == 1797
    # the top class's probability is at least 1/10
    assert min(curve["mean_probability"]) >= 0.1
    report = eval_json(capsys, models["multi"], DIGITS)
    right = sum(f * n for f, n in zip(curve["fraction_positive"], curve["count"]))
    assert right / 1797 == pytest.approx(report["accuracy"], abs=1e-12)


# ---------------------------------------------------------------- formats and the folder


@pytest.mark.parametrize("suffix, magic", [(".png", PNG_MAGIC), (".pdf", b"%PDF-"),
                                           (".svg", b"<?xml")])
@pytest.mark.parametrize("kind", ["roc", "confusion"])
def test_each_format(capsys, tmp_path, models, suffix, magic, kind):
    out = tmp_path / f"f{suffix}"
    doc = plot_json(capsys, models["bin"], "--kind", kind, "--data", DIGITS01, "-o",
                    out)
    assert doc["format"] == suffix[1:]
    assert out.read_bytes()[:len(magic)] == magic
    assert [p.name for p in tmp_path.iterdir()] == [out.name]   # no temporary file left


def test_the_same_models_give_the_same_svg(capsys, tmp_path, models):
    for name in ("a.svg", "b.svg"):
        plot_json(capsys, models["bin"], "--kind", "pr", "--data", DIGITS01, "-o",
                  tmp_path / name)
    assert (tmp_path / "a.svg").read_bytes() == (tmp_path / "b.svg").read_bytes()


def test_cv_folder_draws_each_fold_on_its_held_out_rows(capsys, tmp_path, cv_dir):
    out = tmp_path / "roc.svg"
    doc = plot_json(capsys, cv_dir, "--kind", "roc", "-o", out)
    cv = json.loads((cv_dir / "cv.json").read_text())
    assert doc["labels"] == ["fold 1", "fold 2", "fold 3"]
    [panel] = doc["panels"]
    assert [c["roc_auc"] for c in panel["curves"]] == [f["roc_auc"] for f in cv["folds"]]
    assert [c["rows"] for c in panel["curves"]] == [f["rows"] for f in cv["folds"]]
    legend = svg_texts(svg_axes(out)[0])
    assert f"fold 2 (AUC {cv['folds'][1]['roc_auc']:.3f})" in legend


def test_cv_folder_confusion_is_the_pooled_matrix(capsys, tmp_path, cv_dir):
    doc = plot_json(capsys, cv_dir, "--kind", "confusion", "-o", tmp_path / "cm.svg")
    cv = json.loads((cv_dir / "cv.json").read_text())
    [panel] = doc["panels"]
    assert panel["title"] == "cv: 3 folds pooled"
    assert panel["matrix"] == cv["pooled"]["confusion_matrix"]
    assert panel["models"] == ["fold 1", "fold 2", "fold 3"]


def test_cv_folder_without_kind_draws_the_folds_histories(capsys, tmp_path, cv_dir):
    rc, out, err = run(capsys, "plot", cv_dir, "--label", "digits01", "-o",
                       tmp_path / "h.svg", "--json")
    assert rc == 0, err
    doc = json.loads(out)
    assert doc["kind"] == "history"
    assert doc["labels"] == ["digits01 fold 1", "digits01 fold 2", "digits01 fold 3"]


def test_cv_folder_whose_data_moved_takes_data(capsys, tmp_path):
    data = tmp_path / "d.csv"
    shutil.copy(DIGITS01, data)
    folder = tmp_path / "cv"
    assert main(["cv", str(data), "--folds", "2", "--arch", "4relu-1linear", "--loss", "bce",
                 "--logits", "--epochs", "1", "--quiet", "-o", str(folder)]) == 0
    moved = data.rename(tmp_path / "moved.csv")
    rc, out, err = run(capsys, "plot", folder, "--kind", "roc", "-o", tmp_path / "r.svg")
    assert_one_line_error(rc, out, err, "cv.json: its data file", "d.csv' is not found",
                          "--data FILE")
    doc = plot_json(capsys, folder, "--kind", "roc", "--data", moved, "-o",
                    tmp_path / "r.svg")
    cv = json.loads((folder / "cv.json").read_text())
    assert [c["roc_auc"] for c in doc["panels"][0]["curves"]] == [f["roc_auc"]
                                                                  for f in cv["folds"]]


def test_a_sweeps_folder_stands_for_its_best_trials(capsys, tmp_path, models):
    sweep = sweep_folder(tmp_path, "arch", [f"1,t1,6relu-1linear,finished,2,0.1,{models['bin2']}",
                                            f"2,t2,4relu-1linear,finished,2,0.2,{models['bin']}"])
    doc = plot_json(capsys, sweep, "--top", "1", "--kind", "roc", "--data", DIGITS01, "-o",
                    tmp_path / "roc.svg")
    assert doc["labels"] == ["--arch 6relu-1linear"]
    auc = eval_json(capsys, models["bin2"], DIGITS01)["roc_auc"]
    assert doc["panels"][0]["curves"][0]["roc_auc"] == auc


def test_the_library_draws_without_the_command_line(tmp_path, models):
    from nncli.plot import members, score_members

    heard: list[str] = []
    scored = score_members(members([models["labels"]], ["ml"]), str(MULTILABEL),
                           ["even", "ge5", "prime"], say=heard.append)
    summary = plot_evaluation(scored, "calibration", tmp_path / "cal.svg", bins=5)
    assert summary.labels == ["ml"] and summary.kind == "calibration"
    [panel] = summary.panels
    assert panel["title"] == "reliability: ml"
    assert [c["class"] for c in panel["curves"]] == ["even", "ge5", "prime"]
    assert len(svg_axes(tmp_path / "cal.svg")) == 2
    assert heard == []


# ---------------------------------------------------------------- errors


def test_a_damaged_cv_json_is_one_line(capsys, tmp_path):
    folder = tmp_path / "cv"
    folder.mkdir()
    (folder / "cv.json").write_text("{\"folds\": ")
    rc, out, err = run(capsys, "plot", folder, "--kind", "roc", "-o", tmp_path / "r.png")
    assert_one_line_error(rc, out, err, "cv.json: not a cross-validation's document")


@pytest.mark.parametrize("case", ["no-data", "regression", "unknown-kind", "threshold-roc",
                                  "bins-zero", "metric-roc", "data-history",
                                  "threshold-softmax", "bins-confusion"])
def test_bad_input_is_one_line(capsys, tmp_path, models, regression_model, case):
    data = ["--data", DIGITS01]
    argv, needles = {
        "no-data": ([models["bin"], "--kind", "roc"], ["bin.safetensors: which rows",
                                                       "--data FILE"]),
        "regression": ([regression_model, "--kind", "pr", *data],
                       ["reg.safetensors: a regression model (--loss mse)",
                        "--kind roc, pr, confusion and calibration draw classifiers"]),
        "unknown-kind": ([models["bin"], "--kind", "lift", *data], ["'lift' is not one of"]),
        "threshold-roc": ([models["bin"], "--kind", "roc", "--threshold", "0.3", *data],
                          ["--threshold applies to --kind confusion, not --kind roc"]),
        "bins-zero": ([models["bin"], "--kind", "calibration", "--bins", "0", *data],
                      ["--bins must be at least 1, received 0"]),
        "metric-roc": ([models["bin"], "--kind", "roc", "--metric", "loss", *data],
                       ["--metric applies to --kind history, not --kind roc"]),
        "data-history": ([models["bin"], *data], ["--data applies to --kind roc, pr, "
                                                  "confusion, calibration, not --kind history"]),
        "threshold-softmax": ([models["multi"], "--kind", "confusion", "--threshold", "0.3",
                               *data], ["--threshold applies to sigmoid outputs"]),
        "bins-confusion": ([models["bin"], "--kind", "confusion", "--bins", "3", *data],
                           ["--bins applies to --kind calibration"]),
    }[case]
    rc, out, err = run(capsys, "plot", *argv, "-o", tmp_path / "f.png")
    assert_one_line_error(rc, out, err, *needles)
    assert list(tmp_path.iterdir()) == []


def test_the_command_and_the_library_know_the_same_kinds(tmp_path):
    assert {k.value for k in Kind} == {"history", *KINDS}
    with pytest.raises(UsageError, match="unknown kind 'lift'"):
        plot_evaluation([], "lift", tmp_path / "f.png")
