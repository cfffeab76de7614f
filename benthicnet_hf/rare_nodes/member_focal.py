"""The weighted focal MCLoss (Xu et al. 2026, arXiv 2602.08986, Sec. 3.2–3.3) in the image model.

``BenthicNetConfig(loss="focal")`` trains the image model on the objective of :class:`.focal.RareNodeLoss`
(the tabular reference of ``benchmarks/hmc.py``): for member ``k``, sample ``b`` and node ``j``

    ℓ_kbj = w_bj · (f_min + u_bj^γ) · MCLoss_kbj

- the members are the model's ensemble: ``config.ensemble_size`` head stacks over the shared encoder
  and/or ``config.ensemble_dropout_samples`` MC-dropout passes (with this loss they run in training
  too: the paper's dropout ensemble);
- ``u_bj`` the ``config.focal_uncertainty`` of the members' detached sigmoid outputs (as the
  reference: raw sigmoids, before the max-constraint), ``γ`` = ``focal_k``, ``f_min`` = ``focal_min``;
- ``w_bj`` the node weight (``config.node_weights``) on the bits of ``config.node_weights_apply_to``
  (:func:`~benthicnet_hf.losses.bit_weights`); 1 without node weights (focal alone).

The model stacks its members' logits as ``(M·B, N)`` rows ``m·B + b`` with the batch's labels
repeated, and its masked MCLoss (``MCMCriterion`` with ``apply_to="all"``: these weights already are
per bit) reduces them with the same three-level masked mean over ``M·B`` rows as the reference, so
the two losses are equal (``tests/test_rare_focal_finetune.py``). Not here: the reference's
weight schedulers and mixed loss, which need the training step the model's forward does not see.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from ..losses import bit_weights, known_targets
from .focal import focal_factor
from .uncertainty import canonical_mode, ensemble_uncertainty
from .weights import APPLY_TO


class MemberFocalWeights(nn.Module):
    """Per-bit weights ``w · (f_min + u^γ)`` of the weighted focal MCLoss for stacked member logits.

    Args:
        mode: uncertainty of the focal factor (:data:`.uncertainty.MODES` or an alias).
        focal_k: exponent ``γ``.
        focal_min: floor ``f_min``.
        apply_to: which bits the node weight multiplies (``"negative"``, ``"positive"``, ``"all"``).

    Example::

        weights = MemberFocalWeights("gmu")(flat_logits, labels, mask, node_weights, members=4)
        loss = MCMCriterion(hierarchy, "all")(flat_logits, labels, mask, weights).loss
    """

    def __init__(self, mode: str = "bma", focal_k: float = 2.0, focal_min: float = 0.25,
                 apply_to: str = "negative") -> None:
        super().__init__()
        if apply_to not in APPLY_TO:
            raise ValueError(f"apply_to must be one of {APPLY_TO}, got {apply_to!r}")
        self.mode, self.focal_k, self.focal_min, self.apply_to = canonical_mode(mode), focal_k, focal_min, apply_to

    @classmethod
    def from_config(cls, config: Any) -> "MemberFocalWeights":
        """The weights of a ``BenthicNetConfig`` with ``loss="focal"``."""
        return cls(config.focal_uncertainty, config.focal_k, config.focal_min, config.node_weights_apply_to)

    def forward(self, flat_logits: Tensor, targets: Tensor, mask: Tensor, node_weights: Tensor | None,
                members: int) -> Tensor:
        """Args:
            flat_logits: ``(M·B, N)`` raw logits of ``M`` members, rows ``m·B + b``.
            targets: ``(M·B, N)`` 0/1, the batch's labels repeated per member.
            mask: ``(M·B, N)`` 1 = known.
            node_weights: ``(N,)`` node weights or None.
            members: ``M``.

        Returns:
            ``(M·B, N)`` per-bit weights (no gradient: the focal factor weighs the loss, it is not trained).
        """
        rows, n = flat_logits.shape
        if members < 1 or rows % members:
            raise ValueError(f"{rows} logit rows are not {members} members of an equal batch")
        probs = flat_logits.detach().float().sigmoid().view(members, rows // members, n)
        weight = focal_factor(ensemble_uncertainty(probs, self.mode), self.focal_k, self.focal_min).repeat(members, 1)
        if node_weights is not None:
            weight = weight * bit_weights(node_weights.to(weight.dtype), known_targets(targets, mask), self.apply_to)
        return weight
