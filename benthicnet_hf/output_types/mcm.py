"""The C-HMCNN head (max-constraint + MCLoss) and the flat multi-label head, as output types.

``"mcm"`` is the model's default: :class:`MCMOutputType` restates, per head, what
:class:`~benthicnet_hf.constraint.MaxConstraint` and :class:`~benthicnet_hf.losses.HierarchicalLoss`
do for the whole hierarchy (its per-sample loss is the mean MCLoss over the sample's known bits),
so every output type can be used through one interface. Flat heads (e.g. colour) are multi-label:
every output type treats them with :class:`FlatSigmoidOutputType` (sigmoid + masked BCE), never softmax.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ..constraint import max_constraint
from ..hierarchy import Taxonomy, Hierarchy
from ..losses import mcloss_logits
from .base import OutputType


def _mean_over_known(per_bit: Tensor, mask: Tensor) -> Tensor:
    m = mask.to(per_bit.dtype)
    return (per_bit * m).sum(1) / m.sum(1).clamp_min(1)


class MCMOutputType(OutputType):
    """C-HMCNN: ``sigmoid(MCM(logits))``; per-sample loss = mean MCLoss over known bits.
    Works for tree, DAG and flat heads (flat heads have only self pairs: plain BCE)."""

    name = "mcm"

    def __init__(self, head: Taxonomy) -> None:
        super().__init__(head)
        self._pairs_np = Hierarchy((head,)).ancestor_pairs
        self._pairs_by_device: dict[torch.device, Tensor] = {}

    def _pairs(self, ref: Tensor) -> Tensor:
        if ref.device not in self._pairs_by_device:  # built per device: safe under meta init
            self._pairs_by_device[ref.device] = torch.as_tensor(self._pairs_np, dtype=torch.long, device=ref.device)
        return self._pairs_by_device[ref.device]

    def probabilities(self, logits: Tensor) -> Tensor:
        return max_constraint(logits, self._pairs(logits)).sigmoid()

    def loss(self, logits: Tensor, targets: Tensor, mask: Tensor, node_weights: Tensor | None = None) -> Tensor:
        h = mcloss_logits(logits, targets, self._pairs(logits))
        per_bit = F.binary_cross_entropy_with_logits(h, targets.to(h.dtype), reduction="none")
        if node_weights is not None:
            per_bit = per_bit * node_weights.to(per_bit)
        return _mean_over_known(per_bit, mask)

    def labelled(self, targets: Tensor, mask: Tensor) -> Tensor:
        return (mask > 0.5).any(1)


class FlatSigmoidOutputType(OutputType):
    """Flat multi-label head: independent sigmoids, per-sample loss = mean BCE over known bits."""

    name = "flat"

    def probabilities(self, logits: Tensor) -> Tensor:
        return logits.sigmoid()

    def loss(self, logits: Tensor, targets: Tensor, mask: Tensor, node_weights: Tensor | None = None) -> Tensor:
        per_bit = F.binary_cross_entropy_with_logits(logits, targets.to(logits.dtype), reduction="none")
        if node_weights is not None:
            per_bit = per_bit * node_weights.to(per_bit)
        return _mean_over_known(per_bit, mask)

    def labelled(self, targets: Tensor, mask: Tensor) -> Tensor:
        return (mask > 0.5).any(1)
