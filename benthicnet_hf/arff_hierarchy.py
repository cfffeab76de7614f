"""Deprecated path of :mod:`benthicnet_hf.data.arff` (the one ARFF parser); kept for one release."""

import warnings

from .data.arff import (
    ROOT,
    is_dag_declaration,
    open_text,
    read_declaration,
    taxonomy_from_arff,
    taxonomy_from_declaration,
)

__all__ = [
    "ROOT",
    "is_dag_declaration",
    "open_text",
    "read_declaration",
    "taxonomy_from_arff",
    "taxonomy_from_declaration",
]

# FutureWarning, not DeprecationWarning: the latter is hidden outside __main__
warnings.warn(
    "benthicnet_hf.arff_hierarchy moved to benthicnet_hf.data.arff; the old path goes in the next release",
    FutureWarning,
    stacklevel=2,
)
