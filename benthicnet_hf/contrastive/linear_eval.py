"""Linear evaluation of a pre-trained encoder, per hierarchy level (Ott et al.'s protocol).

After hierarchical contrastive pre-training the encoder is frozen (the projector and the feature
masks are dropped, as in SupCon and HMLC), its pooled features are computed once, and one linear
classifier per level is fitted on them (sklearn's multinomial logistic regression on standardised
features: a convex problem, so the optimiser's schedule does not enter the comparison). Each level
is scored on held-out rows by accuracy and macro-F1, beside the label prior (always the training
set's most frequent class at that level), which any useful encoder must beat.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

__all__ = ["encode_frozen", "linear_eval_per_level"]


@torch.no_grad()
def encode_frozen(encoder: nn.Module, images: Tensor, batch_size: int = 256) -> np.ndarray:
    """``(n, 3, H, W)`` images → ``(n, num_features)`` float64 features of ``encoder`` in eval mode."""
    was_training = encoder.training
    encoder.eval()
    try:
        feats = [encoder(images[i:i + batch_size]).float() for i in range(0, len(images), batch_size)]
    finally:
        encoder.train(was_training)
    return torch.cat(feats).cpu().numpy().astype(np.float64)


def linear_eval_per_level(train_x: np.ndarray, train_levels: np.ndarray, test_x: np.ndarray,
                          test_levels: np.ndarray, c: float = 1.0, max_iter: int = 2000
                          ) -> list[dict[str, Any]]:
    """One linear classifier per level on frozen features; per-level scores on the test rows.

    Args:
        train_x, test_x: ``(n, D)`` frozen features.
        train_levels, test_levels: ``(n, levels)`` int class ids per level, coarsest first;
            -1 = unknown (the row is left out of that level's fit and score).
        c: inverse L2 strength of the logistic regression.

    Returns:
        per level: ``accuracy``, ``macro_f1``, ``prior_accuracy``, ``prior_macro_f1``,
        ``num_classes``, ``num_train``, ``num_test``.
    """
    from sklearn.dummy import DummyClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import accuracy_score, f1_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if train_levels.ndim != 2 or test_levels.ndim != 2 or train_levels.shape[1] != test_levels.shape[1]:
        raise ValueError(f"level ids must be (n, levels) with the same levels, got {train_levels.shape} "
                         f"and {test_levels.shape}")
    if len(train_x) != len(train_levels) or len(test_x) != len(test_levels):
        raise ValueError(f"features and level ids disagree on rows: train {len(train_x)} vs {len(train_levels)}, "
                         f"test {len(test_x)} vs {len(test_levels)}")
    out = []
    for level in range(train_levels.shape[1]):  # a handful of levels
        tr, te = train_levels[:, level] >= 0, test_levels[:, level] >= 0
        y_tr, y_te = train_levels[tr, level], test_levels[te, level]
        if len(np.unique(y_tr)) < 2 or not te.any():
            raise ValueError(f"level {level}: needs at least 2 known training classes and 1 known test row "
                             f"(got {len(np.unique(y_tr))} classes, {int(te.sum())} test rows)")
        clf = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=max_iter))
        pred = clf.fit(train_x[tr], y_tr).predict(test_x[te])
        prior = DummyClassifier(strategy="prior").fit(train_x[tr], y_tr).predict(test_x[te])
        out.append({"level": level, "accuracy": float(accuracy_score(y_te, pred)),
                    "macro_f1": float(f1_score(y_te, pred, average="macro", zero_division=0)),
                    "prior_accuracy": float(accuracy_score(y_te, prior)),
                    "prior_macro_f1": float(f1_score(y_te, prior, average="macro", zero_division=0)),
                    "num_classes": int(len(np.unique(y_tr))), "num_train": int(tr.sum()), "num_test": int(te.sum())})
    return out
