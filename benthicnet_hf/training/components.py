"""What a fine-tuning run is made of: its data splits, its model and its data loaders.

Randomness of the input pipeline is keyed, not streamed: the training order by ``(seed, epoch)``
and the augmentation of each image by ``(seed, epoch, position)``, with the epoch carried to the
DataLoader workers inside the sample keys (see :mod:`.keyed_loader`). So a resumed run sees
exactly the augmented images of the uninterrupted one, whatever the number of workers.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import torch
from torch.utils.data import DataLoader

from ..hierarchy import Hierarchy
from .run_log import announce_encoder_load
from .keyed_loader import EpochCounter, EpochKeyedSampler, KeyedAugmentDataset, loader_options, resolve_num_workers

logger = logging.getLogger(__name__)

SPLIT_ALIASES = {"train": ("train",), "validation": ("validation", "valid", "val", "dev"), "test": ("test",)}


def load_hierarchy(args: Any) -> Hierarchy:
    """``--hierarchy`` JSON, else the ``--init_from`` model's, else the shipped CATAMI scheme."""
    if args.hierarchy:
        return Hierarchy.from_json(Path(args.hierarchy))
    if args.init_from:
        from ..configuration_benthicnet import BenthicNetConfig

        return BenthicNetConfig.from_pretrained(args.init_from).get_hierarchy()
    return Hierarchy.catami()


def _canonical_splits(data: datasets.DatasetDict, where: str) -> datasets.DatasetDict:
    out = {}
    for name, aliases in SPLIT_ALIASES.items():
        found = next((a for a in aliases if a in data), None)
        if found is None:
            raise ValueError(f"{where} has no {name!r} split (splits: {sorted(data)}; accepted names: {aliases})")
        out[name] = data[found]
    return datasets.DatasetDict(out)


def _check_columns(data: datasets.DatasetDict, hierarchy: Hierarchy, where: str) -> None:
    needed = ["image"] + [f"{h}_{k}" for h in hierarchy.head_names for k in ("target", "mask")]
    for split, ds in data.items():
        missing = [c for c in needed if c not in ds.column_names]
        if missing:
            raise ValueError(f"{where}, split {split!r}: missing columns {missing} for hierarchy heads "
                             f"{hierarchy.head_names} (has {ds.column_names})")


def load_splits(args: Any, accelerator: Any, hierarchy: Hierarchy) -> datasets.DatasetDict:
    """train / validation / test from ``--demo``, ``--table`` or ``--dataset_dir``.

    The main process builds (and caches) first; the others then read its cache.
    """
    from ..data import build_dataset
    from .args import table_options

    with accelerator.main_process_first():
        if args.demo:
            from ..data.demo import DEMO_SOURCE_EXHAUSTIVE, make_demo_dataset

            table = args.demo_dir / "labels.csv"
            if not table.exists():
                if accelerator.is_main_process:
                    make_demo_dataset(args.demo_dir, num_images=args.demo_num_images,
                                      image_size=args.demo_image_size, seed=args.seed)
            data = build_dataset(table, args.demo_dir, hierarchy=hierarchy, cache_dir=args.cache_dir,
                                 source_exhaustive=DEMO_SOURCE_EXHAUSTIVE)
            where = f"demo dataset {args.demo_dir}"
        elif args.table:
            data = build_dataset(args.table, args.image_root, hierarchy=hierarchy, cache_dir=args.cache_dir,
                                 num_proc=args.preprocessing_num_workers, **table_options(args))
            where = f"table {args.table}"
        else:
            data = datasets.load_from_disk(args.dataset_dir)
            where = f"dataset folder {args.dataset_dir}"
            if not isinstance(data, datasets.DatasetDict):
                raise ValueError(f"{where} holds a single Dataset; save a DatasetDict with train/validation/test")
    data = _canonical_splits(data, where)
    _check_columns(data, hierarchy, where)
    limits = {"train": args.max_train_samples, "validation": args.max_eval_samples, "test": args.max_eval_samples}
    for split, limit in limits.items():
        if limit is not None:
            data[split] = data[split].select(range(min(limit, len(data[split]))))
        if len(data[split]) == 0:
            raise ValueError(f"{where}: split {split!r} is empty")
    return data


def node_support(targets: np.ndarray, mask: np.ndarray) -> dict[str, list[int]]:
    """``config.node_support`` of a training split: known positive / negative bits per node.

    Args:
        targets, mask: ``(rows, N)`` {0, 1} (mask 1 = known).
    """
    from ..data.label_support import known_bit_counts

    pos, neg = known_bit_counts(targets, mask)
    return {"positives": pos.tolist(), "negatives": neg.tolist()}


