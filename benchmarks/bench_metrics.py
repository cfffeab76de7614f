"""Time `compute_metrics` (every metric, per head and overall) on BenthicNet-sized data.

188,688 samples x 330 nodes (the CATAMI scheme + a 6-class flat head), one labelled path per tree
head, mask following the library's semantics (head missing for ~15% of rows, descendants of a cut
label unknown, biota non-exhaustive with ~30% of its other nodes known), probabilities noisy but
correlated with the targets. Last line: one JSON object.

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

from benthicnet_hf import Head, Hierarchy
from benthicnet_hf.metrics import compute_metrics


def make_data(hierarchy: Hierarchy, rows: int, dense_mask: bool, seed: int = 0):
    rng = np.random.default_rng(seed)
    n = hierarchy.num_nodes
    targets = np.zeros((rows, n), dtype=np.uint8)
    mask = np.ones((rows, n), dtype=np.uint8)
    anc = hierarchy.ancestors_padded
    for i, head in enumerate(hierarchy.heads):  # heads, each vectorised over rows
        s = hierarchy.head_slice(i)
        label = rng.integers(s.start, s.stop, rows)
        path = anc[label]
        r = np.repeat(np.arange(rows), path.shape[1])
        c = path.reshape(-1)
        keep = c >= 0
        targets[r[keep], c[keep]] = 1
        if dense_mask:
            continue
        if head.name == "biota":
            mask[:, s] = rng.random((rows, s.stop - s.start)) < 0.3
            mask[:, s] |= targets[:, s]
        missing = rng.random(rows) < 0.15
        mask[missing, s] = 0
    probs = np.clip(0.35 * targets + rng.random((rows, n)) * 0.65, 0, 1).astype(np.float32)
    return probs, targets, mask


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=188_688)
    parser.add_argument("--dense-mask", action="store_true", help="every bit known (worst case)")
    parser.add_argument("--repeat", type=int, default=3, help="runs; the least CPU time is reported")
    args = parser.parse_args()
    hierarchy = Hierarchy((*Hierarchy.catami().heads, Head.flat("extra", [f"x{i}" for i in range(6)])))
    probs, targets, mask = make_data(hierarchy, args.rows, args.dense_mask)
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
          f"hml_ap={metrics['overall/hml_ap']:.4f}")
    print(json.dumps({
        "bench": "metrics", "rows": args.rows, "nodes": hierarchy.num_nodes,
        "dense_mask": args.dense_mask, "figures": len(metrics), "seconds": round(wall, 3),
        "cpu_seconds": round(cpu, 3), "target_seconds": 5.0, "repeats": len(runs),
        "cpu_seconds_all": [round(r[0], 3) for r in runs],
        "rows_per_cpu_s": round(args.rows / cpu), "cpu_parts": {k: round(v, 3) for k, v in timings.items()},
    }))


if __name__ == "__main__":
    main()
