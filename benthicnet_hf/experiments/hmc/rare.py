"""Rare-node variants on the HMC benchmarks (Xu et al. 2026, arXiv 2602.08986): networks and losses.

Loss kinds (``--loss`` of ``benchmarks/hmc.py``), ``+``-joined parts (:func:`parse_rare_loss`):

- ``weighted``: node-wise imbalance weights (Sec. 3.1);
- ``focal-MODE``: the focal factor ``f_min + u^γ`` from the ``MODE`` uncertainty of a ``K``-member
  ensemble (Sec. 3.2–3.3), every mode of :data:`~benthicnet_hf.rare_nodes.MODES`; alone (focal
  without node weights) or after ``weighted``;
- ``sched-KIND``: a scheduler moving the node weights towards ``ω`` (``lin``, ``exp``, ``alt``;
  needs ``weighted``);
- ``mixed``: ``λ · weighted loss + (1 − λ) · plain MCLoss``.

e.g. ``weighted``, ``weighted+focal-gmu``, ``focal-bma``, ``weighted+sched-lin``,
``weighted+focal-bma+mixed``. Plain ``mcloss`` stays in :mod:`.train`.

Evaluation beside AU(PRC) is the method library's :mod:`benthicnet_hf.rare_nodes.metrics` (recall
and F1 over all evaluated nodes and over the rarest ones).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor, nn

from ...hierarchy import Hierarchy
from ...rare_nodes import MODES, EnsembleMLP, MCDropoutEnsemble, RareNodeLoss, StackedLinear, imbalance_weights
from ...rare_nodes.focal import SCHEDULERS
from .network import HMCNetwork

#: the single-part and usual variants (every ``+`` combination of :func:`parse_rare_loss` is accepted)
RARE_LOSSES = ("weighted",) + tuple(f"weighted+focal-{m}" for m in MODES) + tuple(f"focal-{m}" for m in MODES)
ENSEMBLES = ("heads", "full", "dropout")
DEFAULT_MIXED_LAMBDA = 0.5


class RareLossSpec(NamedTuple):
    weighted: bool  #: node-wise imbalance weights
    focal_mode: str | None  #: uncertainty of the focal factor, None = no focal factor
    scheduler: str  #: "none" | "lin" | "exp" | "alt"
    mixed: bool  #: mixed with plain MCLoss


def parse_rare_loss(kind: str) -> RareLossSpec:
    """``"weighted+focal-gmu+sched-lin"`` → its parts; ValueError naming the part at fault."""
    parts = kind.split("+")
    weighted, focal, scheduler, mixed = False, None, "none", False
    for i, part in enumerate(parts):
        if part == "weighted" and i == 0:
            weighted = True
        elif part.startswith("focal-") and part[6:] in MODES and focal is None:
            focal = part[6:]
        elif part.startswith("sched-") and part[6:] in SCHEDULERS[1:] and scheduler == "none":
            scheduler = part[6:]
        elif part == "mixed" and not mixed:
            mixed = True
        else:
            raise ValueError(
                f"unknown loss {kind!r}: part {part!r} is none of weighted (first), focal-MODE (MODE in {MODES}), "
                f"sched-KIND (KIND in {SCHEDULERS[1:]}), mixed, each at most once")
    if not (weighted or focal):
        raise ValueError(f"unknown loss {kind!r}: a rare-node loss needs weighted and/or focal-MODE")
    if scheduler != "none" and not weighted:
        raise ValueError(f"loss {kind!r}: sched-{scheduler} moves node weights towards omega and needs weighted")
    return RareLossSpec(weighted, focal, scheduler, mixed)


def focal_mode_of(kind: str) -> str | None:
    """``"weighted+focal-gmu"`` → ``"gmu"``; ``None`` for losses without a focal factor (and ``mcloss``)."""
    return None if kind == "mcloss" else parse_rare_loss(kind).focal_mode


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
        fit_targets: ``(rows, N)`` training targets the imbalance weights are computed from (None
            without ``weighted``).
        kind: a :func:`parse_rare_loss` name (its parts set the node weights, ``focal_mode``,
            ``scheduler`` and ``mixed_lambda``, :data:`DEFAULT_MIXED_LAMBDA` unless given).
        options: passed to :class:`RareNodeLoss` (``apply_to``, ``focal_k``, ``focal_min``, ``omega``,
            ``period``, ``scheduler_k``, ``mixed_lambda``).
    """

    def __init__(self, hierarchy: Hierarchy, to_eval: np.ndarray, fit_targets: Tensor | np.ndarray | None, kind: str,
                 **options) -> None:
        super().__init__()
        spec = parse_rare_loss(kind)
        for name in ("focal_mode", "scheduler"):
            if name in options:
                raise ValueError(f"{name} is set by the loss name ({kind!r}), not by an option")
        mask = torch.as_tensor(to_eval, dtype=torch.float32).unsqueeze(0)
        omega = options.get("omega", 0.25)
        weights = None
        if spec.weighted:
            weights = imbalance_weights(hierarchy, fit_targets, mask.expand(len(fit_targets), -1), omega=omega)
        options = dict(options)
        mixed = options.pop("mixed_lambda", None)
        if spec.mixed:
            options["mixed_lambda"] = DEFAULT_MIXED_LAMBDA if mixed is None else mixed
        elif mixed is not None:
            raise ValueError(f"mixed_lambda={mixed} given, but loss {kind!r} has no +mixed part")
        if spec.scheduler in ("lin", "exp") and options.get("period", 0) < 2:
            raise ValueError(f"loss {kind!r}: the scheduler needs period >= 2 steps (the code's: batches per epoch)")
        self.loss = RareNodeLoss(hierarchy, weights, focal_mode=spec.focal_mode, scheduler=spec.scheduler, **options)
        self.register_buffer("mask", mask)

    def forward(self, logits: Tensor, targets: Tensor, step: int = 0) -> Tensor:
        return self.loss(logits, targets, self.mask.expand_as(targets), step=step).loss
