"""benthicnet_hf: hierarchical multi-label classification of seafloor imagery on the HF stack."""

from .hierarchy import Head, Hierarchy, HierarchyError
from .labels import EncodedLabels, LabelEncoder, UnknownLabelError, decode

__version__ = "0.1.0"

__all__ = [
    "Head",
    "Hierarchy",
    "HierarchyError",
    "LabelEncoder",
    "EncodedLabels",
    "UnknownLabelError",
    "decode",
]
