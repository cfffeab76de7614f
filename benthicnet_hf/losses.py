"""Masked hierarchical losses: C-HMCNN's MCLoss for tree/DAG heads, masked BCE for flat heads.

MCLoss (Giunchiglia & Lukasiewicz 2020, Eq. 5) trains on

    h = (1 − y) · MCM(p) + y · MCM(y · p),     loss = BCE(h, y),     p = sigmoid(x)

In probability space ``y · p = 0`` is neutral for the max. In logit space that neutral element is
``−inf``, not 0 (a zero logit is p = 0.5): the BenthicNet reference multiplies logits by ``y`` and
so lets a negative node's 0 dominate the max of a positive node whose positive descendants have
negative logits. We keep the paper's semantics in logit space::

    h_logit = where(y = 1, MCM(x with −inf where y = 0), MCM(x)),   loss = BCE_with_logits(h_logit, y)

which equals the probability-space formula exactly and is numerically stable.

Reduction (as the BenthicNet reference, "masked at three levels"), per head:

1. bit level: only bits with ``mask = 1`` count; a sample's loss is the mean over its known bits;
2. sample level: samples with no known bit for the head (missing head) are excluded; the head's
   loss is the mean over the remaining samples;
3. head level: heads with no labelled sample in the batch are left out of the mean over heads.

Unknown bits never move the loss: targets enter the max-constraint as ``known_targets(targets,
mask)`` (0 wherever ``mask = 0``), so any value on an unknown bit — even NaN — gives bit-identical
loss and gradients. Without it an unknown ``y = 1`` would feed MCM(y·p) of its ancestors.

Node weights (``config.node_weights``) multiply bits, not nodes: :func:`bit_weights` maps a
``(N,)`` node weight onto the ``y = 0`` bits, the ``y = 1`` bits or all bits
(:data:`NODE_WEIGHT_BITS`). :class:`MCMCriterion` is the ``"mcm"`` output type over a whole
hierarchy (coherent probabilities + this masked, weighted loss): the one implementation that the
model, :class:`~benthicnet_hf.output_types.OutputTypeCriterion` and the per-taxonomy
:class:`~benthicnet_hf.output_types.MCMOutputType` all use.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .constraint import MaxConstraint, max_constraint
from .hierarchy import Hierarchy

#: Which bits of the MCLoss a node weight multiplies (:func:`bit_weights`, ``config.node_weights_apply_to``).
NODE_WEIGHT_BITS = ("negative", "positive", "all")


class HierarchicalLossOutput(NamedTuple):
    loss: Tensor  #: scalar, mean over heads with data (0 with no known bit at all, still differentiable)
    per_head: Tensor  #: (num_heads,) per-head losses (0 where the head has no labelled sample)
    head_has_data: Tensor  #: (num_heads,) bool


def known_targets(targets: Tensor, mask: Tensor | None) -> Tensor:
    """``(batch, N)`` targets with every unknown bit (``mask = 0``) set to 0.

    ``torch.where``, not ``targets * mask``: a NaN on an unknown bit must not survive (NaN · 0 = NaN).
    """
    if mask is None:
        return targets
    return torch.where(mask > 0.5, targets, torch.zeros((), dtype=targets.dtype, device=targets.device))


def mcloss_logits(logits: Tensor, targets: Tensor, ancestor_pairs: Tensor,
                  constrained: Tensor | None = None) -> Tensor:
    """The logit ``h`` that MCLoss feeds to BCE, per node.

    Args:
        logits: ``(batch, N)`` raw node logits.
        targets: ``(batch, N)`` 0/1 targets (unknown bits may hold anything: they are masked later).
        ancestor_pairs: ``(2, M)`` (ancestor, descendant) pairs incl. self pairs.
        constrained: ``MCM(logits)`` when the caller already has it (the coherent scores of the
            same forward): one max-constraint fewer per step.

    Returns:
        ``(batch, N)``: ``MCM(x)`` where y = 0, ``MCM(x masked to −inf where y = 0)`` where y = 1.
    """
    y = targets > 0.5
    neg = torch.finfo(logits.dtype).min
    if constrained is None:
        constrained = max_constraint(logits, ancestor_pairs)
    positive_only = max_constraint(logits.masked_fill(~y, neg), ancestor_pairs)
    return torch.where(y, positive_only, constrained)


def mcloss(logits: Tensor, targets: Tensor, ancestor_pairs: Tensor, constrained: Tensor | None = None) -> Tensor:
    """Unreduced, unmasked MCLoss per bit: ``BCE_with_logits(mcloss_logits(...), y)``, ``(batch, N)``.

    Flat heads only have self pairs, where ``h = x``: plain BCE, so one formula serves every head.
    """
    h = mcloss_logits(logits, targets, ancestor_pairs, constrained)
    return F.binary_cross_entropy_with_logits(h, targets.to(h.dtype), reduction="none")


def bit_weights(node_weights: Tensor, targets: Tensor, apply_to: str = "positive") -> Tensor:
    """Per-bit multiplier from node weights.

    Args:
        node_weights: ``(N,)`` node weights ``w`` (or already per bit, ``(..., N)``).
        targets: ``(..., N)`` 0/1 targets (known bits; unknown bits are masked out of the loss anyway).
        apply_to: ``"positive"`` (``w_j`` where ``y = 1``, 1 elsewhere; the rare-node paper),
            ``"negative"`` (``w_j`` where ``y = 0``; what its public code does, the model's default) or
            ``"all"``.

    Returns:
        ``(..., N)`` weights in ``node_weights``'s dtype.
    """
    if apply_to not in NODE_WEIGHT_BITS:
        raise ValueError(f"apply_to must be one of {NODE_WEIGHT_BITS}, got {apply_to!r}")
    w = node_weights.to(device=targets.device)
    if apply_to == "all":
        return w.expand(targets.shape)
    y = targets > 0.5
    on = y if apply_to == "positive" else ~y
    return torch.where(on, w, torch.ones_like(w))


def masked_head_reduction(
    per_bit: Tensor, mask: Tensor, head_of_node: Tensor, num_heads: int
) -> HierarchicalLossOutput:
    """Reduce an unreduced ``(batch, N)`` loss with the three-level masking described above.

    Args:
        per_bit: ``(batch, N)`` loss per bit (already weighted, if weights are used).
        mask: ``(batch, N)`` 1 = known.
        head_of_node: ``(N,)`` long head number of each node.
        num_heads: number of heads.
    """
    m = mask.to(per_bit.dtype)
    b = per_bit.shape[0]
    idx = head_of_node.unsqueeze(0).expand(b, -1)
    # (batch, heads): summed loss and number of known bits per sample and head
    loss_sum = per_bit.new_zeros(b, num_heads).scatter_add(1, idx, per_bit * m)
    known = per_bit.new_zeros(b, num_heads).scatter_add(1, idx, m)
    labelled = known > 0
    per_sample = loss_sum / known.clamp_min(1)
    n_samples = labelled.sum(0)
    per_head = (per_sample * labelled).sum(0) / n_samples.clamp_min(1)
    has_data = n_samples > 0
    loss = (per_head * has_data).sum() / has_data.sum().clamp_min(1)
    return HierarchicalLossOutput(loss, per_head, has_data)


class HierarchicalLoss(nn.Module):
    """Masked MCLoss on tree/DAG heads and masked BCE on flat heads, reduced per head.

    Args:
        hierarchy: the label hierarchy (global node layout).

    Example::

        criterion = HierarchicalLoss(hierarchy)
        out = criterion(logits, labels, label_mask)   # logits/labels/mask: (batch, N)
        out.loss.backward()
    """

    def __init__(self, hierarchy: Hierarchy) -> None:
        super().__init__()
        self.num_heads = len(hierarchy.heads)
        self.register_buffer(
            "ancestor_pairs", torch.as_tensor(hierarchy.ancestor_pairs, dtype=torch.long), persistent=False
        )
        self.register_buffer(
            "head_of_node", torch.as_tensor(hierarchy.head_of_node, dtype=torch.long), persistent=False
        )
        # flat heads only have self pairs, so MCLoss reduces to plain BCE on them: one code path
        self.num_nodes = hierarchy.num_nodes

    def per_bit(self, logits: Tensor, targets: Tensor, constrained: Tensor | None = None) -> Tensor:
        """``(batch, N)`` unreduced, unmasked loss (MCLoss on hierarchical heads, BCE on flat ones);
        ``constrained``: ``MCM(logits)`` if already computed."""
        return mcloss(logits, targets, self.ancestor_pairs, constrained)

    def forward(
        self, logits: Tensor, targets: Tensor, mask: Tensor, weights: Tensor | None = None,
        constrained: Tensor | None = None,
    ) -> HierarchicalLossOutput:
        """Masked loss.

        Args:
            logits: ``(batch, N)`` raw logits.
            targets: ``(batch, N)`` 0/1.
            mask: ``(batch, N)`` 1 = known, 0 = unknown.
            weights: optional ``(N,)`` or ``(batch, N)`` multiplier per bit (node-wise imbalance or
                focal weights); applied before the masked means.
            constrained: optional ``MCM(logits)`` ``(batch, N)`` the caller already computed.
        """
        expected = (logits.shape[0], self.num_nodes)
        for name, t in (("logits", logits), ("labels", targets), ("label_mask", mask)):
            if tuple(t.shape) != expected:
                raise ValueError(f"{name} must have shape (batch, {self.num_nodes}) = {expected}, got {tuple(t.shape)}")
        per_bit = self.per_bit(logits, known_targets(targets, mask), constrained)
        if weights is not None:
            per_bit = per_bit * weights.to(per_bit.dtype)
        return masked_head_reduction(per_bit, mask, self.head_of_node, self.num_heads)



class MCMCriterion(nn.Module):
    """The ``"mcm"`` output type (C-HMCNN) over a whole hierarchy: coherent probabilities
    ``sigmoid(MCM(logits))`` and the masked MCLoss with node weights on the bits of ``apply_to``.

    The model's criterion for ``output_type="mcm"``; needs nothing outside this file's siblings, so
    it runs as remote code.

    Args:
        hierarchy: the label hierarchy (global node layout, ``N`` nodes).
        node_weights_apply_to: which bits node weights multiply (:data:`NODE_WEIGHT_BITS`).

    Example::

        crit = MCMCriterion(hierarchy)
        probs = crit.probabilities(logits)                      # (batch, N) coherent
        out = crit(logits, labels, label_mask, node_weights)    # HierarchicalLossOutput
    """

    def __init__(self, hierarchy: Hierarchy, node_weights_apply_to: str = "negative") -> None:
        super().__init__()
        if node_weights_apply_to not in NODE_WEIGHT_BITS:
            raise ValueError(f"node_weights_apply_to must be one of {NODE_WEIGHT_BITS}, got {node_weights_apply_to!r}")
        self.node_weights_apply_to = node_weights_apply_to
        self.constraint = MaxConstraint(hierarchy)
        self.masked_loss = HierarchicalLoss(hierarchy)

    def probabilities(self, logits: Tensor) -> Tensor:
        """``(batch, N)`` raw logits → ``(batch, N)`` coherent probabilities (no child above its parent)."""
        return self.constraint(logits).sigmoid()

    def forward(self, logits: Tensor, targets: Tensor, mask: Tensor,
                node_weights: Tensor | None = None) -> HierarchicalLossOutput:
        """Masked MCLoss; ``node_weights`` optional ``(N,)`` (or per bit ``(batch, N)``) multipliers,
        mapped onto bits by :func:`bit_weights` with ``node_weights_apply_to``."""
        return self.probabilities_and_loss(logits, targets, mask, node_weights)[1]

    def probabilities_and_loss(self, logits: Tensor, targets: Tensor, mask: Tensor,
                               node_weights: Tensor | None = None, probabilities_dtype: torch.dtype | None = None
                               ) -> tuple[Tensor, HierarchicalLossOutput]:
        """``(probabilities(logits), forward(logits, ...))`` from one ``MCM(logits)`` (a training
        forward needs both): saves one of the step's three max-constraints, which matters where the
        step is launch-bound (a GPU: bench_gpu). Same values as the two calls.

        ``probabilities_dtype``: the dtype the logits had before the caller upcast them for the loss
        (bf16 under autocast): MCM only gathers, so ``MCM(x.float()).to(bf16) == MCM(x)`` exactly and
        the sigmoid then runs in that dtype, as ``probabilities(x)`` would."""
        constrained = self.constraint(logits)
        weights = None
        if node_weights is not None:
            weights = bit_weights(node_weights, known_targets(targets, mask), self.node_weights_apply_to)
        probabilities = constrained.to(probabilities_dtype or constrained.dtype).sigmoid()
        return probabilities, self.masked_loss(logits, targets, mask, weights, constrained)
