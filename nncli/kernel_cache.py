"""Where Numba caches nncli's compiled kernels: a folder per user, per nncli version and per
state of the kernels' source, never the installed package.

Numba's default is the package's own ``__pycache__``. pip does not know those files, so
reinstalling or uninstalling nncli leaves ``site-packages/nncli/__pycache__`` behind, and Python
takes that leftover ``nncli`` folder (no ``__init__.py``) for a namespace package that hides a
later editable install: every command then fails with "cannot import name '__version__'"
(issue 10). So nncli always names the folder itself, the first of:

1. ``$NNCLI_CACHE_DIR/<key>``, when NNCLI_CACHE_DIR is set;
2. ``$NUMBA_CACHE_DIR`` as given, when the user set Numba's own variable (it applies to every
   Numba program; benchmarks use it for a cold cache);
3. ``<user cache>/nncli/<key>``, the platform's per-user cache folder: ``$XDG_CACHE_HOME``
   or ``~/.cache`` (Linux, BSD), ``~/Library/Caches`` (macOS), ``%LOCALAPPDATA%`` (Windows).

The key is the version and a digest of the kernel modules' source and of their compile flags
(``cache_key``, ``KERNEL_SOURCES``): Numba notices a change to a compiled function's own file
only, so after an edit to a module it calls or to the flags it reads (or a ``git pull`` into an
editable install that keeps the version number) it would load stale machine code.

Numba adds one subfolder per source folder (``nncli_<hash of its path>``), so a site-packages
install and an editable checkout of the same version do not share files. The folder is tried
(made, and a file created in it) before numba is imported: when that fails, Numba would quietly
fall back to the package folder, so nncli runs uncached instead, compiling the kernels in memory
on every run. ``pip uninstall nncli`` leaves nothing in site-packages; the cache folder is the
user's to delete.

Only the standard library is imported at module level: this runs before numba is. Nothing is
printed here; the command line words the note.
"""

from __future__ import annotations

import hashlib
import os
import sys
import tempfile
from collections.abc import Callable, Mapping, MutableMapping
from pathlib import Path

from nncli import __version__

ENV_VAR = "NNCLI_CACHE_DIR"
KERNEL_SOURCES = ("kernels.py", "kernels_conv.py", "kernels_dot.py", "kernels_gemm.py",
                  "kernels_preprocess.py", "kernels_text.py", "kernels_update.py",
                  "kernel_flags.py")
PACKAGE = Path(__file__).resolve().parent


def cache_key(version: str = __version__, package: Path = PACKAGE) -> str:
    """``<version>-<12 hex digits of the kernel modules' source>`` (see the module docstring)."""
    digest = hashlib.sha256()
    for name in KERNEL_SOURCES:
        digest.update((package / name).read_bytes())
    return f"{version}-{digest.hexdigest()[:12]}"


def user_cache_root(env: Mapping[str, str], platform: str = sys.platform) -> Path:
    """The platform's per-user cache folder (platformdirs' ``user_cache_dir`` without the app
    name), from ``env`` rather than the process's environment so that tests can pass one."""
    home = Path(env.get("HOME") or env.get("USERPROFILE") or os.path.expanduser("~"))
    if platform.startswith("win"):
        return Path(env["LOCALAPPDATA"]) if env.get("LOCALAPPDATA") else home / "AppData" / "Local"
    if platform == "darwin":
        return home / "Library" / "Caches"
    xdg = env.get("XDG_CACHE_HOME", "")
    return Path(xdg) if os.path.isabs(xdg) else home / ".cache"  # XDG: ignore relative paths


def cache_folder(env: Mapping[str, str], platform: str = sys.platform,
                 key: str | None = None) -> Path:
    """Where Numba should cache the kernels (see the module docstring; ``key`` defaults to
    ``cache_key()``); not checked here."""
    key = cache_key() if key is None else key
    if env.get(ENV_VAR):
        return Path(env[ENV_VAR]).expanduser().absolute() / key
    if env.get("NUMBA_CACHE_DIR"):
        return Path(env["NUMBA_CACHE_DIR"])
    return user_cache_root(env, platform) / "nncli" / key


