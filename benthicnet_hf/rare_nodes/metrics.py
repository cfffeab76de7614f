"""Rare-node evaluation (Xu et al. 2026, arXiv 2602.08986): recall and F1 over all nodes and the rarest.

At a threshold on (ensemble-mean) coherent probabilities: micro/macro recall and F1 over all
evaluated nodes and over the rarest ones, the bottom quartile of training frequency among evaluated
nodes with a training positive (macro over nodes with a test positive). Plain numpy on ``(rows, N)``
0/1 arrays, so it scores any model: the HMC reproduction (:mod:`benthicnet_hf.experiments.hmc`)
or a fine-tuned BenthicNet model's test predictions.
"""

from __future__ import annotations

import numpy as np


def rare_node_indices(fit_targets: np.ndarray, to_eval: np.ndarray, quantile: float = 0.25) -> np.ndarray:
    """Evaluated nodes in the bottom ``quantile`` of training frequency, among those with a training positive."""
    freq = np.asarray(fit_targets).sum(0)
    candidates = np.flatnonzero(np.asarray(to_eval, dtype=bool) & (freq > 0))
    if len(candidates) == 0:
        return candidates
    return candidates[freq[candidates] <= np.quantile(freq[candidates], quantile)]


def recall_f1(y: np.ndarray, pred: np.ndarray, nodes: np.ndarray) -> dict[str, float]:
    """Micro and macro recall and F1 of ``pred`` against ``y`` (both ``(rows, N)`` 0/1) over ``nodes``.

    ``macro_*`` average over the nodes with at least one positive in ``y`` (0 if none).
    ``macro_*_zero`` average over every node in ``nodes``, a node without test positives counting
    as recall 0 and F1 0: the per-node F1 of the rare-node paper's public code (``node_f1``), i.e.
    sklearn's macro average with ``zero_division=0``.
    """
    yt, yp = y[:, nodes].astype(bool), pred[:, nodes].astype(bool)
    tp, fp, fn = (yt & yp).sum(0), (~yt & yp).sum(0), (yt & ~yp).sum(0)
    has = (tp + fn) > 0
    recall = np.divide(tp, tp + fn, out=np.zeros(len(tp)), where=has)
    f1_den = 2 * tp + fp + fn
    f1 = np.divide(2 * tp, f1_den, out=np.zeros(len(tp)), where=f1_den > 0)
    return {
        "macro_recall_zero": float(recall.mean()) if len(tp) else 0.0,
        "macro_f1_zero": float(f1.mean()) if len(tp) else 0.0,
        "micro_recall": float(tp.sum() / max(tp.sum() + fn.sum(), 1)),
        "micro_f1": float(2 * tp.sum() / max(2 * tp.sum() + fp.sum() + fn.sum(), 1)),
        "macro_recall": float(recall[has].mean()) if has.any() else 0.0,
        "macro_f1": float(f1[has].mean()) if has.any() else 0.0,
    }


def rare_and_all_metrics(
    y_test: np.ndarray, probs: np.ndarray, fit_targets: np.ndarray, to_eval: np.ndarray, threshold: float = 0.5
) -> dict[str, float]:
    """``rare_*`` and ``all_*`` micro/macro recall and F1 at ``threshold``, plus ``rare_nodes`` (count)."""
    pred = probs > threshold
    rare = rare_node_indices(fit_targets, to_eval)
    out: dict[str, float] = {"rare_nodes": int(len(rare)), "threshold": threshold}
    out.update({f"all_{k}": v for k, v in recall_f1(y_test, pred, np.flatnonzero(to_eval)).items()})
    out.update({f"rare_{k}": v for k, v in recall_f1(y_test, pred, rare).items()})
    return out
