"""The fine-tuning input pipeline's keyed randomness, safe with persistent DataLoader workers.

The augmentation of a training image is seeded by ``(seed, epoch, position)``, its position in the
epoch's global sample order, inside :func:`torch.random.fork_rng`. So it does not depend on how
often a generator was drawn before (iterators and accelerate's prefetch draw at points that differ
between an uninterrupted and a resumed run), nor on the batch size, the number of processes or the
number of DataLoader workers: every run, resumed or not, sees exactly the same augmented images.

**The epoch travels with the index.** A persistent worker is forked once and keeps a copy of
everything it was given, so an epoch read from shared state inside the worker (an ``EpochCounter``,
a ``set_epoch`` on the dataset) stays at the value it had at the fork and every later epoch would
repeat epoch 0's augmentation. Instead :class:`EpochKeyedSampler`, which the DataLoader iterates
in the training process where the counter is current, yields ``(epoch, position, row)`` keys, and
:class:`KeyedAugmentDataset` decodes and augments the batch of keys inside the worker.
"""

from __future__ import annotations

import os
import random
from typing import Any, Callable, Iterator, Sequence

import datasets
import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from ..hierarchy import Hierarchy

#: ``--dataloader_num_workers`` value that means "from the CPU count".
AUTO_WORKERS = -1
#: Most workers per process chosen by "auto" (more rarely helps a single GPU's input pipeline).
MAX_AUTO_WORKERS = 8

SampleKey = tuple[int, int, int]  # (epoch, position in the epoch's order, row of the split)


class EpochCounter:
    """The epoch the keyed sampler reads (set by the loop before each epoch, in the main process)."""

    def __init__(self) -> None:
        self.epoch = 0


def keyed_seed(*keys: int) -> int:
    """A 63-bit seed derived from integer keys (stable across processes and runs)."""
    return int(np.random.SeedSequence([int(k) & 0xFFFFFFFF for k in keys]).generate_state(2, dtype=np.uint64)[0] >> 1)


def reseed_all(seed: int) -> None:
    """Seed torch (all devices), numpy and python's ``random`` from one integer."""
    torch.manual_seed(seed)
    np.random.seed(seed % (2**32))
    random.seed(seed)


_MASK64 = (1 << 64) - 1


def _splitmix64(x: np.ndarray) -> np.ndarray:
    """SplitMix64's finaliser on uint64 arrays (wrapping arithmetic): a fast, well-mixed hash."""
    x = x + np.uint64(0x9E3779B97F4A7C15)
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def image_seeds(seed: int, epoch: int | Sequence[int], positions: Sequence[int]) -> list[int]:
    """63-bit augmentation seeds of the images at ``positions`` of ``epoch`` (one epoch, or one per
    position), one hash chain ``splitmix(splitmix(splitmix(seed) ^ epoch) ^ position)`` for the
    whole batch (a ``SeedSequence`` per image costs ~10 us, this ~0.1 us)."""
    base = _splitmix64(np.array([seed & _MASK64], dtype=np.uint64))
    base = _splitmix64(base ^ np.asarray(epoch, dtype=np.uint64))
    return (_splitmix64(base ^ np.asarray(positions, dtype=np.uint64)) >> np.uint64(1)).tolist()


def seed_cpu_generators(seed: int) -> None:
    """Seed torch's CPU generator, numpy and ``random`` (what a CPU-side augmentation draws from).

    ``torch.manual_seed`` also seeds every accelerator and costs ~0.4 ms, as much as decoding a
    small image; the CPU generator alone costs ~1 us.
    """
    torch.default_generator.manual_seed(seed)
    np.random.seed(seed % (2**32))
    random.seed(seed)


