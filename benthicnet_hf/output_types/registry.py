"""``OUTPUT_TYPES``: output-type name → class, and :func:`build_output_type` for one head."""

from __future__ import annotations

from ..hierarchy import Taxonomy
from .base import OutputType
from .hierarchical_softmax import HierarchicalSoftmaxOutputType
from .marginalisation import MarginalisationOutputType
from .mcm import FlatSigmoidOutputType, MCMOutputType
from .per_level import MaskedPerLevelOutputType, PerLevelOutputType

OUTPUT_TYPES: dict[str, type[OutputType]] = {
    "mcm": MCMOutputType,
    "per_level": PerLevelOutputType,
    "masked_per_level": MaskedPerLevelOutputType,
    "marginalisation": MarginalisationOutputType,
    "hsoftmax": HierarchicalSoftmaxOutputType,
}


def build_output_type(output_type: str, head: Taxonomy) -> OutputType:
    """The handler of ``output_type`` for ``head``; flat heads always get sigmoid + masked BCE.

    Raises:
        ValueError: unknown ``output_type``.  SinglePathError: a DAG head with a single-path type.
    """
    if output_type not in OUTPUT_TYPES:
        raise ValueError(f"unknown output_type {output_type!r}; choose one of {sorted(OUTPUT_TYPES)}")
    if head.kind == "flat":
        return FlatSigmoidOutputType(head)
    return OUTPUT_TYPES[output_type](head)