def build_model(args: Any, hierarchy: Hierarchy, node_weights: list[float] | None = None,
                support: dict[str, list[int]] | None = None) -> Any:
    """A new model (timm encoder, optional ``--encoder_checkpoint``) or one loaded from ``--init_from``.

    ``node_weights`` (``(N,)``, e.g. from ``--node_weights imbalance``) go into ``config.node_weights``
    before the model is built, so the model's loss and its saved config both carry them; so do
    ``--ensemble_size``, ``--mc_dropout_samples`` and ``--uncertainty`` when given, and the training
    split's ``support`` (:func:`node_support`: which nodes prediction may offer).
    """
    from ..configuration_benthicnet import BenthicNetConfig
    from ..modeling_benthicnet import BenthicNetForHierarchicalClassification

    if args.init_from:
        extra = {} if node_weights is None else {"node_weights": node_weights}
        if support is not None:
            extra["node_support"] = support
        extra.update(args.ensemble_overrides)  # a different ensemble_size than the checkpoint's is an error
        model = BenthicNetForHierarchicalClassification.from_pretrained(args.init_from, dtype=torch.float32, **extra)
        if model.config.get_hierarchy().labels != hierarchy.labels:
            raise ValueError(f"--init_from {args.init_from}: its hierarchy ({model.config.num_nodes} nodes) differs "
                             f"from the data's ({hierarchy.num_nodes} nodes); pass the matching --hierarchy")
        if args.output_type is not None and args.output_type != model.config.output_type:
            raise ValueError(f"--output_type {args.output_type} does not match --init_from {args.init_from}, whose "
                             f"heads are {model.config.output_type!r}")
        if args.linear_probe:
            model.set_encoder_frozen(True)
        return model
    config = BenthicNetConfig(
        encoder_name=args.encoder, encoder_kwargs=args.encoder_kwargs_dict, hierarchy=hierarchy.to_list(),
        head_hidden_dim=args.head_hidden_dim, head_dropout=args.head_dropout, output_type=args.output_type or "mcm",
        freeze_encoder=args.linear_probe, image_size=args.image_size, node_weights=node_weights,
        node_support=support, **args.ensemble_overrides,
    )
    model = BenthicNetForHierarchicalClassification(config)
    if args.encoder_checkpoint:
        announce_encoder_load(model.load_encoder(args.encoder_checkpoint, strict=True))  # name what was loaded
    return model


def make_dataloaders(args: Any, data: datasets.DatasetDict, hierarchy: Hierarchy, config: Any,
                     counter: EpochCounter, train_sampler: Any = None, use_cuda: bool = False) -> dict[str, DataLoader]:
    """train (shuffled, augmented, keyed), validation and test (eval transform) loaders.

    ``train_sampler`` (e.g. LP-ROS) replaces the shuffle; it must order rows by ``(seed, epoch)``
    alone so that every process and a resumed run see the same order. The training loader reads
    :class:`~.keyed_loader.EpochKeyedSampler` keys, so its persistent workers always know the epoch
    (see :mod:`.keyed_loader`). Workers: ``--dataloader_num_workers`` (-1 = from the CPU count),
    persistent for the loaders iterated every epoch (train, validation); pinned memory when
    ``use_cuda`` and ``--dataloader_pin_memory``.
    """
    from ..data.transforms import collate_hml, eval_transform, hml_transform, train_transform

    size, mean, std = int(config.image_size), tuple(config.image_mean), tuple(config.image_std)
    train_tf = train_transform(size, mean, std, **augmentation_options(args))
    train_ds = KeyedAugmentDataset(data["train"], hierarchy, train_tf, args.seed)
    eval_tf = hml_transform(hierarchy, eval_transform(size, mean, std, crop_pct=float(config.crop_pct)))
    workers = resolve_num_workers(args.dataloader_num_workers)
    pin = bool(use_cuda and args.dataloader_pin_memory)
    sampler = EpochKeyedSampler(len(train_ds), args.seed, counter, rows=train_sampler)
    batch = args.per_device_train_batch_size
    loaders = {"train": DataLoader(
        train_ds, batch_size=batch, sampler=sampler, collate_fn=collate_hml,
        # one sample left alone in a last batch breaks BatchNorm in the heads
        drop_last=len(sampler) % batch == 1,
        **loader_options(workers, pin, args.dataloader_persistent_workers, args.dataloader_prefetch_factor))}
    for split in ("validation", "test"):  # the test split is read once: no workers kept for it
        persistent = args.dataloader_persistent_workers and split == "validation"
        loaders[split] = DataLoader(
            data[split].with_transform(eval_tf), batch_size=args.eval_batch_size, shuffle=False,
            collate_fn=collate_hml, **loader_options(workers, pin, persistent, args.dataloader_prefetch_factor))
    return loaders


def augmentation_options(args: Any) -> dict[str, Any]:
    """:func:`~benthicnet_hf.data.transforms.train_transform` keywords from ``--crop_scale_min``,
    ``--vflip``, ``--color_jitter`` and ``--pca_lighting`` (the transform's defaults for options an
    argument class lacks)."""
    out = {name: getattr(args, name) for name in ("vflip", "color_jitter", "pca_lighting") if hasattr(args, name)}
    if hasattr(args, "crop_scale_min"):
        out["scale"] = (args.crop_scale_min, 1.0)
    return out
