"""An output type over a whole :class:`~benthicnet_hf.hierarchy.Hierarchy`: coherent probabilities
and the masked per-head loss, in the global ``(batch, num_nodes)`` layout.

``OutputTypeCriterion(hierarchy, "mcm")`` *is* :class:`~benthicnet_hf.losses.MCMCriterion` (the
max-constraint and MCLoss over all taxonomies at once, what the model runs); every other type applies
its per-taxonomy :class:`~benthicnet_hf.output_types.base.OutputType` to each taxonomy's slice.
Both have :meth:`~OutputTypeCriterion.probabilities` and a ``forward`` that returns
:class:`~benthicnet_hf.losses.HierarchicalLossOutput`.

Reduction: each output type gives a per-sample loss; samples without a usable label for a taxonomy
are left out of that taxonomy's mean, taxonomies without a labelled sample in the batch are left out
of the mean over heads (the reference's sample and head levels; the bit level is inside each type).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..hierarchy import Hierarchy
from ..losses import HierarchicalLossOutput, MCMCriterion, known_targets, masked_head_reduction
from .base import OutputType
from .registry import build_output_type


class OutputTypeCriterion(nn.Module):
    """Output type ``output_type`` applied to every taxonomy of ``hierarchy``.

    Args:
        hierarchy: the label hierarchy (``N`` nodes).
        output_type: a key of :data:`~benthicnet_hf.output_types.OUTPUT_TYPES`.
        node_weights_apply_to: which bits node weights multiply under ``"mcm"`` and on flat
            taxonomies (:func:`benthicnet_hf.losses.bit_weights`).

    Example::

        crit = OutputTypeCriterion(hierarchy, "hsoftmax")
        probs = crit.probabilities(logits)             # (batch, N) coherent
        out = crit(logits, labels, label_mask)         # HierarchicalLossOutput
    """

    def __init__(self, hierarchy: Hierarchy, output_type: str, node_weights_apply_to: str = "negative") -> None:
        super().__init__()
        self.output_type = output_type
        self.slices = [hierarchy.head_slice(i) for i in range(len(hierarchy.heads))]
        # "mcm": the hierarchy-wide implementation itself, not a per-taxonomy restatement of it
        self.mcm = MCMCriterion(hierarchy, node_weights_apply_to) if output_type == "mcm" else None
        self.handlers: list[OutputType] = [] if self.mcm is not None else [
            build_output_type(output_type, h, node_weights_apply_to) for h in hierarchy.heads]
        self.num_nodes = hierarchy.num_nodes
        # no buffers of its own: nothing to restore after transformers builds the model on meta

    def _check(self, name: str, t: Tensor) -> None:
        if t.ndim != 2 or t.shape[1] != self.num_nodes:
            raise ValueError(f"{name} must have shape (batch, {self.num_nodes}), got {tuple(t.shape)}")

    def probabilities(self, logits: Tensor) -> Tensor:
        """``(batch, N)`` raw logits → ``(batch, N)`` coherent per-node probabilities (in the logits'
        dtype; the softmax-based types compute in float32 at least)."""
        self._check("logits", logits)
        if self.mcm is not None:
            return self.mcm.probabilities(logits)
        x = logits if logits.dtype in (torch.float32, torch.float64) else logits.float()
        probs = torch.cat([h.probabilities(x[:, s]) for h, s in zip(self.handlers, self.slices)], dim=1)
        return probs.to(logits.dtype)

    def probabilities_and_loss(self, logits: Tensor, targets: Tensor, mask: Tensor,
                               node_weights: Tensor | None = None, probabilities_dtype: torch.dtype | None = None
                               ) -> tuple[Tensor, HierarchicalLossOutput]:
        """``(probabilities(logits).to(probabilities_dtype), forward(logits, targets, mask,
        node_weights))``; the "mcm" type shares one max-constraint between them."""
        if self.mcm is not None:
            for name, t in (("logits", logits), ("labels", targets), ("label_mask", mask)):
                self._check(name, t)
            return self.mcm.probabilities_and_loss(logits, targets, mask, node_weights, probabilities_dtype)
        probabilities = self.probabilities(logits)
        return probabilities.to(probabilities_dtype or probabilities.dtype), self(logits, targets, mask, node_weights)

    def forward(self, logits: Tensor, targets: Tensor, mask: Tensor,
                node_weights: Tensor | None = None) -> HierarchicalLossOutput:
        """Masked loss; ``node_weights`` optional ``(N,)`` per-node multipliers."""
        for name, t in (("logits", logits), ("labels", targets), ("label_mask", mask)):
            self._check(name, t)
        if self.mcm is not None:
            return self.mcm(logits, targets, mask, node_weights)
        targets = known_targets(targets, mask)
        per_sample, labelled = [], []
        for h, s in zip(self.handlers, self.slices):
            w = None if node_weights is None else node_weights[..., s]
            per_sample.append(h.loss(logits[:, s], targets[:, s], mask[:, s], w))
            labelled.append(h.labelled(targets[:, s], mask[:, s]))
        # one "bit" per (sample, taxonomy): the per-head reduction then averages labelled samples
        loss = torch.stack(per_sample, 1)
        known = torch.stack(labelled, 1)
        head_ids = torch.arange(len(self.handlers), device=logits.device)
        return masked_head_reduction(loss, known, head_ids, len(self.handlers))
