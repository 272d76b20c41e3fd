"""PyTorch's training loop, shared by bench.py and bench_conv.py."""

from __future__ import annotations

import time


def torch_epochs(model, Xt, yt, batch: int, epochs: int,
                 loss_fn=None) -> tuple[list[float], float]:
    """PyTorch's fastest fair loop: Adam (Keras's eps), index slices of a permutation, eager.
    Cross-entropy from logits unless ``loss_fn`` is given.
    Returns the wall seconds of each epoch and the last batch's loss."""
    import torch

    opt = torch.optim.Adam(model.parameters(), lr=1e-3, eps=1e-7)
    loss_fn = loss_fn or torch.nn.CrossEntropyLoss()
    seconds, loss = [], float("nan")
    for _ in range(epochs):
        start = time.perf_counter()
        perm = torch.randperm(len(Xt))
        for i in range(0, len(Xt), batch):
            idx = perm[i:i + batch]
            opt.zero_grad(set_to_none=True)
            out = loss_fn(model(Xt[idx]), yt[idx])
            out.backward()
            opt.step()
        seconds.append(time.perf_counter() - start)
        loss = float(out)
    return seconds, loss
