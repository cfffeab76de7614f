"""Post-hoc calibration stored in the config: one temperature per head, one threshold per node.

- ``config.head_temperatures`` ``{head: T}``: temperature scaling (Guo et al. 2017, "On Calibration of
  Modern Neural Networks"), one scalar per head fitted on the validation split
  (:func:`benthicnet_hf.training.calibrate.fit_head_temperatures`). The model divides each head's raw
  logits by its ``T`` before the output type (:func:`scale_logits`), so ``outputs.logits`` and
  ``outputs.probabilities`` are the calibrated ones. For ``"mcm"`` this keeps coherence exactly:
  ``sigmoid(·/T)`` is increasing, so ``max_d sigmoid(h_d / T) = sigmoid(max_d h_d / T)`` — scaling
  before the max-constraint equals scaling after it, and no child can score above its parent. The
  ETHEC output types get ``logits / T`` before their softmaxes (classic temperature scaling).
- ``config.node_thresholds`` ``(num_nodes,)``: the decision threshold of each node
  (:func:`benthicnet_hf.training.calibrate.tune_node_thresholds`), read by ``predict`` and
  :func:`benthicnet_hf.prediction.predict_paths_for_config`.

Remote-code safe: imports only installed packages, so the config and model files can import it
relatively when copied next to the weights.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import torch
from torch import Tensor


def check_head_temperatures(temperatures: Any, head_names: Sequence[str]) -> dict[str, float] | None:
    """Validated ``{head: T}`` (every head of the hierarchy, finite ``T > 0``); None stays None."""
    if temperatures is None:
        return None
    if not isinstance(temperatures, dict) or set(temperatures) != set(head_names):
        got = sorted(temperatures) if isinstance(temperatures, dict) else type(temperatures).__name__
        raise ValueError(f"head_temperatures must map every head {list(head_names)} to a temperature, got {got}")
    out = {}
    for head in head_names:  # hierarchy order, whatever order config.json stored
        t = float(temperatures[head])
        if not (math.isfinite(t) and t > 0):
            raise ValueError(f"head_temperatures[{head!r}] must be a finite temperature > 0, "
                             f"got {temperatures[head]!r}")
        out[head] = t
    return out


def check_node_thresholds(thresholds: Any, num_nodes: int, labels: Sequence[str] | None = None
                          ) -> list[float] | None:
    """Validated ``(num_nodes,)`` thresholds in [0, 1]; None stays None. Errors name the node."""
    if thresholds is None:
        return None
    values = [float(t) for t in thresholds]
    if len(values) != num_nodes:
        raise ValueError(f"node_thresholds has {len(values)} entries, the hierarchy has {num_nodes} nodes")
    for i, t in enumerate(values):
        if not (0.0 <= t <= 1.0):
            name = labels[i] if labels is not None else f"node {i}"
            raise ValueError(f"node_thresholds[{i}] ({name}) must be in [0, 1], got {thresholds[i]!r}")
    return values


def node_temperatures(temperatures: dict[str, float], head_names: Sequence[str], head_sizes: Sequence[int],
                      like: Tensor) -> Tensor:
    """``(num_nodes,)`` the temperature of each node's head, on ``like``'s device and dtype."""
    # expanded on the CPU, then one copy: a repeat_interleave with device-side repeats waits for the GPU
    per_head = torch.tensor([temperatures[h] for h in head_names], dtype=like.dtype)
    return per_head.repeat_interleave(torch.tensor(list(head_sizes))).to(like.device)


def scale_logits(logits: Tensor, config: Any) -> Tensor:
    """``(..., num_nodes)`` raw logits divided by their head's ``config.head_temperatures``; returned
    unchanged when the config has none (a model before calibration, or saved without it)."""
    temperatures = getattr(config, "head_temperatures", None)
    if temperatures is None:
        return logits
    hier = config.get_hierarchy()
    sizes = [len(h.nodes) for h in hier.heads]
    return logits / node_temperatures(temperatures, hier.head_names, sizes, logits)
