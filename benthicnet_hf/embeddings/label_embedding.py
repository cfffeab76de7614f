"""Label-only embeddings of a hierarchy: order embeddings, Euclidean and hyperbolic entailment cones.

One vector per node, trained so that edges ``(u, v)`` (``u`` an ancestor of ``v``) have low energy
and corrupted pairs at least a margin ``γ``:
``L = Σ_{(u,v)∈P} E(u,v) + Σ_{(u',v')∈N} max(0, γ - E(u',v'))`` (Dhall's slides; Vendrov et al.;
Ganea et al.), averaged over the positives of a mini-batch. Negatives are resampled every batch
(:func:`.edges.sample_negatives`).

Hyperbolic cones live in the Poincaré ball (curvature -1) as a ``geoopt.ManifoldParameter`` and
are trained with ``geoopt.optim.RiemannianAdam`` (Riemannian gradient ``(1/λ_u)² ∇_u L``, update by
the exponential map / retraction, which keeps points inside the ball); the study, too, preferred Adam
to RSGD. Cones are only defined outside a small ball around the origin: after every step, points
that fell inside are pushed back to its boundary.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import geoopt
import numpy as np
import torch
from torch import nn

from .edges import EdgeSplit, sample_negatives
from .energies import (
    DEFAULT_K,
    euclidean_cone_energy,
    hyperbolic_cone_energy,
    hyperbolic_inner_radius,
    order_energy,
)

__all__ = ["MODELS", "EmbeddingConfig", "LabelEmbedding", "TrainedEmbedding", "default_config", "embedding_loss",
           "train_label_embedding"]

MODELS = ("order_embeddings", "euclidean_cones", "hyperbolic_cones")


@dataclass(frozen=True)
class EmbeddingConfig:
    """How to train one label embedding (see :func:`default_config` for per-model defaults).

    Attributes:
        model: one of :data:`MODELS`.
        dim: embedding dimension ``d``.
        epochs: passes over the training edges.
        lr: learning rate (Adam; Riemannian Adam for hyperbolic cones).
        margin: ``γ`` of the negative term.
        negatives: corrupted pairs per positive (half ``(u, v')``, half ``(u', v)``).
        batch_size: positive edges per step.
        k: cone aperture constant ``K``.
        init_scale: initial norm scale of the embeddings (Gaussian for order embeddings; for
            cones the norm is uniform in ``[r_min, r_min + init_scale]``).
        seed: seeds initialisation, batching and negative sampling.
    """

    model: str = "hyperbolic_cones"
    dim: int = 100
    epochs: int = 200
    lr: float = 0.01
    margin: float = 0.1
    negatives: int = 10
    batch_size: int = 256
    k: float = DEFAULT_K
    init_scale: float = 0.1
    seed: int = 0

    def __post_init__(self) -> None:
        if self.model not in MODELS:
            raise ValueError(f"unknown embedding model {self.model!r}; expected one of {MODELS}")
        if self.dim < 1 or self.epochs < 0 or self.negatives < 1 or self.batch_size < 1:
            raise ValueError(f"dim, negatives and batch_size must be >= 1 and epochs >= 0, got {self}")
        if not (self.lr > 0 and self.margin > 0 and self.k > 0 and self.init_scale > 0):
            raise ValueError(f"lr, margin, k and init_scale must be > 0, got {self}")


#: Per-model defaults, tuned by hand on ETHEC (seed 0; docs/embeddings.md).
_DEFAULTS: dict[str, dict[str, float]] = {
    "order_embeddings": {"lr": 0.05, "margin": 0.1, "init_scale": 0.1},
    "euclidean_cones": {"lr": 0.01, "margin": 0.1, "init_scale": 0.5},
    "hyperbolic_cones": {"lr": 0.03, "margin": 0.1, "init_scale": 0.1},
}
#: Euclidean cones in few dimensions need larger steps; in many, lr 0.03 overshoots (ETHEC d=100,
#: 100 epochs: F1 0.84 at lr 0.03 against 0.98 at lr 0.01).
_LOW_DIM = {"euclidean_cones": {"lr": 0.03}}


def default_config(model: str, **overrides: object) -> EmbeddingConfig:
    """:class:`EmbeddingConfig` with the per-model defaults of ``model``, then ``overrides``."""
    if model not in MODELS:
        raise ValueError(f"unknown embedding model {model!r}; expected one of {MODELS}")
    dim = int(overrides.get("dim", EmbeddingConfig.dim))  # type: ignore[call-overload]
    low_dim = _LOW_DIM.get(model, {}) if dim <= 10 else {}
    return replace(EmbeddingConfig(model=model), **{**_DEFAULTS[model], **low_dim, **overrides})


class LabelEmbedding(nn.Module):
    """``(num_nodes, dim)`` label vectors and the energy of node pairs under one model."""

    def __init__(self, num_nodes: int, config: EmbeddingConfig, generator: torch.Generator | None = None) -> None:
        super().__init__()
        self.config = config
        self.manifold = geoopt.PoincareBall(c=1.0) if config.model == "hyperbolic_cones" else None
        data = self._initial_points(num_nodes, generator)
        if self.manifold is not None:
            self.weight = geoopt.ManifoldParameter(data, manifold=self.manifold)
        else:
            self.weight = nn.Parameter(data)

    @property
    def min_norm(self) -> float:
        """Smallest norm a cone apex may have (0 for order embeddings)."""
        if self.config.model == "hyperbolic_cones":
            return hyperbolic_inner_radius(self.config.k) + 1e-3
        if self.config.model == "euclidean_cones":
            return self.config.k + 1e-3
        return 0.0

    def _initial_points(self, n: int, generator: torch.Generator | None) -> torch.Tensor:
        c = self.config
        x = torch.randn(n, c.dim, generator=generator)
        if c.model == "order_embeddings":
            return c.init_scale * x / math.sqrt(c.dim)
        direction = x / x.norm(dim=1, keepdim=True)
        return direction * (self.min_norm + c.init_scale * torch.rand(n, 1, generator=generator))

    def energy(self, pairs: torch.Tensor) -> torch.Tensor:
        """Energies of ``(P, 2)`` ``(general, specific)`` node-index pairs → ``(P,)``."""
        u, v = self.weight[pairs[:, 0]], self.weight[pairs[:, 1]]
        return self.energy_of(u, v)

    def energy_of(self, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Energies of ``(P, d)`` general / specific vectors → ``(P,)``."""
        if self.config.model == "order_embeddings":
            return order_energy(u, v)
        if self.config.model == "euclidean_cones":
            return euclidean_cone_energy(u, v, self.config.k)
        return hyperbolic_cone_energy(u, v, self.config.k)

    @torch.no_grad()
    def project_(self) -> None:
        """Push cone apexes that fell inside the minimum-norm ball back onto its boundary."""
        if self.min_norm <= 0:
            return
        norm = self.weight.norm(dim=1, keepdim=True).clamp_min(1e-12)
        self.weight.mul_(torch.where(norm < self.min_norm, self.min_norm / norm, torch.ones_like(norm)))


