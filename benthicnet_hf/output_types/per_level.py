"""Per-level classifiers (ETHEC "per-level" and "masked per-level", Dhall et al. 2020, §3).

**Per-level**: one softmax ``q`` over the nodes of each depth of a tree head; loss = sum over depths
of the cross-entropy of the label at that depth. ``q`` is not coherent (a child may score above its
parent). The reported probability, from the roots down, is
``p(j) = q(j) · min(1, p(parent) / max_{k sibling of j, j included} q(k))`` (roots: ``p = q``): where no
child exceeds its parent this is ``q``, i.e. ``min`` of ``q`` along the path; where some do, the
sibling group is scaled down until its best member equals the parent instead of being clipped to
it. Clipping (the ``min`` along the path used before) made siblings tie at their parent's value, and
a greedy pick over them then followed node order instead of ``q`` on ~4 % of rows (random logits,
CATAMI substrate tree); scaling keeps the order of ``q`` among siblings, so greedy top-down decoding
over ``p`` picks the arg-max of ``q`` among the children of each pick.

**Masked per-level** (the authors' ``MaskedCELoss``, ``ankitdhall/learning_embeddings``,
``network/loss.py``): the cross-entropy at depth d is over the **children of the true depth-(d-1)
node** only (the roots at depth 1), i.e. ``-log softmax_{siblings}(logits)[label_d]``, as long as the
model's greedy prediction (arg-max root, then the arg-max child of each pick) matches the label at
every depth above d; from the first depth where it does not, deeper depths fall back to the plain
per-level cross-entropy over all nodes of the depth, as in the authors' loop. Depths without a label
(missing head, label cut short) contribute nothing; the true parent of a labelled node is its tree
parent even where that depth's bit is unknown. Probabilities: the product of the sibling softmaxes
along the path (children sum to their parent, no child above it), so greedy top-down decoding over
them picks, at each depth, the arg-max logit among the children of the chosen parent: the study's
inference, without ties.

Loops run over depths only, never over samples or nodes.
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
        """``(batch, n)`` coherent: each sibling group's ``q`` scaled so that none exceeds the parent."""
        q = self.level_log_probs(logits).exp()
        idx = self.index._on(logits)
        group = idx.sibling_group.unsqueeze(0).expand_as(q)
        best = q.new_zeros((q.shape[0], idx.n + 1)).scatter_reduce(1, group, q, reduce="amax", include_self=False)
        best = best.gather(1, group)  # (batch, n): the largest q among each node's siblings
        p = q
        for d in range(2, idx.L + 1):  # top-down: the parent's p is final before its children's
            parent_p = p[:, idx.parent.clamp_min(0)]
            scaled = q * torch.where(best > parent_p, parent_p / best, torch.ones_like(q))
            p = torch.where(idx.depth == d, scaled, p)
        return p

    def node_log_probs(self, logits: Tensor) -> Tensor:
        return self.level_log_probs(logits)


class MaskedPerLevelOutputType(PerLevelOutputType):
    """Per-level classifier trained with cross-entropy over the children of the true parent and decoded
    among the children of the chosen parent."""

    name = "masked_per_level"

    def sibling_log_probs(self, logits: Tensor) -> Tensor:
        """``(batch, n)`` log-softmax within each sibling group (the roots form one group)."""
        self.index.check_logits(logits)
        idx = self.index._on(logits)
        return grouped_log_softmax(logits, idx.sibling_group, idx.n + 1)

    def probabilities(self, logits: Tensor) -> Tensor:
        """``(batch, n)`` product of the sibling softmaxes along each node's path (coherent)."""
        return self.index.sum_over_ancestors(self.sibling_log_probs(logits)).exp()

    def node_log_probs(self, logits: Tensor) -> Tensor:
        """``(batch, n)``: a node's masked log-probability (softmax over its siblings) where the greedy
        prediction picked its parent (so it matched the label down to the parent), else its plain
        per-level log-probability; the base loss sums these at the labelled nodes."""
        idx = self.index._on(logits)
        with torch.no_grad():
            picked = self.index.greedy_path(logits.detach())  # arg-max child of each pick = the decoding
        parent_picked = picked[:, idx.parent.clamp_min(0)] | (idx.parent < 0).unsqueeze(0)
        return torch.where(parent_picked, self.sibling_log_probs(logits), self.level_log_probs(logits))