def available_cpus() -> int:
    """CPUs this process may run on (its affinity mask, e.g. a Slurm allocation), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def resolve_num_workers(requested: int, local_processes: int | None = None) -> int:
    """DataLoader workers per process: ``requested`` when >= 0 (0 = decode in the training process),
    else (``-1``, "auto") ``min(8, CPUs // processes on this machine)``.

    Args:
        local_processes: training processes sharing this machine's CPUs; default
            ``$LOCAL_WORLD_SIZE`` (set by ``accelerate launch`` / ``torchrun``), else 1.
    """
    if requested >= 0:
        return requested
    if requested != AUTO_WORKERS:
        raise ValueError(f"--dataloader_num_workers must be >= 0 or {AUTO_WORKERS} (auto), got {requested}")
    if local_processes is None:
        local_processes = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    return min(MAX_AUTO_WORKERS, available_cpus() // max(1, local_processes))


def loader_options(num_workers: int, pin_memory: bool, persistent_workers: bool,
                   prefetch_factor: int | None) -> dict[str, Any]:
    """DataLoader keyword arguments: worker options only where there are workers (torch refuses
    ``prefetch_factor`` and ``persistent_workers`` with 0 workers)."""
    options: dict[str, Any] = {"num_workers": num_workers, "pin_memory": pin_memory}
    if num_workers > 0:
        options["persistent_workers"] = persistent_workers
        if prefetch_factor is not None:
            options["prefetch_factor"] = prefetch_factor
    return options


class EpochKeyedSampler(Sampler[SampleKey]):
    """Training order as ``(epoch, position, row)`` keys, the epoch read from ``counter`` at ``iter()``.

    Rows come from ``rows`` (a sampler ordering rows by ``(seed, epoch)`` alone, e.g. LP-ROS, which
    may repeat rows) or, by default, from a permutation keyed by ``(seed, epoch)``: every process
    and a resumed run draw the same order. accelerate shards the batches of these keys over the
    processes and ``skip_first_batches`` skips them like any other indices.
    """

    def __init__(self, num_rows: int, seed: int, counter: Any, rows: Sampler[int] | None = None) -> None:
        self.num_rows, self.seed, self.counter, self.rows = num_rows, seed, counter, rows

    def __len__(self) -> int:
        return len(self.rows) if self.rows is not None else self.num_rows  # type: ignore[arg-type]

    def order(self, epoch: int) -> np.ndarray:
        """``(len(self),)`` int64 rows of ``epoch`` (the ``rows`` sampler reads the same counter)."""
        if self.rows is not None:
            return np.fromiter(iter(self.rows), dtype=np.int64)
        return np.random.default_rng(keyed_seed(self.seed, epoch, 0x5EED)).permutation(self.num_rows)

    def __iter__(self) -> Iterator[SampleKey]:
        epoch = int(self.counter.epoch)
        for position, row in enumerate(self.order(epoch).tolist()):
            yield (epoch, position, row)


class KeyedAugmentDataset(Dataset):
    """A split read by :class:`EpochKeyedSampler` keys: decode + augment per row, keyed.

    ``__getitems__`` (one call per batch, run inside a DataLoader worker when there are workers)
    returns rows of ``pixel_values`` ``(3, H, W)`` float32, ``labels`` and ``label_mask`` ``(N,)``
    float32 for :func:`~benthicnet_hf.data.transforms.collate_hml`. The image of key
    ``(epoch, position, row)`` is ``image_transform(row's image)`` with torch's CPU generator, numpy
    and ``random`` seeded by ``image_seeds(seed, epoch, [position])``; the global generators are
    left as they were.
    """

    def __init__(self, data: datasets.Dataset, hierarchy: Hierarchy, image_transform: Callable[[Any], torch.Tensor],
                 seed: int, image_column: str = "image") -> None:
        labels = [f"{h}_{k}" for h in hierarchy.head_names for k in ("target", "mask")]
        data = data.select_columns([image_column] + labels)  # only what a batch needs
        if isinstance(data.features[image_column], datasets.Image):  # raw bytes: load_rgb decodes once
            data = data.cast_column(image_column, datasets.Image(decode=False))
        # an Arrow table per batch: label columns straight to (B, n) arrays, no Python list per row
        self.data = data.with_format("arrow")
        self.hierarchy, self.image_transform = hierarchy, image_transform
        self.seed, self.image_column = seed, image_column

    def __len__(self) -> int:
        return len(self.data)

    def __getitems__(self, keys: Sequence[SampleKey]) -> list[dict[str, torch.Tensor]]:
        from ..data.images import load_rgb
        from ..data.transforms import label_arrays

        rows = [int(k[2]) for k in keys]
        table = self.data[rows]
        batch = {name: np.asarray(table.column(name).combine_chunks().flatten()).reshape(len(rows), -1)
                 for name in table.column_names if name != self.image_column}
        images = []
        seeds = image_seeds(self.seed, [k[0] for k in keys], [k[1] for k in keys])
        with torch.random.fork_rng(devices=[]):
            state_np, state_py = np.random.get_state(), random.getstate()
            try:
                for (_, _, row), image, image_seed in zip(keys, table.column(self.image_column).to_pylist(), seeds):
                    seed_cpu_generators(image_seed)
                    images.append(self.image_transform(load_rgb(image, row=row)))
            finally:
                np.random.set_state(state_np)
                random.setstate(state_py)
        labels, mask = (torch.from_numpy(a) for a in label_arrays(batch, self.hierarchy))
        return [{"pixel_values": img, "labels": labels[i], "label_mask": mask[i]} for i, img in enumerate(images)]

    def __getitem__(self, key: SampleKey) -> dict[str, torch.Tensor]:
        return self.__getitems__([key])[0]
