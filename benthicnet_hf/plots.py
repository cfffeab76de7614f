"""The pictures of a fine-tuning run (matplotlib, Agg, PNG), shown in the model card.

- :func:`headline_figure`: headline metrics per head, the model beside the label-prior baseline;
- :func:`pr_curves_figure`: precision-recall curve per head over its known bits (pooled over nodes,
  sklearn's ``precision_recall_curve``), the head's positive rate as the chance line;
- :func:`ap_support_figure`: per-node test AP against training positives (log x), coloured by depth;
- :func:`reliability_figure`: reliability diagram (equal-width bins) before/after the temperatures.

:func:`write_plots` saves them into a folder (``OUTPUT_DIR/plots``, copied to ``final/plots``) and
returns their names relative to the folder above it, which is how the card links them (the Hub
renders relative image links of a repository's files). Figures are ``matplotlib.figure.Figure``
objects, never pyplot state, so nothing depends on the session's backend.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import numpy as np
from matplotlib.figure import Figure

from .hierarchy import Hierarchy
from .metrics.calibration import DEFAULT_BINS, expected_calibration_error, reliability_bins

PLOTS_DIR = "plots"
#: file name → the caption the card shows.
PLOT_FILES = {
    "headline_vs_prior.png": "Headline metrics per head on the test split; grey: the label-prior baseline",
    "pr_curves.png": "Precision-recall curves per head (test split, known bits of all the head's nodes)",
    "ap_vs_support.png": "Per-node test AP against training positives (log scale), coloured by depth",
    "reliability.png": "Reliability diagram of the test split before and after temperature calibration",
}
HEADLINE_METRICS = ("hml_ap", "ap_micro", "f1_micro")


def _value(metrics: Mapping[str, Any], key: str) -> float:
    v = metrics.get(key)
    return float("nan") if v is None else float(v)


def headline_figure(metrics: Mapping[str, Any], baseline: Mapping[str, Any], heads: list[str],
                    names: tuple[str, ...] = HEADLINE_METRICS) -> Figure:
    """One panel per metric: a bar per head (and ``overall``), the model beside the prior baseline."""
    groups = [*heads, "overall"]
    fig = Figure(figsize=(4.2 * len(names), 3.6), layout="constrained")
    axes = fig.subplots(1, len(names), squeeze=False)[0]
    x = np.arange(len(groups))
    for ax, name in zip(axes, names):
        model = [_value(metrics, f"{g}/{name}") for g in groups]
        prior = [_value(baseline, f"{g}/{name}") for g in groups]
        ax.bar(x - 0.2, model, 0.4, label="model", color="tab:blue")
        ax.bar(x + 0.2, prior, 0.4, label="label prior", color="tab:gray")
        ax.set_xticks(x, groups, rotation=30, ha="right")
        ax.set_ylim(0, 1)
        ax.set_title(name)
    axes[0].legend(loc="upper right", fontsize="small")
    return fig


def pr_curve(probs: np.ndarray, targets: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """``(recall, precision)`` of sklearn's ``precision_recall_curve`` over the known bits of
    ``(rows, nodes)`` arrays, pooled; None without a known positive and a known negative."""
    from sklearn.metrics import precision_recall_curve

    known = np.asarray(mask).astype(bool)
    y = np.asarray(targets)[known].astype(bool)
    if y.all() or not y.any():
        return None
    precision, recall, _ = precision_recall_curve(y, np.asarray(probs)[known])
    return recall, precision


def pr_curves_figure(probs: np.ndarray, targets: np.ndarray, mask: np.ndarray, hierarchy: Hierarchy) -> Figure:
    """One panel per head: its pooled PR curve (line label ``"<head>"``) and its positive rate."""
    heads = hierarchy.head_names
    cols = min(3, len(heads))
    rows = -(-len(heads) // cols)
    fig = Figure(figsize=(3.6 * cols, 3.2 * rows), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for h, (ax, name) in enumerate(zip(axes, heads)):
        s = hierarchy.head_slice(h)
        curve = pr_curve(probs[:, s], targets[:, s], mask[:, s])
        ax.set_title(name)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
        ax.set_xlabel("recall")
        ax.set_ylabel("precision")
        if curve is None:
            ax.text(0.5, 0.5, "not evaluable\n(no known positive\nor negative)", ha="center", va="center")
            continue
        known = mask[:, s].astype(bool)
        ax.plot(*curve, label=name, color="tab:blue", drawstyle="steps-post")
        ax.axhline(targets[:, s][known].mean(), color="tab:gray", ls="--", label="positive rate")
    for ax in axes[len(heads):]:
        ax.set_visible(False)
    return fig


def ap_support_figure(nodes: Any) -> Figure:
    """Per-node AP (``nodes["ap"]``) against ``nodes["train_positives"]`` (log x), colour = ``depth``.

    ``nodes``: the per-node table (``metrics.per_node_table`` plus ``train_positives``). Nodes with
    no training positive (not on a log axis) or no AP (NaN) are counted in the title, not drawn.
    """
    ap = np.asarray(nodes["ap"], dtype=np.float64)
    support = np.asarray(nodes["train_positives"], dtype=np.float64)
    depth = np.asarray(nodes["depth"], dtype=np.int64)
    drawn = np.isfinite(ap) & (support > 0)
    fig = Figure(figsize=(6.0, 4.0), layout="constrained")
    ax = fig.subplots()
    if drawn.any():
        points = ax.scatter(support[drawn], ap[drawn], c=depth[drawn], cmap="viridis", s=18,
                            vmin=depth.min(), vmax=max(depth.max(), depth.min() + 1))
        fig.colorbar(points, ax=ax, label="depth")
        ax.set_xscale("log")
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("training positives (log scale)")
    ax.set_ylabel("test AP")
    ax.set_title(f"{int(drawn.sum())} nodes drawn; {int((~drawn).sum())} without a test AP or a training positive",
                 fontsize="small")
    return fig


def reliability_figure(before: np.ndarray, after: np.ndarray | None, targets: np.ndarray, mask: np.ndarray,
                       bins: int = DEFAULT_BINS) -> Figure:
    """Fraction of positives against mean score per bin (known bits of all nodes), before and after
    calibration (``after`` None: one curve), with the bits per bin below and the ECE in the legend."""
    fig = Figure(figsize=(5.0, 5.6), layout="constrained")
    top, bottom = fig.subplots(2, 1, height_ratios=(3, 1), sharex=True)
    top.plot([0, 1], [0, 1], color="black", lw=0.8, ls=":", label="perfect calibration")
    curves = [("before", before, "tab:orange")] + ([("after", after, "tab:blue")] if after is not None else [])
    for name, probs, colour in curves:
        r = reliability_bins(probs, targets, mask, bins)
        full = r["count"] > 0
        ece = expected_calibration_error(probs, targets, mask, bins)
        top.plot(r["mean_prob"][full], r["frac_pos"][full], marker="o", color=colour,
                 label=f"{name} temperature (ECE {ece:.3f})")
        centres = (r["edges"][:-1] + r["edges"][1:]) / 2
        bottom.bar(centres, r["count"], width=1 / bins, alpha=0.5, color=colour)
    top.set_ylabel("fraction of positives")
    top.set_xlim(0, 1)
    top.set_ylim(0, 1)
    top.legend(loc="upper left", fontsize="small")
    bottom.set_yscale("log")
    bottom.set_xlabel("predicted probability")
    bottom.set_ylabel("known bits")
    return fig


def write_plots(folder: str | Path, hierarchy: Hierarchy, metrics: Mapping[str, Any], baseline: Mapping[str, Any],
                nodes: Any, probs_before: np.ndarray, probs_after: np.ndarray | None, targets: np.ndarray,
                mask: np.ndarray) -> dict[str, str]:
    """Save the four figures as PNG into ``folder``; returns ``{caption: "plots/<file>.png"}``.

    Args:
        metrics, baseline: ``compute_metrics`` of the model and of the label prior (test split).
        nodes: the per-node table with ``train_positives``.
        probs_before, probs_after: ``(rows, N)`` test probabilities without / with the temperatures.
        targets, mask: ``(rows, N)`` {0, 1}, mask 1 = known.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    final = probs_before if probs_after is None else probs_after
    figures = {
        "headline_vs_prior.png": headline_figure(metrics, baseline, hierarchy.head_names),
        "pr_curves.png": pr_curves_figure(final, targets, mask, hierarchy),
        "ap_vs_support.png": ap_support_figure(nodes),
        "reliability.png": reliability_figure(probs_before, probs_after, targets, mask),
    }
    out = {}
    for name, fig in figures.items():
        fig.savefig(folder / name, dpi=110)
        out[PLOT_FILES[name]] = f"{folder.name}/{name}"
    return out
