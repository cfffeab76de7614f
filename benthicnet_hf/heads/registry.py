"""``HEAD_TYPES``: head-type name → class, and :func:`build_head_type` for one head."""

from __future__ import annotations

from ..hierarchy import Head
from .base import HeadType
from .hierarchical_softmax import HierarchicalSoftmaxHead
from .marginalisation import MarginalisationHead
from .mcm import FlatSigmoidHead, MCMHead
from .per_level import MaskedPerLevelHead, PerLevelHead

HEAD_TYPES: dict[str, type[HeadType]] = {
    "mcm": MCMHead,
    "per_level": PerLevelHead,
    "masked_per_level": MaskedPerLevelHead,
    "marginalisation": MarginalisationHead,
    "hsoftmax": HierarchicalSoftmaxHead,
}


def build_head_type(head_type: str, head: Head) -> HeadType:
    """The handler of ``head_type`` for ``head``; flat heads always get sigmoid + masked BCE.

    Raises:
        ValueError: unknown ``head_type``.  SinglePathError: a DAG head with a single-path type.
    """
    if head_type not in HEAD_TYPES:
        raise ValueError(f"unknown head_type {head_type!r}; choose one of {sorted(HEAD_TYPES)}")
    if head.kind == "flat":
        return FlatSigmoidHead(head)
    return HEAD_TYPES[head_type](head)
