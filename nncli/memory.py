"""What a network needs in memory, and what the machine has: checked before anything is
allocated, so that a mistyped width (``100000000relu``) is one line, not an allocation failure.

Pure Python: the sizes come from the architecture alone (``arch.layer_shapes``).
"""

from __future__ import annotations

import os
from pathlib import Path

from nncli.arch import LayerSpec, layer_shapes, param_count
from nncli.errors import UsageError
from nncli.optim import get_optimizer

# Where Linux says how much memory a cgroup (a container, a CI job) may use.
CGROUP_LIMITS = (Path("/sys/fs/cgroup/memory.max"),
                 Path("/sys/fs/cgroup/memory/memory.limit_in_bytes"))


def machine_memory() -> int | None:
    """Bytes of memory this process may use: the physical memory, or a smaller cgroup limit;
    None where neither can be read."""
    sizes = []
    try:
        sizes.append(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        pass
    for path in CGROUP_LIMITS:
        try:
            text = path.read_text().strip()
        except OSError:
            continue
        if text.isdigit():
            sizes.append(int(text))
    return min(sizes) if sizes else None


def training_bytes(layers: list[LayerSpec], n_inputs: int, channels: int, batch: int,
                   optimizer: str | None, early_stopping: bool = False,
                   itemsize: int = 4) -> tuple[int, int]:
    """(parameters, bytes) of training ``layers`` on batches of ``batch`` rows: what ``fit``
    allocates, the weights, their gradients, the optimizer's state tensors, a copy of the
    weights and state to roll back to after a non-finite chunk (and the best weights under
    early stopping), plus four activation buffers (Z, A, dZ, dA) of a batch. ``optimizer``
    None: no optimizer state (a gradient check)."""
    params = param_count(layers, n_inputs, channels)
    state = len(get_optimizer(optimizer).state) if optimizer is not None else 0
    copies = 2 + state + (1 + state if optimizer is not None else 0) + int(early_stopping)
    outputs = sum(s.n_out for s in layer_shapes(layers, n_inputs, channels))
    return params, itemsize * (copies * params + 4 * batch * outputs + batch * n_inputs)


def check_fits(layers: list[LayerSpec], n_inputs: int, channels: int, batch: int,
               optimizer: str | None, early_stopping: bool = False, itemsize: int = 4,
               what: str = "training") -> None:
    """A UsageError when ``what`` needs more memory than the machine has (see
    ``training_bytes``), naming the parameter count and both sizes."""
    params, needed = training_bytes(layers, n_inputs, channels, batch, optimizer,
                                    early_stopping, itemsize)
    have = machine_memory()
    if have is not None and needed > have:
        raise UsageError(f"the network has {params:,} parameters: {what} needs about "
                         f"{_gib(needed)}, this machine has {_gib(have)}")


def _gib(n: int) -> str:
    gib = n / 2**30
    return f"{gib:.0f} GiB" if gib >= 10 else f"{gib:.1f} GiB"
