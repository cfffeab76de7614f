"""Training input pipeline throughput, and label matrices at BenthicNet size.

1. The loader the fine-tuning loop really uses (``training.components.make_dataloaders``: Arrow rows
   with embedded PNG bytes, decode + keyed augmentation + labels + collate in persistent workers)
   vs torchvision ``ImageFolder`` over the same PNG files with the same ``train_transform`` and the
   same DataLoader options (``--workers`` workers, persistent, batch size). Full epochs are timed,
   interleaved, and the medians compared: ``real_loader_ratio`` = ours / ImageFolder (goal >= 0.9);
   ``images_per_s_per_worker`` = ours / workers.
2. ``label_matrices`` (what the loop calls on every split) on a synthetic Arrow table of 188,688
   rows with the CATAMI heads' ``{head}_target``/``{head}_mask`` columns (no images):
   ``label_matrices_s`` for the stored order (goal <= 2 s) and ``label_matrices_shuffled_s``
   through a shuffle's indices mapping.

Prints, as its last line, one JSON object.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import datasets
import numpy as np
import pyarrow as pa
import torch
from torch.utils.data import DataLoader
from torchvision.datasets import ImageFolder

from benthicnet_hf import Hierarchy
from benthicnet_hf.configuration_benthicnet import BenthicNetConfig
from benthicnet_hf.data import build_dataset
from benthicnet_hf.data.demo import make_demo_dataset
from benthicnet_hf.data.transforms import train_transform
from benthicnet_hf.training import FinetuneArguments
from benthicnet_hf.data.label_matrices import label_matrices
from benthicnet_hf.training.components import make_dataloaders
from benthicnet_hf.training.keyed_loader import EpochCounter

BENTHICNET_ROWS = 188_688


def _epoch_images_per_s(loader: DataLoader, counter: EpochCounter | None = None, epoch: int = 0) -> float:
    if counter is not None:
        counter.epoch = epoch
    t0, n = time.perf_counter(), 0
    for batch in loader:
        x = batch["pixel_values"] if isinstance(batch, dict) else batch[0]
        n += x.shape[0]
    return n / (time.perf_counter() - t0)


def loader_figures(num_images: int, image_size: int, crop: int, batch_size: int, workers: int,
                   repeats: int) -> dict[str, float]:
    """Median images/s of the training loop's loader and of ImageFolder (interleaved epochs)."""
    hierarchy = Hierarchy.catami()
    config = BenthicNetConfig(encoder_name="test_resnet", image_size=crop)
    with tempfile.TemporaryDirectory() as tmp:
        table = make_demo_dataset(Path(tmp) / "demo", num_images, image_size, seed=0)
        train = build_dataset(table, cache_dir=Path(tmp) / "cache", split_fractions={"train": 1.0})["train"]
        data = datasets.DatasetDict({"train": train, "validation": train.select(range(2)),
                                     "test": train.select(range(2))})
        args = FinetuneArguments(output_dir=tmp, dataset_dir="unused", per_device_train_batch_size=batch_size,
                                 dataloader_num_workers=workers, dataloader_persistent_workers=True)
        counter = EpochCounter()
        ours = make_dataloaders(args, data, hierarchy, config, counter)["train"]
        tf = train_transform(crop, tuple(config.image_mean), tuple(config.image_std))  # the same transform
        plain = DataLoader(ImageFolder(str(Path(tmp) / "demo" / "images"), transform=tf), batch_size=batch_size,
                           shuffle=True, num_workers=workers, persistent_workers=workers > 0)
        _epoch_images_per_s(ours, counter, 0), _epoch_images_per_s(plain)  # warm-up: workers, file cache
        ours_s, plain_s = [], []
        for r in range(repeats):
            ours_s.append(_epoch_images_per_s(ours, counter, r + 1))
            plain_s.append(_epoch_images_per_s(plain))
        del ours, plain  # ends the persistent workers before the folder goes
    print(f"ours (make_dataloaders) images/s {[round(v, 1) for v in ours_s]}")
    print(f"ImageFolder images/s {[round(v, 1) for v in plain_s]}")
    ours_med, plain_med = statistics.median(ours_s), statistics.median(plain_s)
    ratios = [o / p for o, p in zip(ours_s, plain_s)]
    return {"ours_images_per_s": round(ours_med, 1), "imagefolder_images_per_s": round(plain_med, 1),
            "real_loader_ratio": round(ours_med / plain_med, 3),
            "ratio_min_max": [round(min(ratios), 3), round(max(ratios), 3)],
            "images_per_s_per_worker": round(ours_med / max(1, workers), 1)}


def synthetic_label_table(rows: int, hierarchy: Hierarchy, seed: int = 0) -> datasets.Dataset:
    """``rows`` rows of the heads' fixed-length uint8 target/mask columns (random bits, no images)."""
    rng = np.random.default_rng(seed)
    columns, fields = {}, []
    for head in hierarchy.heads:
        n = len(head.nodes)
        for kind in ("target", "mask"):
            values = pa.array(rng.integers(0, 2, rows * n, dtype=np.uint8), type=pa.uint8())
            columns[f"{head.name}_{kind}"] = pa.FixedSizeListArray.from_arrays(values, n)
            fields.append((f"{head.name}_{kind}", datasets.List(datasets.Value("uint8"), length=n)))
    return datasets.Dataset(pa.table(columns), info=datasets.DatasetInfo(features=datasets.Features(dict(fields))))


def label_figures(rows: int, repeats: int) -> dict[str, float]:
    hierarchy = Hierarchy.catami()
    ds = synthetic_label_table(rows, hierarchy)
    shuffled = ds.shuffle(seed=0)
    times, times_shuffled = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        y, m = label_matrices(ds, hierarchy)
        times.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        ys, _ = label_matrices(shuffled, hierarchy)
        times_shuffled.append(time.perf_counter() - t0)
    assert y.shape == m.shape == (rows, hierarchy.num_nodes)
    first = np.concatenate([np.asarray(ds[0][f"{h}_target"], dtype=np.uint8) for h in hierarchy.head_names])
    assert np.array_equal(y[0], first) and np.array_equal(ys, y[np.asarray(shuffled._indices.column(0))])
    return {"label_rows": rows, "label_nodes": hierarchy.num_nodes,
            "label_matrices_s": round(statistics.median(times), 3),
            "label_matrices_shuffled_s": round(statistics.median(times_shuffled), 3)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--num-images", type=int, default=512)
    p.add_argument("--image-size", type=int, default=128)
    p.add_argument("--crop", type=int, default=96)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--repeats", type=int, default=9)
    p.add_argument("--label-rows", type=int, default=BENTHICNET_ROWS)
    a = p.parse_args()
    torch.set_num_threads(1)
    result = {"bench": "data_pipeline", "images": a.num_images, "image_size": a.image_size, "crop": a.crop,
              "workers": a.workers, "repeats": a.repeats}
    result.update(loader_figures(a.num_images, a.image_size, a.crop, a.batch_size, a.workers, a.repeats))
    result.update(label_figures(a.label_rows, repeats=3))
    result.update({"goal_real_loader_ratio": 0.9, "goal_label_matrices_s": 2.0})
    print(json.dumps(result))


if __name__ == "__main__":
    main()
