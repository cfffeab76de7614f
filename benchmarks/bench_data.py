"""Training input pipeline throughput: our dataset (decode + augment + labels + collate) vs a plain
torchvision ImageFolder loader on the same PNG files with the same augmentation.

Prints, as its last line, one JSON object: images/s of each and their ratio (goal >= 0.9).
Runs are interleaved and the median taken, so a busy machine affects both sides alike.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader
from torchvision.datasets import ImageFolder

from benthicnet_hf import Hierarchy
from benthicnet_hf.data import build_dataset
from benthicnet_hf.data.demo import make_demo_dataset
from benthicnet_hf.data.transforms import collate_hml, hml_transform, train_transform


def _images_per_s(loader: DataLoader) -> float:
    t0, n = time.perf_counter(), 0
    for batch in loader:
        x = batch["pixel_values"] if isinstance(batch, dict) else batch[0]
        n += x.shape[0]
    return n / (time.perf_counter() - t0)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--num-images", type=int, default=256)
    p.add_argument("--image-size", type=int, default=96)
    p.add_argument("--crop", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--repeats", type=int, default=3)
    a = p.parse_args()
    torch.set_num_threads(1)
    hierarchy = Hierarchy.catami()
    with tempfile.TemporaryDirectory() as tmp:
        table = make_demo_dataset(Path(tmp) / "demo", a.num_images, a.image_size, seed=0)
        ds = build_dataset(table, cache_dir=Path(tmp) / "cache", split_fractions={"train": 1.0})["train"]
        tf = train_transform(a.crop)
        ours = DataLoader(ds.with_transform(hml_transform(hierarchy, tf)), batch_size=a.batch_size,
                          shuffle=True, collate_fn=collate_hml)
        plain = DataLoader(ImageFolder(str(Path(tmp) / "demo" / "images"), transform=tf),
                           batch_size=a.batch_size, shuffle=True)
        _images_per_s(ours), _images_per_s(plain)  # warm-up: file cache, lazy imports
        ours_s, plain_s = [], []
        for _ in range(a.repeats):
            ours_s.append(_images_per_s(ours))
            plain_s.append(_images_per_s(plain))
    ours_med, plain_med = sorted(ours_s)[len(ours_s) // 2], sorted(plain_s)[len(plain_s) // 2]
    print(f"ours {ours_s}\nplain ImageFolder {plain_s}")
    print(json.dumps({"bench": "data_pipeline", "images": a.num_images, "crop": a.crop,
                      "ours_images_per_s": round(ours_med, 1), "imagefolder_images_per_s": round(plain_med, 1),
                      "ratio": round(ours_med / plain_med, 3), "goal": 0.9}))


if __name__ == "__main__":
    main()
