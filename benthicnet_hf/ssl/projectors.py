"""Projection and prediction MLPs used by the joint-embedding methods.

Each projector is ``Linear -> BatchNorm1d -> ReLU`` for every hidden layer and a final ``Linear``,
optionally followed by a BatchNorm (SimSiam, MoCo v3). Dimensions default to the papers' values
in each method module; tests pass small ones.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

__all__ = ["ProjectionMLP"]


class ProjectionMLP(nn.Sequential):
    """MLP ``dims[0] -> dims[1] -> ... -> dims[-1]`` with BN + ReLU between layers.

    Args:
        dims: layer widths, input first; at least two entries.
        last_batch_norm: append a BatchNorm1d after the final Linear.
        last_batch_norm_affine: whether that final BatchNorm has a learnable scale/shift.
        bias: bias of the Linear layers followed by a BatchNorm is redundant; the final Linear
            without BatchNorm gets one unless ``last_bias=False``.
        last_bias: bias of the final Linear when it is not followed by a BatchNorm.

    Shapes: ``(batch, dims[0]) -> (batch, dims[-1])``.
    """

    def __init__(
        self,
        dims: Sequence[int],
        *,
        last_batch_norm: bool = False,
        last_batch_norm_affine: bool = True,
        bias: bool = False,
        last_bias: bool = True,
    ) -> None:
        if len(dims) < 2:
            raise ValueError(f"ProjectionMLP needs at least an input and an output width, got dims={list(dims)}")
        layers: list[nn.Module] = []
        for d_in, d_out in zip(dims[:-2], dims[1:-1]):
            layers += [nn.Linear(d_in, d_out, bias=bias), nn.BatchNorm1d(d_out), nn.ReLU(inplace=True)]
        layers.append(nn.Linear(dims[-2], dims[-1], bias=last_bias and not last_batch_norm))
        if last_batch_norm:
            layers.append(nn.BatchNorm1d(dims[-1], affine=last_batch_norm_affine))
        super().__init__(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return super().forward(x)
