"""``nncli plot`` and ``nncli.plot``: the figure's structure (panels, curves), not its pixels.

A PNG is checked to be a PNG that Pillow opens; an SVG is parsed as XML and its axes and curves
counted (every curve carries the id ``curve-PANEL-RUN-KEY``, every axes matplotlib's
``axes_N``). The CLI runs through its real entry point, as in test_cli.py.
"""

from __future__ import annotations

import json
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from nncli.cli import main
from nncli.plot import metric_families, plot_histories

try:
    from clirun import assert_one_line_error, run, sweep_folder
except ImportError:                       # tests/ imported as a package
    from tests.clirun import assert_one_line_error, run, sweep_folder

pytest.importorskip("matplotlib")

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
SVG = "{http://www.w3.org/2000/svg}"
DIGITS_ARCH = ["--arch", "8relu-10linear", "--loss", "sparse_cce", "--logits"]






def svg_curves(path: Path) -> list[list[str]]:
    """Per axes of an SVG figure, in order, the ids of the curves drawn in it."""
    root = ET.parse(path).getroot()
    axes = [g for g in root.iter(f"{SVG}g") if g.get("id", "").startswith("axes_")]
    return [[e.get("id") for e in ax.iter() if e.get("id", "").startswith("curve-")]
            for ax in axes]


def assert_png(path: Path) -> None:
    from PIL import Image

    assert path.read_bytes()[:8] == PNG_MAGIC
    with Image.open(path) as image:
        image.verify()
        assert image.format == "PNG" and image.size[0] > 0 and image.size[1] > 0


def history(epochs: int, val: bool = True, accuracy: bool = True, **extra) -> list[dict]:
    out = []
    for e in range(1, epochs + 1):
        r = {"epoch": e, "loss": 1.0 / e, "seconds": 0.01}
        if accuracy:
            r["accuracy"] = 1 - 0.5 / e
        if val:
            r["val_loss"] = 1.2 / e
            if accuracy:
                r["val_accuracy"] = 1 - 0.6 / e
        r.update({k: v / e for k, v in extra.items()})
        out.append(r)
    return out


def no_leftovers(folder: Path) -> None:
    assert not [p.name for p in folder.iterdir() if p.name.endswith(".tmp")]


# ---------------------------------------------------------------- the library


def test_two_runs_give_two_panels_of_four_curves(tmp_path):
    out = tmp_path / "curves.svg"
    summary = plot_histories([("adam", history(5)), ("sgd", history(5))], out)
    assert summary.format == "svg"
    assert summary.labels == ["adam", "sgd"]
    assert [p.metric for p in summary.panels] == ["loss", "accuracy"]
    assert summary.panels[0].lines == ["adam loss", "adam val_loss", "sgd loss", "sgd val_loss"]
    assert len(summary.panels[1].lines) == 4
    curves = svg_curves(out)
    assert [len(c) for c in curves] == [4, 4]
    assert curves[0] == ["curve-0-0-loss", "curve-0-0-val_loss", "curve-0-1-loss",
                         "curve-0-1-val_loss"]
    no_leftovers(tmp_path)


def test_validation_is_dashed_and_each_run_keeps_one_colour(tmp_path):
    out = tmp_path / "curves.svg"
    plot_histories([("a", history(3)), ("b", history(3))], out)
    root = ET.parse(out).getroot()
    style = {g.get("id"): " ".join(p.get("style", "") for p in g.iter(f"{SVG}path"))
             for g in root.iter(f"{SVG}g") if g.get("id", "").startswith("curve-")}
    assert "stroke-dasharray" in style["curve-0-0-val_loss"]
    assert "stroke-dasharray" not in style["curve-0-0-loss"]

    def colour(key):
        return [s for s in style[key].split(";") if s.strip().startswith("stroke:")]

    assert colour("curve-0-0-loss") == colour("curve-1-0-val_accuracy")
    assert colour("curve-0-0-loss") != colour("curve-0-1-loss")


def test_png_is_a_png(tmp_path):
    out = tmp_path / "curves.png"
    summary = plot_histories([("m", history(4))], out)
    assert_png(out)
    assert summary.format == "png"
    assert [len(p.lines) for p in summary.panels] == [2, 2]


