"""Time `compute_metrics` (every metric, per head and overall, the paper's included) at BenthicNet size.

188,688 samples x 330 nodes (the CATAMI scheme + a 6-class flat head). Labels and mask follow the
authors' semantics: one random node per head (one to three for biota and the flat heads), so many
labels stop at an inner node ("cut short") and everything below such a label is unknown; every
other node of a labelled head is known; each head is missing (all unknown) for 15% of rows.
Probabilities noisy but correlated with the targets. Last line: one JSON object.

Reports wall seconds and process CPU seconds (``time.process_time()``: roughly independent of
other processes on a loaded machine, as long as numpy runs single-threaded) and the CPU seconds
of each metric family (``compute_metrics(..., timings=...)``). With ``--repeat N`` the run with
the least CPU time is reported (the others are printed): load still perturbs caches.

    python benchmarks/bench_metrics.py [--rows N] [--dense-mask] [--repeat N]
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from benthicnet_hf import Taxonomy, Hierarchy
from benthicnet_hf.metrics import compute_metrics


def _strict_descendants(hierarchy: Hierarchy, s: slice) -> np.ndarray:
    """``(head_nodes, head_nodes)`` bool: ``[i, j]`` = j is a strict descendant of i (local indices)."""
    anc, desc = hierarchy.ancestor_pairs
    keep = (anc >= s.start) & (anc < s.stop) & (anc != desc)
    out = np.zeros((s.stop - s.start, s.stop - s.start), dtype=bool)
    out[anc[keep] - s.start, desc[keep] - s.start] = True
    return out


def make_data(hierarchy: Hierarchy, rows: int, dense_mask: bool, seed: int = 0):
    """``(probs float32, targets uint8, mask uint8)``, each ``(rows, nodes)`` (see module doc)."""
    rng = np.random.default_rng(seed)
    n = hierarchy.num_nodes
    targets = np.zeros((rows, n), dtype=np.uint8)
    mask = np.ones((rows, n), dtype=np.uint8)
    anc = hierarchy.ancestors_padded
    for i, head in enumerate(hierarchy.heads):  # heads, each vectorised over rows
        s = hierarchy.head_slice(i)
        below = _strict_descendants(hierarchy, s)
        multi = head.name == "biota" or head.kind == "flat"
        labels = rng.integers(0, s.stop - s.start, (rows, 3 if multi else 1))
        labels[:, 1:] = np.where(rng.random((rows, labels.shape[1] - 1)) < 0.4, labels[:, 1:], labels[:, :1])
        for k in range(labels.shape[1]):
            path = anc[labels[:, k] + s.start]
            r = np.repeat(np.arange(rows), path.shape[1])
            c = path.reshape(-1)
            keep = c >= 0
            targets[r[keep], c[keep]] = 1
        if dense_mask:
            continue
        unknown = np.zeros((rows, s.stop - s.start), dtype=bool)
        for k in range(labels.shape[1]):
            # cut short: no other label of the row lies below this one -> its descendants unknown
            deeper = below[labels[:, k][:, None], labels].any(axis=1)
            unknown |= below[labels[:, k]] & ~deeper[:, None]
        mask[:, s] = ~unknown
        missing = rng.random(rows) < 0.15
        mask[missing, s] = 0
    targets &= mask  # unknown bits carry no label
    probs = np.clip(0.35 * targets + rng.random((rows, n)) * 0.65, 0, 1).astype(np.float32)
    return probs, targets, mask


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=188_688)
    parser.add_argument("--dense-mask", action="store_true", help="every bit known (worst case)")
    parser.add_argument("--repeat", type=int, default=3, help="runs; the least CPU time is reported")
    parser.add_argument("--scores", choices=("uniform", "logit-normal"), default="uniform", help=(
        "uniform: 0.35*target + 0.65*U(0,1) (every positive >= 0.35, so about half of the negatives lie "
        "below the lowest positive and skip the sorts); logit-normal: sigmoid(+-2 + 1.5 N(0,1)), a "
        "trained model's shape, whose lowest positive is near 0 (little is skipped)"))
    args = parser.parse_args()
    hierarchy = Hierarchy((*Hierarchy.catami().heads, Taxonomy.flat("extra", [f"x{i}" for i in range(6)])))
    probs, targets, mask = make_data(hierarchy, args.rows, args.dense_mask)
    if args.scores == "logit-normal":
        logits = np.where(targets == 1, 2.0, -2.0) + 1.5 * np.random.default_rng(1).standard_normal(targets.shape)
        probs = (1 / (1 + np.exp(-logits))).astype(np.float32)
    runs = []
    for i in range(max(1, args.repeat)):
        timings: dict[str, float] = {}
        wall, cpu = time.perf_counter(), time.process_time()
        metrics = compute_metrics(probs, targets, mask, hierarchy, timings=timings)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        runs.append((cpu, wall, timings))
        parts = "  ".join(f"{k}={v:.2f}" for k, v in timings.items())
        print(f"run {i}: cpu {cpu:.2f} s, wall {wall:.2f} s | cpu per part: {parts}")
    cpu, wall, timings = min(runs, key=lambda r: r[0])
    print(f"{len(metrics)} figures, overall ap_micro={metrics['overall/ap_micro']:.4f} "
          f"sample_ap={metrics['overall/sample_ap']:.4f} hml_ap={metrics['overall/hml_ap']:.4f}")
    known = mask.mean()
    print(json.dumps({
        "bench": "metrics", "rows": args.rows, "nodes": hierarchy.num_nodes,
        "dense_mask": args.dense_mask, "scores": args.scores, "known_fraction": round(float(known), 4), "figures": len(metrics),
        "seconds": round(wall, 3),
        "cpu_seconds": round(cpu, 3), "target_seconds": 5.0, "repeats": len(runs),
        "cpu_seconds_all": [round(r[0], 3) for r in runs],
        "rows_per_cpu_s": round(args.rows / cpu), "cpu_parts": {k: round(v, 3) for k, v in timings.items()},
    }))


if __name__ == "__main__":
    main()
