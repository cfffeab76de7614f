"""Dataset-level, exact, masked metrics for hierarchical multi-label classification.

Plain numpy functions over ``(rows, nodes)`` arrays (probabilities, targets, mask with 1 = known);
:func:`compute_metrics` runs them all per head and overall, :func:`per_node_table` lists per-node
figures; :mod:`.paper` holds the BenthicNet paper's metrics under the paper's names (``hml_ap``,
``hml_f1``, singular P/R/F1). Thresholded metrics predict ``probs > threshold`` (strict). A node or
head without both a known positive and a known negative is NaN, never a perfect score.
"""

from .average_precision import (
    macro_average_precision,
    mean_sample_average_precision,
    micro_average_precision,
    node_average_precision,
    sample_average_precision,
    thresholded_average_precision,
)
from .f1 import bit_f1, confusion_counts, exact_match, f1_scores, level_scores
from .hit_at_k import level_hit_at_k
from .paper import PAPER_METRICS, paper_metrics
from .per_node import per_node_table
from .report import compute_metrics, format_metrics_table, prior_probabilities
from .single_label import accuracy, is_one_hot, singular_f1

__all__ = [
    "compute_metrics",
    "paper_metrics",
    "PAPER_METRICS",
    "per_node_table",
    "format_metrics_table",
    "prior_probabilities",
    "micro_average_precision",
    "macro_average_precision",
    "node_average_precision",
    "sample_average_precision",
    "mean_sample_average_precision",
    "thresholded_average_precision",
    "f1_scores",
    "bit_f1",
    "exact_match",
    "level_scores",
    "level_hit_at_k",
    "confusion_counts",
    "singular_f1",
    "accuracy",
    "is_one_hot",
]