def test_pdf_by_its_suffix(tmp_path):
    out = tmp_path / "curves.PDF"
    assert plot_histories([("m", history(2))], out).format == "pdf"
    assert out.read_bytes()[:5] == b"%PDF-"


def test_every_numeric_key_is_a_metric_and_loss_comes_first():
    runs = [("reg", [{"epoch": 1, "seconds": 0.1, "val_mse": 2.0, "loss": 1.0, "val_r2": 0.1,
                      "val_mae": 1.0, "note": "text", "flag": True}])]
    assert metric_families(runs) == ["loss", "mse", "r2", "mae"]


def test_metrics_choose_the_panels_and_their_order(tmp_path):
    out = tmp_path / "c.svg"
    summary = plot_histories([("m", history(3, mse=1.0))], out,
                             metrics=["val_accuracy", "loss", "accuracy"])
    assert [p.metric for p in summary.panels] == ["accuracy", "loss"]
    assert [len(c) for c in svg_curves(out)] == [2, 2]


def test_a_run_without_a_metric_leaves_it_out_of_that_panel(tmp_path):
    out = tmp_path / "c.svg"
    summary = plot_histories([("clf", history(3)), ("reg", history(3, accuracy=False,
                                                                     val=False))], out)
    assert summary.panels[0].lines == ["clf loss", "clf val_loss", "reg loss"]
    assert summary.panels[1].lines == ["clf accuracy", "clf val_accuracy"]
    assert [len(c) for c in svg_curves(out)] == [3, 2]


def test_four_panels_wrap_onto_a_second_row(tmp_path):
    out = tmp_path / "c.svg"
    summary = plot_histories([("m", history(3, mse=1.0, mae=2.0))], out)
    assert len(summary.panels) == 4
    assert len(svg_curves(out)) == 4   # the two spare cells of the 2 x 3 grid are removed


def test_the_same_histories_give_the_same_svg(tmp_path):
    runs = [("m", history(3))]
    plot_histories(runs, tmp_path / "a.svg")
    plot_histories(runs, tmp_path / "b.svg")
    assert (tmp_path / "a.svg").read_bytes() == (tmp_path / "b.svg").read_bytes()


def test_a_single_epoch_is_drawn_as_a_point(tmp_path):
    out = tmp_path / "c.svg"
    summary = plot_histories([("m", history(1))], out)
    assert [len(c) for c in svg_curves(out)] == [2, 2]
    assert summary.panels[0].lines == ["m loss", "m val_loss"]


# ---------------------------------------------------------------- the command


@pytest.fixture(scope="module")
def models(tmp_path_factory, digits_csv) -> dict[str, Path]:
    """Digits models trained briefly with adam and sgd (validation split), one with no
    validation, one never trained (--epochs 0), and a kept checkpoint."""
    folder = tmp_path_factory.mktemp("plot_models")
    out = {}
    for name, extra in [("adam", ["--optimizer", "adam", "--validation-split", "0.2"]),
                        ("sgd", ["--optimizer", "sgd", "--validation-split", "0.2"]),
                        ("noval", []),
                        ("untrained", ["--epochs", "0"])]:
        path = folder / f"{name}.safetensors"
        argv = ["train", str(digits_csv), *DIGITS_ARCH, "--epochs", "3", *extra, "--quiet",
                "-o", str(path)]
        if name == "noval":
            argv += ["--checkpoint", str(folder / "noval.ckpt")]
        assert main(argv) == 0
        out[name] = path
    out["checkpoint"] = folder / "noval.ckpt"
    return out


def test_cli_overlays_two_models(capsys, tmp_path, models):
    out = tmp_path / "curves.svg"
    rc, stdout, err = run(capsys, "plot", models["adam"], models["sgd"], "-o", out)
    assert rc == 0, err
    assert stdout == ""
    assert err == f"wrote {out} (2 models, 2 panels)\n"
    assert [len(c) for c in svg_curves(out)] == [4, 4]
    legend = " ".join(t.text or "" for t in ET.parse(out).getroot().iter(f"{SVG}text"))
    assert "adam.safetensors" in legend and "sgd.safetensors" in legend
    assert "validation" in legend
    no_leftovers(tmp_path)


