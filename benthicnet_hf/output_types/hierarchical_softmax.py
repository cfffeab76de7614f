"""Hierarchical softmax (ETHEC "hierarchical softmax", Dhall et al. 2020, §3; Morin & Bengio 2005).

A softmax over the children of each node (the roots are the children of a virtual root):
``q(j) = P(j | parent(j))``. A node's probability is the product of ``q`` along its path from the
root, so the roots sum to 1, the children of a node sum to the node, and no child exceeds its
parent. The loss is ``-log P(deepest labelled node)``, i.e. the sum of the conditional
cross-entropies along the labelled path: depths below a label cut short contribute nothing.
"""

from __future__ import annotations

from torch import Tensor

from ..hierarchy import Taxonomy
from .base import OutputType
from .single_path import SinglePathIndex, grouped_log_softmax


class HierarchicalSoftmaxOutputType(OutputType):
    """Softmax over each node's children; path probability = product along the path."""

    name = "hsoftmax"

    def __init__(self, head: Taxonomy) -> None:
        super().__init__(head)
        self.index = SinglePathIndex(head, self.name)

    def conditional_log_probs(self, logits: Tensor) -> Tensor:
        """``(batch, n)`` ``log P(node | parent)``: log-softmax within each sibling group."""
        self.index.check_logits(logits)
        idx = self.index._on(logits)
        return grouped_log_softmax(logits, idx.sibling_group, idx.n + 1)

    def log_probabilities(self, logits: Tensor) -> Tensor:
        """``(batch, n)`` log path probability of every node."""
        return self.index.sum_over_ancestors(self.conditional_log_probs(logits))

    def probabilities(self, logits: Tensor) -> Tensor:
        return self.log_probabilities(logits).exp()

    def loss(self, logits: Tensor, targets: Tensor, mask: Tensor, node_weights: Tensor | None = None) -> Tensor:
        labels = self.index.level_labels(targets, mask)
        # sum of per-depth conditional CEs along the labelled path = -log P(deepest label)
        nll = -self.index.gather_levels(self.conditional_log_probs(logits), labels)
        if node_weights is not None:
            nll = nll * self.index.gather_levels(node_weights.to(nll).expand_as(logits), labels)
        return nll.sum(1)

    def labelled(self, targets: Tensor, mask: Tensor) -> Tensor:
        return (self.index.level_labels(targets, mask) >= 0).any(1)
