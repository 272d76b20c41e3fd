"""Where Numba caches nncli's compiled kernels (issue 10): a per-user folder keyed by nncli's
version, never the installed package.

The folder choice is tested as a function of the environment and the platform; the command
line through real subprocesses, since Numba reads NUMBA_CACHE_DIR once, at import. The last test
replays the issue: install, run, reinstall as editable, run from elsewhere, uninstall.
"""

from __future__ import annotations

import json
import os
import shutil
import site
import subprocess
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import numpy as np
import pytest

import nncli
from nncli import __version__
from nncli.kernel_cache import (ENV_VAR, KERNEL_SOURCES, cache_folder, cache_key,
                                use_cache_folder, user_cache_root, writable_folder)

REPO = Path(__file__).resolve().parent.parent
PACKAGE = Path(nncli.__file__).resolve().parent
KEY = cache_key()
TINY_ARCH = ["--arch", "2relu-1linear", "--loss", "mse"]


# ---------------------------------------------------------------- helpers


def cache_files(folder: Path) -> set[Path]:
    """Numba's cache files (index .nbi, compiled code .nbc) under ``folder``."""
    return {p for pattern in ("*.nbi", "*.nbc") for p in folder.rglob(pattern)}


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without the settings that choose the cache folder, plus
    ``extra``. (A command run in-process by another test sets NUMBA_CACHE_DIR here.)"""
    drop = {"NUMBA_CACHE_DIR", ENV_VAR, "XDG_CACHE_HOME", "NNCLI_DEBUG", "FORCE_COLOR",
            "PYTHONPATH", "_NNCLI_COMPLETE"}
    return {**{k: v for k, v in os.environ.items() if k not in drop}, **extra}


def nncli(*argv, env: dict[str, str], cwd: Path | None = None,
          program: list[str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([*(program or [sys.executable, "-m", "nncli"]), *map(str, argv)],
                          capture_output=True, text=True, env=env, cwd=cwd, timeout=300)


@pytest.fixture
def tiny_csv(tmp_path) -> Path:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 3))
    path = tmp_path / "tiny.csv"
    np.savetxt(path, np.column_stack([X, X[:, 0] - X[:, 1]]), delimiter=",", fmt="%.4f",
               header="a,b,c,y", comments="")
    return path


# ---------------------------------------------------------------- the folder


@pytest.mark.parametrize("platform, env, expected", [
    ("linux", {"HOME": "/h", "XDG_CACHE_HOME": "/x"}, "/x"),
    ("linux", {"HOME": "/h"}, "/h/.cache"),
    ("linux", {"HOME": "/h", "XDG_CACHE_HOME": ""}, "/h/.cache"),
    ("linux", {"HOME": "/h", "XDG_CACHE_HOME": "rel/cache"}, "/h/.cache"),  # XDG: absolute only
    ("freebsd14", {"HOME": "/h", "XDG_CACHE_HOME": "/x"}, "/x"),
    ("darwin", {"HOME": "/h", "XDG_CACHE_HOME": "/x"}, "/h/Library/Caches"),
    ("win32", {"USERPROFILE": "/u", "LOCALAPPDATA": "/u/AppData/Local"}, "/u/AppData/Local"),
    ("win32", {"USERPROFILE": "/u"}, "/u/AppData/Local"),
])
def test_user_cache_root_follows_the_platform(platform, env, expected):
    assert user_cache_root(env, platform) == Path(expected)


def test_the_folder_is_keyed_and_the_overrides_win_in_order(tmp_path):
    env = {"HOME": "/h", "XDG_CACHE_HOME": "/x"}
    assert cache_folder(env, "linux") == Path("/x/nncli", KEY)
    assert cache_folder(env, "linux", key="9.9") == Path("/x/nncli/9.9")
    numba_env = {**env, "NUMBA_CACHE_DIR": "/numba"}
    assert cache_folder(numba_env, "linux") == Path("/numba")  # Numba's own variable, as given
    nncli_env = {**numba_env, ENV_VAR: "/mine"}
    assert cache_folder(nncli_env, "linux") == Path("/mine", KEY)  # nncli's wins
    assert cache_folder({**env, ENV_VAR: ""}, "linux") == Path("/x/nncli", KEY)
    assert cache_folder({ENV_VAR: "rel"}, "linux") == Path.cwd() / "rel" / KEY


def test_the_key_changes_with_any_kernel_module_and_nothing_else(tmp_path):
    # Numba would notice an edit to a kernel's own file only: a changed callee must change the key
    for name in KERNEL_SOURCES:
        (tmp_path / name).write_bytes((PACKAGE / name).read_bytes())
    (tmp_path / "cli.py").write_text("x = 1\n")
    key = cache_key("1.0", tmp_path)
    assert key.startswith("1.0-") and key == cache_key("1.0", tmp_path)
    assert cache_key("1.0", PACKAGE) == key
    (tmp_path / "cli.py").write_text("x = 2\n")
    assert cache_key("1.0", tmp_path) == key
    for name in KERNEL_SOURCES:
        original = (tmp_path / name).read_bytes()
        (tmp_path / name).write_bytes(original + b"# edited\n")
        assert cache_key("1.0", tmp_path) != key, name
        (tmp_path / name).write_bytes(original)


def test_writable_folder_makes_the_folder_or_says_it_cannot(tmp_path):
    assert writable_folder(tmp_path / "a" / "b") and (tmp_path / "a" / "b").is_dir()
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    assert not writable_folder(blocker / "cache")  # a folder under a file can never be made


def test_use_cache_folder_sets_numba_s_variable_only_when_it_can_write(tmp_path):
    env = {ENV_VAR: str(tmp_path / "cache")}
    assert use_cache_folder(env) is True
    assert env["NUMBA_CACHE_DIR"] == str(tmp_path / "cache" / KEY)
    assert (tmp_path / "cache" / KEY).is_dir()
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    env = {ENV_VAR: str(blocker)}
    assert use_cache_folder(env) is False
    assert "NUMBA_CACHE_DIR" not in env


def test_importing_the_module_does_not_import_numba():
    code = "import sys, nncli.kernel_cache; print('numba' in sys.modules)"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=clean_env(), timeout=60)
    assert proc.stdout.strip() == "False", proc.stderr


# ---------------------------------------------------------------- the command line


def test_kernels_are_cached_in_the_user_cache_folder_not_in_the_package(tmp_path, tiny_csv):
    home = tmp_path / "home"
    env = clean_env(HOME=str(home), USERPROFILE=str(home), XDG_CACHE_HOME=str(tmp_path / "xdg"),
                    LOCALAPPDATA=str(tmp_path / "local"))
    expected = cache_folder(env)
    assert tmp_path in expected.parents and expected.name == KEY
    in_package = cache_files(PACKAGE)
    model = tmp_path / "m.safetensors"
    first = nncli("train", tiny_csv, *TINY_ARCH, "--epochs", "1", "-o", model, env=env)
    assert first.returncode == 0, first.stderr
    assert "compiling kernels" in first.stderr  # train.kernels_cached() found no index
    assert {p.suffix for p in cache_files(expected)} == {".nbi", ".nbc"}
    # a kernel that Numba refuses to cache (it only warns) would compile again on every run
    indexed = {p.name.split("-")[0] for p in cache_files(expected) if p.suffix == ".nbi"}
    assert {"kernels.train_batches", "kernels_gemm._gemm", "kernels_gemm.dense_nn"} <= indexed
    assert cache_files(PACKAGE) == in_package
    second = nncli("train", tiny_csv, *TINY_ARCH, "--epochs", "1", "-o", model, env=env)
    assert second.returncode == 0, second.stderr
    assert "compiling kernels" not in second.stderr  # ...and finds it in the new folder
    assert cache_files(PACKAGE) == in_package


@pytest.mark.parametrize("first", ["", "import numba; "])
def test_a_script_using_the_library_caches_in_the_user_folder_too(tmp_path, first):
    # benchmarks and scripts import nncli.train or nncli.model without the command line, some
    # after numba itself: the kernels must not land in the package folder either
    env = clean_env(HOME=str(tmp_path / "home"), XDG_CACHE_HOME=str(tmp_path / "xdg"))
    expected = cache_folder(env)
    in_package = cache_files(PACKAGE)
    code = (f"{first}import numpy as np; from nncli.data import Dataset; "
            "from nncli.train import TrainConfig, fit, prepare; "
            "X = np.arange(20, dtype=np.float32).reshape(10, 2); y = X[:, :1] * 2; "
            "list(fit(prepare(TrainConfig(arch='2relu-1linear', loss='mse', epochs=1), "
            "Dataset.from_arrays(X, y))))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert {p.suffix for p in cache_files(expected)} == {".nbi", ".nbc"}
    assert cache_files(PACKAGE) == in_package


def test_no_writable_cache_folder_runs_uncached_with_one_note(tmp_path, tiny_csv):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    env = clean_env(**{ENV_VAR: str(blocker)})
    in_package = cache_files(PACKAGE)
    proc = nncli("train", tiny_csv, *TINY_ARCH, "--epochs", "0", "-q", "-o",
                 tmp_path / "m.safetensors", env=env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.splitlines() == [
        f"nncli: note: cannot write the kernel cache folder {blocker / KEY} (set "
        f"{ENV_VAR} to a writable folder); the kernels are compiled on every run (about 20 s)"]
    assert cache_files(PACKAGE) == in_package


# ---------------------------------------------------------------- issue 10, replayed


def _running_site_packages() -> list[str]:
    """The folders this Python installs packages into and imports them from: a venv's own
    site-packages when the tests run from a venv, the interpreter's otherwise (with the user's
    folder where this Python reads it)."""
    folders = list(site.getsitepackages())
    if site.ENABLE_USER_SITE:
        folders.append(site.getusersitepackages())
    return [f for f in dict.fromkeys(folders) if os.path.isdir(f)]


def throwaway_venv(folder: Path) -> Path:
    """A venv at ``folder`` that imports this Python's packages (numba, typer, pip, ...: nothing
    is downloaded) after its own, and returns its bin folder.

    ``--system-site-packages`` would not do: it shows the base interpreter's packages, and
    when the tests run from a venv (the README's way) those lack nncli's dependencies. So a
    .pth file lists this Python's site folders instead. Its lines are plain paths, so the .pth
    files in those folders are not run: the nncli that this Python has installed (editable or
    not) adds no import hook or path of its own there.
    """
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", folder], check=True,
                   timeout=120)
    bindir = folder / ("Scripts" if os.name == "nt" else "bin")
    purelib = subprocess.run([bindir / "python", "-c",
                              "import sysconfig; print(sysconfig.get_path('purelib'))"],
                             capture_output=True, text=True, check=True, timeout=60)
    pth = Path(purelib.stdout.strip()) / "_running_python.pth"
    pth.write_text("".join(f"{f}\n" for f in _running_site_packages()))
    return bindir


def _can_build_here() -> bool:
    """Can this Python's setuptools build nncli without pip's isolated build environment?
    (pyproject.toml asks for setuptools >= 68; bdist_wheel is built in from 70.1, else it
    needs the wheel package.)"""
    try:
        major, minor = (int(part) for part in version("setuptools").split(".")[:2])
    except (PackageNotFoundError, ValueError):
        return False
    if (major, minor) >= (70, 1):
        return True
    try:
        version("wheel")
    except PackageNotFoundError:
        return False
    return major >= 68


def test_reinstalling_as_editable_after_a_run_still_works(tmp_path, tiny_csv):
    """Issue 10: ``pip install .``, a command (which compiles the kernels), then ``pip install
    -e .``. When the kernels were cached in site-packages/nncli/__pycache__, pip left that
    folder behind and Python imported it as a namespace package instead of the editable
    install: every command failed with "cannot import name '__version__'".

    A throwaway venv sees this Python's packages (see throwaway_venv) but installs its own
    nncli, from a copy of the sources. The builds run without pip's isolation when this
    Python's setuptools can build nncli, else pip fetches setuptools.
    """
    copy = tmp_path / "src"
    copy.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, copy / name)
    shutil.copytree(REPO / "nncli", copy / "nncli",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.nbi", "*.nbc"))
    venv = tmp_path / "venv"
    bindir = throwaway_venv(venv)
    python = [str(bindir / "python")]
    program = [str(bindir / "nncli")]
    env = clean_env(**{ENV_VAR: str(tmp_path / "cache")})
    build = ["--no-build-isolation"] if _can_build_here() else []

    def pip(*args) -> None:
        proc = subprocess.run([*python, "-m", "pip", "--disable-pip-version-check", *args],
                              capture_output=True, text=True, env=env, timeout=300)
        assert proc.returncode == 0, proc.stdout + proc.stderr

    def where_nncli() -> Path:
        proc = subprocess.run([*python, "-c", "import nncli; print(nncli.__file__)"],
                              capture_output=True, text=True, env=env, cwd=tmp_path,
                              timeout=60)
        assert proc.returncode == 0, proc.stderr
        return Path(proc.stdout.strip()).parent

    pip("install", "--no-deps", *build, copy)
    installed = where_nncli()
    assert installed.parent.name == "site-packages" and venv in installed.parents
    model = tmp_path / "m.safetensors"
    run = nncli("train", tiny_csv, *TINY_ARCH, "--epochs", "1", "-q", "-o", model, env=env,
                cwd=tmp_path, program=program)
    assert run.returncode == 0, run.stderr
    assert cache_files(installed) == set()
    assert cache_files(tmp_path / "cache" / KEY)

    pip("install", "--no-deps", *build, "-e", copy)
    assert where_nncli() == copy / "nncli"
    assert not installed.exists()  # nothing left behind to shadow the editable install
    version_run = nncli("--version", env=env, cwd=tmp_path, program=program)
    assert (version_run.returncode, version_run.stdout) == (0, f"nncli {__version__}\n"), \
        version_run.stderr
    info = nncli("info", model, "--json", env=env, cwd=tmp_path, program=program)
    assert info.returncode == 0, info.stderr
    assert json.loads(info.stdout)["arch"] == "2relu-1linear"

    pip("uninstall", "-y", "nncli")
    site = installed.parent  # pip removes it too when nothing else is left in it
    left = sorted(p.name for p in site.iterdir() if "nncli" in p.name) if site.exists() else []
    assert left == []


def test_wide_vectors_on_avx512_and_the_users_features_win():
    import llvmlite.binding as ll

    from nncli.kernel_cache import wide_vector_features

    assert wide_vector_features({"NUMBA_CPU_FEATURES": "+avx2"}) is None
    features = wide_vector_features({})
    if ll.get_host_cpu_features().get("avx512f"):
        assert features.endswith(",-prefer-256-bit") and "+avx512f" in features
    else:
        assert features is None
