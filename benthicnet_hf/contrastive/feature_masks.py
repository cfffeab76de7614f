"""Level-specific feature masks for hierarchical contrastive learning: G-HMLC and A-HMLC.

Ott et al., "Feature Identification for Hierarchical Contrastive Learning", arXiv 2510.00837
(no public code; we had its abstract and a summary, not the full text). Both methods give each
hierarchy level ``h`` its own view of the embedding, ``z_h = normalise(M_h ⊙ z)``, and apply that
level's contrastive loss to ``z_h`` (:func:`benthicnet_hf.contrastive.hmlc.hmlc_loss` with
level-specific features):

- **G-HMLC** (hard masks): "a GMM is fitted on this embedding vector to generate a mask for each
  hierarchy level", with as many components as levels. Default (``fit="per_vector"``, the
  literal reading): every embedding vector's ``D`` entries are the samples of a 1-D mixture with
  ``levels`` components (:func:`.mixture.fit_row_mixtures`, batched EM); entry ``j`` belongs to
  ``M_h`` when its most responsible component is level ``h``'s. Components are given to levels by
  their mean, highest mean → coarsest level (the paper reports robustness to the level order).
  No labels enter the masks; they change with every sample and step, no state is kept.
- ``fit="batch_fisher"`` (our earlier, label-informed reading, kept as an option): one mixture
  over the embedding *dimensions* of a batch, each dimension described by its per-level Fisher
  scores (between-class over within-class variance for that level's labels, ``log1p``, normalised
  to sum to 1 over levels), components matched to levels by maximum mean score (Hungarian); a
  level whose component is empty gets its top ``D / levels`` dimensions; refitted on detached
  embeddings every ``refit_every`` steps. Fisher scores use only samples whose label is known.
- **A-HMLC** (soft masks): one attention head per level, ``M_h(z) = σ(W_h z + b_h) ∈ (0, 1)^D``,
  trained jointly with the encoder (the sigmoid gate per dimension, rather than a softmax over
  dimensions, is our reading).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .mixture import fit_row_mixtures

GMM_FITS = ("per_vector", "batch_fisher")


def fisher_scores(embeddings: Tensor, level_labels: Tensor, eps: float = 1e-8) -> Tensor:
    """``(D, levels)`` between-class / within-class variance of each dimension per level.

    Args:
        embeddings: ``(n, D)``.  level_labels: ``(n, levels)`` long ids, -1 = unknown.
    """
    x = embeddings.detach().float()
    out = x.new_zeros((x.shape[1], level_labels.shape[1]))
    for col in range(level_labels.shape[1]):  # a loop over levels, not samples
        lab = level_labels[:, col]
        keep = lab >= 0
        if int(keep.sum()) < 2:
            continue
        xs, ids = x[keep], torch.unique(lab[keep], return_inverse=True)[1]
        k = int(ids.max()) + 1
        counts = torch.bincount(ids, minlength=k).to(xs)
        means = xs.new_zeros((k, xs.shape[1])).index_add_(0, ids, xs) / counts[:, None]
        grand = xs.mean(0)
        between = (counts[:, None] * (means - grand) ** 2).sum(0) / xs.shape[0]
        within = ((xs - means[ids]) ** 2).mean(0)
        out[:, col] = between / (within + eps)
    return out


def gmm_feature_masks(embeddings: Tensor, level_labels: Tensor, seed: int = 0) -> Tensor:
    """``(levels, D)`` bool hard masks ``M_h`` from a Gaussian mixture over the dimensions (G-HMLC)."""
    from scipy.optimize import linear_sum_assignment
    from sklearn.mixture import GaussianMixture

    scores = fisher_scores(embeddings, level_labels)
    d, n_levels = scores.shape
    # each dimension's share of its (log) separability per level: what it is specific to
    desc = torch.log1p(scores).cpu().numpy().astype(np.float64)
    desc = desc / (desc.sum(1, keepdims=True) + 1e-8)
    comp = GaussianMixture(n_components=n_levels, covariance_type="diag", random_state=seed,
                           reg_covar=1e-4).fit(desc).predict(desc)
    comp_means = np.stack([desc[comp == c].mean(0) if (comp == c).any() else np.full(n_levels, -np.inf)
                           for c in range(n_levels)])
    comp_means = np.where(np.isfinite(comp_means), comp_means, -1e9)
    rows, cols = linear_sum_assignment(-comp_means)  # component rows[i] ↔ level cols[i]
    masks = np.zeros((n_levels, d), dtype=bool)
    for c, level in zip(rows, cols):  # at most `levels` iterations
        masks[level] = comp == c
    top = max(1, math.ceil(d / n_levels))
    for level in np.flatnonzero(~masks.any(1)):
        masks[level, np.argsort(-desc[:, level])[:top]] = True
    return torch.as_tensor(masks, device=embeddings.device)


def vector_gmm_masks(z: Tensor, num_levels: int, iters: int = 20) -> Tensor:
    """``(..., D)`` → ``(..., levels, D)`` bool hard masks from a 1-D mixture over each vector's entries.

    Component ``k`` (sorted by mean, highest first) is level ``k``'s: ``M_k[j] = 1`` when entry
    ``j`` is most responsible to it. A level whose component wins no entry has an empty mask.
    """
    flat = z.detach().reshape(-1, z.shape[-1])
    resp, _, means, _ = fit_row_mixtures(flat, num_levels, iters)
    rank = torch.argsort(torch.argsort(means, dim=1, descending=True), dim=1)  # component → level
    level_of_entry = rank.gather(1, resp.argmax(-1))  # (rows, D)
    levels = torch.arange(num_levels, device=z.device)
    masks = level_of_entry.unsqueeze(1) == levels[None, :, None]  # (rows, levels, D)
    return masks.reshape(*z.shape[:-1], num_levels, z.shape[-1])


class GaussianMixtureFeatureMasks(nn.Module):
    """G-HMLC hard masks: ``(batch, views, D)`` → ``(batch, views, levels, D)`` masked, normalised.

    ``fit="per_vector"`` (default): masks of every vector from its own mixture
    (:func:`vector_gmm_masks`). ``fit="batch_fisher"``: shared masks, all-ones until the first
    :meth:`refit` (the pre-training method calls it every ``refit_every`` steps on detached
    embeddings of the batch).
    """

    def __init__(self, dim: int, num_levels: int, refit_every: int = 50, seed: int = 0,
                 fit: str = "per_vector", em_iters: int = 20) -> None:
        super().__init__()
        if fit not in GMM_FITS:
            raise ValueError(f"fit must be one of {GMM_FITS}, got {fit!r}")
        self.num_levels, self.fit, self.em_iters = num_levels, fit, em_iters
        self.refit_every, self.seed = refit_every, seed
        self.register_buffer("masks", torch.ones(num_levels, dim, dtype=torch.bool))
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))

    @property
    def refits_on_batches(self) -> bool:
        """True for ``batch_fisher``: the caller must feed :meth:`maybe_refit` labelled batches."""
        return self.fit == "batch_fisher"

    @torch.no_grad()
    def refit(self, embeddings: Tensor, level_labels: Tensor) -> None:
        """Refit ``masks`` from ``(n, D)`` embeddings and ``(n, levels)`` label ids."""
        self.masks.copy_(gmm_feature_masks(embeddings, level_labels, self.seed))

    def maybe_refit(self, embeddings: Tensor, level_labels: Tensor) -> None:
        if self.training and int(self.steps) % self.refit_every == 0 and bool((level_labels >= 0).any()):
            self.refit(embeddings, level_labels)
        self.steps += int(self.training)

    def level_masks(self, z: Tensor) -> Tensor:
        """``(..., D)`` → ``(..., levels, D)`` hard masks (0/1 in ``z``'s dtype)."""
        if self.fit == "per_vector":
            return vector_gmm_masks(z, self.num_levels, self.em_iters).to(z.dtype)
        return self.masks.to(z.dtype).expand(*z.shape[:-1], *self.masks.shape)

    def forward(self, z: Tensor) -> Tensor:
        return F.normalize(z.unsqueeze(-2) * self.level_masks(z), dim=-1)


class AttentionFeatureMasks(nn.Module):
    """A-HMLC soft masks: one gate ``σ(W_h z + b_h)`` per level.
    ``(batch, views, D)`` → ``(batch, views, levels, D)`` masked, normalised."""

    def __init__(self, dim: int, num_levels: int) -> None:
        super().__init__()
        self.num_levels = num_levels
        self.gates = nn.Linear(dim, num_levels * dim)

    def soft_masks(self, z: Tensor) -> Tensor:
        """``(..., D)`` → ``(..., levels, D)`` gates in (0, 1)."""
        return torch.sigmoid(self.gates(z)).unflatten(-1, (self.num_levels, z.shape[-1]))

    def forward(self, z: Tensor) -> Tensor:
        return F.normalize(z.unsqueeze(-2) * self.soft_masks(z), dim=-1)