def writable_folder(folder: Path) -> bool:
    """Can files be created in ``folder`` (made if missing)? Tried, as Numba does."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=folder).close()
        return True
    except OSError:
        return False


def use_cache_folder(env: MutableMapping[str, str]) -> bool:
    """Point Numba at nncli's cache folder by setting NUMBA_CACHE_DIR in ``env`` (the process's
    environment, before numba is imported). False when the folder cannot be written: then call
    ``run_uncached`` before the kernels are imported."""
    folder = cache_folder(env)
    if not writable_folder(folder):
        return False
    env["NUMBA_CACHE_DIR"] = str(folder)
    return True


def run_uncached(env: Mapping[str, str]) -> str:
    """Turn Numba's cache off in this process (each ``cache=True`` kernel compiles in memory,
    and nothing is written anywhere); return the note for the user."""
    from numba.core.dispatcher import Dispatcher

    Dispatcher.enable_caching = lambda self: None
    return (f"note: cannot write the kernel cache folder {cache_folder(env)} (set {ENV_VAR} to "
            f"a writable folder); the kernels are compiled on every run (about 20 s)")



def wide_vector_features(env: Mapping[str, str]) -> str | None:
    """NUMBA_CPU_FEATURES that let LLVM use 512-bit vectors on a CPU with AVX-512, or None
    (no AVX-512, or the user chose the features).

    LLVM's tuning for Intel's server parts (skylake-avx512, icelake-server, sapphirerapids)
    prefers 256-bit vectors, so nncli's products ran at AVX2 width there (measured: one C/256
    epoch 0.98 s compiled for skylake-avx512 against 0.70-0.75 s for this AMD CPU, 0.76 s with
    the preference turned off). The host's features plus ``-prefer-256-bit`` turn it off
    whatever the vendor's tuning; Numba keys its cache by the features, so a changed setting
    compiles anew.
    """
    if env.get("NUMBA_CPU_FEATURES") is not None:
        return None
    try:
        import llvmlite.binding as ll

        features = ll.get_host_cpu_features()
    except Exception:  # noqa: BLE001 - an LLVM that cannot tell: leave Numba's choice
        return None
    if not features.get("avx512f"):
        return None
    return features.flatten() + ",-prefer-256-bit"


def configure(env: MutableMapping[str, str]) -> bool:
    """Numba's settings for nncli's kernels, in ``env`` (the process's environment, before
    numba is imported): the cache folder (False when it cannot be written: then call
    ``run_uncached``), LLVM's optimisation level and the vector width. The one place that
    decides them, for the command line, a sweep's trials and the tests alike (a different
    setting is a different cache entry, compiled anew)."""
    cached = use_cache_folder(env)
    # LLVM at -O2 rather than Numba's -O3: the first run after install compiles in 16.7 s
    # instead of 19.8 s, and the kernels run as fast (both measured); NUMBA_OPT still wins
    env.setdefault("NUMBA_OPT", "2")
    features = wide_vector_features(env)
    if features is not None:
        env["NUMBA_CPU_FEATURES"] = features
    # Numba imports SciPy's BLAS when SciPy is installed (0.1 s of every start), for np.dot,
    # which no kernel of nncli uses; in nncli's own process, it is told there is none
    sys.modules.setdefault("scipy.linalg.cython_blas", None)  # type: ignore[arg-type]
    return cached


def prepare_numba(threads: int | None = None,
                  say: Callable[[str], None] = lambda message: None) -> None:
    """Get Numba ready before nncli's kernels are first imported, in any process that runs them
    (the command line, a sweep's trial on another machine): the thread pool size, LLVM's
    optimisation level, and the cache folder of the compiled kernels, which is per user and per
    nncli version, never the installed package. When that folder cannot be written, the kernels
    are compiled on every run (~20 s) and ``say`` gets one note."""
    # Numba reads its pool size once, at import: ask for enough before the first import.
    if threads is not None and threads > (os.cpu_count() or 1) and "numba" not in sys.modules:
        os.environ["NUMBA_NUM_THREADS"] = str(threads)
    if "nncli.kernels" in sys.modules:
        return
    cached = configure(os.environ)
    if "numba" in sys.modules:
        # a script imported numba first: it read its settings then, so have it read them again
        # (else the kernels would be cached beside their source and tuned for another width)
        from numba.core import config

        config.reload_config()
    if cached:
        try:
            import nncli.kernels  # noqa: F401 - compiles or loads the kernels' cache index
            return
        except RuntimeError as e:  # Numba found no cache folder it could use
            if "no locator available" not in str(e):
                raise
    say(run_uncached(os.environ))
    import nncli.kernels  # noqa: F401
