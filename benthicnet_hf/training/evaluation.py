"""Dataset-level evaluation under accelerate, and the label-prior baseline.

Predictions of every process are gathered with ``accelerator.gather_for_metrics`` (which drops the
samples a distributed sampler repeats to even out the last batch), so metrics are computed once on
the whole split: exactly the numbers a single process would get.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from ..hierarchy import Hierarchy


@torch.no_grad()
def predict_split(model: Any, dataloader: Any, accelerator: Any, desc: str = "eval"
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Coherent probabilities, targets and mask of a whole split, gathered from all processes.

    Returns:
        ``probs`` float32, ``targets`` uint8 and ``mask`` uint8, each ``(rows, num_nodes)``, rows
        in dataset order of each process's shard (each sample exactly once).
    """
    model.eval()
    probs, targets, masks = [], [], []
    for batch in tqdm(dataloader, desc=desc, leave=False, disable=not accelerator.is_local_main_process):
        out = model(pixel_values=batch["pixel_values"])
        p, y, m = accelerator.gather_for_metrics(
            (out.probabilities.float(), batch["labels"].to(torch.uint8), batch["label_mask"].to(torch.uint8)))
        probs.append(p.cpu().numpy())
        targets.append(y.cpu().numpy())
        masks.append(m.cpu().numpy())
    return np.concatenate(probs), np.concatenate(targets), np.concatenate(masks)


def evaluate_split(model: Any, dataloader: Any, accelerator: Any, hierarchy: Hierarchy, threshold: float,
                   desc: str = "eval") -> tuple[dict[str, Any], int]:
    """``(compute_metrics(...), number of samples evaluated)`` for one split."""
    from ..metrics import compute_metrics

    probs, targets, mask = predict_split(model, dataloader, accelerator, desc=desc)
    return compute_metrics(probs, targets, mask, hierarchy, threshold=threshold), len(probs)


def prior_baseline(train_targets: np.ndarray, train_mask: np.ndarray, targets: np.ndarray, mask: np.ndarray,
                   hierarchy: Hierarchy, threshold: float) -> dict[str, Any]:
    """Metrics of the label-prior baseline: every sample gets the training frequency of each node.

    Args:
        train_targets, train_mask: ``(train_rows, N)`` uint8 (mask 1 = known).
        targets, mask: ``(rows, N)`` of the evaluated split.
    """
    from ..metrics import compute_metrics, prior_probabilities

    prior = np.asarray(prior_probabilities(train_targets, train_mask), dtype=np.float32)
    probs = np.broadcast_to(prior, targets.shape).copy()
    return compute_metrics(probs, targets, mask, hierarchy, threshold=threshold)


def scalar_metrics(metrics: dict[str, Any], prefix: str = "") -> dict[str, float]:
    """Flatten nested metric dicts to ``{"prefix/a/b": float}`` (for trackers and JSON)."""
    out: dict[str, float] = {}
    for key, value in metrics.items():
        name = f"{prefix}/{key}" if prefix else str(key)
        if isinstance(value, dict):
            out.update(scalar_metrics(value, name))
        elif isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool):
            out[name] = float(value)
    return out


def lookup_metric(metrics: dict[str, Any], key: str) -> float:
    """The value of ``key`` (``"a/b"`` walks nested dicts); a KeyError lists the keys there are."""
    flat = scalar_metrics(metrics)
    if key not in flat:
        raise KeyError(f"--metric_for_best_model {key!r} is not a computed metric; available: {sorted(flat)}")
    return flat[key]
