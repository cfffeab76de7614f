"""Per-node ensemble uncertainties for the focal term (Xu et al. 2026, arXiv 2602.08986, Sec. 3.2).

Every function takes the sigmoid outputs of ``K`` ensemble members, ``probs`` ``(K, batch, N)``,
and returns ``(batch, N)`` in ``[0, 1]``; each node is a binary (Bernoulli) prediction. With
``p̄ = mean_k p_k`` and ``H₂(p) = −p log₂ p − (1 − p) log₂(1 − p)``:

- ``"bma"`` — binary BMA margin (bBMA): ``u = 1 − |2 p̄ − 1|`` (one minus the rescaled confidence
  ``2 (max(p̄, 1 − p̄) − 0.5)`` of the averaged prediction);
- ``"predictive"`` — total (predictive) entropy ``u = H₂(p̄)``;
- ``"aleatoric"`` — expected entropy ``u = mean_k H₂(p_k)``;
- ``"epistemic"`` — mean pairwise Jensen–Shannon divergence (base 2, so ≤ 1)
  ``u = 1/(K(K−1)) Σ_{k≠l} JS(p_k ‖ p_l)``, ``JS(p‖q) = ½ KL(p‖m) + ½ KL(q‖m)``, ``m = (p+q)/2``;
- ``"gmu"`` — variance-gated margin uncertainty (GMU; Gillis, Xu & Trappenberg, "Variance-Gated
  Ensembles", arXiv 2602.08142): margin ``δ = |2 p̄ − 1|``, sample std ``σ`` over members
  (``K − 1`` in the denominator), gate ``g = 1 − exp(−δ / (2σ + ε))``, ``u = 1 − g · δ``.
  With ``K = 1`` (``σ = 0``) the gate is 1 and GMU equals bBMA.

Uncertainties are computed on detached probabilities: the focal factor weights the loss, it is not
itself trained.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

# Written twice on purpose: configuration_benthicnet (remote-code file, a higher layer) validates
# config.uncertainty without this package; tests/test_ensemble_model.py fails if the copies drift.
MODES = ("bma", "predictive", "aleatoric", "epistemic", "gmu")
ALIASES = {"mean": "bma", "bbma": "bma", "pcs": "gmu", "vgmu": "gmu", "js": "epistemic"}
GATE_EPS = 1e-10  # keeps the gate finite when all members agree exactly (σ = 0)
_LN2 = math.log(2.0)


def _check(probs: Tensor) -> Tensor:
    if probs.dim() != 3:
        raise ValueError(f"probs must have shape (members, batch, num_nodes), got {tuple(probs.shape)}")
    return probs.detach()


def binary_entropy(p: Tensor) -> Tensor:
    """``H₂(p)`` in bits, elementwise, exact at 0 and 1."""
    return -(torch.special.xlogy(p, p) + torch.special.xlogy(1 - p, 1 - p)) / _LN2


def binary_kl(p: Tensor, q: Tensor) -> Tensor:
    """``KL(Bern(p) ‖ Bern(q))`` in bits, elementwise (finite where ``q`` is inside ``(0, 1)``)."""
    return (
        torch.special.xlogy(p, p) - torch.special.xlogy(p, q)
        + torch.special.xlogy(1 - p, 1 - p) - torch.special.xlogy(1 - p, 1 - q)
    ) / _LN2


def binary_js(p: Tensor, q: Tensor) -> Tensor:
    """Jensen–Shannon divergence of two Bernoullis in bits, elementwise, in ``[0, 1]``."""
    m = 0.5 * (p + q)
    return (0.5 * (binary_kl(p, m) + binary_kl(q, m))).clamp(0.0, 1.0)


def margin(probs: Tensor) -> Tensor:
    """``δ = |2 p̄ − 1|``: ``(K, B, N)`` → ``(B, N)``."""
    return (2 * _check(probs).mean(0) - 1).abs()


def bma_uncertainty(probs: Tensor) -> Tensor:
    """bBMA: ``1 − |2 p̄ − 1|``, ``(K, B, N)`` → ``(B, N)``."""
    return 1 - margin(probs)


def predictive_entropy(probs: Tensor) -> Tensor:
    """``H₂(p̄)``, ``(K, B, N)`` → ``(B, N)``."""
    return binary_entropy(_check(probs).mean(0))


def aleatoric_entropy(probs: Tensor) -> Tensor:
    """``mean_k H₂(p_k)``, ``(K, B, N)`` → ``(B, N)``."""
    return binary_entropy(_check(probs)).mean(0)


def epistemic_js(probs: Tensor) -> Tensor:
    """Mean pairwise JS divergence over ordered member pairs ``k ≠ l``; 0 for ``K = 1``.

    Memory is ``K² · B · N`` (members are few); never ``N × N``.
    """
    p = _check(probs)
    k = p.shape[0]
    if k < 2:
        return p.new_zeros(p.shape[1:])
    pairwise = binary_js(p.unsqueeze(1), p.unsqueeze(0))  # (K, K, B, N), zero on the diagonal
    return pairwise.sum((0, 1)) / (k * (k - 1))


def gated_margin_uncertainty(probs: Tensor, eps: float = GATE_EPS) -> Tensor:
    """GMU: ``1 − (1 − exp(−δ / (2σ + ε))) · δ``, ``(K, B, N)`` → ``(B, N)``."""
    p = _check(probs)
    delta = (2 * p.mean(0) - 1).abs()
    sigma = p.std(0, correction=1) if p.shape[0] > 1 else torch.zeros_like(delta)
    gate = 1 - torch.exp(-delta / (2 * sigma + eps))
    return 1 - gate * delta


_FUNCTIONS = {
    "bma": bma_uncertainty,
    "predictive": predictive_entropy,
    "aleatoric": aleatoric_entropy,
    "epistemic": epistemic_js,
    "gmu": gated_margin_uncertainty,
}


def canonical_mode(mode: str) -> str:
    """Canonical uncertainty name (accepts the public code's names ``mean`` and ``pcs``)."""
    name = ALIASES.get(mode.lower(), mode.lower())
    if name not in _FUNCTIONS:
        raise ValueError(f"unknown uncertainty mode {mode!r}; choose from {MODES} (aliases {sorted(ALIASES)})")
    return name


def ensemble_uncertainty(probs: Tensor, mode: str = "bma") -> Tensor:
    """Per-sample, per-node uncertainty of an ensemble.

    Args:
        probs: ``(K, batch, N)`` member probabilities (detached inside).
        mode: one of :data:`MODES` (or an alias in :data:`ALIASES`).

    Returns:
        ``(batch, N)`` uncertainties in ``[0, 1]``.
    """
    return _FUNCTIONS[canonical_mode(mode)](probs)
