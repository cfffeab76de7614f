"""Hierarchical multi-label contrastive losses (Zhang et al., CVPR 2022, arXiv 2204.13207).

"Use All The Labels": a supervised contrastive (SupCon) loss at every level of the label
hierarchy. With anchors ``i`` over all views of a batch, normalised features ``f`` and temperature
``τ``, the pair loss at level ``l`` is (the paper's Eq. 3 with the sign folded in)::

    ℓ_l(i, p) = -(τ / τ_base) · log( exp(f_i·f_p / τ) / Σ_{a ∈ A_l(i)} exp(f_i·f_a / τ) )

where ``P_l(i)`` are the other views/samples sharing ``i``'s label at level ``l`` and
``A_l(i)`` every other view whose level-``l`` label is known. Then

- **HiMulCon** (Eq. 4): ``L = 1/|L| Σ_l λ_l · mean_i 1/|P_l(i)| Σ_{p ∈ P_l(i)} ℓ_l(i, p)``, with a
  level penalty ``λ_l`` larger for finer levels (default ``λ = 2^(1/k)``, ``k = 1`` for the
  finest level, ``k = 2`` the next coarser, ... as in the authors' code);
- **HiConE** (Eqs. 5-7): a pair at a coarser level must not cost less than the pairs of the level
  below it: ``ℓ'_l(i, p) = max(ℓ_l(i, p), ℓ^max_{l+1}(i))`` with
  ``ℓ^max_{l+1}(i) = max_{p ∈ P_{l+1}(i)} ℓ'_{l+1}(i, p)`` (the "l+1" of the authors' README
  erratum; ``l+1`` is the finer level), running from the finest level up, no penalty;
- **HiMulConE**: both, ``λ_l · ℓ'_l``.

The authors' code takes the max over whole-batch level losses and drops duplicate label rows after
each level; we follow the paper's per-anchor equations instead (tested against a loop over anchors).

Missing labels: a sample whose level-``l`` label is unknown (-1) is at level ``l`` neither an
anchor, nor a positive, nor a negative (it leaves the denominator too). Anchors without a
positive are skipped; levels without an anchor are left out of the mean over levels.
Positive masks are built vectorised from per-level label ids (the reference loops over the batch).
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

LOSS_TYPES = ("himulcon", "hicone", "himulcone")


def default_level_penalty(k: int) -> float:
    """``λ = 2^(1/k)``; ``k = 1`` for the finest level (the authors' ``pow_2(1/l)``)."""
    return 2.0 ** (1.0 / k)


def hmlc_loss(
    features: Tensor,
    level_labels: Tensor,
    loss_type: str = "himulcone",
    temperature: float = 0.07,
    base_temperature: float | None = None,
    level_penalty: Callable[[int], float] = default_level_penalty,
) -> Tensor:
    """Hierarchical multi-label contrastive loss.

    Args:
        features: ``(batch, views, dim)`` L2-normalised embeddings, or ``(batch, views, levels,
            dim)`` level-specific embeddings (G-HMLC / A-HMLC masked features).
        level_labels: ``(batch, levels)`` long label id per level, coarsest first, -1 = unknown.
            Ids are compared within a column only (global node indices are a natural choice).
        loss_type: ``"himulcon"``, ``"hicone"`` or ``"himulcone"``.
        temperature, base_temperature: ``τ`` and ``τ_base`` (default ``τ_base = τ``).
        level_penalty: ``λ`` as a function of ``k`` (1 = finest level).

    Returns:
        scalar loss (0, still differentiable, when no level has an anchor with a positive).
    """
    if loss_type not in LOSS_TYPES:
        raise ValueError(f"loss_type must be one of {LOSS_TYPES}, got {loss_type!r}")
    if features.ndim not in (3, 4):
        raise ValueError(f"features must be (batch, views, dim) or (batch, views, levels, dim), got {tuple(features.shape)}")
    if level_labels.ndim != 2 or level_labels.shape[0] != features.shape[0]:
        raise ValueError(f"level_labels must be (batch={features.shape[0]}, levels), got {tuple(level_labels.shape)}")
    b, v = features.shape[:2]
    n_levels = level_labels.shape[1]
    if features.ndim == 4 and features.shape[2] != n_levels:
        raise ValueError(f"level-specific features have {features.shape[2]} levels, labels have {n_levels}")
    scale = temperature / (base_temperature or temperature)
    n = b * v
    not_self = ~torch.eye(n, dtype=torch.bool, device=features.device)
    # anchor index = view * batch + sample (views stacked as in SupCon)
    labels_all = level_labels.repeat(v, 1)  # (n, levels)
    running_max = features.new_full((n,), float("-inf"))
    total = features.new_zeros(())
    used = 0
    shared_sim = _similarities(features, n, temperature) if features.ndim == 3 else None
    for col in range(n_levels - 1, -1, -1):  # finest first: HiConE needs the finer level's max
        k = n_levels - col
        sim = shared_sim if shared_sim is not None else _similarities(features[:, :, col], n, temperature)
        lab = labels_all[:, col]
        known = lab >= 0
        pair_known = known.unsqueeze(0) & known.unsqueeze(1) & not_self
        # rows without any known pair get a finite dummy denominator: they are never anchors
        has_pair = pair_known.any(1, keepdim=True)
        den_in = torch.where(pair_known, sim, torch.full_like(sim, float("-inf")))
        log_den = torch.logsumexp(torch.where(has_pair, den_in, torch.zeros_like(sim)), dim=1, keepdim=True)
        pair_loss = -scale * (sim - log_den)  # (n, n), meaningful where pair_known
        positive = pair_known & (lab.unsqueeze(0) == lab.unsqueeze(1))
        n_pos = positive.sum(1)
        anchors = n_pos > 0
        if loss_type in ("hicone", "himulcone"):
            pair_loss = torch.maximum(pair_loss, running_max.unsqueeze(1))
            level_max = torch.where(positive, pair_loss, torch.full_like(pair_loss, float("-inf"))).amax(1)
            running_max = torch.where(anchors, torch.maximum(running_max, level_max), running_max)
        if not bool(anchors.any()):
            continue
        per_anchor = torch.where(positive, pair_loss, torch.zeros_like(pair_loss)).sum(1) / n_pos.clamp_min(1)
        level_loss = per_anchor[anchors].mean()
        penalty = level_penalty(k) if loss_type in ("himulcon", "himulcone") else 1.0
        total = total + penalty * level_loss
        used += 1
    if used == 0:
        return features.sum() * 0.0
    return total / used


class HMLCLoss(nn.Module):
    """:func:`hmlc_loss` as a module.

    Example::

        criterion = HMLCLoss("himulcone", temperature=0.1)
        z = F.normalize(projector(encoder(torch.cat([v1, v2]))), dim=1)   # (2B, D)
        loss = criterion(torch.stack(z.chunk(2), 1), level_labels)         # (B, 2, D), (B, L)
    """

    def __init__(self, loss_type: str = "himulcone", temperature: float = 0.07,
                 base_temperature: float | None = None,
                 level_penalty: Callable[[int], float] = default_level_penalty) -> None:
        super().__init__()
        if loss_type not in LOSS_TYPES:
            raise ValueError(f"loss_type must be one of {LOSS_TYPES}, got {loss_type!r}")
        self.loss_type, self.temperature = loss_type, temperature
        self.base_temperature, self.level_penalty = base_temperature, level_penalty

    def forward(self, features: Tensor, level_labels: Tensor) -> Tensor:
        return hmlc_loss(features, level_labels, self.loss_type, self.temperature,
                         self.base_temperature, self.level_penalty)


def _similarities(features: Tensor, n: int, temperature: float) -> Tensor:
    """``(batch, views, dim)`` → ``(n, n)`` scaled dot products, anchors ordered view-major."""
    flat = features.transpose(0, 1).reshape(n, -1)
    return flat @ flat.T / temperature


def normalise(features: Tensor) -> Tensor:
    """L2-normalise the last dimension."""
    return F.normalize(features, dim=-1)
