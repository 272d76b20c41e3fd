"""Architecture strings: parse, format, and the errors users see."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nncli.arch import ACTIVATIONS, LayerSpec, format_arch, parse_arch
from nncli.errors import ArchError


def test_parse_course_network():
    assert parse_arch("25relu-15relu-10linear") == [
        LayerSpec(25, "relu"), LayerSpec(15, "relu"), LayerSpec(10, "linear")]


@pytest.mark.parametrize("text", ["1sigmoid", "25relu-15relu-10linear", "16tanh-4sigmoid",
                                  "8relu-3softmax", "100linear-1linear"])
def test_format_inverts_parse(text):
    assert format_arch(parse_arch(text)) == text


def test_unknown_activation_names_token_position_and_choices():
    with pytest.raises(ArchError) as e:
        parse_arch("25rleu-10linear")
    msg = str(e.value)
    assert "'rleu'" in msg and "'25rleu-10linear'" in msg and "(layer 1)" in msg
    assert "expected one of" in msg and all(name in msg for name in ACTIVATIONS)
    assert "did you mean 'relu'" in msg


@pytest.mark.parametrize("text, fragment", [
    ("", "empty architecture"),
    ("25relu--10linear", "empty layer in '25relu--10linear' (layer 2)"),
    ("relu-10linear", "has no unit count"),
    ("25-10linear", "has no activation"),
    ("0relu", "positive integer"),
    ("025relu", "leading zeros"),
    ("25relu3", "unexpected '3'"),
    ("10softmax-3linear", "only allowed on the last layer"),
])
def test_bad_strings(text, fragment):
    with pytest.raises(ArchError) as e:
        parse_arch(text)
    assert fragment in str(e.value)
    assert "\n" not in str(e.value)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="0123456789-relusigmodtanhfxLR _", max_size=30))
def test_random_strings_parse_or_raise_arch_error(text):
    try:
        layers = parse_arch(text)
    except ArchError:
        return
    assert format_arch(layers) == text


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 5000), st.sampled_from(sorted(ACTIVATIONS))),
                min_size=1, max_size=6))
def test_round_trip_of_valid_layer_lists(pairs):
    hidden = [(u, a if a != "softmax" else "relu") for u, a in pairs[:-1]]
    layers = [LayerSpec(u, a) for u, a in hidden + [pairs[-1]]]
    assert parse_arch(format_arch(layers)) == layers
