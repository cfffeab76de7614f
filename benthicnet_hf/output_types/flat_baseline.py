"""The hierarchy-agnostic baseline (ETHEC "hierarchy-agnostic classifier", Dhall et al. 2020, §3).

A multi-label classifier that ignores the hierarchy: one sigmoid per node, trained with masked
binary cross-entropy (the authors' ``MultiLabelSMLoss``, ``torch.nn.MultiLabelSoftMarginLoss``: per
sample, the mean over the known bits), no constraint in training. Class weighting as in the study:
``node_weights`` multiply **all** bits of a node (the authors pass them as the loss's per-class
``weight``); :func:`inverse_frequency_weights` gives the study's ``1 / n_c`` weights. Resampling is
the data loader's job (the fine-tuning loop's ``--lpros``, :class:`~benthicnet_hf.rare_nodes.LPROSSampler`).

Probabilities: the raw sigmoids (:meth:`FlatBaselineOutputType.raw_probabilities`) are **not
coherent** (a child may score above its parent; thresholded they can predict a node without its
parent, which is how the study scores the baseline). :meth:`~FlatBaselineOutputType.probabilities`,
what the model reports and every decoder reads, applies the C-HMCNN max-constraint at decoding
time only (``p(node) = max`` of the sigmoids over the node and its descendants): coherent, and
the training never saw it. Works for tree, DAG and flat taxonomies.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ..hierarchy import Taxonomy
from ..losses import bit_weights, known_targets
from .mcm import MCMOutputType


def inverse_frequency_weights(targets: Tensor | np.ndarray, mask: Tensor | np.ndarray | None = None) -> Tensor:
    """The study's class weights ``1 / n_c``, rescaled to mean 1 over the nodes.

    Args:
        targets: ``(rows, N)`` 0/1 training targets.  mask: ``(rows, N)`` 1 = known; None = all known.

    Returns:
        ``(N,)`` float32, proportional to ``1 / n_c`` with ``n_c`` the node's known positives
        (a node never seen positive counts as one positive, so its weight stays finite).
    """
    y = torch.as_tensor(np.asarray(targets), dtype=torch.float32)
    if y.ndim != 2:
        raise ValueError(f"targets must have shape (rows, N), got {tuple(y.shape)}")
    m = torch.ones_like(y) if mask is None else torch.as_tensor(np.asarray(mask), dtype=torch.float32)
    if m.shape != y.shape:
        raise ValueError(f"mask shape {tuple(m.shape)} differs from targets shape {tuple(y.shape)}")
    inv = 1.0 / ((y > 0.5) & (m > 0.5)).sum(0).clamp_min(1).float()
    return inv / inv.mean()  # the scale only rescales the learning rate; keep it near 1


class FlatBaselineOutputType(MCMOutputType):
    """Hierarchy-agnostic per-node sigmoids: masked (class-weighted) BCE; coherent only at decoding.

    ``(batch, n)`` logits → ``(batch, n)`` probabilities (max-constraint of the sigmoids) and a
    ``(batch,)`` loss: mean over known bits of ``w_node · BCE``.
    """

    name = "flat_baseline"

    def __init__(self, head: Taxonomy) -> None:
        super().__init__(head, node_weights_apply_to="all")

    def raw_probabilities(self, logits: Tensor) -> Tensor:
        """``(batch, n)`` independent sigmoids, **not** coherent (what the study thresholds)."""
        return logits.sigmoid()

    def loss(self, logits: Tensor, targets: Tensor, mask: Tensor, node_weights: Tensor | None = None) -> Tensor:
        targets = known_targets(targets, mask)
        per_bit = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
        if node_weights is not None:
            per_bit = per_bit * bit_weights(node_weights, targets, "all").to(per_bit.dtype)
        m = mask.to(per_bit.dtype)
        return (per_bit * m).sum(1) / m.sum(1).clamp_min(1)
