"""Unlabelled image sources for pre-training: a folder, a saved ``datasets`` dataset, Parquet shards.

Augmentation randomness is seeded per ``(seed, epoch, index)`` so that the views of a sample do
not depend on worker count or on where a run was resumed (exact resume).
"""

from __future__ import annotations

import glob
import os
from pathlib import Path
import logging
from typing import Any, Callable, Iterator, Optional

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset, IterableDataset, Sampler

__all__ = ["IMAGE_EXTENSIONS", "list_image_files", "UnlabelledImages", "StreamingUnlabelledImages",
           "ResumableShardSampler", "open_unlabelled_source", "collate_views", "SKIPPED", "shuffled_stream",
           "stream_workers", "stream_batches"]

logger = logging.getLogger(__name__)

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


#: What a streamed row already trained before a resume yields instead of its views (never decoded).
SKIPPED = None


class StreamingUnlabelledImages(IterableDataset):
    """Iterable source over a streaming ``datasets.IterableDataset`` already split for this process.

    In ``DataLoader`` workers the ``datasets`` stream gives each worker its own shards (files), so
    the workers read disjoint rows. The ``DataLoader`` hands out batches round-robin over the
    workers (skipping a worker once it is exhausted), so the batch order is a function of
    ``(seed, epoch, num_workers)``. To resume after ``skip_batches`` batches of an epoch, worker
    ``w`` of ``W`` replaces the rows of its first ``skip_batches // W + (w < skip_batches % W)``
    batches by :data:`SKIPPED` (not decoded, not augmented): every batch keeps its place, and
    :func:`stream_batches` drops the first ``skip_batches`` batches. A worker never replaces more
    than it produced among them (a worker running dry only moves the others' batches earlier).
    Augmentation is seeded per ``(seed, epoch, row in this worker's stream, worker)``.
    """

    def __init__(self, stream: Any, transform: Callable, *, image_column: str = "image", seed: int = 0,
                 skip_batches: int = 0, batch_size: int = 1) -> None:
        self.stream, self.transform, self.image_column, self.seed = stream, transform, image_column, seed
        self.epoch, self.skip_batches, self.batch_size = 0, skip_batches, batch_size

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        if hasattr(self.stream, "set_epoch"):
            self.stream.set_epoch(epoch)

    def _skipped_rows(self) -> tuple[int, Optional[int]]:
        info = torch.utils.data.get_worker_info()
        workers, worker = (1, None) if info is None else (info.num_workers, info.id)
        mine = self.skip_batches // workers + int((worker or 0) < self.skip_batches % workers)
        return mine * self.batch_size, worker

    def __iter__(self) -> Iterator[Any]:
        skip, worker = self._skipped_rows()
        for i, row in enumerate(self.stream):
            if i < skip:
                yield SKIPPED
                continue
            if self.image_column not in row:
                raise KeyError(f"streamed row {i} has no column {self.image_column!r}; keys: {sorted(row)}")
            key = (self.seed, self.epoch, i) if worker is None else (self.seed, self.epoch, i, worker)
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(int(np.random.SeedSequence(list(key)).generate_state(1)[0]))
                yield self.transform(_to_rgb(row[self.image_column], f"streamed row {i}"))


def shuffled_stream(items: Any, *, seed: int, buffer_size: int, rank: int = 0, world_size: int = 1) -> Any:
    """Shuffle a ``datasets.IterableDataset`` and keep this process's part.

    ``items.shuffle(seed, buffer_size)`` shuffles the shard (file) order and then draws rows at
    random from a ``buffer_size`` buffer, both re-seeded by ``set_epoch`` (``seed + epoch``);
    ``split_dataset_by_node`` then gives each of ``world_size`` processes whole shards when
    ``num_shards % world_size == 0``, else every ``world_size``-th row. The parts are disjoint and
    together are every row.
    """
    from datasets.distributed import split_dataset_by_node

    if buffer_size < 1:
        raise ValueError(f"shuffle buffer must hold at least one row, got {buffer_size}")
    return split_dataset_by_node(items.shuffle(seed=seed, buffer_size=buffer_size), rank=rank, world_size=world_size)


def stream_workers(stream: Any, requested: int) -> int:
    """``requested`` DataLoader workers, capped at the stream's shard count (a worker reads whole
    shards, so any more would idle); the cap is logged."""
    shards = int(getattr(stream, "num_shards", 1) or 1)
    if requested > shards:
        logger.warning("streaming: %d DataLoader workers requested but this process's stream has %d shard(s); "
                       "using %d (write more Parquet shards for more workers)", requested, shards, shards)
        return shards
    return max(requested, 0)


def stream_batches(dataset: StreamingUnlabelledImages, batch_size: int, num_workers: int, *, skip_batches: int = 0,
                   generator: Optional[torch.Generator] = None, pin_memory: bool = False) -> Iterator[Any]:
    """Full batches ``(batch, 3, H, W)`` (or tuples of them) of ``dataset``, from batch ``skip_batches``
    of the epoch on: the order is the one an uninterrupted epoch with ``num_workers`` workers has."""
    dataset.skip_batches, dataset.batch_size = skip_batches, batch_size
    loader = DataLoader(dataset, batch_size=batch_size, collate_fn=collate_views, num_workers=num_workers,
                        drop_last=True, generator=generator, pin_memory=pin_memory)
    for position, batch in enumerate(loader):
        if position >= skip_batches:
            if batch is SKIPPED:
                raise RuntimeError(f"streamed batch {position} of the epoch was skipped as already trained "
                                   f"(resume after {skip_batches} batches with {num_workers} workers)")
            yield batch


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
    """Stack ``[(v1, v2), ...]`` into ``(V1, V2)`` or ``[x, ...]`` into ``X``: ``(batch, 3, H, W)``;
    a batch of :data:`SKIPPED` rows (a resumed stream) stays :data:`SKIPPED`."""
    if batch[0] is SKIPPED:
        return SKIPPED
    if isinstance(batch[0], (tuple, list)):
        return tuple(torch.stack(v) for v in zip(*batch))
    return torch.stack(batch)
