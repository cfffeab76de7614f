"""Paired significance of a rare-node variant against plain MCLoss (Xu et al. 2026 claim significant F1 gains).

The unit of pairing is one (seed, node): the variant and the baseline trained with the same seed
(same initialisation, same data order) are scored on the same test node. Per-node scores are
sklearn's average precision and F1 at the decision threshold (``average=None``), over the
evaluated nodes with at least one test positive (AP is undefined without one; F1 uses the same
nodes so that both tests pair the same units). The test is the two-sided Wilcoxon signed-rank
test of :func:`scipy.stats.wilcoxon` on the ``seeds × nodes`` differences (zero differences
dropped, the ``"wilcox"`` rule; exact p-value for small samples without ties, else the normal
approximation).
"""

from __future__ import annotations

import numpy as np
from scipy.stats import wilcoxon
from sklearn.metrics import average_precision_score, f1_score

#: per-node statistics the benchmark tests (keys of :func:`per_node_scores`).
STATISTICS = ("ap", "f1")


def per_node_scores(y: np.ndarray, p: np.ndarray, to_eval: np.ndarray, threshold: float = 0.5) -> dict[str, np.ndarray]:
    """Per-node AP and F1 over the evaluated nodes with a test positive.

    Args:
        y: ``(rows, N)`` 0/1 test targets.
        p: ``(rows, N)`` coherent probabilities.
        to_eval: ``(N,)`` bool, the evaluated (non-root) nodes.
        threshold: decision threshold of F1.

    Returns:
        ``{"nodes": (J,) int, "ap": (J,), "f1": (J,)}`` float64 scores of the ``J`` scored nodes.
    """
    nodes = np.flatnonzero(np.asarray(to_eval, dtype=bool) & (y.sum(0) > 0))
    yt, pt = y[:, nodes], p[:, nodes]
    ap = np.asarray(average_precision_score(yt, pt, average=None), dtype=np.float64)
    f1 = np.asarray(f1_score(yt, pt >= threshold, average=None, zero_division=0), dtype=np.float64)
    return {"nodes": nodes, "ap": ap, "f1": f1}


def paired_wilcoxon(variant: np.ndarray, baseline: np.ndarray) -> dict[str, float | int | None]:
    """Two-sided Wilcoxon signed-rank test of ``variant − baseline`` over paired units.

    Args:
        variant: ``(seeds, nodes)`` per-node scores of the variant, row ``s`` = seed ``s``.
        baseline: the same shape, the baseline's scores of the same seeds and nodes.

    Returns:
        ``statistic`` (scipy's: the smaller of the positive and negative rank sums), ``p_value``,
        ``pairs`` (all units), ``nonzero`` (units with a difference), ``wins`` / ``losses`` (units
        where the variant is higher / lower), ``mean_diff``, ``median_diff``. ``statistic`` and
        ``p_value`` are None when no unit differs.
    """
    v, b = np.asarray(variant, dtype=np.float64), np.asarray(baseline, dtype=np.float64)
    if v.shape != b.shape:
        raise ValueError(f"variant scores {v.shape} and baseline scores {b.shape} must pair the same (seed, node) units")
    d = (v - b).ravel()
    if not np.isfinite(d).all():
        raise ValueError(f"{int((~np.isfinite(d)).sum())} paired differences are not finite")
    out: dict[str, float | int | None] = {
        "pairs": int(d.size), "nonzero": int((d != 0).sum()), "wins": int((d > 0).sum()),
        "losses": int((d < 0).sum()), "mean_diff": float(d.mean()) if d.size else None,
        "median_diff": float(np.median(d)) if d.size else None, "statistic": None, "p_value": None,
    }
    if out["nonzero"]:
        res = wilcoxon(d, zero_method="wilcox", alternative="two-sided")
        out.update(statistic=float(res.statistic), p_value=float(res.pvalue))
    return out


def significance_against(variant: list[dict[str, np.ndarray]], baseline: list[dict[str, np.ndarray]]
                         ) -> dict[str, dict[str, float | int | None]]:
    """:func:`paired_wilcoxon` per statistic of :data:`STATISTICS`, pairing seed by seed.

    Args:
        variant, baseline: one :func:`per_node_scores` result per seed, in the same seed order
            (their ``nodes`` must agree: the same test set).
    """
    if len(variant) != len(baseline):
        raise ValueError(f"{len(variant)} variant seeds against {len(baseline)} baseline seeds")
    for s, (a, b) in enumerate(zip(variant, baseline)):
        if not np.array_equal(a["nodes"], b["nodes"]):
            raise ValueError(f"seed {s}: the variant and the baseline were scored on different nodes")
    return {k: paired_wilcoxon(np.stack([r[k] for r in variant]), np.stack([r[k] for r in baseline]))
            for k in STATISTICS}
