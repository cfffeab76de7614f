"""SSL streaming from Parquet shards: DataLoader workers, split by process, shard-level shuffle,
exact mid-epoch resume. Images carry their row id in their first pixel (R + 256 G), so every
check compares the ids the loader yields with the ids written (an independent reference)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from benthicnet_hf.ssl.data import (SKIPPED, StreamingUnlabelledImages, open_unlabelled_source, shuffled_stream,
                                    stream_batches, stream_workers)

SHARD_SIZES = (6, 6, 6, 6)


def _write_shards(folder: Path, sizes: tuple[int, ...]) -> list[int]:
    """Parquet shards ``part-<k>.parquet`` of ``sizes[k]`` rows (columns ``id``, ``image``); the shard of each id."""
    import datasets

    folder.mkdir(parents=True)
    shard_of, start = [], 0
    for k, n in enumerate(sizes):
        ids = list(range(start, start + n))
        images = []
        for i in ids:
            img = np.full((8, 8, 3), 7, np.uint8)
            img[0, 0, :2] = (i % 256, i // 256)
            path = folder / f"img_{i}.png"
            Image.fromarray(img).save(path)
            images.append(str(path))
        datasets.Dataset.from_dict({"id": ids, "image": images}).cast_column("image", datasets.Image()).to_parquet(
            str(folder / f"part-{k}.parquet"))
        shard_of += [k] * n
        start += n
    return shard_of


def pixel_id(image: Image.Image) -> torch.Tensor:
    r, g, _ = image.getpixel((0, 0))
    return torch.tensor(r + 256 * g)


def pixel_id_and_noise(image: Image.Image) -> tuple[torch.Tensor, torch.Tensor]:
    """The id plus a draw of the (seeded) augmentation RNG, so the views' randomness is compared too."""
    return pixel_id(image), torch.rand(())


@pytest.fixture(autouse=True)
def _no_thread_shutdown_sleep(monkeypatch):
    """``datasets`` sleeps 5 s after each pass over interleaved Parquet shards (an Arrow thread
    shutdown work-around): harmless per epoch of a real run, most of the time of these tiny ones."""
    import datasets

    monkeypatch.setattr(datasets.config, "SLEEP_TIME_ON_THREADS_SHUTDOWN", 0.05)


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> tuple[Path, list[int]]:
    root = tmp_path_factory.mktemp("stream") / "shards"
    return root, _write_shards(root, SHARD_SIZES)


def _stream(folder: Path, **kw):
    items, streaming = open_unlabelled_source(str(folder), streaming=True)
    assert streaming
    return shuffled_stream(items, **{"seed": 0, "buffer_size": 10_000, **kw})


def _ids(batches) -> list[int]:
    return [int(i) for b in batches for i in (b[0] if isinstance(b, tuple) else b)]


@pytest.mark.parametrize("batch_size", [1, 3])
def test_two_workers_read_every_row_exactly_once(shards, batch_size):
    folder, shard_of = shards
    ds = StreamingUnlabelledImages(_stream(folder), pixel_id, seed=0)
    ids = _ids(stream_batches(ds, batch_size, num_workers=2))
    assert sorted(ids) == list(range(len(shard_of)))  # 24 rows, 2 workers x 2 shards x 6 rows: nothing dropped


def test_workers_are_capped_at_the_shard_count(shards, caplog):
    folder, shard_of = shards
    stream = _stream(folder)
    with caplog.at_level(logging.WARNING, logger="benthicnet_hf.ssl.data"):
        assert stream_workers(stream, 8) == len(SHARD_SIZES)
    assert "8 DataLoader workers requested" in caplog.text
    assert stream_workers(stream, 2) == 2 and stream_workers(_stream(folder, rank=1, world_size=2), 8) == 2
    ds = StreamingUnlabelledImages(stream, pixel_id, seed=0)
    assert sorted(_ids(stream_batches(ds, 2, num_workers=stream_workers(stream, 8)))) == list(range(len(shard_of)))


@pytest.mark.parametrize("sizes", [(6, 6, 6, 6), (6, 6, 6)])  # shards per process (4 % 2 == 0) / rows per process
def test_processes_read_disjoint_rows_that_cover_the_data(tmp_path, sizes):
    shard_of = _write_shards(tmp_path / "s", sizes)
    parts = [[row["id"] for row in _stream(tmp_path / "s", rank=r, world_size=2)] for r in (0, 1)]
    assert not set(parts[0]) & set(parts[1])
    assert sorted(parts[0] + parts[1]) == list(range(len(shard_of)))
    assert all(parts)


def test_shard_order_and_buffer_reshuffle_every_epoch(shards):
    folder, shard_of = shards

    def epoch_ids(epoch: int, buffer_size: int = 10_000) -> list[int]:
        stream = _stream(folder, buffer_size=buffer_size)
        stream.set_epoch(epoch)
        return [row["id"] for row in stream]

    e0, e1 = epoch_ids(0), epoch_ids(1)
    assert sorted(e0) == sorted(e1) == list(range(len(shard_of)))
    assert e0 != e1 and epoch_ids(1) == e1  # a new order per epoch, the same for the same (seed, epoch)
    assert len({shard_of[i] for i in e0[:6]}) > 1 and len({shard_of[i] for i in e1[:6]}) > 1  # shards mix
    # the reference: a 1-row buffer only reorders shards, so each shard's rows keep their file order;
    # the large buffer draws rows out of that order
    def in_file_order(ids: list[int]) -> bool:
        return all(np.all(np.diff([i for i in ids if shard_of[i] == k]) > 0) for k in set(shard_of))

    assert in_file_order(epoch_ids(0, buffer_size=1)) and not in_file_order(e0) and not in_file_order(e1)


@pytest.mark.parametrize("workers", [0, 2, 3])
def test_a_resumed_epoch_continues_in_the_uninterrupted_order(tmp_path, workers):
    # uneven shards: one worker runs dry first, so the round-robin order changes mid-epoch
    shard_of = _write_shards(tmp_path / "s", (6, 2, 9, 4, 5))

    def batches(skip: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        stream = _stream(tmp_path / "s", seed=3)
        ds = StreamingUnlabelledImages(stream, pixel_id_and_noise, seed=5)
        ds.set_epoch(1)
        return list(stream_batches(ds, 2, workers, skip_batches=skip, generator=torch.Generator().manual_seed(1)))

    full = batches(0)
    assert len(set(_ids(full))) == len(_ids(full)) >= len(shard_of) - 2 * max(workers, 1)  # drop-last per worker
    for skip in range(len(full) + 1):
        resumed = batches(skip)
        assert len(resumed) == len(full) - skip, skip
        for a, b in zip(full[skip:], resumed):
            assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]), skip


def test_rows_already_trained_are_not_decoded(shards):
    folder, shard_of = shards
    calls = []

    def counting(image: Image.Image) -> torch.Tensor:
        calls.append(1)
        return pixel_id(image)

    ds = StreamingUnlabelledImages(_stream(folder), counting, seed=0, skip_batches=2, batch_size=3)
    rows = list(ds)
    assert rows[:6] == [SKIPPED] * 6 and all(r is not SKIPPED for r in rows[6:])
    assert len(calls) == len(shard_of) - 6
    with pytest.raises(ValueError, match="at least one row"):
        _stream(folder, buffer_size=0)
