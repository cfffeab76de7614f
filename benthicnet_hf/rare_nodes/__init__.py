"""Rare-node training for hierarchical multi-label learning (Xu et al. 2026, arXiv 2602.08986).

- :mod:`.weights` — node-wise imbalance weights from (masked) training labels;
- :mod:`.uncertainty` — per-node ensemble uncertainties (bBMA, entropies, JS, GMU);
- :mod:`.focal` — the weighted, focal, masked MCLoss with schedulers and the mixed loss;
- :mod:`.member_focal` — its per-bit weights for the image model's members (``config.loss="focal"``);
- :mod:`.ensemble` — batched ensembles of heads, MC dropout, ensemble inference;
- :mod:`.lpros` — LP-ROS label-powerset random oversampling as a DataLoader sampler (and the
  fine-tuning loop's epoch-keyed one);
- :mod:`.metrics` — rare-node recall and F1 (all nodes and the rarest quartile).

The model (ensemble heads) and the fine-tuning loop (``--lpros``, ``--node_weights``) use this
package; the HMC reproduction in :mod:`benthicnet_hf.experiments.hmc` does too.
"""

from .ensemble import EnsembleMLP, EnsemblePrediction, MCDropoutEnsemble, StackedLinear, ensemble_predict
from .focal import RareNodeLoss, RareNodeLossOutput, focal_factor, schedule_fraction, scheduled_weights
from .member_focal import MemberFocalWeights
from .lpros import EpochKeyedLPROSSampler, LPROSSampler, label_set_bags, lpros_clone_counts
from .metrics import rare_and_all_metrics, rare_node_indices, recall_f1
from .uncertainty import (
    MODES,
    aleatoric_entropy,
    bma_uncertainty,
    ensemble_uncertainty,
    epistemic_js,
    gated_margin_uncertainty,
    predictive_entropy,
)
from .weights import balanced_weights, bit_weights, imbalance_weights, node_frequencies, node_imbalance_weights

__all__ = [
    "MODES",
    "EnsembleMLP",
    "EnsemblePrediction",
    "EpochKeyedLPROSSampler",
    "LPROSSampler",
    "MCDropoutEnsemble",
    "MemberFocalWeights",
    "RareNodeLoss",
    "RareNodeLossOutput",
    "StackedLinear",
    "aleatoric_entropy",
    "balanced_weights",
    "bit_weights",
    "bma_uncertainty",
    "ensemble_predict",
    "ensemble_uncertainty",
    "epistemic_js",
    "focal_factor",
    "gated_margin_uncertainty",
    "imbalance_weights",
    "label_set_bags",
    "lpros_clone_counts",
    "node_frequencies",
    "node_imbalance_weights",
    "predictive_entropy",
    "rare_and_all_metrics",
    "rare_node_indices",
    "recall_f1",
    "schedule_fraction",
    "scheduled_weights",
]