def embedding_loss(pos_energy: torch.Tensor, neg_energy: torch.Tensor, neg_valid: torch.Tensor,
                   margin: float) -> torch.Tensor:
    """``(Σ E(pos) + Σ_valid max(0, γ - E(neg))) / B`` for ``(B,)`` positive and ``(B*k,)`` negative energies."""
    hinge = torch.clamp(margin - neg_energy, min=0.0) * neg_valid.to(neg_energy.dtype)
    return (pos_energy.sum() + hinge.sum()) / max(pos_energy.shape[0], 1)


@dataclass
class TrainedEmbedding:
    """A trained :class:`LabelEmbedding`, its split and the mean loss of each epoch."""

    embedding: LabelEmbedding
    split: EdgeSplit
    losses: list[float] = field(default_factory=list)


def train_label_embedding(split: EdgeSplit, config: EmbeddingConfig) -> TrainedEmbedding:
    """Train ``config.model`` on ``split.train`` (mini-batches of edges, fresh negatives each step)."""
    gen = torch.Generator().manual_seed(config.seed)
    model = LabelEmbedding(split.num_nodes, config, generator=gen)
    opt = geoopt.optim.RiemannianAdam(model.parameters(), lr=config.lr)
    train = torch.as_tensor(split.train, dtype=torch.long)
    closure = torch.as_tensor(split.closure)
    losses: list[float] = []
    for _ in range(config.epochs):
        order = torch.randperm(train.shape[0], generator=gen)
        total = 0.0
        for start in range(0, train.shape[0], config.batch_size):
            pos = train[order[start:start + config.batch_size]]
            neg, valid = sample_negatives(pos, closure, config.negatives, gen)
            loss = embedding_loss(model.energy(pos), model.energy(neg), valid, config.margin)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            model.project_()
            total += float(loss.detach()) * pos.shape[0]
        losses.append(total / max(train.shape[0], 1))
        if not np.isfinite(losses[-1]):
            raise FloatingPointError(f"{config.model} d={config.dim}: loss became {losses[-1]} "
                                     f"at epoch {len(losses)}; lower lr={config.lr}")
    return TrainedEmbedding(embedding=model, split=split, losses=losses)
