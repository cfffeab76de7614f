"""Head types: how a head's logits become coherent per-node probabilities and a masked loss.

``"mcm"`` (C-HMCNN, the default) and the ETHEC variants of Dhall et al. 2020 (arXiv 2004.03459):
``"per_level"``, ``"masked_per_level"``, ``"marginalisation"``, ``"hsoftmax"``. All keep the
``(batch, num_nodes)`` layout of logits and probabilities. The ETHEC types need single-path tree
heads (one label per level); flat heads use sigmoid + masked BCE under every type.
"""

from .base import HeadType
from .criterion import HeadTypeCriterion
from .hierarchical_softmax import HierarchicalSoftmaxHead
from .marginalisation import MarginalisationHead
from .mcm import FlatSigmoidHead, MCMHead
from .per_level import MaskedPerLevelHead, PerLevelHead
from .registry import HEAD_TYPES, build_head_type
from .single_path import SinglePathError, SinglePathIndex, grouped_log_softmax, scatter_logsumexp

__all__ = [
    "HEAD_TYPES",
    "build_head_type",
    "HeadType",
    "HeadTypeCriterion",
    "MCMHead",
    "FlatSigmoidHead",
    "PerLevelHead",
    "MaskedPerLevelHead",
    "MarginalisationHead",
    "HierarchicalSoftmaxHead",
    "SinglePathError",
    "SinglePathIndex",
    "grouped_log_softmax",
    "scatter_logsumexp",
]
