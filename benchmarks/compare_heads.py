"""Train every output type on the same demo data; score all with the same decoding rules.

    python benchmarks/compare_heads.py [--num_images 240] [--epochs 12] [--image_size 32] [--lpros 25]
                                       [--runs mcm,per_level,...]

Data: the synthetic demo set (``make_demo_dataset``), the single-path tree heads substrate,
relief and bedforms (biota is multi-label, colour is flat: neither fits every output type). Model:
timm's ``test_resnet`` (random init, ~0.3M parameters) + one linear layer per head, the same seed
for every run. Runs: every output type, plus the hierarchy-agnostic baseline (``flat_baseline``)
with the study's class weighting (``cw``: ``1/n_c`` node weights on all bits,
:func:`~benthicnet_hf.output_types.inverse_frequency_weights`), resampling (``rs``: LP-ROS,
:class:`~benthicnet_hf.rare_nodes.LPROSSampler`) and both; the study's reported baseline row is the
one without either (its best setting).

Decoding, the same two rules for every run, over the type's coherent probabilities:

* ``greedy`` (the ETHEC tables): per head, the arg-max root, then the arg-max child of each pick,
  down to a leaf (one node per depth);
* ``threshold``: every node with probability >= 0.5 (closed under ancestors, as the probabilities are
  coherent).

``flat_baseline`` also gets ``raw``: its raw, incoherent sigmoids at 0.5, how the study scores that
baseline. Metrics over the known bits of the test split: per-depth micro-F1 across the three heads
(:func:`benthicnet_hf.metrics.level_scores`; ``n/a``/null at a depth with no known positive, such as
depth 5 of the demo data), overall micro-F1, micro/macro AP of the probabilities.
Last line: a JSON summary.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import timm
import torch
from PIL import Image

from benthicnet_hf.data.demo import DEMO_SOURCE_EXHAUSTIVE, make_demo_dataset
from benthicnet_hf.hierarchy import Hierarchy
from benthicnet_hf.labels import LabelEncoder
from benthicnet_hf.metrics import f1_scores, level_scores, macro_average_precision, micro_average_precision
from benthicnet_hf.output_types import OUTPUT_TYPES, OutputTypeCriterion, inverse_frequency_weights
from benthicnet_hf.output_types.single_path import SinglePathIndex
from benthicnet_hf.rare_nodes import LPROSSampler

HEADS = ("substrate", "relief", "bedforms")
COLUMNS = {"substrate": "catami_substrate", "relief": "catami_relief", "bedforms": "catami_bedforms"}
#: (run label, output type, class weighting, resampling)
RUNS = [(t, t, False, False) for t in OUTPUT_TYPES] + [
    ("flat_baseline+cw", "flat_baseline", True, False), ("flat_baseline+rs", "flat_baseline", False, True),
    ("flat_baseline+cw+rs", "flat_baseline", True, True)]


def load_demo(num_images: int, image_size: int, seed: int):
    """Images ``(n, 3, s, s)`` float, targets/mask ``(n, N)`` and a site-grouped train mask."""
    hier = Hierarchy.catami().subset(HEADS)
    with tempfile.TemporaryDirectory() as tmp:
        table_path = make_demo_dataset(tmp, num_images=num_images, image_size=image_size, seed=seed,
                                       with_partition=True)
        table = pd.read_csv(table_path, keep_default_na=False)
        images = np.stack([np.asarray(Image.open(Path(tmp) / p).convert("RGB"), dtype=np.float32) / 255.0
                           for p in table["image"]])
    enc = LabelEncoder(hier, source_exhaustive={k: v for k, v in DEMO_SOURCE_EXHAUSTIVE.items()
                                                if set(v) <= set(HEADS)} or None)
    encoded = enc.encode({h: table[COLUMNS[h]].tolist() for h in HEADS}, sources=table["dataset"].tolist())
    x = torch.tensor(images).permute(0, 3, 1, 2)
    x = (x - x.mean((0, 2, 3), keepdim=True)) / x.std((0, 2, 3), keepdim=True)
    train = torch.tensor((table["partition"] == "train").to_numpy())
    return hier, x, torch.tensor(encoded.targets).float(), torch.tensor(encoded.mask).float(), train


def greedy_decode(hier: Hierarchy, probs: torch.Tensor) -> np.ndarray:
    """``(rows, N)`` bool: per head, the greedy top-down path over ``probs``."""
    parts = [SinglePathIndex(h, "decode").greedy_path(probs[:, hier.head_slice(i)]) for i, h in enumerate(hier.heads)]
    return torch.cat(parts, 1).numpy()


def scores(pred: np.ndarray, tt: np.ndarray, mm: np.ndarray, depth: np.ndarray) -> dict[str, float | None]:
    """Per-depth and overall micro-F1; None at a depth without a known positive (F1 undefined there)."""
    levels = level_scores(pred, tt, mm, depth)
    positives = [(tt & mm)[:, depth == d].any() for d in range(1, int(depth.max()) + 1)]
    out: dict[str, float | None] = {f"L{d}": levels[f"level{d}/f1_micro"] if positives[d - 1] else None
                                    for d in range(1, int(depth.max()) + 1)}
    out["all"] = f1_scores(pred, tt, mm)["f1_micro"]
    return out


def run(output_type: str, cw: bool, rs: bool, hier: Hierarchy, x, t, m, train, epochs: int, seed: int,
        lpros: float) -> dict:
    torch.manual_seed(seed)
    encoder = timm.create_model("test_resnet", pretrained=False, num_classes=0)
    head = torch.nn.Linear(encoder.num_features, hier.num_nodes)
    model = torch.nn.Sequential(encoder, head)
    crit = OutputTypeCriterion(hier, output_type)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1e-4)
    idx = train.nonzero().flatten()
    weights = inverse_frequency_weights(t[idx], m[idx]) if cw else None
    sampler = LPROSSampler(t[idx], m[idx], percentage=lpros, seed=seed) if rs else None
    gen = torch.Generator().manual_seed(seed)
    start = time.perf_counter()
    model.train()
    for _ in range(epochs):
        order = idx[list(sampler)] if sampler is not None else idx[torch.randperm(len(idx), generator=gen)]
        for batch in order.split(32):
            loss = crit(model(x[batch]), t[batch], m[batch], weights).loss
            opt.zero_grad()
            loss.backward()
            opt.step()
    seconds = time.perf_counter() - start
    model.eval()
    test = ~train
    with torch.no_grad():
        logits = model(x[test])
        probs = crit.probabilities(logits)
    tt, mm = t[test].numpy() > 0.5, m[test].numpy() > 0.5
    p = probs.numpy()
    out = {
        "greedy": scores(greedy_decode(hier, probs), tt, mm, hier.depth),
        "threshold": scores(p >= 0.5, tt, mm, hier.depth),
        "micro_ap": micro_average_precision(p, tt, mm),
        "macro_ap": macro_average_precision(p, tt, mm),
        "train_seconds": round(seconds, 2),
    }
    if output_type == "flat_baseline":  # the study's scoring: raw sigmoids, no constraint
        out["raw"] = scores(logits.sigmoid().numpy() >= 0.5, tt, mm, hier.depth)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--num_images", type=int, default=240)
    ap.add_argument("--image_size", type=int, default=32)
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--lpros", type=float, default=25.0, help="LP-ROS percentage of the +rs runs")
    ap.add_argument("--runs", default=",".join(label for label, *_ in RUNS),
                    help="comma-separated run labels (default: all)")
    args = ap.parse_args()
    chosen = args.runs.split(",")
    unknown = sorted(set(chosen) - {label for label, *_ in RUNS})
    if unknown:
        ap.error(f"unknown --runs {unknown}; choose from {[label for label, *_ in RUNS]}")
    torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
    hier, x, t, m, train = load_demo(args.num_images, args.image_size, args.seed)
    print(f"demo: {len(x)} images ({int(train.sum())} train / {int((~train).sum())} test), heads {HEADS}, "
          f"{hier.num_nodes} nodes, depth {int(hier.depth.max())}")
    results = {label: run(ht, cw, rs, hier, x, t, m, train, args.epochs, args.seed, args.lpros)
               for label, ht, cw, rs in RUNS if label in chosen}
    levels = [f"L{d}" for d in range(1, int(hier.depth.max()) + 1)]
    print("micro-F1, greedy path decoding (per depth, all) | threshold 0.5 (all) | raw sigmoids 0.5 | micro/macro AP")
    print(f"{'run':<21}" + "".join(f"{lv:>7}" for lv in levels) + f"{'all':>7} |{'thr':>6} |{'raw':>6} |"
          f"{'mAP':>6}{'MAP':>6}")
    for label, res in results.items():
        g = res["greedy"]
        raw = f"{res['raw']['all']:6.3f}" if "raw" in res else f"{'':6}"
        cells = "".join(f"{'n/a':>7}" if g[lv] is None else f"{g[lv]:7.3f}" for lv in levels)
        print(f"{label:<21}" + cells + f"{g['all']:7.3f} |"
              f"{res['threshold']['all']:6.3f} |{raw} |{res['micro_ap']:6.3f}{res['macro_ap']:6.3f}")
    summary = {"bench": "compare_heads", "num_images": len(x), "epochs": args.epochs, "seed": args.seed,
               "decoding": "greedy top-down path and threshold 0.5, both over coherent probabilities"}
    for label, res in results.items():
        summary[f"{label}_greedy_f1_micro"] = round(res["greedy"]["all"], 4)
        for lv in levels:
            value = res["greedy"][lv]
            summary[f"{label}_greedy_{lv}_f1_micro"] = None if value is None else round(value, 4)
        summary[f"{label}_threshold_f1_micro"] = round(res["threshold"]["all"], 4)
        if "raw" in res:
            summary[f"{label}_raw_threshold_f1_micro"] = round(res["raw"]["all"], 4)
        summary[f"{label}_micro_ap"] = round(res["micro_ap"], 4)
        summary[f"{label}_macro_ap"] = round(res["macro_ap"], 4)
        summary[f"{label}_train_s"] = res["train_seconds"]
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
