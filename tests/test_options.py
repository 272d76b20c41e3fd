"""The option table: TrainConfig, the train command and the sweep are all built from it."""

from __future__ import annotations

import dataclasses

import pytest

from nncli.errors import UsageError
from nncli.options import BY_NAME, OPTIONS, TrainConfig, config_defaults, convert, number_kind


def test_train_config_has_one_field_per_row_with_the_row_default():
    fields = {f.name: f for f in dataclasses.fields(TrainConfig)}
    assert list(fields) == [o.field for o in OPTIONS if o.field is not None]
    config = TrainConfig(arch="4relu-1linear", loss="mse")
    for name, default in config_defaults().items():
        if name not in ("arch", "loss"):
            assert getattr(config, name) == default, name
    assert config.normalize is True and config.missing == "mean" and config.categorical == []


def test_missing_choices_are_the_data_readers_policies():
    from nncli.data import MISSING_POLICIES

    assert tuple(BY_NAME["missing"].choices) == tuple(MISSING_POLICIES)


def test_from_options_turns_the_command_lines_spellings_into_the_librarys():
    config = TrainConfig.from_options(arch="8relu-1linear", loss="bce", no_normalize=True,
                                      no_normalize_target=False, drop_invalid_rows=True,
                                      delimiter="tab", categorical=("city",), output="m",
                                      threads=2, missing=None, lr=None)
    assert config.normalize is False and config.normalize_target is True
    assert config.missing == "drop" and config.delimiter == "\t"
    assert config.categorical == ["city"] and config.lr is None
    with pytest.raises(UsageError, match="contradicts --missing mean"):
        TrainConfig.from_options(arch="1linear", loss="mse", drop_invalid_rows=True,
                                 missing="mean")
    with pytest.raises(UsageError, match="--delimiter must be one character"):
        TrainConfig.from_options(arch="1linear", loss="mse", delimiter="ab")


def test_convert_checks_a_typed_value_as_train_would():
    assert convert("epochs", "7") == 7 and convert("lr", "1e-3") == 1e-3
    assert convert("optimizer", "sgd") == "sgd"
    with pytest.raises(UsageError, match="--epochs abc: not a valid int"):
        convert("epochs", "abc")
    with pytest.raises(UsageError, match="expected one of adam, sgd"):
        convert("optimizer", "rmsprop")
    assert number_kind("batch_size") == "int" and number_kind("lr") == "float"
    assert number_kind("arch") is None


def test_the_train_command_takes_exactly_the_tables_options():
    import typer.main

    from nncli.cli import app

    command = typer.main.get_command(app).commands["train"]
    params = {p.name: p for p in command.params}
    assert list(params) == ["data"] + [o.name for o in OPTIONS]
    for o in OPTIONS:
        p = params[o.name]
        assert tuple(p.opts) + tuple(p.secondary_opts) == o.flags or \
            set(p.opts) == set(o.flags), o.name
        assert p.help == o.help
        assert p.required == o.required
        if not o.required and not o.repeat:
            assert p.default == o.default, o.name


def test_every_option_says_what_a_sweep_does_with_it():
    roles = {o.name: o.sweep.role for o in OPTIONS}
    assert set(roles.values()) <= {"vary", "same", "no"}
    assert roles["lr"] == "vary" and roles["target"] == "same" and roles["output"] == "no"
    assert all(o.sweep.why for o in OPTIONS if o.sweep.role == "same")
