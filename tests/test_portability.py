"""The same seed gives the same model on any x86-64 CPU with AVX2 or AVX-512, at any thread
count: each network is trained through the real command line twice, once in a process whose
kernels are compiled for a Haswell (AVX2, 256-bit vectors, the 6 x 16 tile) on one thread and
once compiled for this machine (AVX-512 where it has it) on two threads, and the two model
files must hold the same bits.

The narrow dot products (nncli.kernels_dot), whose sums LLVM would otherwise vectorise at the
host's width, are also compared alone, in float32 and float64, on every kind of block and tail.
Each target has one kernel cache folder for the whole module, so the Haswell kernels compile
once and the host's come from the cache the other tests use."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

try:
    from clirun import tensors_equal
except ImportError:                       # tests/ imported as a package
    from tests.clirun import tensors_equal

DATASETS = Path(__file__).resolve().parent.parent / "datasets"


@pytest.fixture(scope="module")
def targets(tmp_path_factory) -> dict[str, tuple[dict[str, str], int]]:
    """(environment, threads) of each target: Haswell on one thread with a cache folder of its
    own, and this machine on two threads with the settings conftest gave this process."""
    haswell = {**os.environ, "NUMBA_CPU_NAME": "haswell", "NUMBA_CPU_FEATURES": "",
               "NNCLI_CACHE_DIR": str(tmp_path_factory.mktemp("haswell_cache")),
               "NUMBA_NUM_THREADS": "1"}
    haswell.pop("NUMBA_CACHE_DIR", None)
    host = {**os.environ, "NUMBA_NUM_THREADS": "2"}
    return {"haswell": (haswell, 1), "host": (host, 2)}


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict[str, Path]:
    """Small generated sets: 320 rows of 100 features in 10 classes; 200 signals of 40 samples
    labelled by whether a bump sits in their first half."""
    folder = tmp_path_factory.mktemp("portability_data")
    rng = np.random.default_rng(7)
    X = rng.standard_normal((320, 100)).astype(np.float32)
    y = np.argmax(X[:, :10] + 0.5 * rng.standard_normal((320, 10)), axis=1)
    np.savez(folder / "dense.npz", X=X, y=y)
    t = np.arange(40)
    centre = rng.uniform(4, 36, 200)
    S = np.exp(-0.5 * ((t - centre[:, None]) / 2.0) ** 2) + 0.3 * rng.standard_normal((200, 40))
    np.savez(folder / "signals.npz", X=S.astype(np.float32), y=(centre < 20).astype(np.float32))
    return {"dense": folder / "dense.npz", "signals": folder / "signals.npz",
            "digits": DATASETS / "digits.csv"}


# name -> (data set, train options): the benchmark's network C with a tanh layer at batch 32,
# a conv net ending in one sigmoid unit, and the digits network
MODELS = {
    "512relu-100tanh-10linear": ("dense", ["--loss", "sparse_cce", "--logits", "--epochs", "3",
                                           "--batch-size", "32"]),
    "8conv5relu-8conv3s2relu-1sigmoid": ("signals", ["--loss", "bce", "--epochs", "3",
                                                     "--batch-size", "16"]),
    "25relu-15relu-10linear": ("digits", ["--loss", "sparse_cce", "--logits", "--epochs", "3"]),
}


def train(target: tuple[dict[str, str], int], data: Path, arch: str, options: list[str],
          out: Path) -> Path:
    env, threads = target
    proc = subprocess.run([sys.executable, "-m", "nncli", "train", str(data), "--arch", arch,
                           *options, "--seed", "3", "--threads", str(threads), "--quiet",
                           "-o", str(out)], capture_output=True, text=True, env=env,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


@pytest.mark.parametrize("arch", list(MODELS))
def test_the_same_model_on_avx2_one_thread_and_avx512_two_threads(arch, targets, data,
                                                                   tmp_path):
    name, options = MODELS[arch]
    models = [train(targets[t], data[name], arch, options, tmp_path / f"{t}.safetensors")
              for t in ("haswell", "host")]
    tensors_equal(*models)


# C = A @ B^T in float32 and float64 for reductions in one partial vector, whole vectors, whole
# ones and a partial, and long ones through the 4 x 4 blocks; rows past the last 4; the threaded
# path; written to the file argv[1]
DOT_PRODUCTS = """
import sys
import numpy as np
import nncli.model  # readies Numba: the cache folder, the vector width
from nncli import kernels as K

rng = np.random.default_rng(5)
out = {}
for dtype in (np.float32, np.float64):
    for m, k, p in [(6, 15, 10), (5, 16, 3), (9, 25, 7), (8, 64, 10), (7, 100, 9), (130, 512, 10)]:
        A = rng.standard_normal((m, k)).astype(dtype)
        B = rng.standard_normal((p, k)).astype(dtype)
        C = np.empty((m, p), dtype)
        K.matmul_nt(C, A, B)
        out[f"{np.dtype(dtype).name} {m} {k} {p}"] = C
np.savez(sys.argv[1], **out)
"""


def test_the_same_dot_products_on_avx2_and_avx512(targets, tmp_path):
    results = []
    for name in ("haswell", "host"):
        env, _ = targets[name]
        path = tmp_path / f"{name}.npz"
        proc = subprocess.run([sys.executable, "-c", DOT_PRODUCTS, str(path)], capture_output=True,
                              text=True, env=env, timeout=300)
        assert proc.returncode == 0, proc.stderr[-3000:]
        results.append(np.load(path))
    haswell, host = results
    assert sorted(haswell.files) == sorted(host.files)
    for key in haswell.files:
        assert np.array_equal(haswell[key], host[key]), key
