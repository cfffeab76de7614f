"""Unlabelled image sources for pre-training: a folder, a saved ``datasets`` dataset, Parquet shards.

Augmentation randomness is seeded per ``(seed, epoch, index)`` so that the views of a sample do
not depend on worker count or on where a run was resumed (exact resume).
"""

from __future__ import annotations

import glob
import os
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset, IterableDataset, Sampler

__all__ = ["IMAGE_EXTENSIONS", "list_image_files", "UnlabelledImages", "StreamingUnlabelledImages",
           "ResumableShardSampler", "open_unlabelled_source", "collate_views"]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp", ".webp")


def list_image_files(folder: str | os.PathLike) -> list[Path]:
    """All image files under ``folder`` (recursive), sorted for a reproducible order."""
    root = Path(folder)
    if not root.is_dir():
        raise FileNotFoundError(f"image folder {root} does not exist")
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
    if not files:
        raise ValueError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) found under {root}")
    return files


def _to_rgb(item: Any, where: str) -> Image.Image:
    if isinstance(item, Image.Image):
        return item.convert("RGB")
    if isinstance(item, (str, Path)):
        return Image.open(item).convert("RGB")
    if isinstance(item, dict) and (item.get("bytes") or item.get("path")):
        import io
        return Image.open(io.BytesIO(item["bytes"]) if item.get("bytes") else item["path"]).convert("RGB")
    raise TypeError(f"{where}: expected a PIL image, a path or {{'bytes'|'path'}}, got {type(item).__name__}")


def _sample_seed(seed: int, epoch: int, index: int) -> int:
    return int(np.random.SeedSequence([seed, epoch, index]).generate_state(1)[0])


class UnlabelledImages(Dataset):
    """Map-style source: a list of image paths or a ``datasets.Dataset`` with an image column.

    ``__getitem__(i)`` returns ``transform(image)`` with the RNG seeded from (seed, epoch, i).
    """

    def __init__(self, items: Any, transform: Callable, *, image_column: str = "image", seed: int = 0) -> None:
        self.items, self.transform, self.image_column, self.seed = items, transform, image_column, seed
        self.epoch = 0
        self._is_hf = hasattr(items, "column_names")
        if self._is_hf and image_column not in items.column_names:
            raise KeyError(f"dataset has no column {image_column!r}; columns: {items.column_names}")

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> Any:
        raw = self.items[index][self.image_column] if self._is_hf else self.items[index]
        image = _to_rgb(raw, f"image {index} ({raw if isinstance(raw, (str, Path)) else self.image_column})")
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(_sample_seed(self.seed, self.epoch, index))
            return self.transform(image)


class StreamingUnlabelledImages(IterableDataset):
    """Iterable source over a streaming ``datasets.IterableDataset`` already split for this process."""

    def __init__(self, stream: Any, transform: Callable, *, image_column: str = "image", seed: int = 0,
                 skip: int = 0) -> None:
        self.stream, self.transform, self.image_column, self.seed = stream, transform, image_column, seed
        self.epoch, self.skip = 0, skip

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        if hasattr(self.stream, "set_epoch"):
            self.stream.set_epoch(epoch)

    def __iter__(self) -> Iterator[Any]:
        for i, row in enumerate(self.stream):
            if i < self.skip:
                continue
            if self.image_column not in row:
                raise KeyError(f"streamed row {i} has no column {self.image_column!r}; keys: {sorted(row)}")
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(_sample_seed(self.seed, self.epoch, i))
                yield self.transform(_to_rgb(row[self.image_column], f"streamed row {i}"))


class ResumableShardSampler(Sampler[int]):
    """Per-epoch permutation (own generator: ``seed + epoch``), this process's shard, drop-last.

    The permutation is cut to a multiple of ``world_size * batch_size`` so every process runs the
    same number of full batches; ``start_batch`` skips batches already done when resuming.
    """

    def __init__(self, size: int, batch_size: int, *, rank: int = 0, world_size: int = 1, seed: int = 0,
                 shuffle: bool = True) -> None:
        self.size, self.batch_size, self.rank, self.world_size = size, batch_size, rank, world_size
        self.seed, self.shuffle, self.epoch, self.start_batch = seed, shuffle, 0, 0
        if self.batches_per_epoch == 0:
            raise ValueError(f"{size} images are fewer than one global batch ({world_size} x {batch_size})")

    @property
    def batches_per_epoch(self) -> int:
        return self.size // (self.world_size * self.batch_size)

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        self.epoch, self.start_batch = epoch, start_batch

    def __len__(self) -> int:
        return (self.batches_per_epoch - self.start_batch) * self.batch_size

    def __iter__(self) -> Iterator[int]:
        if self.shuffle:
            order = torch.randperm(self.size, generator=torch.Generator().manual_seed(self.seed + self.epoch))
        else:
            order = torch.arange(self.size)
        order = order[: self.batches_per_epoch * self.world_size * self.batch_size][self.rank :: self.world_size]
        return iter(order[self.start_batch * self.batch_size :].tolist())


def open_unlabelled_source(path: str, *, streaming: bool = False) -> tuple[Any, bool]:
    """Open ``path`` as (items, is_streaming).

    - a folder with ``dataset_info.json``/``state.json``/``dataset_dict.json``: ``load_from_disk``
      (a DatasetDict uses its ``train`` split);
    - a ``.parquet`` file, a folder of them or a glob: ``load_dataset("parquet", streaming=...)``;
    - any other folder: its image files, recursively.
    """
    p = Path(path)
    if p.is_dir() and any((p / f).exists() for f in ("dataset_info.json", "state.json", "dataset_dict.json")):
        import datasets

        ds = datasets.load_from_disk(str(p))
        if isinstance(ds, datasets.DatasetDict):
            if "train" not in ds:
                raise KeyError(f"{p}: DatasetDict without a 'train' split (splits: {list(ds)})")
            ds = ds["train"]
        return ds, False
    parquet = sorted(glob.glob(str(p / "**" / "*.parquet"), recursive=True)) if p.is_dir() else sorted(glob.glob(path))
    if parquet and all(f.endswith(".parquet") for f in parquet):
        import datasets

        ds = datasets.load_dataset("parquet", data_files=parquet, split="train", streaming=streaming)
        return ds, streaming
    if p.is_dir():
        return list_image_files(p), False
    raise FileNotFoundError(f"{path}: not an image folder, a saved dataset or Parquet files")


def collate_views(batch: list[Any]) -> Any:
    """Stack ``[(v1, v2), ...]`` into ``(V1, V2)`` or ``[x, ...]`` into ``X``: ``(batch, 3, H, W)``."""
    if isinstance(batch[0], (tuple, list)):
        return tuple(torch.stack(v) for v in zip(*batch))
    return torch.stack(batch)
