"""The C-HMCNN output type (max-constraint + MCLoss) and the flat multi-label one, per taxonomy.

``"mcm"`` is the model's default. :class:`MCMOutputType` is the per-taxonomy face of the one
implementation in :mod:`benthicnet_hf.constraint` and :mod:`benthicnet_hf.losses`: probabilities by
:func:`~benthicnet_hf.constraint.max_constraint`, per-bit loss by :func:`~benthicnet_hf.losses.mcloss`,
node weights onto bits by :func:`~benthicnet_hf.losses.bit_weights`; its per-sample loss is the mean
over the sample's known bits, the sample level of :func:`~benthicnet_hf.losses.masked_head_reduction`.
Over a whole hierarchy the model uses :class:`~benthicnet_hf.losses.MCMCriterion` (the same
functions, all taxonomies at once). Flat taxonomies (e.g. colour) are multi-label: every output type
treats them with :class:`FlatSigmoidOutputType`, which is MCM on a flat taxonomy (only self pairs:
sigmoid and masked BCE), never softmax.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..constraint import max_constraint
from ..hierarchy import Hierarchy, Taxonomy
from ..losses import NODE_WEIGHT_BITS, bit_weights, known_targets, mcloss
from .base import OutputType


class MCMOutputType(OutputType):
    """C-HMCNN: ``sigmoid(MCM(logits))``; per-sample loss = mean weighted MCLoss over known bits.
    Works for tree, DAG and flat taxonomies (flat ones have only self pairs: plain BCE).

    Args:
        head: the taxonomy.
        node_weights_apply_to: which bits node weights multiply (``"negative"``, the model's default,
            ``"positive"`` or ``"all"``; :func:`~benthicnet_hf.losses.bit_weights`).
    """

    name = "mcm"

    def __init__(self, head: Taxonomy, node_weights_apply_to: str = "negative") -> None:
        super().__init__(head)
        if node_weights_apply_to not in NODE_WEIGHT_BITS:
            raise ValueError(f"node_weights_apply_to must be one of {NODE_WEIGHT_BITS}, got {node_weights_apply_to!r}")
        self.node_weights_apply_to = node_weights_apply_to
        self._pairs_np = Hierarchy((head,)).ancestor_pairs
        self._pairs_by_device: dict[torch.device, Tensor] = {}

    def _pairs(self, ref: Tensor) -> Tensor:
        if ref.device not in self._pairs_by_device:  # built per device: safe under meta init
            self._pairs_by_device[ref.device] = torch.as_tensor(self._pairs_np, dtype=torch.long, device=ref.device)
        return self._pairs_by_device[ref.device]

    def probabilities(self, logits: Tensor) -> Tensor:
        return max_constraint(logits, self._pairs(logits)).sigmoid()

    def loss(self, logits: Tensor, targets: Tensor, mask: Tensor, node_weights: Tensor | None = None) -> Tensor:
        targets = known_targets(targets, mask)  # as HierarchicalLoss: unknown bits never reach MCM
        per_bit = mcloss(logits, targets, self._pairs(logits))
        if node_weights is not None:
            per_bit = per_bit * bit_weights(node_weights, targets, self.node_weights_apply_to).to(per_bit.dtype)
        m = mask.to(per_bit.dtype)
        return (per_bit * m).sum(1) / m.sum(1).clamp_min(1)

    def labelled(self, targets: Tensor, mask: Tensor) -> Tensor:
        return (mask > 0.5).any(1)


class FlatSigmoidOutputType(MCMOutputType):
    """Flat multi-label taxonomy: independent sigmoids, per-sample loss = mean (weighted) BCE over known
    bits. MCM with only self pairs, so the same code as :class:`MCMOutputType`."""

    name = "flat"

    def __init__(self, head: Taxonomy, node_weights_apply_to: str = "negative") -> None:
        if head.kind != "flat":
            raise ValueError(f"FlatSigmoidOutputType needs a flat taxonomy, {head.name!r} is {head.kind!r}")
        super().__init__(head, node_weights_apply_to)
