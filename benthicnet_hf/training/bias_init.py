"""Label-prior initialisation of the heads' output biases (``--init_head_bias prior``).

A fresh head's logits sit around 0, i.e. p ≈ 0.5 for every node, far above the frequency of most
nodes: after a short fine-tuning the thresholded metrics (F1) are then worse than predicting the
training prior. Setting the bias of each head's final ``Linear`` to ``logit(prior)`` makes the
untrained model *start* at the label-prior baseline (exactly so for linear heads with zero weights;
around it otherwise), so training only has to add the image evidence.

The prior of a node is the fraction of its **known** training bits that are positive (mask 1 =
known; unknown bits say nothing), clamped into ``[eps, 1 − eps]``; a node never known in training
gets ``unknown_prior``.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import torch
from torch import nn

from ..rare_nodes.ensemble import StackedLinear

logger = logging.getLogger(__name__)

#: ``--init_head_bias`` choices.
HEAD_BIAS_INITS = ("prior", "zero")
#: output types whose logits are independent per-node sigmoids, the model the prior bias is derived for
SIGMOID_OUTPUT_TYPES = ("mcm", "flat_baseline")
DEFAULT_EPS = 1e-4
DEFAULT_UNKNOWN_PRIOR = 1e-2


def known_bit_priors(targets: np.ndarray, mask: np.ndarray, eps: float = DEFAULT_EPS,
                     unknown_prior: float = DEFAULT_UNKNOWN_PRIOR) -> np.ndarray:
    """``(N,)`` float64 prior of each node from known bits only.

    Args:
        targets: ``(rows, N)`` 0/1 training targets.
        mask: ``(rows, N)`` 1 = known.
        eps: priors are clamped into ``[eps, 1 − eps]`` (finite logits).
        unknown_prior: prior of a node with no known training bit.
    """
    y = np.asarray(targets) > 0.5
    m = np.asarray(mask) > 0.5
    if y.ndim != 2 or y.shape != m.shape:
        raise ValueError(f"targets {y.shape} and mask {m.shape} must both be (rows, num_nodes)")
    if not 0 < eps < 0.5:
        raise ValueError(f"eps must be in (0, 0.5), got {eps}")
    known = m.sum(axis=0)
    positive = (y & m).sum(axis=0)
    prior = np.where(known > 0, positive / np.maximum(known, 1), unknown_prior)
    return np.clip(prior, eps, 1.0 - eps)


def final_linear_layers(model: Any) -> list[nn.Module]:
    """The output ``Linear`` of each head of a BenthicNet model, in hierarchy head order.

    Found as the last ``nn.Linear`` inside each module of ``model.heads.heads`` (whatever the head
    layout: ``fc`` for linear heads, ``fc2`` for MLP heads; a ``StackedLinear`` for an ensemble,
    whose ``(K, out)`` bias gets the same values for every member); checked against the head sizes.

    Raises:
        ValueError: naming the head whose final layer is missing or has the wrong width.
    """
    hierarchy = model.config.get_hierarchy()
    modules = list(getattr(getattr(model, "heads", None), "heads", []))
    if len(modules) != len(hierarchy.heads):
        raise ValueError(f"the model has {len(modules)} head modules, its hierarchy {len(hierarchy.heads)} heads")
    layers = []
    for head, module in zip(hierarchy.heads, modules):
        linears = [m for m in module.modules() if isinstance(m, (nn.Linear, StackedLinear))]
        if not linears or linears[-1].bias is None or linears[-1].out_features != len(head.nodes):
            width = linears[-1].out_features if linears else None
            raise ValueError(f"head {head.name!r}: no final Linear with bias and {len(head.nodes)} outputs "
                             f"(last Linear has {width} outputs)")
        layers.append(linears[-1])
    return layers


@torch.no_grad()
def init_head_biases(model: Any, targets: np.ndarray, mask: np.ndarray, how: str = "prior",
                     eps: float = DEFAULT_EPS, unknown_prior: float = DEFAULT_UNKNOWN_PRIOR) -> torch.Tensor | None:
    """Set every head's output bias: ``logit(prior)`` (``how="prior"``) or 0 (``"zero"``).

    Only for the output types of independent sigmoids per node (``"mcm"``, ``"flat_baseline"``); the
    others keep their own initialisation (logged) and None is returned.

    Args:
        model: a :class:`BenthicNetForHierarchicalClassification` with fresh heads.
        targets, mask: ``(rows, N)`` training targets and mask (1 = known).

    Returns:
        The ``(N,)`` bias written (float32), or None when left unchanged.
    """
    if how not in HEAD_BIAS_INITS:
        raise ValueError(f"--init_head_bias must be one of {HEAD_BIAS_INITS}, got {how!r}")
    output_type = getattr(model.config, "output_type", "mcm")
    if output_type not in SIGMOID_OUTPUT_TYPES:
        logger.warning("--init_head_bias %s applies to output types %s only; %r heads keep their init",
                       how, SIGMOID_OUTPUT_TYPES, output_type)
        return None
    n = model.config.get_hierarchy().num_nodes
    if np.shape(targets)[1:] != (n,):
        raise ValueError(f"targets have shape {np.shape(targets)}, the model has {n} nodes")
    if how == "prior":
        p = known_bit_priors(targets, mask, eps, unknown_prior)
        bias = torch.as_tensor(np.log(p) - np.log1p(-p), dtype=torch.float32)
    else:
        bias = torch.zeros(n, dtype=torch.float32)
    hierarchy = model.config.get_hierarchy()
    for i, layer in enumerate(final_linear_layers(model)):
        layer.bias.copy_(bias[hierarchy.head_slice(i)].to(layer.bias))
    return bias
