"""A batch of one-dimensional Gaussian mixtures fitted by EM, one per row (G-HMLC's per-vector GMM).

Each row ``x_b ∈ R^D`` of a ``(batch, D)`` tensor is treated as ``D`` scalar samples; a mixture of
``K`` Gaussians is fitted to every row at once (no loop over rows), so a whole batch of
embeddings gets its mixtures on the accelerator in a few tensor operations per EM step.

The EM updates are sklearn's :class:`sklearn.mixture.GaussianMixture` (``covariance_type="diag"``
on one feature), written out: E-step ``r_jk ∝ π_k N(x_j | μ_k, σ²_k)``; M-step ``n_k = Σ_j r_jk
+ 10·eps``, ``π_k = n_k / D``, ``μ_k = Σ_j r_jk x_j / n_k``, ``σ²_k = Σ_j r_jk (x_j - μ_k)² / n_k +
reg_covar``. The start is deterministic: means at the row's ``(k + ½) / K`` quantiles, equal
weights, every variance the row's variance. Tested against sklearn started from the same point.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["fit_row_mixtures", "quantile_init"]


def quantile_init(x: Tensor, k: int, reg_covar: float = 1e-6) -> tuple[Tensor, Tensor, Tensor]:
    """Start of :func:`fit_row_mixtures`: ``(weights, means, variances)``, each ``(batch, k)``."""
    q = (torch.arange(k, dtype=x.dtype, device=x.device) + 0.5) / k
    means = torch.quantile(x, q, dim=1).T.contiguous()  # (batch, k)
    var = x.var(dim=1, unbiased=False, keepdim=True).expand(-1, k) + reg_covar
    return torch.full_like(means, 1.0 / k), means, var.contiguous()


def _log_responsibilities(x: Tensor, weights: Tensor, means: Tensor, var: Tensor) -> Tensor:
    """``(batch, D)`` values, ``(batch, K)`` parameters → ``(batch, D, K)`` log responsibilities."""
    diff = x.unsqueeze(-1) - means.unsqueeze(1)
    log_p = -0.5 * (math.log(2 * math.pi) + var.log().unsqueeze(1) + diff ** 2 / var.unsqueeze(1))
    log_p = log_p + weights.log().unsqueeze(1)
    return log_p - torch.logsumexp(log_p, dim=-1, keepdim=True)


def fit_row_mixtures(x: Tensor, k: int, iters: int = 20, reg_covar: float = 1e-6
                     ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Fit a ``k``-component 1-D Gaussian mixture to every row of ``x`` by ``iters`` EM steps.

    Args:
        x: ``(batch, D)`` values (no gradient is taken through the fit).
        k: number of components (G-HMLC: the number of hierarchy levels).
        iters: EM iterations (E then M), as sklearn's ``max_iter`` with ``tol=0``.
        reg_covar: added to every variance, as in sklearn.

    Returns:
        ``responsibilities (batch, D, k)`` (the E-step with the final parameters, sklearn's
        ``predict_proba``), ``weights``, ``means`` and ``variances``, each ``(batch, k)``.
    """
    if x.ndim != 2:
        raise ValueError(f"x must be (batch, D), got {tuple(x.shape)}")
    if k < 1 or x.shape[1] < k:
        raise ValueError(f"cannot fit {k} components to rows of {x.shape[1]} values")
    x = x.detach()
    if x.dtype not in (torch.float32, torch.float64):
        x = x.float()  # half precision (autocast) is too coarse for EM, and torch.quantile refuses it
    eps = 10 * torch.finfo(x.dtype).eps
    weights, means, var = quantile_init(x, k, reg_covar)
    for _ in range(iters):
        resp = _log_responsibilities(x, weights, means, var).exp()
        nk = resp.sum(1) + eps  # (batch, k)
        weights = nk / x.shape[1]
        means = (resp * x.unsqueeze(-1)).sum(1) / nk
        var = (resp * (x.unsqueeze(-1) - means.unsqueeze(1)) ** 2).sum(1) / nk + reg_covar
    return _log_responsibilities(x, weights, means, var).exp(), weights, means, var
