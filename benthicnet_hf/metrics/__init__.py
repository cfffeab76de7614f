"""Dataset-level, exact, masked metrics for hierarchical multi-label classification.

Plain numpy functions over ``(rows, nodes)`` arrays (probabilities, targets, mask with 1 = known);
:func:`compute_metrics` runs them all per head and overall. See each module for definitions.
"""

from .average_precision import (
    hml_average_precision,
    macro_average_precision,
    micro_average_precision,
    node_average_precision,
    sample_average_precision,
    thresholded_average_precision,
)
from .f1 import bit_f1, confusion_counts, exact_match, f1_scores, level_scores
from .report import compute_metrics, format_metrics_table, prior_probabilities
from .single_label import accuracy, is_one_hot, singular_f1

__all__ = [
    "compute_metrics",
    "format_metrics_table",
    "prior_probabilities",
    "micro_average_precision",
    "macro_average_precision",
    "node_average_precision",
    "sample_average_precision",
    "hml_average_precision",
    "thresholded_average_precision",
    "f1_scores",
    "bit_f1",
    "exact_match",
    "level_scores",
    "confusion_counts",
    "singular_f1",
    "accuracy",
    "is_one_hot",
]
