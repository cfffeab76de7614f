"""A output type over a whole :class:`~benthicnet_hf.hierarchy.Hierarchy`: coherent probabilities
and the masked per-head loss, in the global ``(batch, num_nodes)`` layout.

This is the drop-in for the model's ``constraint``/``criterion`` pair when ``config.output_type`` is
not ``"mcm"``: :meth:`OutputTypeCriterion.probabilities` replaces ``sigmoid(MCM(logits))`` and
:meth:`OutputTypeCriterion.forward` returns the same
:class:`~benthicnet_hf.losses.HierarchicalLossOutput` as :class:`~benthicnet_hf.losses.HierarchicalLoss`.

Reduction: each output type gives a per-sample loss; samples without a usable label for a head are
left out of that head's mean, heads without a labelled sample in the batch are left out of the mean
over heads (the reference's sample and head levels; the bit level is inside each output type).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..hierarchy import Hierarchy
from ..losses import HierarchicalLossOutput, known_targets, masked_head_reduction
from .base import OutputType
from .registry import build_output_type


class OutputTypeCriterion(nn.Module):
    """Output type ``output_type`` applied to every head of ``hierarchy``.

    Example::

        crit = OutputTypeCriterion(hierarchy, "hsoftmax")
        probs = crit.probabilities(logits)             # (batch, N) coherent
        out = crit(logits, labels, label_mask)         # HierarchicalLossOutput
    """

    def __init__(self, hierarchy: Hierarchy, output_type: str) -> None:
        super().__init__()
        self.output_type = output_type
        self.slices = [hierarchy.head_slice(i) for i in range(len(hierarchy.heads))]
        self.handlers: list[OutputType] = [build_output_type(output_type, h) for h in hierarchy.heads]
        self.num_nodes = hierarchy.num_nodes
        # no buffers: nothing to restore after transformers builds the model on the meta device

    def _check(self, name: str, t: Tensor) -> None:
        if t.ndim != 2 or t.shape[1] != self.num_nodes:
            raise ValueError(f"{name} must have shape (batch, {self.num_nodes}), got {tuple(t.shape)}")

    def probabilities(self, logits: Tensor) -> Tensor:
        """``(batch, N)`` raw logits → ``(batch, N)`` coherent per-node probabilities."""
        self._check("logits", logits)
        return torch.cat([h.probabilities(logits[:, s]) for h, s in zip(self.handlers, self.slices)], dim=1)

    def forward(self, logits: Tensor, targets: Tensor, mask: Tensor, weights: Tensor | None = None) -> HierarchicalLossOutput:
        """Masked loss; ``weights`` optional ``(N,)`` per-node multipliers."""
        for name, t in (("logits", logits), ("labels", targets), ("label_mask", mask)):
            self._check(name, t)
        targets = known_targets(targets, mask)
        per_sample, labelled = [], []
        for h, s in zip(self.handlers, self.slices):
            w = None if weights is None else weights[..., s]
            per_sample.append(h.loss(logits[:, s], targets[:, s], mask[:, s], w))
            labelled.append(h.labelled(targets[:, s], mask[:, s]))
        # one "bit" per (sample, head): the per-head reduction then averages labelled samples
        loss = torch.stack(per_sample, 1)
        known = torch.stack(labelled, 1)
        head_ids = torch.arange(len(self.handlers), device=logits.device)
        return masked_head_reduction(loss, known, head_ids, len(self.handlers))
