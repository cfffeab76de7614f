"""The fine-tuning loader: auto worker count, and keyed augmentation that persistent workers,
the number of workers, the number of processes and a resumed epoch all leave unchanged."""

from __future__ import annotations

import datasets
import numpy as np
import pytest
import torch
from accelerate.data_loader import prepare_data_loader, skip_first_batches

from benthicnet_hf import Hierarchy
from benthicnet_hf.configuration_benthicnet import BenthicNetConfig
from benthicnet_hf.data import build_dataset
from benthicnet_hf.data.demo import make_demo_dataset
from benthicnet_hf.data.images import load_rgb
from benthicnet_hf.data.transforms import label_arrays, train_transform
from benthicnet_hf.training import FinetuneArguments, parse_args
from benthicnet_hf.training import keyed_loader
from benthicnet_hf.training.components import make_dataloaders
from benthicnet_hf.training.keyed_loader import EpochCounter, image_seeds, keyed_seed, reseed_all, resolve_num_workers

SEED, BATCH, SIZE = 7, 4, 24
M64 = (1 << 64) - 1


def splitmix64(x: int) -> int:
    """SplitMix64 (Steele et al. 2014) in plain Python integers: the reference for image_seeds."""
    x = (x + 0x9E3779B97F4A7C15) & M64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & M64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & M64
    return x ^ (x >> 31)


def reference_seed(seed: int, epoch: int, position: int) -> int:
    return splitmix64(splitmix64(splitmix64(seed) ^ epoch) ^ position) >> 1


@pytest.fixture(scope="module")
def splits(tmp_path_factory: pytest.TempPathFactory) -> datasets.DatasetDict:
    root = tmp_path_factory.mktemp("loader")
    table = make_demo_dataset(root / "demo", num_images=22, image_size=40, seed=0)
    train = build_dataset(table, cache_dir=root / "cache", split_fractions={"train": 1.0})["train"]
    assert len(train) == 22 and len(train) % BATCH not in (0, 1)  # a short last batch, not dropped
    return datasets.DatasetDict({"train": train, "validation": train.select(range(5)), "test": train.select(range(3))})


def loaders(splits: datasets.DatasetDict, workers: int, counter: EpochCounter) -> dict:
    args = FinetuneArguments(output_dir="unused", dataset_dir="unused", per_device_train_batch_size=BATCH,
                             dataloader_num_workers=workers, seed=SEED)
    config = BenthicNetConfig(encoder_name="test_resnet", image_size=SIZE)
    return make_dataloaders(args, splits, Hierarchy.catami(), config, counter)


def epoch_batches(loader: torch.utils.data.DataLoader, counter: EpochCounter, epoch: int) -> list[dict]:
    counter.epoch = epoch
    return list(loader)


def test_image_seeds_are_splitmix64_chains() -> None:
    assert splitmix64(0) == 0xE220A8397B1DCDAF  # the published first output of SplitMix64 seeded with 0
    positions = [0, 1, 2, 10**6, 2**40]
    for seed, epoch in ((0, 0), (7, 3), (2**40 + 5, 99)):
        assert image_seeds(seed, epoch, positions) == [reference_seed(seed, epoch, p) for p in positions]
    assert len(set(image_seeds(7, 0, range(10_000)) + image_seeds(7, 1, range(10_000)))) == 20_000


def test_auto_workers_follow_the_cpus_and_explicit_counts_are_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    assert parse_args(["--output_dir", "o", "--demo"]).dataloader_num_workers == -1  # auto by default
    monkeypatch.setattr(keyed_loader, "available_cpus", lambda: 20)
    assert resolve_num_workers(-1, local_processes=1) == 8  # capped
    assert resolve_num_workers(-1, local_processes=4) == 5  # 20 CPUs shared by 4 processes
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "8")
    assert resolve_num_workers(-1) == 2  # accelerate launch / torchrun set LOCAL_WORLD_SIZE
    monkeypatch.setattr(keyed_loader, "available_cpus", lambda: 3)
    assert resolve_num_workers(-1) == 0  # fewer CPUs than processes: decode in-process
    assert resolve_num_workers(0) == 0 and resolve_num_workers(3) == 3
    with pytest.raises(ValueError, match="dataloader_num_workers"):
        FinetuneArguments(output_dir="o", demo=True, dataloader_num_workers=-2)
    with pytest.raises(ValueError, match="prefetch_factor"):
        FinetuneArguments(output_dir="o", demo=True, dataloader_prefetch_factor=0)


