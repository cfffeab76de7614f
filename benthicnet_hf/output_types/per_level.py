"""Per-level classifiers (ETHEC "per-level" and "masked per-level", Dhall et al. 2020, §3).

One softmax over the nodes of each depth of a tree head; loss = sum over depths of the
cross-entropy of the label at that depth. Depths without a label (missing head, label cut short,
a path that ends higher up) contribute nothing.

Probabilities: the raw per-level softmax ``q`` is not coherent (a child may score above its
parent), so the reported per-node probability is ``min`` of ``q`` over the node's path, which is
coherent and leaves the per-level arg-max of a consistent prediction unchanged.

Masked per-level (inference only, as in ETHEC): depth 1 is a softmax over the roots; depth d is a
softmax restricted to the children of the arg-max node at depth d-1, every other node of depth d
gets 0. Training uses the per-level loss. The greedy path is computed level by level (a loop over
depths, never over samples or nodes).
"""

from __future__ import annotations

import torch
from torch import Tensor

from .single_path import SinglePathOutputType, grouped_log_softmax


class PerLevelOutputType(SinglePathOutputType):
    """One softmax per depth level. ``logits (batch, n)`` → probabilities ``(batch, n)``."""

    name = "per_level"

    def level_log_probs(self, logits: Tensor) -> Tensor:
        """``(batch, n)`` log-softmax over the nodes of each depth (not coherent)."""
        self.index.check_logits(logits)
        idx = self.index._on(logits)
        return grouped_log_softmax(logits, idx.depth - 1, idx.L)

    def probabilities(self, logits: Tensor) -> Tensor:
        return self.index.min_over_ancestors(self.level_log_probs(logits).exp())

    def node_log_probs(self, logits: Tensor) -> Tensor:
        return self.level_log_probs(logits)


class MaskedPerLevelOutputType(PerLevelOutputType):
    """Per-level classifier whose inference restricts depth d to the children of the predicted
    depth-(d-1) node."""

    name = "masked_per_level"

    def probabilities(self, logits: Tensor) -> Tensor:
        self.index.check_logits(logits)
        idx = self.index._on(logits)
        b = logits.shape[0]
        out = logits.new_zeros(logits.shape)
        predicted = torch.full((b,), -1, dtype=torch.long, device=logits.device)  # -1 = virtual root
        for d in range(1, idx.L + 1):
            at_depth = idx.depth == d
            allowed = at_depth.unsqueeze(0) & (idx.parent.unsqueeze(0) == predicted.unsqueeze(1))
            scores = logits.masked_fill(~allowed, float("-inf"))
            has_child = allowed.any(1, keepdim=True)
            p = torch.where(has_child, scores.softmax(1), torch.zeros_like(scores)).nan_to_num(0.0)
            out = out + p
            predicted = torch.where(has_child.squeeze(1), scores.argmax(1), torch.full_like(predicted, -2))
        # restricted softmaxes renormalise among siblings: min over the path keeps child <= parent
        return self.index.min_over_ancestors(out)
