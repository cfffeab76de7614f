"""Rare-node variants on the HMC benchmarks (Xu et al. 2026, arXiv 2602.08986): networks and losses.

Loss kinds (``--loss`` of ``benchmarks/hmc.py``): ``weighted`` (node-wise imbalance weights, Sec. 3.1),
``weighted+focal-bma`` / ``weighted+focal-gmu`` (plus the focal factor ``f_min + u^γ`` from the
uncertainty of a ``K``-member ensemble, Sec. 3.2–3.3). Plain ``mcloss`` stays in :mod:`.train`.

Evaluation beside AU(PRC) is the method library's :mod:`benthicnet_hf.rare_nodes.metrics` (recall
and F1 over all evaluated nodes and over the rarest ones).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn

from ...hierarchy import Hierarchy
from ...rare_nodes import EnsembleMLP, MCDropoutEnsemble, RareNodeLoss, StackedLinear, imbalance_weights
from .network import HMCNetwork

RARE_LOSSES = ("weighted", "weighted+focal-bma", "weighted+focal-gmu")
ENSEMBLES = ("heads", "full", "dropout")


def focal_mode_of(kind: str) -> str | None:
    """``"weighted+focal-gmu"`` → ``"gmu"``; ``None`` for losses without a focal factor."""
    return kind.split("focal-", 1)[1] if "focal-" in kind else None


class SharedEncoderHeads(nn.Module):
    """``K`` output layers over one C-HMCNN(h) body: ``(B, D)`` → ``(K, B, N)`` logits.

    The rare-node paper's ensemble ("K heads on one encoder"): the hidden layers are shared, each
    member has its own final ``Linear(hidden, N)`` (batched in one :class:`StackedLinear`).
    """

    def __init__(self, input_dim: int, hidden: int, hierarchy: Hierarchy, num_layers: int, dropout: float,
                 members: int) -> None:
        super().__init__()
        body = HMCNetwork(input_dim, hidden, hierarchy, num_layers, dropout).layers
        self.encoder = body[:-1]  # Linear → ReLU → Dropout, (num_layers − 1) times
        self.heads = StackedLinear(body[-1].in_features, hierarchy.num_nodes, members)

    def forward(self, x: Tensor) -> Tensor:
        return self.heads(self.encoder(x))


def build_network(
    input_dim: int, hidden: int, hierarchy: Hierarchy, num_layers: int, dropout: float, members: int = 1,
    ensemble: str = "heads",
) -> nn.Module:
    """C-HMCNN(h) network(s): ``(B, D)`` → ``(B, N)`` logits, or ``(K, B, N)`` with ``members`` = K > 1.

    Args:
        ensemble: ``"heads"`` (K output layers on one shared body, the paper's ensemble),
            ``"full"`` (K independent networks, one batched :class:`EnsembleMLP`) or ``"dropout"``
            (one network, K MC-dropout passes).
    """
    if ensemble not in ENSEMBLES:
        raise ValueError(f"ensemble must be one of {ENSEMBLES}, got {ensemble!r}")
    if members > 1 and ensemble == "heads":
        return SharedEncoderHeads(input_dim, hidden, hierarchy, num_layers, dropout, members)
    if members > 1 and ensemble == "full":
        return EnsembleMLP(input_dim, hidden, hierarchy.num_nodes, members, num_layers, dropout)
    net = HMCNetwork(input_dim, hidden, hierarchy, num_layers, dropout)
    return MCDropoutEnsemble(net, members) if members > 1 else net


class MaskedRareLoss(nn.Module):
    """:class:`RareNodeLoss` with the roots masked out: ``(logits (K, B, N) | (B, N), targets, step) → scalar``.

    Args:
        hierarchy: the label hierarchy.
        to_eval: ``(N,)`` bool, the non-root nodes (the training mask).
        fit_targets: ``(rows, N)`` training targets the imbalance weights are computed from.
        kind: one of :data:`RARE_LOSSES`.
        options: passed to :class:`RareNodeLoss` (``apply_to``, ``focal_k``, ``focal_min``, ``omega``,
            ``scheduler``, ``period``, ``scheduler_k``, ``mixed_lambda``).
    """

    def __init__(self, hierarchy: Hierarchy, to_eval: np.ndarray, fit_targets: Tensor | np.ndarray, kind: str,
                 **options) -> None:
        super().__init__()
        if kind not in RARE_LOSSES:
            raise ValueError(f"unknown rare-node loss {kind!r}; choose one of {RARE_LOSSES}")
        mask = torch.as_tensor(to_eval, dtype=torch.float32).unsqueeze(0)
        omega = options.get("omega", 0.25)
        weights = imbalance_weights(hierarchy, fit_targets, mask.expand(len(fit_targets), -1), omega=omega)
        self.loss = RareNodeLoss(hierarchy, weights, focal_mode=focal_mode_of(kind), **options)
        self.register_buffer("mask", mask)

    def forward(self, logits: Tensor, targets: Tensor, step: int = 0) -> Tensor:
        return self.loss(logits, targets, self.mask.expand_as(targets), step=step).loss
