"""Output types: how one taxonomy's logits become coherent per-node probabilities and a masked loss.

The model's classifier MLPs (:class:`~benthicnet_hf.classifier_heads.ClassifierHeads`, one
classification *head* per taxonomy, the paper's word) produce raw logits ``(batch, num_nodes)``; the
output type (``config.output_type``) turns each taxonomy's slice of them into probabilities with no
child above its parent, and defines the loss that trains them. ``"mcm"`` (C-HMCNN max-constraint +
MCLoss, the default; implemented once in :mod:`benthicnet_hf.constraint` / :mod:`benthicnet_hf.losses`)
and the ETHEC variants of Dhall et al. 2020 (arXiv 2004.03459): ``"per_level"``,
``"masked_per_level"``, ``"marginalisation"``, ``"hsoftmax"``, and the study's hierarchy-agnostic
baseline ``"flat_baseline"`` (per-node sigmoids, coherent only at decoding). All keep the ``(batch, num_nodes)``
layout of logits and probabilities. The ETHEC types need single-path tree taxonomies (one label per
level); flat taxonomies use sigmoid + masked BCE under every type.

The names are :data:`benthicnet_hf.configuration_benthicnet.OUTPUT_TYPE_NAMES`; :data:`OUTPUT_TYPES`
maps them to classes. A new output type: a subclass of :class:`OutputType` in its own module, its
name added to ``OUTPUT_TYPE_NAMES`` and its class to :data:`OUTPUT_TYPES`.
"""

from .base import OutputType
from .criterion import OutputTypeCriterion
from .flat_baseline import FlatBaselineOutputType, inverse_frequency_weights
from .hierarchical_softmax import HierarchicalSoftmaxOutputType
from .marginalisation import MarginalisationOutputType
from .mcm import FlatSigmoidOutputType, MCMOutputType
from .per_level import MaskedPerLevelOutputType, PerLevelOutputType
from .registry import OUTPUT_TYPES, build_output_type
from .single_path import (
    SinglePathError,
    SinglePathIndex,
    SinglePathOutputType,
    grouped_log_softmax,
    scatter_logsumexp,
)

__all__ = [
    "OUTPUT_TYPES",
    "build_output_type",
    "OutputType",
    "OutputTypeCriterion",
    "MCMOutputType",
    "FlatSigmoidOutputType",
    "FlatBaselineOutputType",
    "inverse_frequency_weights",
    "PerLevelOutputType",
    "MaskedPerLevelOutputType",
    "MarginalisationOutputType",
    "HierarchicalSoftmaxOutputType",
    "SinglePathError",
    "SinglePathIndex",
    "SinglePathOutputType",
    "grouped_log_softmax",
    "scatter_logsumexp",
]
