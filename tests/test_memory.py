"""The memory a network needs, checked before anything is allocated."""

from __future__ import annotations

import pytest

import nncli.memory as M
from clirun import assert_one_line_error, run
from nncli.arch import parse_arch
from nncli.errors import UsageError
from nncli.model import Model

HUGE = "100000000relu-10linear"   # a typo of a few zeros: 7.5e9 parameters on 64 inputs


def test_training_bytes_counts_what_fit_allocates():
    layers = parse_arch("7relu-5relu-3linear")
    model = Model.create(layers, 11, "sparse_cce", True)
    P, batch = model.params.size, 16
    outputs = 7 + 5 + 3
    # adam: weights, gradients, m and v, and the rollback copies of weights, m and v
    assert M.training_bytes(layers, 11, 1, batch, "adam") == (
        P, 4 * (7 * P + 4 * batch * outputs + batch * 11))
    # sgd keeps one state tensor; early stopping one more copy of the weights
    assert M.training_bytes(layers, 11, 1, batch, "sgd", early_stopping=True)[1] == \
        4 * (6 * P + 4 * batch * outputs + batch * 11)
    assert M.training_bytes(layers, 11, 1, batch, None, itemsize=8)[1] == \
        8 * (2 * P + 4 * batch * outputs + batch * 11)


def test_machine_memory_is_a_positive_size():
    have = M.machine_memory()
    assert have is None or have > 2**20


def test_check_fits_names_parameters_and_both_sizes(monkeypatch):
    monkeypatch.setattr(M, "machine_memory", lambda: 23 * 2**30)
    with pytest.raises(UsageError, match=r"^the network has 7,500,000,010 parameters: training "
                                         r"needs about \d+ GiB, this machine has 23 GiB$"):
        M.check_fits(parse_arch(HUGE), 64, 1, 32, "adam")
    M.check_fits(parse_arch("25relu-10linear"), 64, 1, 32, "adam")   # fits: no error


def _huge_cases(digits_csv, tmp_path):
    out = ["-o", str(tmp_path / "m.safetensors")]
    return {
        "train": ["train", digits_csv, "--arch", HUGE, "--loss", "sparse_cce", "--logits", *out],
        "sweep": ["sweep", digits_csv, "--arch", f"25relu-10linear,{HUGE}", "--loss",
                  "sparse_cce", "--logits", "--metric", "loss", "--out-dir", str(tmp_path / "sweep"),
                  *out],
        "gradcheck": ["gradcheck", "--arch", HUGE, "--loss", "sparse_cce", "--logits",
                      "--inputs", "64"],
    }


@pytest.mark.parametrize("command", ["train", "sweep", "gradcheck"])
def test_a_network_too_big_for_memory_is_one_line(capsys, tmp_path, digits_csv, command,
                                                  monkeypatch):
    monkeypatch.setattr(M, "machine_memory", lambda: 23 * 2**30)
    rc, out, err = run(capsys, *_huge_cases(str(digits_csv), tmp_path)[command])
    line = assert_one_line_error(rc, out, err, "7,500,000,010 parameters", "needs about",
                                 "this machine has 23 GiB")
    assert "Unable to allocate" not in line
    assert list(tmp_path.iterdir()) == []   # nothing written, no sweep folder started
    if command == "sweep":
        assert "--arch 100000000relu-10linear" in line   # the combination is named


def test_an_allocation_that_fails_anyway_is_one_line(capsys, tmp_path, digits_csv,
                                                     monkeypatch):
    import nncli.train.preparing as P

    def no_memory(*args, **kwargs):   # what numpy raises (a MemoryError), with its text
        raise MemoryError("Unable to allocate 27.9 GiB for an array with shape (7500000010,) "
                          "and data type float32")

    monkeypatch.setattr(P.Model, "create", no_memory)
    rc, out, err = run(capsys, "train", digits_csv, "--arch", "25relu-10linear", "--loss",
                       "sparse_cce", "--logits", "-o", tmp_path / "m.safetensors")
    assert_one_line_error(rc, out, err, "out of memory: Unable to allocate")
