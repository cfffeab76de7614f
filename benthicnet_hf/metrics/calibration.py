"""Calibration of node probabilities over known bits: reliability bins, ECE and Brier score.

Every known bit (mask = 1) is one binary forecast ``p`` with outcome ``y``:

- :func:`reliability_bins`: equal-width bins of ``p`` over [0, 1] (bin ``b`` holds
  ``b/B <= p < (b+1)/B``, the last one also ``p = 1``): count, mean ``p`` and fraction of positives;
- :func:`expected_calibration_error`: ``ECE = Σ_b (n_b / n) |mean(y)_b − mean(p)_b|``
  (Guo et al. 2017, equal-width bins, 15 by default);
- :func:`brier_score`: ``mean((p − y)²)``.

:func:`calibration_metrics` gives both per head (``"<head>/ece"``, ``"<head>/brier"``) and over all
known bits (``"overall/..."``). NaN where there is no known bit. The label prior ``π`` scored as
the constant ``p = π`` has ECE 0 and Brier ``π(1 − π)``; uniform random scores have Brier 1/3.
"""

from __future__ import annotations

import numpy as np

from ..hierarchy import Hierarchy
from .inputs import check_metric_inputs

#: Bins of the reliability diagram and of the ECE (Guo et al. 2017 use 15).
DEFAULT_BINS = 15


def reliability_bins(probs: np.ndarray, targets: np.ndarray, mask: np.ndarray | None = None,
                     bins: int = DEFAULT_BINS) -> dict[str, np.ndarray]:
    """Equal-width reliability bins over the known bits of ``(rows, nodes)`` arrays.

    Returns:
        ``{"count": (bins,), "mean_prob": (bins,), "frac_pos": (bins,), "edges": (bins + 1,)}``;
        ``mean_prob``/``frac_pos`` are NaN in empty bins.
    """
    if bins < 1:
        raise ValueError(f"bins must be >= 1, got {bins}")
    p, y, m = check_metric_inputs(probs, targets, mask)
    known = m.astype(bool)
    p, y = p[known].astype(np.float64), y[known].astype(np.float64)
    which = np.minimum((p * bins).astype(np.int64), bins - 1)  # p = 1 goes to the last bin
    count = np.bincount(which, minlength=bins).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_prob = np.bincount(which, weights=p, minlength=bins) / count
        frac_pos = np.bincount(which, weights=y, minlength=bins) / count
    return {"count": count, "mean_prob": mean_prob, "frac_pos": frac_pos,
            "edges": np.linspace(0.0, 1.0, bins + 1)}


def expected_calibration_error(probs: np.ndarray, targets: np.ndarray, mask: np.ndarray | None = None,
                               bins: int = DEFAULT_BINS) -> float:
    """Masked ECE with ``bins`` equal-width bins; NaN when no bit is known."""
    r = reliability_bins(probs, targets, mask, bins)
    n = r["count"].sum()
    if n == 0:
        return float("nan")
    full = r["count"] > 0
    return float(np.sum(r["count"][full] / n * np.abs(r["frac_pos"][full] - r["mean_prob"][full])))


def brier_score(probs: np.ndarray, targets: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Masked Brier score ``mean((p − y)²)`` over the known bits; NaN when no bit is known."""
    p, y, m = check_metric_inputs(probs, targets, mask)
    known = m.astype(bool)
    if not known.any():
        return float("nan")
    return float(np.mean((p[known].astype(np.float64) - y[known]) ** 2))


def calibration_metrics(probs: np.ndarray, targets: np.ndarray, mask: np.ndarray | None, hierarchy: Hierarchy,
                        bins: int = DEFAULT_BINS) -> dict[str, float]:
    """``{"<head>/ece", "<head>/brier", "overall/ece", "overall/brier"}`` over known bits.

    Args:
        probs: ``(rows, hierarchy.num_nodes)`` probabilities; targets ``{0, 1}`` and mask (1 = known)
            of the same shape (None = all known).
    """
    probs, targets, mask = check_metric_inputs(probs, targets, mask)
    if probs.shape[1] != hierarchy.num_nodes:
        raise ValueError(f"probs has {probs.shape[1]} columns but the hierarchy has {hierarchy.num_nodes} nodes")
    out: dict[str, float] = {}
    for h, name in enumerate(hierarchy.head_names):  # a handful of heads; rows and nodes stay vectorised
        s = hierarchy.head_slice(h)
        out[f"{name}/ece"] = expected_calibration_error(probs[:, s], targets[:, s], mask[:, s], bins)
        out[f"{name}/brier"] = brier_score(probs[:, s], targets[:, s], mask[:, s])
    out["overall/ece"] = expected_calibration_error(probs, targets, mask, bins)
    out["overall/brier"] = brier_score(probs, targets, mask)
    return out
