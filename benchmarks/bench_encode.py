"""Rows/s of the partial-label batch encoder on a BenthicNet-sized table (188,688 rows).

Label cells are drawn from the real CATAMI scheme with realistic missing information (empty heads,
labels cut short, several biota labels per cell). Goal: <= 10 s on one core.

    python benchmarks/bench_encode.py [--rows 188688]
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from benthicnet_hf import Hierarchy, LabelEncoder


def make_table(h: Hierarchy, rows: int, seed: int = 0) -> dict[str, list]:
    rng = np.random.default_rng(seed)
    cols: dict[str, list] = {}
    for head in h.heads:
        nodes = np.array(head.nodes, dtype=object)
        pick = rng.integers(0, len(nodes), size=(rows, 2))
        n_labels = rng.choice([0, 1, 1, 1, 2], size=rows)  # 20 % missing head
        cells = []
        for r in range(rows):
            k = n_labels[r] if head.name == "biota" else min(1, n_labels[r])
            cells.append("; ".join(nodes[pick[r, :k]]) if k else "")
        cols[head.name] = cells
    return cols


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=188_688)
    args = ap.parse_args()
    torch.set_num_threads(1)
    h = Hierarchy.catami()
    cols = make_table(h, args.rows)
    enc = LabelEncoder(h)
    t0 = time.perf_counter()
    out = enc.encode(cols)
    dt = time.perf_counter() - t0
    known = float(out.mask.mean())
    print(f"encoded {args.rows} rows x {h.num_nodes} nodes in {dt:.2f} s ({args.rows / dt:,.0f} rows/s); "
          f"known bits {known:.1%}")
    print(json.dumps({"bench": "encode", "rows": args.rows, "seconds": round(dt, 3),
                      "rows_per_s": round(args.rows / dt), "goal_seconds": 10.0, "meets_goal": dt <= 10.0}))


if __name__ == "__main__":
    main()
