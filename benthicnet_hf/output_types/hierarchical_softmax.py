"""Hierarchical softmax (ETHEC "hierarchical softmax", Dhall et al. 2020, §3; Morin & Bengio 2005).

A softmax over the children of each node (the roots are the children of a virtual root):
``q(j) = P(j | parent(j))``. A node's probability is the product of ``q`` along its path from the
root, so the roots sum to 1, the children of a node sum to the node, and no child exceeds its
parent. The loss is ``-log P(deepest labelled node)``, i.e. the sum of the conditional
cross-entropies along the labelled path: depths below a label cut short contribute nothing.
"""

from __future__ import annotations

from torch import Tensor

from .single_path import SinglePathOutputType, grouped_log_softmax


class HierarchicalSoftmaxOutputType(SinglePathOutputType):
    """Softmax over each node's children; path probability = product along the path."""

    name = "hsoftmax"

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

    def node_log_probs(self, logits: Tensor) -> Tensor:
        # summed along the labelled path: the per-depth conditional CEs = -log P(deepest label)
        return self.conditional_log_probs(logits)
