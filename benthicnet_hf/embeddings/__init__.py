"""Order-preserving label embeddings (Dhall's ETHEC study; Vendrov et al.; Ganea et al.).

- :mod:`.energies` — the three energies ``E(u, v)`` (order embeddings, Euclidean and hyperbolic
  entailment cones), vectorised over ``(P, d)`` pairs;
- :mod:`.edges` — a taxonomy's edges (transitive closure) as pairs, their split, negative sampling;
- :mod:`.label_embedding` — label-only embeddings and their training (geoopt's Riemannian Adam on
  the Poincaré ball for hyperbolic cones);
- :mod:`.edge_evaluation` — the study's edge classification (TPR, TNR, F1 over all ordered pairs).
"""

from .edge_evaluation import EdgeMetrics, all_pair_energies, best_f1_threshold, edge_metrics, evaluate_edges
from .edges import EdgeSplit, basic_pairs, closure_matrix, sample_negatives, split_edges
from .energies import (
    DEFAULT_K,
    ENERGIES,
    euclidean_cone_angle,
    euclidean_cone_energy,
    euclidean_half_aperture,
    hyperbolic_cone_angle,
    hyperbolic_cone_energy,
    hyperbolic_half_aperture,
    hyperbolic_inner_radius,
    order_energy,
)
#: names of :mod:`.label_embedding`, imported on first use: it loads geoopt (seconds), which the
#: energies alone (e.g. the ``joint_embedding`` output type) do not need
_LAZY = ("MODELS", "EmbeddingConfig", "LabelEmbedding", "TrainedEmbedding", "default_config", "embedding_loss",
         "train_label_embedding")


def __getattr__(name: str):
    if name in _LAZY:
        from . import label_embedding

        return getattr(label_embedding, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "DEFAULT_K", "ENERGIES", "MODELS", "EdgeMetrics", "EdgeSplit", "EmbeddingConfig", "LabelEmbedding",
    "TrainedEmbedding", "all_pair_energies", "basic_pairs", "best_f1_threshold", "closure_matrix",
    "default_config", "edge_metrics", "embedding_loss", "euclidean_cone_angle", "euclidean_cone_energy",
    "euclidean_half_aperture", "evaluate_edges", "hyperbolic_cone_angle", "hyperbolic_cone_energy",
    "hyperbolic_half_aperture", "hyperbolic_inner_radius", "order_energy", "sample_negatives", "split_edges",
    "train_label_embedding",
]
