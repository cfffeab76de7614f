"""Index structures and label checks shared by the single-path (tree) output types.

The ETHEC output types (Dhall et al. 2020, arXiv 2004.03459) assume one label per level: a sample's
positives in a tree head form one root-to-node path. :class:`SinglePathIndex` precomputes, for one
:class:`~benthicnet_hf.hierarchy.Taxonomy`, the local index arrays the output types need, so that their
forward passes are gathers and scatters (no Python loops over samples or nodes).

Labels: ``targets``/``mask`` are a head's ``(batch, n_nodes)`` slice of the encoder's output
(1 = present / 1 = known). The label of a sample at depth d is its positive known node at depth d;
a depth without one (missing head, label cut short, or a path that ends above d) has no label and
contributes no loss. Two positives at one depth are a multi-label row: an error naming the head
and the row.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from ..hierarchy import Taxonomy
from .base import OutputType


class SinglePathError(ValueError):
    """A head or a label row does not fit a single-path (tree, one label per level) output type."""


def require_tree(head: Taxonomy, output_type: str) -> None:
    """Raise :class:`SinglePathError` unless ``head`` is a tree (or flat) head."""
    if head.kind == "dag":
        raise SinglePathError(
            f"head {head.name!r} is a DAG: output_type {output_type!r} needs single-path tree heads "
            "(use output_type='mcm' for DAG heads)"
        )


def scatter_logsumexp(values: Tensor, index: Tensor, num_groups: int) -> Tensor:
    """``(batch, num_groups)`` log-sum-exp of the columns of ``values`` per group.

    Args:
        values: ``(batch, m)`` log-domain values (``-inf`` allowed).
        index: ``(m,)`` long group of each column.
        num_groups: number of groups; a group without a column gets ``-inf``.
    """
    idx = index.unsqueeze(0).expand_as(values)
    top = values.new_full((values.shape[0], num_groups), float("-inf"))
    top = top.scatter_reduce(1, idx, values.detach(), reduce="amax", include_self=True)
    top = torch.where(torch.isfinite(top), top, torch.zeros_like(top))  # empty/all -inf groups
    sums = values.new_zeros((values.shape[0], num_groups)).scatter_add(1, idx, (values - top.gather(1, idx)).exp())
    return sums.log() + top


def grouped_log_softmax(x: Tensor, group: Tensor, num_groups: int) -> Tensor:
    """Log-softmax of ``x`` within groups of columns.

    Args:
        x: ``(batch, n)`` scores.
        group: ``(n,)`` long group id of each column (columns with the same id share a softmax).
        num_groups: number of groups.

    Returns:
        ``(batch, n)``: ``x[:, j] - logsumexp(x[:, group == group[j]])``.
    """
    return x - scatter_logsumexp(x, group, num_groups).gather(1, group.unsqueeze(0).expand_as(x))


class SinglePathIndex:
    """Precomputed local index arrays of one tree head (torch tensors, CPU; move with :meth:`to`).

    Attributes:
        n: number of nodes; ``L``: number of depth levels.
        depth: ``(n,)`` 1 for roots.  parent: ``(n,)`` local parent, -1 for roots.
        ancestors: ``(n, A)`` ancestors incl. self, padded with the node itself (neutral for a
            min; use :attr:`ancestor_valid` where a pad must be neutral for a sum).
        ancestor_valid: ``(n, A)`` bool, False on padding.
        is_leaf: ``(n,)`` bool.  sibling_group: ``(n,)`` parent + 1 (0 = the virtual root).
        level_onehot: ``(n, L)`` float, node j at depth d has a 1 in column d-1.
    """

    def __init__(self, head: Taxonomy, output_type: str) -> None:
        require_tree(head, output_type)
        self.name = head.name
        self.output_type = output_type
        n = len(head.nodes)
        self.n = n
        depth = np.asarray(head.depth, dtype=np.int64)
        self.L = int(depth.max())
        parent = np.array([ps[0] if ps else -1 for ps in head.parents], dtype=np.int64)
        width = max(len(a) for a in head.ancestors)
        anc = np.tile(np.arange(n)[:, None], (1, width))
        valid = np.zeros((n, width), dtype=bool)
        for i, a in enumerate(head.ancestors):  # built once per head, not on the hot path
            anc[i, : len(a)] = sorted(a)
            valid[i, : len(a)] = True
        is_leaf = np.array([not c for c in head.children], dtype=bool)
        # numpy masters; torch copies are made per device on first use, so building the model on
        # the meta device (transformers' from_pretrained) never leaves meta index tensors behind
        self._arrays = {
            "depth": depth, "parent": parent, "ancestors": anc, "ancestor_valid": valid,
            "is_leaf": is_leaf, "sibling_group": parent + 1, "node_ids": np.arange(n),
            "level_onehot": np.eye(self.L, dtype=np.float32)[depth - 1],
        }
        self._device: torch.device | None = None
        self.to("cpu")

    def to(self, device: torch.device | str) -> "SinglePathIndex":
        """Materialise the index tensors on ``device``."""
        for key, value in self._arrays.items():
            setattr(self, key, torch.as_tensor(value, device=device))
        self._device = torch.device(device)
        return self

    def _on(self, ref: Tensor) -> "SinglePathIndex":
        if self._device != ref.device or self.depth.is_meta:
            self.to(ref.device)
        return self

    def check_logits(self, logits: Tensor) -> None:
        if logits.ndim != 2 or logits.shape[1] != self.n:
            raise ValueError(f"head {self.name!r}: logits must have shape (batch, {self.n}), "
                             f"got {tuple(logits.shape)}")

    def level_labels(self, targets: Tensor, mask: Tensor, on_multi: str = "error") -> Tensor:
        """``(batch, L)`` local node index of each sample's label at each depth, -1 if none.

        Args:
            on_multi: what a depth with two known positives (multi-label row) gets: ``"error"``
                raises :class:`SinglePathError` naming head and row; ``"unknown"`` sets it to -1.
        """
        if on_multi not in ("error", "unknown"):
            raise ValueError(f"on_multi must be 'error' or 'unknown', got {on_multi!r}")
        idx = self._on(targets)
        positive = (targets > 0.5) & (mask > 0.5)
        counts = positive.to(torch.float32) @ idx.level_onehot  # (batch, L)
        if on_multi == "error" and bool((counts > 1.5).any()):
            row, level = (counts > 1.5).nonzero()[0].tolist()
            found = positive[row].nonzero().flatten().tolist()
            raise SinglePathError(
                f"head {self.name!r}, row {row}: {int(counts[row, level])} labels at depth {level + 1} "
                f"(nodes {found}); output_type {self.output_type!r} needs one label per level "
                "(single-path rows); use output_type='mcm' for multi-label heads"
            )
        code = torch.where(positive, idx.node_ids + 1, 0)  # 0 = no positive
        out = torch.zeros(targets.shape[0], idx.L, dtype=torch.long, device=targets.device)
        out = out.scatter_reduce(1, (idx.depth - 1).expand_as(code), code, reduce="amax")
        return torch.where(counts > 1.5, torch.zeros_like(out), out) - 1

    def min_over_ancestors(self, p: Tensor) -> Tensor:
        """``(batch, n)`` → ``min`` of ``p`` over each node's ancestors (itself included)."""
        idx = self._on(p)
        return p[:, idx.ancestors].amin(-1)  # padding repeats the node itself: neutral for min

    def sum_over_ancestors(self, x: Tensor) -> Tensor:
        """``(batch, n)`` → sum of ``x`` over each node's ancestors (itself included); in log space
        this is the product of probabilities along the path from the root."""
        idx = self._on(x)
        g = x[:, idx.ancestors]
        return torch.where(idx.ancestor_valid, g, torch.zeros_like(g)).sum(-1)

    def gather_levels(self, per_node: Tensor, labels: Tensor) -> Tensor:
        """``(batch, L)`` values of ``per_node (batch, n)`` at ``labels (batch, L)``; 0 where -1."""
        picked = per_node.gather(1, labels.clamp_min(0))
        return torch.where(labels >= 0, picked, torch.zeros_like(picked))

    def greedy_path(self, p: Tensor) -> Tensor:
        """``(batch, n)`` bool prediction: from the roots down, the arg-max child of the previous
        pick until a leaf (one node per depth, ancestors included). A loop over depths only."""
        idx = self._on(p)
        out = torch.zeros(p.shape, dtype=torch.bool, device=p.device)
        picked = torch.full((p.shape[0],), -1, dtype=torch.long, device=p.device)  # -1 = virtual root
        for d in range(1, idx.L + 1):
            allowed = (idx.depth == d).unsqueeze(0) & (idx.parent.unsqueeze(0) == picked.unsqueeze(1))
            has = allowed.any(1)
            choice = p.masked_fill(~allowed, float("-inf")).argmax(1)
            out[has, choice[has]] = True
            picked = torch.where(has, choice, torch.full_like(picked, -2))
        return out


class SinglePathOutputType(OutputType):
    """Base of the ETHEC output types: a :class:`SinglePathIndex` of the taxonomy, and the loss
    ``sum over labelled depths d of -w[label_d] · node_log_probs[label_d]`` (``(batch,)``).

    Subclasses set :attr:`name`, :meth:`probabilities` and :meth:`node_log_probs`: the per-node
    log-probabilities ``(batch, n)`` whose sum along the labelled path is the sample's NLL.
    """

    def __init__(self, head: Taxonomy) -> None:
        super().__init__(head)
        self.index = SinglePathIndex(head, self.name)

    def node_log_probs(self, logits: Tensor) -> Tensor:
        raise NotImplementedError

    def loss(self, logits: Tensor, targets: Tensor, mask: Tensor, node_weights: Tensor | None = None) -> Tensor:
        labels = self.index.level_labels(targets, mask)  # (batch, L)
        nll = -self.index.gather_levels(self.node_log_probs(logits), labels)
        if node_weights is not None:
            nll = nll * self.index.gather_levels(node_weights.to(nll).expand_as(logits), labels)
        return nll.sum(1)

    def labelled(self, targets: Tensor, mask: Tensor) -> Tensor:
        return (self.index.level_labels(targets, mask) >= 0).any(1)
