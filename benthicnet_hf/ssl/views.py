"""How the joint-embedding methods push their two augmented views through a network.

**Separate** (the default, as in the papers' code and lightly): the network is called once per
view, so every BatchNorm layer (encoder and projector) normalises each view with that view's own
batch statistics and updates its running statistics twice per step, once per view.

**Batched** (``batched_views=True``): one call on ``cat([view1, view2])`` (``2B`` images). On a GPU
one large forward is usually faster (fewer kernel launches, better occupancy), but every BatchNorm
layer then computes its statistics over both views together and updates its running statistics
once, which changes the method: a view can no longer be told apart by its batch statistics, and
the normalisation each sample sees depends on the other view. (Barlow Twins' standardisation of
the embeddings inside its loss is per view either way; it is the network's BatchNorm layers that
differ.) Networks without BatchNorm (e.g. a ViT encoder) give the same outputs both ways; the
projectors of every method here have BatchNorm, so the choice always matters.
"""

from __future__ import annotations

from typing import Callable

import torch

__all__ = ["forward_views"]


def forward_views(
    network: Callable[[torch.Tensor], torch.Tensor], view1: torch.Tensor, view2: torch.Tensor, *, batched: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(network(view1), network(view2))``, or one call on the concatenation when ``batched``.

    Args:
        network: maps ``(n, ...)`` to ``(n, dim)``.
        view1, view2: ``(batch, 3, H, W)`` each (same shape).
        batched: one forward on ``(2 * batch, 3, H, W)``, split back into the two halves.

    Returns:
        two ``(batch, dim)`` tensors, view 1's first.
    """
    if view1.shape != view2.shape:
        raise ValueError(f"the two views must have one shape, got {tuple(view1.shape)} and {tuple(view2.shape)}")
    if batched:
        out1, out2 = network(torch.cat([view1, view2])).chunk(2)
        return out1, out2
    return network(view1), network(view2)
