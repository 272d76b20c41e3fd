"""Architecture strings: parse, format, and the errors users see."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nncli.arch import (ACTIVATIONS, LayerShape, LayerSpec, format_arch, layer_shapes,
                        param_count, param_shapes, parse_arch)
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


# --------------------------------------------------------------------------- conv and local

def test_parse_lecture_network():
    assert parse_arch("1local20s10relu-1local5s2relu-1sigmoid") == [
        LayerSpec(1, "relu", "local", 20, 10), LayerSpec(1, "relu", "local", 5, 2),
        LayerSpec(1, "sigmoid")]


def test_stride_as_written():
    conv, = parse_arch("4conv5relu")
    assert (conv.kind, conv.filters, conv.kernel, conv.stride) == ("conv", 4, 5, None)
    assert conv.effective_stride == 1
    explicit, = parse_arch("4conv5s1relu")
    assert explicit.stride == 1 and explicit.effective_stride == 1
    assert str(conv) == "4conv5relu" and str(explicit) == "4conv5s1relu"
    assert parse_arch("8conv20s10sigmoid")[0] == LayerSpec(8, "sigmoid", "conv", 20, 10)
    assert parse_arch("8conv20sigmoid")[0] == LayerSpec(8, "sigmoid", "conv", 20)


@pytest.mark.parametrize("text", [
    "8conv20s10relu", "1local5s2relu", "4conv5relu", "4conv5s1relu", "3local1linear",
    "1local20s10relu-1local5s2relu-1sigmoid", "4conv5s2relu-8conv3s2relu-10linear",
    "16tanh-2conv3s3tanh-4local2sigmoid-3softmax", "8conv5sigmoid-8conv5s2sigmoid-1sigmoid"])
def test_format_inverts_parse_conv_local(text):
    assert format_arch(parse_arch(text)) == text


@pytest.mark.parametrize("text, fragment", [
    ("4convrelu", "has no kernel width after 'conv'"),
    ("4local-1linear", "has no kernel width after 'local'"),
    ("4conv0relu", "kernel width must be a positive integer"),
    ("4conv05relu", "leading zeros, received '05'"),
    ("4conv5s0relu", "stride must be a positive integer"),
    ("4conv5s02relu", "leading zeros, received '02'"),
    ("4conv5srelu", "has no stride after 's'"),
    ("conv5relu", "has no filter count"),
    ("0local5relu", "filters must be a positive integer"),
    ("4conv5s2", "has no activation"),
    ("4conv5s2relu3", "unexpected '3'"),
    ("4conv5s2rleu", "did you mean 'relu'"),
    ("4cnv5relu", "unknown layer kind 'cnv'"),
    ("4loc5relu", "did you mean 'local'"),
    ("4conv5softmax-10linear", "only allowed on the last layer"),
    ("4conv5s2softmax", "only allowed on a dense last layer"),
    ("10relu-4conv5s2relu--1linear", "empty layer in '10relu-4conv5s2relu--1linear' (layer 3)"),
])
def test_bad_conv_local_strings(text, fragment):
    with pytest.raises(ArchError) as e:
        parse_arch(text)
    assert fragment in str(e.value)
    assert "\n" not in str(e.value)


def test_errors_name_the_token_the_layer_and_the_grammar():
    with pytest.raises(ArchError) as e:
        parse_arch("10relu-4conv5s2relu3-1linear")
    msg = str(e.value)
    assert "'4conv5s2relu3'" in msg and "(layer 2)" in msg
    assert "<filters>conv<kernel>[s<stride>]<activation>" in msg
    with pytest.raises(ArchError) as e:
        parse_arch("4cnv5relu")
    assert ("expected <units><activation>, <filters>conv<kernel>[s<stride>]<activation>, "
            "<filters>local<kernel>[s<stride>]<activation> or dropout<rate>") in str(e.value)


def test_layer_spec_rejects_inconsistent_fields():
    with pytest.raises(ValueError):
        LayerSpec(4, "relu", "dense", 5)
    with pytest.raises(ValueError):
        LayerSpec(4, "relu", "conv")                   # no kernel width
    with pytest.raises(ValueError):
        LayerSpec(4, "relu", "local", 3, 0)
    with pytest.raises(ValueError):
        LayerSpec(4, "relu", "pool", 3)


# --------------------------------------------------------------------------- shapes

def test_shapes_of_the_lecture_network():
    layers = parse_arch("1local20s10relu-1local5s2relu-1sigmoid")
    assert layer_shapes(layers, 100) == [LayerShape(100, 1, 9, 1), LayerShape(9, 1, 3, 1),
                                         LayerShape(3, 1, 1, 1)]
    assert [s.n_out for s in layer_shapes(layers, 100)] == [9, 3, 1]
    assert param_shapes(layers, 100) == [((9, 20, 1, 1), (9, 1)), ((3, 5, 1, 1), (3, 1)),
                                         ((3, 1), (1,))]
    assert param_count(layers, 100) == (9 * 20 + 9) + (3 * 5 + 3) + (3 + 1)


def test_shapes_of_a_conv_network():
    layers = parse_arch("4conv5s2relu-8conv3s2relu-10linear")
    shapes = layer_shapes(layers, 40)
    # (40 - 5) // 2 + 1 = 18 positions of 4; (18 - 3) // 2 + 1 = 8 positions of 8; 64 -> 10
    assert shapes == [LayerShape(40, 1, 18, 4), LayerShape(18, 4, 8, 8), LayerShape(8, 8, 10, 1)]
    assert [(s.n_in, s.n_out) for s in shapes] == [(40, 72), (72, 64), (64, 10)]
    assert param_shapes(layers, 40) == [((5, 1, 4), (4,)), ((3, 4, 8), (8,)), ((64, 10), (10,))]
    assert param_count(layers, 40) == (20 + 4) + (96 + 8) + (640 + 10)


def test_shapes_with_channels_and_windows_that_do_not_tile():
    layers = parse_arch("6conv4s3tanh-2local3relu-5relu")
    shapes = layer_shapes(layers, 3 * 17, channels=3)
    # 17 positions of 3: (17 - 4) // 3 + 1 = 5 (the last input is never seen); (5 - 3) + 1 = 3
    assert shapes == [LayerShape(17, 3, 5, 6), LayerShape(5, 6, 3, 2), LayerShape(3, 2, 5, 1)]
    assert param_shapes(layers, 51, channels=3) == [
        ((4, 3, 6), (6,)), ((3, 3, 6, 2), (3, 2)), ((6, 5), (5,))]


def test_dense_output_feeds_a_conv_layer_as_one_channel():
    layers = parse_arch("12relu-3conv4s4relu-2linear")
    assert layer_shapes(layers, 7) == [LayerShape(7, 1, 12, 1), LayerShape(12, 1, 3, 3),
                                       LayerShape(3, 3, 2, 1)]


def test_dense_shapes_match_the_dense_layout():
    layers = parse_arch("25relu-15relu-10linear")
    assert param_shapes(layers, 64) == [((64, 25), (25,)), ((25, 15), (15,)), ((15, 10), (10,))]
    assert param_count(layers, 64) == 64 * 25 + 25 + 25 * 15 + 15 + 15 * 10 + 10


@pytest.mark.parametrize("text, n_inputs, channels, fragment", [
    ("4conv50relu", 40, 1, "layer 1 '4conv50relu' in '4conv50relu' does not fit: its window of "
                           "50 is wider than its input of length 40 (the data"),
    ("4conv5s2relu-8conv30relu", 40, 1, "layer 2 '8conv30relu'"),
    ("4conv5s2relu-8conv30relu", 40, 1, "the output of layer 1 '4conv5s2relu': 18 positions x "
                                        "4 channels"),
    ("1local20s10relu-1local10s2relu-1sigmoid", 100, 1, "window of 10 is wider than its input "
                                                        "of length 9"),
    ("10relu-4conv11relu", 40, 1, "the output of layer 1 '10relu': 10 positions x 1 channel)"),
    ("4conv5relu", 40, 3, "40 is not a multiple of 3"),
    ("4conv5relu", 40, 0, "channels must be a positive integer"),
    ("4conv5relu", 0, 1, "at least one input feature"),
])
def test_shape_errors_say_which_layer_and_why(text, n_inputs, channels, fragment):
    with pytest.raises(ArchError) as e:
        layer_shapes(parse_arch(text), n_inputs, channels)
    assert fragment in str(e.value)
    assert "\n" not in str(e.value)


def test_window_exactly_as_wide_as_its_input_fits():
    assert layer_shapes(parse_arch("3conv40s7relu"), 40) == [LayerShape(40, 1, 1, 3)]


# --------------------------------------------------------------------------- properties

@settings(max_examples=400, deadline=None)
@given(st.text(alphabet="0123456789-reluconvlocalsigmodtanh _", max_size=30))
def test_random_conv_strings_parse_or_raise_arch_error(text):
    try:
        layers = parse_arch(text)
    except ArchError:
        return
    assert format_arch(layers) == text


_hidden_acts = sorted(set(ACTIVATIONS) - {"softmax"})
_windowed = st.builds(LayerSpec, st.integers(1, 64), st.sampled_from(_hidden_acts),
                      st.sampled_from(["conv", "local"]), st.integers(1, 50),
                      st.none() | st.integers(1, 20))
_dense = st.builds(LayerSpec, st.integers(1, 5000), st.sampled_from(_hidden_acts))


@settings(max_examples=300, deadline=None)
@given(st.lists(_windowed | _dense, min_size=0, max_size=5), _dense | _windowed,
       st.booleans())
def test_round_trip_of_valid_conv_layer_lists(hidden, last, softmax):
    if softmax and last.kind == "dense":
        last = LayerSpec(last.units, "softmax")
    layers = hidden + [last]
    assert parse_arch(format_arch(layers)) == layers


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["conv", "local", "dense"]), st.integers(1, 6),
                          st.integers(1, 9), st.integers(1, 4)), min_size=1, max_size=4),
       st.integers(1, 60), st.integers(1, 3))
def test_shapes_chain_or_raise(specs, length, channels):
    layers = [LayerSpec(f, "relu") if kind == "dense" else LayerSpec(f, "relu", kind, k, s)
              for kind, f, k, s in specs]
    try:
        shapes = layer_shapes(layers, length * channels, channels)
    except ArchError as e:
        assert "does not fit" in str(e)
        return
    assert (shapes[0].length, shapes[0].channels) == (length, channels)
    for prev, cur in zip(shapes, shapes[1:]):
        assert cur.n_in == prev.n_out
    for layer, s in zip(layers, shapes):
        if layer.kind != "dense":
            # the last window ends inside the input and one more stride would not
            last_end = (s.positions - 1) * layer.effective_stride + layer.kernel
            assert last_end <= s.length < last_end + layer.effective_stride
    sizes = [_size(k) + _size(b) for k, b in param_shapes(layers, length * channels, channels)]
    assert param_count(layers, length * channels, channels) == sum(sizes)


def _size(shape):
    out = 1
    for d in shape:
        out *= d
    return out
