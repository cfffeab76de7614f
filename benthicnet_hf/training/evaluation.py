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
    # disable=None: drawn on a terminal only (in a log, a cleared bar would run into the next line)
    for batch in tqdm(dataloader, desc=desc, leave=False, disable=None if accelerator.is_local_main_process else True):
        out = model(pixel_values=batch["pixel_values"])
        p, y, m = accelerator.gather_for_metrics(
            (out.probabilities.float(), batch["labels"].to(torch.uint8), batch["label_mask"].to(torch.uint8)))
        probs.append(p.cpu().numpy())
        targets.append(y.cpu().numpy())
        masks.append(m.cpu().numpy())
    return np.concatenate(probs), np.concatenate(targets), np.concatenate(masks)


def evaluate_split(model: Any, dataloader: Any, accelerator: Any, hierarchy: Hierarchy, threshold: float,
                   desc: str = "eval", per_node: bool = False) -> tuple[Any, ...]:
    """``(compute_metrics(...), number of samples evaluated)`` for one split; with ``per_node`` a
    third item, :func:`~benthicnet_hf.metrics.per_node_table` (one row per node)."""
    from ..metrics import compute_metrics, per_node_table

    probs, targets, mask = predict_split(model, dataloader, accelerator, desc=desc)
    metrics = compute_metrics(probs, targets, mask, hierarchy, threshold=threshold)
    if not per_node:
        return metrics, len(probs)
    return metrics, len(probs), per_node_table(probs, targets, mask, hierarchy, threshold=threshold)


def check_label_support(accelerator: Any, split_labels: dict[str, tuple[np.ndarray, np.ndarray]],
                        hierarchy: Hierarchy, allow_degenerate: bool) -> None:
    """Print labelled rows and known positive/negative bits per head and split (main process), and stop
    on a training head with no known negative or no known positive bit unless ``allow_degenerate``.

    Args:
        split_labels: split → ``(targets, mask)``, each ``(rows, N)`` uint8.
    """
    from ..data.label_support import check_trainable_heads, format_label_support, label_support

    support = {split: label_support(y, m, hierarchy) for split, (y, m) in split_labels.items()}
    accelerator.print("label support (labelled rows, known positive / negative bits):\n"
                      + format_label_support(support))
    check_trainable_heads(support["train"], allow=allow_degenerate)


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
