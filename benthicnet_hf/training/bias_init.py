"""Label-prior initialisation of the heads' output biases (``--init_head_bias prior``).

A fresh head's logits sit around 0, i.e. p ≈ 0.5 for every node, far above the frequency of most
nodes: after a short fine-tuning the thresholded metrics (F1) are then worse than predicting the
training prior. Setting the bias of each head's final ``Linear`` to ``logit(prior)`` makes the
untrained model *start* at the label-prior baseline (exactly so for linear heads with zero weights;
around it otherwise), so training only has to add the image evidence.

The prior of a node is the fraction of its **known** training bits that are positive (mask 1 =
known; unknown bits say nothing), clamped into ``[eps, 1 − eps]``; a node never known in training
gets ``unknown_prior``.

The softmax output types of tree heads (``per_level``, ``masked_per_level``, ``hsoftmax``,
``marginalisation``) get the same start in their own family: the bias of node j is
``log(c_j + pseudo_count)``, ``c_j`` = rows where j is a known positive, so each softmax group starts
at its smoothed label frequencies: ``P(j | parent)`` over siblings (hsoftmax, masked per-level), the
frequency of j among the labels of its depth (per-level). For marginalisation (one softmax over the
leaves) a leaf gets the sum of its path's ``log P(node | parent)``, so every node's marginal starts at
the product of those conditionals, as hsoftmax's does. Flat heads are sigmoids under every type and
get ``logit(prior)``; ``joint_embedding`` heads have no output bias and keep their init.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import torch
from torch import nn

from ..hierarchy import Taxonomy
from ..output_types.single_path import SinglePathIndex, grouped_log_softmax
from ..rare_nodes.ensemble import StackedLinear

logger = logging.getLogger(__name__)

#: ``--init_head_bias`` choices.
HEAD_BIAS_INITS = ("prior", "zero")
#: output types whose logits are independent per-node sigmoids: bias = logit(prior)
SIGMOID_OUTPUT_TYPES = ("mcm", "flat_baseline")
#: output types whose tree heads are softmaxes over groups of nodes: bias = log(smoothed count)
SOFTMAX_OUTPUT_TYPES = ("per_level", "masked_per_level", "hsoftmax", "marginalisation")
DEFAULT_EPS = 1e-4
DEFAULT_UNKNOWN_PRIOR = 1e-2
#: added to every node's count of known positives: a node never seen positive keeps a finite bias
DEFAULT_PSEUDO_COUNT = 1.0


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


def softmax_prior_bias(head: Taxonomy, targets: np.ndarray, mask: np.ndarray, output_type: str,
                       pseudo_count: float = DEFAULT_PSEUDO_COUNT) -> np.ndarray:
    """``(n,)`` float64 output bias of one tree head under a softmax output type (module docstring).

    Args:
        head: the tree taxonomy.
        targets, mask: ``(rows, n)`` the head's slice of the training targets and mask (1 = known).
        output_type: one of :data:`SOFTMAX_OUTPUT_TYPES`.
        pseudo_count: added to every node's count of known positives (> 0).
    """
    if output_type not in SOFTMAX_OUTPUT_TYPES:
        raise ValueError(f"output_type must be one of {SOFTMAX_OUTPUT_TYPES}, got {output_type!r}")
    if not pseudo_count > 0:
        raise ValueError(f"pseudo_count must be > 0, got {pseudo_count}")
    y, m = np.asarray(targets) > 0.5, np.asarray(mask) > 0.5
    n = len(head.nodes)
    if y.shape != m.shape or y.ndim != 2 or y.shape[1] != n:
        raise ValueError(f"head {head.name!r}: targets {y.shape} and mask {m.shape} must be (rows, {n})")
    log_count = np.log((y & m).sum(axis=0) + pseudo_count)
    if output_type != "marginalisation":
        return log_count
    index = SinglePathIndex(head, output_type)
    log_conditional = grouped_log_softmax(torch.as_tensor(log_count)[None], index.sibling_group, n + 1)
    return index.sum_over_ancestors(log_conditional)[0].numpy()  # sum of log P(node | parent) on the path


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
                     eps: float = DEFAULT_EPS, unknown_prior: float = DEFAULT_UNKNOWN_PRIOR,
                     pseudo_count: float = DEFAULT_PSEUDO_COUNT) -> torch.Tensor | None:
    """Set every head's output bias: the label prior of its output type (``how="prior"``, module
    docstring) or 0 (``"zero"``).

    ``"joint_embedding"`` models have no output bias: they keep their initialisation (logged) and
    None is returned.

    Args:
        model: a :class:`BenthicNetForHierarchicalClassification` with fresh heads.
        targets, mask: ``(rows, N)`` training targets and mask (1 = known).

    Returns:
        The ``(N,)`` bias written (float32), or None when left unchanged.
    """
    if how not in HEAD_BIAS_INITS:
        raise ValueError(f"--init_head_bias must be one of {HEAD_BIAS_INITS}, got {how!r}")
    output_type = getattr(model.config, "output_type", "mcm")
    if output_type not in SIGMOID_OUTPUT_TYPES + SOFTMAX_OUTPUT_TYPES:
        logger.warning("--init_head_bias %s: %r heads have no output bias and keep their init", how, output_type)
        return None
    hierarchy = model.config.get_hierarchy()
    n = hierarchy.num_nodes
    if np.shape(targets)[1:] != (n,) or np.shape(mask) != np.shape(targets):
        raise ValueError(f"targets {np.shape(targets)} and mask {np.shape(mask)} must be (rows, {n}) "
                         f"for the model's {n} nodes")
    bias = np.zeros(n)
    if how == "prior":
        p = known_bit_priors(targets, mask, eps, unknown_prior)
        bias = np.log(p) - np.log1p(-p)
        if output_type in SOFTMAX_OUTPUT_TYPES:  # flat heads stay sigmoids under these types
            targets, mask = np.asarray(targets), np.asarray(mask)
            for i, head in enumerate(hierarchy.heads):
                if head.kind != "flat":
                    cols = hierarchy.head_slice(i)
                    bias[cols] = softmax_prior_bias(head, targets[:, cols], mask[:, cols], output_type, pseudo_count)
    bias = torch.as_tensor(bias, dtype=torch.float32)
    for i, layer in enumerate(final_linear_layers(model)):
        layer.bias.copy_(bias[hierarchy.head_slice(i)].to(layer.bias))
    return bias
