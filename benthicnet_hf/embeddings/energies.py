"""Energies of order-preserving label embeddings: low energy = "``u`` entails ``v``".

Every function takes the embeddings of the *general* concept ``u`` (parent/ancestor) and the
*specific* concept ``v`` (child/descendant) as ``(P, d)`` tensors, one row per pair, and returns
``(P,)`` non-negative energies (0 when the pair satisfies the partial order exactly).

- Order embeddings (Vendrov et al. 2016, "Order-Embeddings of Images and Language"): the general
  concept sits nearer the origin and ``v`` must dominate ``u`` coordinatewise,
  ``E(u, v) = ||max(0, u - v)||²``.
- Euclidean entailment cones (Ganea et al. 2018, "Hyperbolic Entailment Cones for Learning
  Hierarchical Embeddings", §5): the cone at ``u`` has half-aperture ``ψ(u) = arcsin(K / ||u||)``;
  ``Ξ(u, v) = arccos((||v||² - ||u||² - ||u - v||²) / (2 ||u|| ||u - v||))`` is the angle at ``u``
  between the ray from the origin through ``u`` and ``v - u``;  ``E(u, v) = max(0, Ξ(u, v) - ψ(u))``.
- Hyperbolic entailment cones in the Poincaré ball (same paper, eq. 26-28):
  ``ψ(u) = arcsin(K (1 - ||u||²) / ||u||)`` and
  ``Ξ(u, v) = arccos((⟨u,v⟩(1 + ||u||²) - ||u||²(1 + ||v||²)) /
  (||u|| ||u - v|| sqrt(1 + ||u||²||v||² - 2⟨u,v⟩)))``, ``E = max(0, Ξ - ψ)``.

The cones are defined outside a ball of radius ``K`` (Euclidean) or
``2K / (1 + sqrt(1 + 4K²))`` (hyperbolic), where ``ψ`` reaches π/2; inside it the arcsin argument is
clamped (the optimiser keeps points outside, see :mod:`.label_embedding`). The arccos argument is
clamped to ``[-1 + 1e-6, 1 - 1e-6]`` because its derivative is infinite at ±1.
"""

from __future__ import annotations

import math

import torch

__all__ = [
    "DEFAULT_K",
    "ENERGIES",
    "euclidean_cone_angle",
    "euclidean_cone_energy",
    "euclidean_half_aperture",
    "hyperbolic_cone_angle",
    "hyperbolic_cone_energy",
    "hyperbolic_half_aperture",
    "hyperbolic_inner_radius",
    "order_energy",
]

#: Aperture constant ``K`` of Ganea et al. (their experiments, and the ETHEC study, use 0.1).
DEFAULT_K = 0.1
_CLAMP = 1e-6
_TINY = 1e-12


def _check_pairs(u: torch.Tensor, v: torch.Tensor) -> None:
    if u.ndim != 2 or u.shape != v.shape:
        raise ValueError(f"expected u and v of equal shape (P, d), got {tuple(u.shape)} and {tuple(v.shape)}")


def order_energy(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """``||max(0, u - v)||²`` for general ``u`` ``(P, d)`` and specific ``v`` ``(P, d)`` → ``(P,)``."""
    _check_pairs(u, v)
    return torch.clamp(u - v, min=0.0).pow(2).sum(dim=-1)


def euclidean_half_aperture(u: torch.Tensor, k: float = DEFAULT_K) -> torch.Tensor:
    """``ψ(u) = arcsin(K / ||u||)`` of points ``(P, d)`` → ``(P,)`` (π/2 inside the radius-K ball)."""
    norm = u.norm(dim=-1).clamp_min(_TINY)
    return torch.asin(torch.clamp(k / norm, max=1.0 - _CLAMP))


def euclidean_cone_angle(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """``Ξ(u, v)``: angle at ``u`` between ``u`` (from the origin) and ``v - u``, ``(P, d)`` → ``(P,)``."""
    _check_pairs(u, v)
    u_sq = u.pow(2).sum(-1)
    v_sq = v.pow(2).sum(-1)
    diff_sq = (u - v).pow(2).sum(-1)
    denom = 2.0 * torch.sqrt(u_sq.clamp_min(_TINY) * diff_sq.clamp_min(_TINY))
    return torch.acos(torch.clamp((v_sq - u_sq - diff_sq) / denom, -1.0 + _CLAMP, 1.0 - _CLAMP))


def euclidean_cone_energy(u: torch.Tensor, v: torch.Tensor, k: float = DEFAULT_K) -> torch.Tensor:
    """``max(0, Ξ(u, v) - ψ(u))`` for Euclidean cones, ``(P, d)`` pairs → ``(P,)``."""
    return torch.clamp(euclidean_cone_angle(u, v) - euclidean_half_aperture(u, k), min=0.0)


def hyperbolic_inner_radius(k: float = DEFAULT_K) -> float:
    """Norm below which the hyperbolic cone's half-aperture is undefined (``K(1-r²)/r = 1``)."""
    return 2.0 * k / (1.0 + math.sqrt(1.0 + 4.0 * k * k))


def hyperbolic_half_aperture(u: torch.Tensor, k: float = DEFAULT_K) -> torch.Tensor:
    """``ψ(u) = arcsin(K (1 - ||u||²) / ||u||)`` of Poincaré-ball points ``(P, d)`` → ``(P,)``."""
    u_sq = u.pow(2).sum(-1)
    norm = torch.sqrt(u_sq.clamp_min(_TINY))
    return torch.asin(torch.clamp(k * (1.0 - u_sq) / norm, -1.0 + _CLAMP, 1.0 - _CLAMP))


def hyperbolic_cone_angle(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """``Ξ(u, v)`` in the Poincaré ball (Ganea et al. eq. 28), ``(P, d)`` pairs → ``(P,)``."""
    _check_pairs(u, v)
    u_sq = u.pow(2).sum(-1)
    v_sq = v.pow(2).sum(-1)
    uv = (u * v).sum(-1)
    diff_sq = (u - v).pow(2).sum(-1)
    num = uv * (1.0 + u_sq) - u_sq * (1.0 + v_sq)
    under = (1.0 + u_sq * v_sq - 2.0 * uv).clamp_min(_TINY)
    denom = torch.sqrt(u_sq.clamp_min(_TINY) * diff_sq.clamp_min(_TINY) * under)
    return torch.acos(torch.clamp(num / denom, -1.0 + _CLAMP, 1.0 - _CLAMP))


def hyperbolic_cone_energy(u: torch.Tensor, v: torch.Tensor, k: float = DEFAULT_K) -> torch.Tensor:
    """``max(0, Ξ(u, v) - ψ(u))`` for hyperbolic cones, ``(P, d)`` pairs → ``(P,)``."""
    return torch.clamp(hyperbolic_cone_angle(u, v) - hyperbolic_half_aperture(u, k), min=0.0)


#: Model name → energy function ``(u, v) -> (P,)`` (cones with the default ``K``).
ENERGIES = {
    "order_embeddings": order_energy,
    "euclidean_cones": euclidean_cone_energy,
    "hyperbolic_cones": hyperbolic_cone_energy,
}
