"""The bytes one training step of a dense network must move, and the samples/s that allows.

A roofline's second roof beside the compute limit of `bench.py`: at small batches a step does
little arithmetic per weight, and the weights, their gradients and the optimizer's moments
still pass through memory once or more. Pure functions: nothing here measures or times.
"""

from __future__ import annotations

from collections.abc import Sequence

# Floats per parameter that one pass of the optimizer reads and writes, at least.
#   adam: reads W, dW, m, v; writes W, m, v                 -> 7
#   sgd:  reads W, dW; writes W (plain SGD, no momentum)    -> 3
OPTIMIZER_FLOATS = {"adam": 7, "sgd": 3}
# Floats per parameter the optimizer keeps between steps: Adam's m and v; plain SGD none.
OPTIMIZER_STATE = {"adam": 2, "sgd": 0}
# Bytes of output columns from which a dense kernel takes its optimizer step inside the weight
# gradient's tiles (nncli.kernels_gemm.fills_a_tile, nncli.kernels_update.dense_weight_step):
# its gradient is neither written to memory nor read back (16 float32 outputs, 8 float64)
FUSED_FROM_BYTES = 64     # nncli.kernels_gemm.TILE_BYTES (this module imports nothing of nncli)


def parameter_count(sizes: Sequence[int]) -> int:
    """Weights and biases of dense layers ``sizes[0] -> sizes[1] -> ...``."""
    return sum(a * b + b for a, b in zip(sizes[:-1], sizes[1:]))


def product_floats(sizes: Sequence[int]) -> int:
    """Floats the forward and backward products move for the parameters, at least.

    A weight is read by the forward product (1), read again by the backward product that gives
    the layer's input gradient (1; not in the first layer, whose input needs no gradient) and
    its gradient is written (1). A bias is read by the forward (1) and its gradient written (1).
    """
    floats = 0
    for layer, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        floats += (3 if layer else 2) * a * b + 2 * b
    return floats


def fused_weights(sizes: Sequence[int], itemsize: int = 4) -> int:
    """Weights of the layers whose optimizer step runs inside the weight gradient's tiles."""
    return sum(a * b for a, b in zip(sizes[:-1], sizes[1:]) if b * itemsize >= FUSED_FROM_BYTES)


def sample_floats(sizes: Sequence[int]) -> int:
    """Floats one sample moves outside the parameters: its input row read once (n_0), and for
    every layer's output (hidden and logits) the activation written once and read once and its
    gradient written once and read once (4 n_l)."""
    return sizes[0] + 4 * sum(sizes[1:])


def step_bytes(sizes: Sequence[int], batch: int, optimizer: str = "adam",
               itemsize: int = 4) -> int:
    """The bytes one training step moves at least, for dense layers ``sizes`` at ``batch`` rows.

    Per parameter, floats read and written:

        forward    read W or b                                  1
        backward   read W for the input gradient (not layer 1)  1
                   write dW or db                               1
        adam       read W, dW, m, v; write W, m, v              7
        sgd        read W, dW; write W                          3

    So Adam moves 10 floats per weight of a layer after the first and 9 per weight of the
    first layer and per bias; SGD 6 and 5. A kernel of at least 16 float32 outputs takes its
    step inside the weight gradient's tiles (`fused_weights`): its dW is neither written nor
    read, 2 floats a weight less (Adam 8 and 7, SGD 4 and 3). Per sample (`sample_floats`): the
    input read once, each layer's output and its gradient written once and read once. In all

        step_bytes = itemsize x (product_floats + OPTIMIZER_FLOATS[optimizer] P
                                 - 2 fused_weights + batch x sample_floats)

    A floor, not nncli's traffic: its SGD keeps a velocity even at momentum 0 (2 P more), and
    the weight gradient's product reads each activation a second time.
    """
    _check(optimizer)
    floats = (product_floats(sizes) + OPTIMIZER_FLOATS[optimizer] * parameter_count(sizes)
              - 2 * fused_weights(sizes, itemsize) + batch * sample_floats(sizes))
    return itemsize * floats


def working_set_bytes(sizes: Sequence[int], batch: int, optimizer: str = "adam",
                      itemsize: int = 4) -> int:
    """The bytes a step's data occupies, at least: the parameters, their gradients (but those
    of the fused kernels, summed a band at a time) and the optimizer's state,
    (2 + OPTIMIZER_STATE) P - fused_weights floats, and a batch's rows and activations,
    batch x (n_0 + 2 (n_1 + ... + n_L)) floats (the input rows; each layer's output and its
    gradient). Which copy bandwidth a step runs at depends on whether this fits in the cache;
    the data set the rows are gathered from is not counted (see bandwidth.choose)."""
    _check(optimizer)
    floats = ((2 + OPTIMIZER_STATE[optimizer]) * parameter_count(sizes)
              - fused_weights(sizes, itemsize) + batch * (sizes[0] + 2 * sum(sizes[1:])))
    return itemsize * floats


def traffic_bound(bandwidth_gbs: float, sizes: Sequence[int], batch: int,
                  optimizer: str = "adam", itemsize: int = 4) -> float:
    """Samples/s that ``bandwidth_gbs`` (GB/s, bytes read + written) allows:
    bandwidth x batch / step_bytes."""
    return batch / step_seconds(bandwidth_gbs, sizes, batch, optimizer, itemsize)


def step_seconds(bandwidth_gbs: float, sizes: Sequence[int], batch: int,
                 optimizer: str = "adam", itemsize: int = 4) -> float:
    """Seconds one step's traffic takes at ``bandwidth_gbs``: step_bytes / bandwidth."""
    return step_bytes(sizes, batch, optimizer, itemsize) / (bandwidth_gbs * 1e9)


def _check(optimizer: str) -> None:
    if optimizer not in OPTIMIZER_FLOATS:
        raise ValueError(f"unknown optimizer '{optimizer}'; expected one of "
                         f"{', '.join(OPTIMIZER_FLOATS)}")
