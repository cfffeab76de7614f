"""Marginalisation classifier (ETHEC "marginalisation", Dhall et al. 2020, §3).

One softmax over the **leaves** of a tree head; the probability of an inner node is the sum of the
probabilities of the leaves below it, so the children of an inner node sum to the node (in a tree
every leaf below it is under exactly one child) and the roots sum to 1. The loss is the per-level
cross-entropy of these marginal probabilities at each labelled depth: a label cut short at an
inner node is trained as "some leaf below it", deeper depths contribute nothing.

The classifier keeps one output per node (the common layout); only the leaf columns are read and
the inner-node columns get no gradient.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from ..hierarchy import Taxonomy
from .single_path import SinglePathOutputType, scatter_logsumexp


class MarginalisationOutputType(SinglePathOutputType):
    """Softmax over leaves, inner nodes = sums over their leaves. ``(batch, n)`` → ``(batch, n)``."""

    name = "marginalisation"

    def __init__(self, head: Taxonomy) -> None:
        super().__init__(head)
        leaves = [i for i, c in enumerate(head.children) if not c]
        # (ancestor, leaf) pairs, self pairs of leaves included: what the marginal sums over
        pairs = [(a, leaf) for leaf in leaves for a in head.ancestors[leaf]]
        self._pairs = np.asarray(pairs, dtype=np.int64).T
        self._pairs_by_device: dict[torch.device, Tensor] = {}

    def _pairs_on(self, ref: Tensor) -> Tensor:
        if ref.device not in self._pairs_by_device:  # built per device: safe under meta init
            self._pairs_by_device[ref.device] = torch.as_tensor(self._pairs, device=ref.device)
        return self._pairs_by_device[ref.device]

    def log_probabilities(self, logits: Tensor) -> Tensor:
        """``(batch, n)`` log of the marginal probability of every node."""
        self.index.check_logits(logits)
        idx = self.index._on(logits)
        pair_ancestor, pair_leaf = self._pairs_on(logits)
        leaf_logits = logits.masked_fill(~idx.is_leaf.unsqueeze(0), float("-inf"))
        leaf_log_p = leaf_logits.log_softmax(1)
        return scatter_logsumexp(leaf_log_p[:, pair_leaf], pair_ancestor, idx.n)

    def probabilities(self, logits: Tensor) -> Tensor:
        return self.log_probabilities(logits).exp()

    def node_log_probs(self, logits: Tensor) -> Tensor:
        return self.log_probabilities(logits)