def test_persistent_workers_augment_each_epoch_anew_and_match_in_process_loading(
        splits: datasets.DatasetDict) -> None:
    counter_w, counter_0 = EpochCounter(), EpochCounter()
    with_workers, in_process = loaders(splits, 2, counter_w), loaders(splits, 0, counter_0)
    train = with_workers["train"]
    assert train.num_workers == 2 and train.persistent_workers and not with_workers["test"].persistent_workers
    assert in_process["train"].num_workers == 0
    tf = train_transform(SIZE, BenthicNetConfig().image_mean, BenthicNetConfig().image_std)
    hierarchy, raw = Hierarchy.catami(), splits["train"]
    by_row: dict[int, list[torch.Tensor]] = {}
    for epoch in range(3):
        got = epoch_batches(train, counter_w, epoch)  # the same worker processes every epoch
        want = epoch_batches(in_process["train"], counter_0, epoch)
        assert len(got) == len(want) == 6
        for a, b in zip(got, want):
            for key in ("pixel_values", "labels", "label_mask"):
                assert torch.equal(a[key], b[key]), (epoch, key)
        # an independent reference: row r at position p of epoch e, augmented under seed (SEED, e, p)
        rows = np.random.default_rng(keyed_seed(SEED, epoch, 0x5EED)).permutation(len(raw))
        images = torch.cat([b["pixel_values"] for b in got])
        labels = torch.cat([b["labels"] for b in got])
        for position, row in enumerate(rows.tolist()):
            with torch.random.fork_rng(devices=[]):
                reseed_all(reference_seed(SEED, epoch, position))
                expected = tf(load_rgb(raw[row]["image"]))
            assert torch.equal(images[position], expected), (epoch, position)
            y, _ = label_arrays(raw[row:row + 1], hierarchy)
            assert torch.equal(labels[position], torch.from_numpy(y[0]))
            by_row.setdefault(row, []).append(images[position])
    # each epoch augments a row anew (a worker holding a stale epoch would repeat epoch 0)
    assert all(not torch.equal(v[0], v[1]) and not torch.equal(v[1], v[2]) for v in by_row.values())


def test_two_processes_and_a_resumed_epoch_see_the_same_images(splits: datasets.DatasetDict) -> None:
    counter = EpochCounter()
    single = loaders(splits, 0, counter)["train"]
    full = epoch_batches(single, counter, 1)
    shards = [prepare_data_loader(loaders(splits, 2, counter)["train"], num_processes=2, process_index=i,
                                  put_on_device=False) for i in (0, 1)]
    per_process = [epoch_batches(shard, counter, 1) for shard in shards]
    interleaved = [b for pair in zip(*per_process) for b in pair]
    # process i gets batches i, i + 2, ...: the same images as one process, whatever process decodes
    # them; the short last batch is padded (even_batches) with the epoch's first samples
    assert len(interleaved) == len(full) == 6 and len(full[-1]["labels"]) == 2
    for a, b in zip(interleaved, full):
        assert torch.equal(a["pixel_values"][:len(b["labels"])], b["pixel_values"])
    assert torch.equal(interleaved[-1]["pixel_values"][2:], full[0]["pixel_values"][:2])
    # a resumed epoch: skipping the first k batches yields exactly the rest
    counter.epoch = 1
    rest = list(skip_first_batches(shards[1], 2))
    assert len(rest) == len(per_process[1]) - 2
    for a, b in zip(rest, per_process[1][2:]):
        assert torch.equal(a["pixel_values"], b["pixel_values"]) and torch.equal(a["labels"], b["labels"])
