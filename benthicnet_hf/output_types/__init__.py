"""Output types: how a head's logits become coherent per-node probabilities and a masked loss.

``"mcm"`` (C-HMCNN, the default) and the ETHEC variants of Dhall et al. 2020 (arXiv 2004.03459):
``"per_level"``, ``"masked_per_level"``, ``"marginalisation"``, ``"hsoftmax"``. All keep the
``(batch, num_nodes)`` layout of logits and probabilities. The ETHEC types need single-path tree
heads (one label per level); flat heads use sigmoid + masked BCE under every type.
"""

from .base import OutputType
from .criterion import OutputTypeCriterion
from .hierarchical_softmax import HierarchicalSoftmaxOutputType
from .marginalisation import MarginalisationOutputType
from .mcm import FlatSigmoidOutputType, MCMOutputType
from .per_level import MaskedPerLevelOutputType, PerLevelOutputType
from .registry import OUTPUT_TYPES, build_output_type
from .single_path import SinglePathError, SinglePathIndex, grouped_log_softmax, scatter_logsumexp

__all__ = [
    "OUTPUT_TYPES",
    "build_output_type",
    "OutputType",
    "OutputTypeCriterion",
    "MCMOutputType",
    "FlatSigmoidOutputType",
    "PerLevelOutputType",
    "MaskedPerLevelOutputType",
    "MarginalisationOutputType",
    "HierarchicalSoftmaxOutputType",
    "SinglePathError",
    "SinglePathIndex",
    "grouped_log_softmax",
    "scatter_logsumexp",
]