def test_cli_png_with_labels_and_json(capsys, tmp_path, models):
    out = tmp_path / "curves.png"
    rc, stdout, err = run(capsys, "plot", models["adam"], models["sgd"], "--label", "adam",
                          "--label", "sgd", "-o", out, "--json")
    assert rc == 0, err
    assert_png(out)
    doc = json.loads(stdout)
    assert doc["labels"] == ["adam", "sgd"]
    assert doc["format"] == "png"
    assert [p["metric"] for p in doc["panels"]] == ["loss", "accuracy"]
    assert doc["panels"][1]["lines"] == ["adam accuracy", "adam val_accuracy", "sgd accuracy",
                                         "sgd val_accuracy"]


def test_cli_metric_picks_the_panel(capsys, tmp_path, models):
    out = tmp_path / "loss.svg"
    rc, _, err = run(capsys, "plot", models["adam"], models["noval"], "--metric", "loss",
                     "-o", out)
    assert rc == 0, err
    assert err == f"wrote {out} (2 models, 1 panel)\n"
    assert svg_curves(out) == [["curve-0-0-loss", "curve-0-0-val_loss", "curve-0-1-loss"]]


def test_cli_plots_a_sweeps_best_trials_labelled_by_their_options(capsys, tmp_path, models):
    sweep = sweep_folder(tmp_path, "optimizer", [f"1,t1,adam,finished,3,0.1,{models['adam']}",
                                                 f"2,t2,sgd,finished,3,0.5,{models['sgd']}",
                                                 "3,t3,rmsprop,error,0,,"])
    out = tmp_path / "best.svg"
    rc, stdout, err = run(capsys, "plot", sweep, "--top", "1", "-o", out, "--json")
    assert rc == 0, err
    assert json.loads(stdout)["labels"] == ["--optimizer adam"]
    rc, stdout, err = run(capsys, "plot", sweep, "-o", out, "--json")
    assert json.loads(stdout)["labels"] == ["--optimizer adam", "--optimizer sgd"]
    assert [len(c) for c in svg_curves(out)] == [4, 4]


LEADERBOARD_HEADER = "rank,trial,optimizer,status,epochs,val_loss,model\n"


@pytest.mark.parametrize("text, needle", [
    ("rank,trial,optimizer,epochs,val_loss,model\n1,t1,adam,3,0.1,{adam}\n",
     "leaderboard.csv:1: damaged leaderboard: the header has no column 'status'"),
    ("rank,status,optimizer,trial,epochs,val_loss,model\n1,finished,adam,t1,3,0.1,{adam}\n",
     "leaderboard.csv:1: damaged leaderboard: the header has 'status' before 'trial'"),
    (LEADERBOARD_HEADER + "1,t1,adam,finished,3,0.1,{adam}\n2,t2\n",
     "leaderboard.csv:3: damaged leaderboard: expected 7 fields, found 2"),
    (LEADERBOARD_HEADER + "1,t1,adam,finished,three,0.1,{adam}\n",
     "leaderboard.csv:2: damaged leaderboard: epochs 'three' is not a whole number"),
    (LEADERBOARD_HEADER + "1,t1,adam,finished,3,low,{adam}\n",
     "leaderboard.csv:2: damaged leaderboard: val_loss 'low' is not a number"),
    (LEADERBOARD_HEADER.encode() + b"1,t1,\xff\xfe,finished,3,0.1,x\n",
     "leaderboard.csv: damaged leaderboard ('utf-8' codec can't decode byte 0xff"),
], ids=["no-status", "status-first", "short-row", "epochs-text", "metric-text", "not-utf8"])
def test_cli_damaged_leaderboard_is_one_line(capsys, tmp_path, models, text, needle):
    sweep = tmp_path / "sweep"
    sweep.mkdir()
    board = sweep / "leaderboard.csv"
    if isinstance(text, bytes):
        board.write_bytes(text)
    else:
        board.write_text(text.format(adam=models["adam"]))
    rc, out, err = run(capsys, "plot", sweep, "-o", tmp_path / "best.svg")
    assert_one_line_error(rc, out, err, f"{board}", needle)
    assert not (tmp_path / "best.svg").exists()


