"""Running the real ``nncli`` entry point in-process, what a one-line error looks like, and
two model files compared bit for bit: shared by the CLI tests of every command."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from nncli.cli import main


def run(capsys, *argv) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of ``nncli ARGV`` run in-process.

    An exception escaping ``main`` is a bug of its own (the user would see a traceback), so it
    fails the test with what was printed instead of erroring out.
    """
    try:
        rc = main([str(a) for a in argv])
    except (Exception, SystemExit) as e:
        out, err = capsys.readouterr()
        pytest.fail(f"main({[str(a) for a in argv]}) raised {type(e).__name__}: {e}\n"
                    f"stdout: {out[-2000:]}\nstderr: {err[-2000:]}")
    out, err = capsys.readouterr()
    return rc, out, err


def assert_one_line_error(rc: int, out: str, err: str, *needles: str) -> str:
    """Exit 2, nothing on stdout, exactly one ``nncli: error:`` line on stderr; return it."""
    assert rc == 2, f"exit code {rc}, stderr: {err}"
    assert out == ""
    assert "Traceback" not in err
    assert err.startswith("nncli: error: "), err
    assert err.endswith("\n") and err.count("\n") == 1, f"not one line: {err!r}"
    for needle in needles:
        assert needle in err, f"{needle!r} not in {err!r}"
    return err


def tensors_equal(a: Path, b: Path) -> None:
    """Every tensor of model files ``a`` and ``b`` the same, bit for bit."""
    from safetensors.numpy import load_file

    ta, tb = load_file(str(a)), load_file(str(b))
    assert sorted(ta) == sorted(tb)
    for name in ta:
        assert ta[name].dtype == tb[name].dtype and ta[name].shape == tb[name].shape, name
        assert np.array_equal(ta[name], tb[name]), f"{name} differs"


def sweep_folder(root: Path, column: str, rows: list[str]) -> Path:
    """A sweep's folder as nncli sweep leaves it, for nncli plot: leaderboard.csv best first,
    with one varied option ``column``; ``rows`` are its lines after the header
    ("rank,trial,<column>,status,epochs,val_loss,model")."""
    sweep = root / "sweep"
    sweep.mkdir()
    (sweep / "leaderboard.csv").write_text(
        f"rank,trial,{column},status,epochs,val_loss,model\n" + "".join(r + "\n" for r in rows))
    return sweep


def interrupt_after_checkpoint(argv: list[str], env: dict, cwd: Path,
                               out_dir: Path) -> tuple[int, str]:
    """(exit code, stderr) of the sweep ``argv`` run as its own process and sent Ctrl-C once
    a trial has checkpointed into ``out_dir`` (within 90 s)."""
    import signal
    import subprocess
    import time

    proc = subprocess.Popen(argv, env=env, cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 90
        while not list((out_dir / "tune").glob("trial_*/checkpoint_*")):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "no trial checkpointed within 90 s"
            time.sleep(0.2)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    return proc.returncode, err
