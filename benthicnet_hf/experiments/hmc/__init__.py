"""Hierarchical multi-label classification benchmarks (FunCat, GO, Diatoms, ImCLEF) in ARFF.

A research reproduction, not part of the library's core (which never imports it). Reproduces
C-HMCNN(h) (Giunchiglia & Lukasiewicz, NeurIPS 2020) with our max-constraint and
masked MCLoss, and the rare-node variants of Xu et al. 2026 (:mod:`.rare`: weighted and focal
losses and ensembles on the C-HMCNN network; LP-ROS and rare-node recall/F1 from
:mod:`benthicnet_hf.rare_nodes`; :mod:`.significance`: paired Wilcoxon tests against MCLoss). ``benchmarks/hmc.py`` is the command-line front end.
"""

from .arff import ROOT_KEYS, ArffFormatError, ArffTable, HMCDataset, find_splits, load_hmc, read_arff
from .ensemble_cost import ensemble_cost_ratio
from .network import HMCNetwork
from .preprocess import Standardizer, preprocess_splits
from ...rare_nodes.metrics import rare_and_all_metrics, rare_node_indices, recall_f1
from .rare import RARE_LOSSES, MaskedRareLoss, build_network, parse_rare_loss
from .significance import paired_wilcoxon, per_node_scores, significance_against
from .train import (
    LOSSES,
    REFERENCE_SETTINGS,
    HMCConfig,
    HMCResult,
    build_criterion,
    check_coherent,
    epoch_time,
    micro_auprc,
    prior_auprc,
    train_and_evaluate,
)

__all__ = [
    "ROOT_KEYS",
    "ArffFormatError",
    "ArffTable",
    "HMCDataset",
    "find_splits",
    "load_hmc",
    "read_arff",
    "HMCNetwork",
    "Standardizer",
    "preprocess_splits",
    "RARE_LOSSES",
    "MaskedRareLoss",
    "build_network",
    "parse_rare_loss",
    "paired_wilcoxon",
    "per_node_scores",
    "significance_against",
    "ensemble_cost_ratio",
    "rare_and_all_metrics",
    "rare_node_indices",
    "recall_f1",
    "LOSSES",
    "REFERENCE_SETTINGS",
    "HMCConfig",
    "HMCResult",
    "build_criterion",
    "check_coherent",
    "epoch_time",
    "micro_auprc",
    "prior_auprc",
    "train_and_evaluate",
]
