"""After fine-tuning: per-head temperatures and per-node thresholds, fitted on the VALIDATION split.

The order matters and is fixed: (1) raw logits of the validation split (temperatures off),
(2) one temperature per head minimising the masked NLL of the model's own probabilities
(:func:`fit_head_temperatures`), stored in ``config.head_temperatures``, (3) per-node thresholds
tuned on the calibrated validation probabilities (:func:`tune_node_thresholds`), stored in
``config.node_thresholds``. The test split is only read afterwards, to report ECE/Brier before and
after (:func:`split_calibration_report`); nothing is fitted on it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch
from tqdm.auto import tqdm

from ..hierarchy import Hierarchy

#: Fewest known validation positives (and at least one known negative) a node needs for its own
#: threshold; with fewer, the node keeps the global default.
MIN_POSITIVES = 5
#: Fitted temperatures stay within [1 / MAX_TEMPERATURE, MAX_TEMPERATURE]: logits that carry no
#: information drive the NLL optimum to T → ∞ (every score 0.5), which would never stop.
MAX_TEMPERATURE = 100.0
#: Statuses of :class:`ThresholdTuning`.
TUNED, FEW_POSITIVES, NO_NEGATIVES, UNREACHED = "tuned", "few_positives", "no_negatives", "target_not_reached"


@dataclass
class ThresholdTuning:
    """Result of :func:`tune_node_thresholds`: ``thresholds`` ``(N,)`` and ``status`` ``(N,)`` (one of
    ``tuned``, ``few_positives``, ``no_negatives``, ``target_not_reached``; the last three keep the default)."""

    thresholds: np.ndarray
    status: np.ndarray
    mode: str
    default: float
    counts: dict[str, int] = field(default_factory=dict)

    def summary(self) -> str:
        kept = {k: v for k, v in self.counts.items() if k != TUNED and v}
        why = ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in kept.items())
        return (f"per-node thresholds ({self.mode}, validation split): {self.counts.get(TUNED, 0)} of "
                f"{len(self.thresholds)} nodes tuned" + (f"; the others keep {self.default} ({why})" if why else ""))


def parse_tune_thresholds(text: str) -> tuple[str, float | None]:
    """``"f1"`` → ("f1", None); ``"precision:0.9"`` → ("precision", 0.9); ``"none"`` → ("none", None)."""
    if text in ("f1", "none"):
        return text, None
    name, _, value = text.partition(":")
    try:
        target = float(value)
    except ValueError:
        target = float("nan")
    if name != "precision" or not 0 < target <= 1:
        raise ValueError(f"--tune_thresholds must be f1 | precision:P (0 < P <= 1) | none, got {text!r}")
    return name, target


def tune_node_thresholds(probs: np.ndarray, targets: np.ndarray, mask: np.ndarray | None,
                         target_precision: float | None = None, default: float = 0.5,
                         min_positives: int = MIN_POSITIVES) -> ThresholdTuning:
    """One decision threshold per node from known bits (predicted: ``p > threshold``, strict).

    F1 mode (``target_precision=None``): the cut with the highest F1 (ties: the higher threshold).
    Precision mode: among cuts with precision >= ``target_precision``, the one with the highest
    recall (ties: the higher threshold); none reaching it keeps the default. A cut between two
    distinct known scores becomes their midpoint (the lowest known score: half of it), so the
    same bits are predicted whatever the rounding (thresholds stay in [0, 1], so a cut below a
    known score of exactly 0 cannot be expressed: ``p > 0`` leaves such bits out). Vectorised over nodes (one sort per column).

    Args:
        probs: ``(rows, N)`` calibrated probabilities; targets ``(rows, N)`` {0, 1}; mask 1 = known.
        min_positives: nodes with fewer known positives, or no known negative, keep ``default``.
    """
    p = np.asarray(probs, dtype=np.float64)
    y = np.asarray(targets).astype(bool)
    known = np.ones_like(y) if mask is None else np.asarray(mask).astype(bool)
    if p.ndim != 2 or y.shape != p.shape or known.shape != p.shape:
        raise ValueError(f"probs, targets and mask must share one (rows, nodes) shape, got {p.shape}, "
                         f"{y.shape}, {known.shape}")
    rows, n = p.shape
    s = np.where(known, p, -np.inf)  # unknown bits sort last and never form a cut
    order = np.argsort(-s, axis=0, kind="stable")
    s_sorted = np.take_along_axis(s, order, axis=0)
    pos = np.take_along_axis(y & known, order, axis=0)
    neg = np.take_along_axis(~y & known, order, axis=0)
    tp, fp = np.cumsum(pos, axis=0), np.cumsum(neg, axis=0)
    total_pos, total_neg = tp[-1] if rows else np.zeros(n), fp[-1] if rows else np.zeros(n)
    lower = np.vstack([s_sorted[1:], np.full((1, n), -np.inf)])
    cut = np.isfinite(s_sorted) & (s_sorted != lower)  # the last of a run of tied known scores
    with np.errstate(invalid="ignore", divide="ignore"):
        if target_precision is None:
            f1 = 2 * tp / (tp + fp + total_pos)
            best = np.argmax(np.where(cut, np.nan_to_num(f1, nan=-1.0), -2.0), axis=0)
            reached = np.ones(n, dtype=bool)
        else:
            ok = cut & (tp / (tp + fp) >= target_precision) & (tp > 0)
            # most true positives, then the earliest cut (fewest false positives)
            best = np.argmax(np.where(ok, tp * (rows + 1) - np.arange(rows)[:, None], -1), axis=0)
            reached = ok.any(axis=0)
    cols = np.arange(n)
    hi = s_sorted[best, cols] if rows else np.zeros(n)
    lo = np.maximum(lower[best, cols], 0.0) if rows else np.zeros(n)
    status = np.full(n, TUNED, dtype=object)
    status[~reached] = UNREACHED
    status[total_neg == 0] = NO_NEGATIVES
    status[total_pos < max(min_positives, 1)] = FEW_POSITIVES
    thresholds = np.where(status == TUNED, (hi + lo) / 2, default)
    counts = {k: int((status == k).sum()) for k in (TUNED, FEW_POSITIVES, NO_NEGATIVES, UNREACHED)}
    mode = "F1-optimal" if target_precision is None else f"precision >= {target_precision}"
    return ThresholdTuning(thresholds.astype(np.float64), status, mode, float(default), counts)


def member_probabilities(probabilities: Callable[[torch.Tensor], torch.Tensor], logits: torch.Tensor,
                         node_temperature: torch.Tensor | None = None) -> torch.Tensor:
    """The model's probabilities from raw member logits: ``(M, R, N)`` → ``(R, N)``, the mean over
    members of ``probabilities(logits_m / T)`` (``node_temperature`` ``(N,)``, None = 1)."""
    scaled = logits if node_temperature is None else logits / node_temperature
    m, r, n = scaled.shape
    return probabilities(scaled.reshape(m * r, n)).reshape(m, r, n).mean(0)


def fit_head_temperatures(probabilities: Callable[[torch.Tensor], torch.Tensor], logits: torch.Tensor,
                          targets: np.ndarray, mask: np.ndarray, hierarchy: Hierarchy, max_iter: int = 100
                          ) -> dict[str, float]:
    """One temperature per head minimising the masked NLL (mean BCE over each head's known bits) of
    the model's probabilities ``member_probabilities(probabilities, logits, T)``; LBFGS on ``log T``.

    Args:
        probabilities: the model's ``criterion.probabilities`` (``(B, N)`` logits → ``(B, N)``).
        logits: ``(M, rows, N)`` raw member logits (``M = 1`` without an ensemble).
        targets, mask: ``(rows, N)`` {0, 1}, mask 1 = known.

    A head without a known bit keeps ``T = 1`` (its NLL does not depend on ``T``). Heads are
    independent (every output type works per head), so one joint fit equals per-head fits. ``log T``
    is ``B · tanh(u / B)``, ``B = log(MAX_TEMPERATURE)``: smooth, and bounded for uninformative logits.
    """
    logits = torch.as_tensor(logits, dtype=torch.float64)  # on the criterion's device
    if logits.ndim == 2:
        logits = logits.unsqueeze(0)
    dev = {"dtype": torch.float64, "device": logits.device}
    y = torch.as_tensor(np.asarray(targets), **dev)
    known = torch.as_tensor(np.asarray(mask), **dev)
    head_of = torch.as_tensor(hierarchy.head_of_node, dtype=torch.long, device=logits.device)
    num_heads = len(hierarchy.heads)
    per_head_known = torch.zeros(num_heads, **dev).index_add_(0, head_of, known.sum(0))
    u = torch.zeros(num_heads, **dev, requires_grad=True)
    bound = float(np.log(MAX_TEMPERATURE))
    optimizer = torch.optim.LBFGS([u], lr=1.0, max_iter=max_iter, line_search_fn="strong_wolfe",
                                  tolerance_grad=1e-10, tolerance_change=1e-12)
    eps = 1e-7

    def nll() -> torch.Tensor:
        optimizer.zero_grad()
        log_t = bound * torch.tanh(u / bound)
        p = member_probabilities(probabilities, logits, log_t.exp()[head_of]).clamp(eps, 1 - eps)
        bits = -(y * p.log() + (1 - y) * (1 - p).log()) * known
        per_head = torch.zeros(num_heads, **dev).index_add(0, head_of, bits.sum(0))
        loss = (per_head / per_head_known.clamp(min=1)).sum()
        loss.backward()
        return loss

    optimizer.step(nll)
    temps = (bound * torch.tanh(u.detach() / bound)).exp().cpu()
    temps[per_head_known.cpu() == 0] = 1.0
    return {name: float(temps[i]) for i, name in enumerate(hierarchy.head_names)}


@torch.no_grad()
def split_logits(model: Any, dataloader: Any, accelerator: Any, desc: str = "calibration"
                 ) -> tuple[torch.Tensor, np.ndarray, np.ndarray]:
    """Raw member logits ``(M, rows, N)`` (temperatures off), targets and mask ``(rows, N)`` uint8 of a
    whole split, gathered from all processes (each sample once)."""
    net = accelerator.unwrap_model(model)
    saved, net.config.head_temperatures = net.config.head_temperatures, None
    model.eval()
    logits, targets, masks = [], [], []
    try:
        for batch in tqdm(dataloader, desc=desc, leave=False, disable=not accelerator.is_local_main_process):
            out = model(pixel_values=batch["pixel_values"])
            z = net.member_logits(out.features).transpose(0, 1) if net.has_members() else out.logits[:, None]
            z, y, m = accelerator.gather_for_metrics(
                (z.float(), batch["labels"].to(torch.uint8), batch["label_mask"].to(torch.uint8)))
            logits.append(z.cpu())
            targets.append(y.cpu().numpy())
            masks.append(m.cpu().numpy())
    finally:
        net.config.head_temperatures = saved
    return torch.cat(logits).transpose(0, 1), np.concatenate(targets), np.concatenate(masks)


def node_temperature_vector(temperatures: dict[str, float] | None, hierarchy: Hierarchy) -> torch.Tensor | None:
    """``(N,)`` float64 temperature of each node's head (None: no temperatures)."""
    if temperatures is None:
        return None
    per_head = torch.tensor([temperatures[h] for h in hierarchy.head_names], dtype=torch.float64)
    return per_head[torch.as_tensor(hierarchy.head_of_node, dtype=torch.long)]


@torch.no_grad()
def probabilities_before_after(model: Any, logits: torch.Tensor, hierarchy: Hierarchy
                               ) -> tuple[np.ndarray, np.ndarray]:
    """``(rows, N)`` float32 probabilities of raw member logits without and with the model's
    ``config.head_temperatures``."""
    crit = model.criterion
    logits = logits.to(model.device, torch.float64)
    before = member_probabilities(crit.probabilities, logits)
    temps = node_temperature_vector(model.config.head_temperatures, hierarchy)
    after = before if temps is None else member_probabilities(crit.probabilities, logits, temps.to(model.device))
    return before.float().cpu().numpy(), after.float().cpu().numpy()


def calibrate_on_validation(model: Any, dataloader: Any, accelerator: Any, hierarchy: Hierarchy,
                            calibrate: bool, tune: str, default_threshold: float,
                            min_positives: int = MIN_POSITIVES) -> dict[str, Any]:
    """Fit ``config.head_temperatures`` (``calibrate``) then ``config.node_thresholds`` (``tune``: f1 |
    precision:P | none) on the validation ``dataloader``; returns what was fitted and the validation
    ECE/Brier before and after. The caller never passes the test split here."""
    from ..metrics.calibration import calibration_metrics

    net = accelerator.unwrap_model(model)
    net.config.head_temperatures, net.config.node_thresholds = None, None  # fitted anew for these weights
    logits, targets, mask = split_logits(model, dataloader, accelerator, desc="validation (calibration)")
    report: dict[str, Any] = {"fitted_on": "validation", "validation_rows": int(targets.shape[0])}
    if calibrate:
        net.config.head_temperatures = fit_head_temperatures(net.criterion.probabilities, logits.to(net.device),
                                                             targets, mask, hierarchy)
        report["temperatures"] = dict(net.config.head_temperatures)
    before, after = probabilities_before_after(net, logits, hierarchy)
    report["validation"] = {"before": calibration_metrics(before, targets, mask, hierarchy),
                            "after": calibration_metrics(after, targets, mask, hierarchy)}
    mode, target = parse_tune_thresholds(tune)
    if mode != "none":
        tuning = tune_node_thresholds(after, targets, mask, target, default_threshold, min_positives)
        net.config.node_thresholds = [float(t) for t in tuning.thresholds]
        report["thresholds"] = {"mode": tuning.mode, "default": tuning.default, **tuning.counts}
        accelerator.print(tuning.summary())
    if calibrate:
        temps = ", ".join(f"{h} {t:.3f}" for h, t in net.config.head_temperatures.items())
        accelerator.print(f"temperatures (validation NLL): {temps}; validation ECE "
                          f"{report['validation']['before']['overall/ece']:.4f} → "
                          f"{report['validation']['after']['overall/ece']:.4f}")
    return report


def split_calibration_report(model: Any, dataloader: Any, accelerator: Any, hierarchy: Hierarchy,
                             default_threshold: float) -> dict[str, Any]:
    """ECE/Brier of the test split before and after the fitted temperatures, micro F1 per head at the
    default and at the tuned thresholds, and the arrays behind the plots (``"arrays"``: probabilities
    before/after, targets, mask; ``(rows, N)`` each). Reads the split; fits nothing."""
    from ..metrics.calibration import calibration_metrics
    from ..metrics.f1 import confusion_counts

    net = accelerator.unwrap_model(model)
    logits, targets, mask = split_logits(model, dataloader, accelerator, desc="test (calibration)")
    before, after = probabilities_before_after(net, logits, hierarchy)
    report: dict[str, Any] = {"before": calibration_metrics(before, targets, mask, hierarchy),
                              "after": calibration_metrics(after, targets, mask, hierarchy)}
    y, m = targets.astype(bool), mask.astype(bool)
    thresholds = net.config.node_thresholds
    if thresholds is not None:
        f1: dict[str, dict[str, float]] = {}
        for h, name in enumerate(hierarchy.head_names):  # a handful of heads
            s = hierarchy.head_slice(h)
            for label, thr in (("default", default_threshold), ("tuned", np.asarray(thresholds)[s])):
                tp, fp, fn, _ = confusion_counts(after[:, s] > thr, y[:, s], m[:, s], axis=None)
                f1.setdefault(name, {})[label] = float(2 * tp / (2 * tp + fp + fn)) if tp + fp + fn else float("nan")
        report["f1_micro"] = f1
    accelerator.print(f"test split ({len(targets)} rows), before → after the temperatures: ECE "
                      f"{report['before']['overall/ece']:.4f} → {report['after']['overall/ece']:.4f}, Brier "
                      f"{report['before']['overall/brier']:.4f} → {report['after']['overall/brier']:.4f}")
    report["arrays"] = {"before": before, "after": after, "targets": targets, "mask": mask}
    return report