def test_cli_plots_a_checkpoint(capsys, tmp_path, models):
    out = tmp_path / "ckpt.svg"
    rc, _, err = run(capsys, "plot", models["checkpoint"], "-o", out)
    assert rc == 0, err
    assert [len(c) for c in svg_curves(out)] == [1, 1]


def test_cli_default_labels_use_the_path_when_names_clash(capsys, tmp_path, models):
    twin = tmp_path / "twin"
    twin.mkdir()
    (twin / "adam.safetensors").write_bytes(models["adam"].read_bytes())
    out = tmp_path / "c.svg"
    rc, stdout, err = run(capsys, "plot", models["adam"], twin / "adam.safetensors", "-o", out,
                          "--json")
    assert rc == 0, err
    assert json.loads(stdout)["labels"] == [str(models["adam"]), str(twin / "adam.safetensors")]


def test_cli_existing_figure_is_replaced(capsys, tmp_path, models):
    out = tmp_path / "c.png"
    out.write_bytes(b"old")
    rc, _, err = run(capsys, "plot", models["adam"], "-o", out)
    assert rc == 0, err
    assert_png(out)
    no_leftovers(tmp_path)


@pytest.mark.parametrize("case", ["missing", "folder", "untrained", "suffix", "no-suffix",
                                  "no-dir", "out-is-dir", "labels", "metric"])
def test_cli_bad_input_is_one_line(capsys, tmp_path, models, case):
    good = models["adam"]
    argv, needles = {
        "missing": ([tmp_path / "nope.safetensors"], ["nope.safetensors: no such model file"]),
        "folder": ([tmp_path], ["a folder, but not a sweep's (no leaderboard.csv)"]),
        "untrained": ([good, models["untrained"]],
                      ["untrained.safetensors: no training history to plot"]),
        "suffix": ([good, "-o", tmp_path / "c.gif"],
                   ["c.gif: cannot tell the figure format", "expected .png, .svg, .pdf",
                    "received '.gif'"]),
        "no-suffix": ([good, "-o", tmp_path / "curves"], ["received '(none)'"]),
        "no-dir": ([good, "-o", tmp_path / "no" / "c.png"],
                   ["cannot write the figure: folder", "does not exist"]),
        "out-is-dir": ([good, "-o", tmp_path / "d.png"], ["d.png: cannot write the figure: "
                                                          "it is a folder"]),
        "labels": ([good, models["sgd"], "--label", "a"],
                   ["expected one --label per model (2), received 1"]),
        "metric": ([good, "--metric", "f1"],
                   ["no metric 'f1' in the histories; available: loss, accuracy"]),
    }[case]
    (tmp_path / "d.png").mkdir()
    if "-o" not in argv:
        argv = [*argv, "-o", tmp_path / "c.png"]
    rc, out, err = run(capsys, "plot", *argv)
    assert_one_line_error(rc, out, err, *needles)
    assert not (tmp_path / "c.png").exists()
    no_leftovers(tmp_path)


def test_cli_without_matplotlib_says_how_to_install_it(capsys, tmp_path, models,
                                                       monkeypatch):
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    rc, out, err = run(capsys, "plot", models["adam"], "-o", tmp_path / "c.png")
    assert_one_line_error(rc, out, err)
    assert err == "nncli: error: nncli plot needs matplotlib: pip install 'nncli[plot]'\n"
    assert not (tmp_path / "c.png").exists()


def test_other_commands_never_import_matplotlib(models):
    code = ("import sys, contextlib, io\n"
            "from nncli.cli import main\n"
            "with contextlib.redirect_stdout(io.StringIO()), "
            "contextlib.redirect_stderr(io.StringIO()):\n"
            "    rcs = [main(['--help']), main(['plot', '--help']),\n"
            f"           main(['info', {str(models['adam'])!r}])]\n"
            "print(rcs, 'matplotlib' in sys.modules)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[0, 0, 0] False"


def test_plot_help_shows_an_example(capsys):
    rc, out, err = run(capsys, "plot", "--help")
    assert rc == 0
    assert "Example" in out and "nncli plot" in out
    assert "nncli[plot]" in out
