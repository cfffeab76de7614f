"""``OUTPUT_TYPES``: output-type name → class, and :func:`build_output_type` for one taxonomy.

The names themselves live in :data:`benthicnet_hf.configuration_benthicnet.OUTPUT_TYPE_NAMES` (the
config validates them, also as remote code); this module maps each to its class and refuses to
import if the two lists drift apart.
"""

from __future__ import annotations

from ..configuration_benthicnet import OUTPUT_TYPE_NAMES
from ..hierarchy import Taxonomy
from .base import OutputType
from .flat_baseline import FlatBaselineOutputType
from .hierarchical_softmax import HierarchicalSoftmaxOutputType
from .joint_embedding import JointEmbeddingOutputType
from .marginalisation import MarginalisationOutputType
from .mcm import FlatSigmoidOutputType, MCMOutputType
from .per_level import MaskedPerLevelOutputType, PerLevelOutputType

OUTPUT_TYPES: dict[str, type[OutputType]] = {
    cls.name: cls
    for cls in (MCMOutputType, PerLevelOutputType, MaskedPerLevelOutputType, MarginalisationOutputType,
                HierarchicalSoftmaxOutputType, FlatBaselineOutputType, JointEmbeddingOutputType)
}


def check_registry(names: tuple[str, ...], registry: dict[str, type[OutputType]]) -> None:
    """Raise ``RuntimeError`` unless ``registry`` has exactly ``names``, in that order."""
    if tuple(registry) != tuple(names):
        raise RuntimeError(f"output_types.OUTPUT_TYPES {tuple(registry)} differs from "
                           f"configuration_benthicnet.OUTPUT_TYPE_NAMES {tuple(names)}: register every "
                           "output type in both")


check_registry(OUTPUT_TYPE_NAMES, OUTPUT_TYPES)


def build_output_type(output_type: str, head: Taxonomy, node_weights_apply_to: str = "negative") -> OutputType:
    """The handler of ``output_type`` for the taxonomy ``head``; flat taxonomies always get sigmoid +
    masked BCE (:class:`FlatSigmoidOutputType`).

    Args:
        node_weights_apply_to: for ``"mcm"`` and flat taxonomies, which bits node weights multiply
            (:func:`benthicnet_hf.losses.bit_weights`); the ETHEC types weight the labelled node's
            term, ``"flat_baseline"`` all bits of a node (the study's class weighting).

    Raises:
        ValueError: unknown ``output_type``.  SinglePathError: a DAG taxonomy with a single-path type.
    """
    if output_type not in OUTPUT_TYPES:
        raise ValueError(f"unknown output_type {output_type!r}; choose one of {list(OUTPUT_TYPE_NAMES)}")
    if head.kind == "flat":
        return FlatSigmoidOutputType(head, node_weights_apply_to)
    if output_type == MCMOutputType.name:
        return MCMOutputType(head, node_weights_apply_to)
    return OUTPUT_TYPES[output_type](head)
