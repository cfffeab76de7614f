"""Train every output type on the same demo data and print ETHEC-style per-level P/R/F1.

    python benchmarks/compare_heads.py [--num_images 240] [--epochs 12] [--image_size 32]

Data: the synthetic demo set (``make_demo_dataset``), the single-path tree heads substrate,
relief and bedforms (biota is multi-label, colour is flat: neither fits every output type). Model:
timm's ``test_resnet`` (random init, ~0.3M parameters) + one linear layer per head, the same seed
for every output type. Predictions: ETHEC types decode greedily (arg-max child of the previous pick,
down to a leaf); ``mcm`` thresholds its coherent probabilities at 0.5 (its native rule); the
``greedy`` micro-F1 of every type is in the JSON too. Metrics are over known bits of the test split
(:func:`benthicnet_hf.metrics.level_scores`), per depth across the three heads.
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
from benthicnet_hf.output_types import OUTPUT_TYPES, OutputTypeCriterion
from benthicnet_hf.output_types.single_path import SinglePathIndex
from benthicnet_hf.hierarchy import Hierarchy
from benthicnet_hf.labels import LabelEncoder
from benthicnet_hf.metrics import f1_scores, level_scores

HEADS = ("substrate", "relief", "bedforms")
COLUMNS = {"substrate": "catami_substrate", "relief": "catami_relief", "bedforms": "catami_bedforms"}


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


def predict(hier: Hierarchy, probs: torch.Tensor, greedy: bool) -> np.ndarray:
    if not greedy:
        return (probs >= 0.5).numpy()
    parts = [SinglePathIndex(h, "decode").greedy_path(probs[:, hier.head_slice(i)]) for i, h in enumerate(hier.heads)]
    return torch.cat(parts, 1).numpy()


def run(output_type: str, hier: Hierarchy, x, t, m, train, epochs: int, seed: int) -> dict:
    torch.manual_seed(seed)
    encoder = timm.create_model("test_resnet", pretrained=False, num_classes=0)
    head = torch.nn.Linear(encoder.num_features, hier.num_nodes)
    model = torch.nn.Sequential(encoder, head)
    crit = OutputTypeCriterion(hier, output_type)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1e-4)
    idx = train.nonzero().flatten()
    gen = torch.Generator().manual_seed(seed)
    start = time.perf_counter()
    model.train()
    for _ in range(epochs):
        for batch in idx[torch.randperm(len(idx), generator=gen)].split(32):
            loss = crit(model(x[batch]), t[batch], m[batch]).loss
            opt.zero_grad()
            loss.backward()
            opt.step()
    seconds = time.perf_counter() - start
    model.eval()
    test = ~train
    with torch.no_grad():
        probs = crit.probabilities(model(x[test]))
    tt, mm = t[test].numpy() > 0.5, m[test].numpy() > 0.5
    native = predict(hier, probs, greedy=output_type != "mcm")
    greedy = predict(hier, probs, greedy=True)
    return {
        "levels": level_scores(native, tt, mm, hier.depth),
        "f1_micro": f1_scores(native, tt, mm)["f1_micro"],
        "f1_micro_greedy": f1_scores(greedy, tt, mm)["f1_micro"],
        "train_seconds": round(seconds, 2),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--num_images", type=int, default=240)
    ap.add_argument("--image_size", type=int, default=32)
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
    hier, x, t, m, train = load_demo(args.num_images, args.image_size, args.seed)
    print(f"demo: {len(x)} images ({int(train.sum())} train / {int((~train).sum())} test), heads {HEADS}, "
          f"{hier.num_nodes} nodes, depth {int(hier.depth.max())}")
    results = {ht: run(ht, hier, x, t, m, train, args.epochs, args.seed) for ht in OUTPUT_TYPES}
    levels = range(1, int(hier.depth.max()) + 1)
    header = f"{'output type':<18}" + "".join(f"| L{d} P/R/F1 micro    macro            " for d in levels)
    print(header)
    for ht, res in results.items():
        cells = []
        for d in levels:
            s = res["levels"]
            cells.append("| " + "/".join(f"{s.get(f'level{d}/{k}_micro', float('nan')):.2f}" for k in ("precision", "recall", "f1"))
                         + "  " + "/".join(f"{s.get(f'level{d}/{k}_macro', float('nan')):.2f}" for k in ("precision", "recall", "f1"))
                         + "   ")
        print(f"{ht:<18}" + "".join(cells) + f"| micro-F1 {res['f1_micro']:.3f}")
    summary = {"bench": "compare_heads", "num_images": len(x), "epochs": args.epochs}
    for ht, res in results.items():
        summary[f"{ht}_f1_micro"] = round(res["f1_micro"], 4)
        summary[f"{ht}_f1_micro_greedy"] = round(res["f1_micro_greedy"], 4)
        summary[f"{ht}_train_s"] = res["train_seconds"]
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
