"""The rare-node loss: imbalance-weighted masked MCLoss with an uncertainty-driven focal factor
(Xu et al. 2026, arXiv 2602.08986, Sec. 3).

For ensemble member ``k``, sample ``b`` and node ``j`` the per-bit loss is

    ℓ_kbj = w_bj(t) · (f_min + u_bj^γ) · MCLoss_kbj,

- ``MCLoss_kbj`` the unreduced masked MCLoss of member ``k`` (:class:`HierarchicalLoss.per_bit`);
- ``w_bj(t)`` the node-wise imbalance weight (:mod:`.weights`) applied to the bit, possibly moved
  towards the constant ``ω`` by a scheduler (``t`` = training step);
- ``u_bj`` the ensemble uncertainty of the members' detached sigmoid outputs (:mod:`.uncertainty`),
  ``γ`` = ``focal_k`` (code default 2) and ``f_min`` = ``focal_min`` (code default 0.25).

Reduction: the three-level masked mean of :func:`masked_head_reduction` per member, then the mean
over members (the public code sums everything; the scale differs by a constant only).

Schedulers (weighted → unweighted, the code's ``omega_scheduler``), with ``T`` = steps per period:
``w(t) = w₀ + (ω − w₀) · s(t)``, ``s = t/(T−1)`` (``"lin"``), ``(t/(T−1))^k`` (``"exp"``),
``t mod 2`` (``"alt"``: weighted and constant-ω steps alternate), 0 (``"none"``). The public code
uses the batch index inside each epoch as ``t`` (``T`` = batches per epoch, restarting every epoch);
pass ``period`` = total steps for one transition over the whole run.

Mixed loss: ``λ · L_weighted + (1 − λ) · L_MCLoss`` (plain masked MCLoss, no weights, no focal term).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor, nn

from ..hierarchy import Hierarchy
from ..losses import HierarchicalLoss, known_targets, masked_head_reduction
from .uncertainty import canonical_mode, ensemble_uncertainty
from .weights import APPLY_TO, DEFAULT_OMEGA, bit_weights

SCHEDULERS = ("none", "lin", "exp", "alt")
_SCHEDULER_ALIASES = {"linear": "lin", "exponential": "exp", "alternating": "alt"}


def focal_factor(uncertainty: Tensor, k: float = 2.0, focal_min: float = 0.25) -> Tensor:
    """``f_min + u^k``, elementwise (``u`` in ``[0, 1]``)."""
    return focal_min + uncertainty.pow(k)


def schedule_fraction(step: int, kind: str, period: int, k: float = 3.0) -> float:
    """``s(t)`` in ``[0, 1]``: how far the weights have moved from ``w₀`` to ``ω`` at ``step``.

    Args:
        step: training step ``t`` (taken modulo ``period``, as the code's per-epoch batch index).
        kind: ``"none" | "lin" | "exp" | "alt"`` (or the long names).
        period: steps per transition ``T`` (≥ 2 for ``lin``/``exp``).
        k: exponent of the ``exp`` scheduler.
    """
    kind = _SCHEDULER_ALIASES.get(kind, kind)
    if kind not in SCHEDULERS:
        raise ValueError(f"unknown scheduler {kind!r}; choose from {SCHEDULERS}")
    if kind == "none":
        return 0.0
    t = step % period if period > 0 else step
    if kind == "alt":
        return float(t % 2)
    if period < 2:
        raise ValueError(f"scheduler {kind!r} needs period >= 2, got {period}")
    x = t / (period - 1)
    return x if kind == "lin" else x**k


def scheduled_weights(weights: Tensor, omega: float, fraction: float) -> Tensor:
    """``w₀ + (ω − w₀) · s``: ``(N,)`` → ``(N,)``."""
    return weights + (omega - weights) * fraction


class RareNodeLossOutput(NamedTuple):
    loss: Tensor  #: scalar training loss
    per_head: Tensor  #: (num_heads,) weighted per-head losses, mean over members
    uncertainty: Tensor | None  #: (batch, N) focal uncertainty (None without focal term)


class RareNodeLoss(nn.Module):
    """Imbalance-weighted, focal, masked MCLoss over an ensemble of ``K`` members.

    Args:
        hierarchy: the label hierarchy.
        node_weights: ``(N,)`` imbalance weights (:func:`imbalance_weights`); None = 1.
        focal_mode: uncertainty for the focal factor (``"bma"``, ``"gmu"``, ``"predictive"``,
            ``"aleatoric"``, ``"epistemic"``); None = no focal factor.
        focal_k: exponent ``γ`` of the focal factor.
        focal_min: floor ``f_min`` of the focal factor.
        apply_to: which bits get the node weight (see :func:`bit_weights`); default ``"negative"``,
            what the public code does and what raised recall on derisi_FUN (``"positive"`` did not).
        scheduler: ``"none" | "lin" | "exp" | "alt"``; needs ``node_weights``.
        period: steps per scheduler transition.
        scheduler_k: exponent of the ``exp`` scheduler.
        omega: the scheduler's target constant weight.
        mixed_lambda: ``λ`` of the mixed loss; None = weighted loss only.

    Example::

        w = imbalance_weights(hierarchy, train_targets, train_mask)
        criterion = RareNodeLoss(hierarchy, w, focal_mode="bma")
        out = criterion(member_logits, labels, label_mask, step=i)   # member_logits: (K, B, N)
        out.loss.backward()
    """

    def __init__(
        self,
        hierarchy: Hierarchy,
        node_weights: Tensor | None = None,
        focal_mode: str | None = None,
        focal_k: float = 2.0,
        focal_min: float = 0.25,
        apply_to: str = "negative",
        scheduler: str = "none",
        period: int = 0,
        scheduler_k: float = 3.0,
        omega: float = DEFAULT_OMEGA,
        mixed_lambda: float | None = None,
    ) -> None:
        super().__init__()
        self.base = HierarchicalLoss(hierarchy)
        n = hierarchy.num_nodes
        if node_weights is not None:
            node_weights = torch.as_tensor(node_weights, dtype=torch.float32)
            if node_weights.shape != (n,):
                raise ValueError(f"node_weights must have shape ({n},), got {tuple(node_weights.shape)}")
        if apply_to not in APPLY_TO:
            raise ValueError(f"apply_to must be one of {APPLY_TO}, got {apply_to!r}")
        if scheduler != "none" and node_weights is None:
            raise ValueError(f"scheduler {scheduler!r} moves node weights towards omega: pass node_weights")
        schedule_fraction(0, scheduler, max(period, 2))  # validates the name early
        if mixed_lambda is not None and not 0.0 <= mixed_lambda <= 1.0:
            raise ValueError(f"mixed_lambda must lie in [0, 1], got {mixed_lambda}")
        self.register_buffer("node_weights", node_weights, persistent=False)
        self.focal_mode = None if focal_mode is None else canonical_mode(focal_mode)
        self.focal_k, self.focal_min = focal_k, focal_min
        self.apply_to, self.scheduler, self.period, self.scheduler_k = apply_to, scheduler, period, scheduler_k
        self.omega, self.mixed_lambda = omega, mixed_lambda

    def current_node_weights(self, step: int = 0) -> Tensor | None:
        """``(N,)`` node weights at ``step`` after the scheduler (None without weights)."""
        if self.node_weights is None:
            return None
        s = schedule_fraction(step, self.scheduler, self.period, self.scheduler_k)
        return scheduled_weights(self.node_weights, self.omega, s)

    def forward(self, logits: Tensor, targets: Tensor, mask: Tensor, step: int = 0) -> RareNodeLossOutput:
        """Loss of ``K`` members.

        Args:
            logits: ``(K, batch, N)`` member logits, or ``(batch, N)`` for a single model.
            targets: ``(batch, N)`` 0/1.
            mask: ``(batch, N)`` 1 = known.
            step: training step for the scheduler.
        """
        if logits.dim() == 2:
            logits = logits.unsqueeze(0)
        k, b, n = logits.shape
        if tuple(targets.shape) != (b, n) or tuple(mask.shape) != (b, n):
            raise ValueError(
                f"labels and label_mask must have shape (batch, N) = {(b, n)}, got "
                f"{tuple(targets.shape)} and {tuple(mask.shape)} (logits {tuple(logits.shape)})"
            )
        targets = known_targets(targets, mask)
        flat_y = targets.unsqueeze(0).expand(k, b, n).reshape(k * b, n)
        flat_m = mask.unsqueeze(0).expand(k, b, n).reshape(k * b, n)
        per_bit = self.base.per_bit(logits.reshape(k * b, n), flat_y).view(k, b, n)
        weight = per_bit.new_ones(b, n)
        w_nodes = self.current_node_weights(step)
        if w_nodes is not None:
            weight = weight * bit_weights(w_nodes.to(per_bit.dtype), targets, self.apply_to)
        u = None
        if self.focal_mode is not None:
            u = ensemble_uncertainty(logits.detach().sigmoid(), self.focal_mode)
            weight = weight * focal_factor(u, self.focal_k, self.focal_min)
        # members share the mask, so one reduction over (K·B) rows = mean over members of each member's
        # masked mean; no Python loop over members
        weighted = masked_head_reduction(
            (per_bit * weight).reshape(k * b, n), flat_m, self.base.head_of_node, self.base.num_heads
        )
        loss = weighted.loss
        if self.mixed_lambda is not None:
            plain = masked_head_reduction(per_bit.reshape(k * b, n), flat_m, self.base.head_of_node, self.base.num_heads)
            loss = self.mixed_lambda * loss + (1 - self.mixed_lambda) * plain.loss
        return RareNodeLossOutput(loss, weighted.per_head, u)
