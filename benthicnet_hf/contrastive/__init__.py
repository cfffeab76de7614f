"""Hierarchical contrastive pre-training on labelled images.

- :mod:`.hmlc`: HiMulCon, HiConE, HiMulConE (Zhang et al., CVPR 2022, arXiv 2204.13207);
- :mod:`.feature_masks`: G-HMLC hard and A-HMLC soft level feature masks (Ott et al., arXiv 2510.00837);
- :mod:`.mixture`: batched 1-D Gaussian mixtures by EM, one per embedding vector (G-HMLC's masks);
- :mod:`.linear_eval`: the paper's linear evaluation, a frozen encoder and a linear classifier per level;
- :mod:`.levels`: per-level label ids from targets/masks (unknown levels are neither positive nor
  negative);
- :mod:`.method`: encoder + projector methods exporting an encoder like the SSL methods;
- :mod:`.args`, :mod:`.cli`, :mod:`.train`: the options, command line and loop of the labelled
  pre-training (checkpoints and exact resume through :mod:`benthicnet_hf.training`).
"""

from .feature_masks import (AttentionFeatureMasks, GaussianMixtureFeatureMasks, fisher_scores, gmm_feature_masks,
                            vector_gmm_masks)
from .hmlc import LOSS_TYPES, HMLCLoss, default_level_penalty, hmlc_loss
from .levels import LevelLabeller
from .linear_eval import encode_frozen, linear_eval_per_level
from .method import CONTRASTIVE_METHODS, HierarchicalContrastive, build_contrastive_method
from .mixture import fit_row_mixtures

__all__ = [
    "hmlc_loss", "HMLCLoss", "LOSS_TYPES", "default_level_penalty",
    "fisher_scores", "gmm_feature_masks", "vector_gmm_masks", "fit_row_mixtures",
    "GaussianMixtureFeatureMasks", "AttentionFeatureMasks", "encode_frozen", "linear_eval_per_level",
    "LevelLabeller",
    "CONTRASTIVE_METHODS", "HierarchicalContrastive", "build_contrastive_method",
]
