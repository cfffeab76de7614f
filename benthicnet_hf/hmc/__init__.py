"""Hierarchical multi-label classification benchmarks (FunCat, GO, Diatoms, ImCLEF) in ARFF.

Reproduces C-HMCNN(h) (Giunchiglia & Lukasiewicz, NeurIPS 2020) with our max-constraint and
masked MCLoss. ``benchmarks/hmc.py`` is the command-line front end.
"""

from .arff import ROOT_KEYS, ArffFormatError, ArffTable, HMCDataset, find_splits, load_hmc, read_arff
from .network import HMCNetwork
from .preprocess import Standardizer, preprocess_splits
from .train import (
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
