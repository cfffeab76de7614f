"""A minimal labelled pre-training loop for the hierarchical contrastive methods.

Input: a ``datasets`` split from :func:`benthicnet_hf.data.build_dataset` (an image column and the
per-head ``{head}_target``/``{head}_mask`` columns). Each step: two augmented views per image
(:class:`benthicnet_hf.ssl.augment.TwoViewTransform`), the batch's labels and masks, the method's
loss, an optimiser step. The encoder is exported like the SSL encoders
(:func:`benthicnet_hf.ssl.export.export_encoder`: ``encoder.safetensors`` + ``encoder_config.json``),
so the fine-tuning script loads it like any SSL encoder.

Runs under ``accelerate launch`` on 1..N processes: the loader is sharded, gradients are averaged
(DDP), each process contrasts within its own batch (as the authors' code does per GPU), and the
G-HMLC mixture is refitted on the batch gathered from all processes, so every process holds the same
masks. The main process exports the encoder. No checkpoints/resume (unlike the SSL trainer).
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from accelerate import Accelerator
from accelerate.utils import DistributedDataParallelKwargs
from torch.utils.data import DataLoader

from ..data.images import load_rgb
from ..data.transforms import label_arrays
from ..hierarchy import Hierarchy
from .method import build_contrastive_method

logger = logging.getLogger(__name__)


def labelled_two_view_transform(hierarchy: Hierarchy, two_views: Callable, image_column: str = "image"
                                ) -> Callable[[dict[str, list[Any]]], dict[str, Any]]:
    """Batch transform: rows → ``view1``/``view2`` ``(B, 3, H, W)``, ``labels``/``label_mask`` ``(B, N)``."""
    def transform(batch: dict[str, list[Any]]) -> dict[str, Any]:
        pairs = [two_views(load_rgb(img)) for img in batch[image_column]]
        labels, mask = label_arrays(batch, hierarchy)
        return {"view1": torch.stack([p[0] for p in pairs]), "view2": torch.stack([p[1] for p in pairs]),
                "labels": torch.from_numpy(labels), "label_mask": torch.from_numpy(mask)}
    return transform


def make_accelerator(method: str) -> Accelerator:
    """The run's ``Accelerator`` (reads ``accelerate launch``'s settings, ``ACCELERATE_USE_CPU`` too)."""
    # A-HMLC's per-head attention gets no gradient in a batch where its head has no usable label
    ddp = DistributedDataParallelKwargs(find_unused_parameters=method.lower().replace("-", "_") == "a_hmlc")
    return Accelerator(kwargs_handlers=[ddp])


def run_labelled_pretraining(
    dataset: Any, hierarchy: Hierarchy, output_dir: str | Path, *, method: str = "himulcone",
    encoder: str = "resnet50", image_size: int = 224, batch_size: int = 64, epochs: int = 1,
    max_steps: int | None = None, learning_rate: float = 1e-3, weight_decay: float = 1e-4,
    heads: Sequence[str] | None = None, image_column: str = "image", crop_scale: Sequence[float] = (0.1, 1.0),
    seed: int = 0, method_kwargs: dict[str, Any] | None = None, accelerator: Accelerator | None = None,
) -> tuple[Path, list[float]]:
    """Train ``method`` on ``dataset`` and export its encoder; returns (weights path, step losses).

    ``accelerator``: default :func:`make_accelerator` (``method``).
    """
    from ..ssl.augment import TwoViewTransform
    from ..ssl.export import export_encoder

    torch.manual_seed(seed)  # the same initial weights on every process
    model = build_contrastive_method(method, encoder, hierarchy, heads=heads, image_size=image_size,
                                     **(method_kwargs or {}))
    accelerator = accelerator or make_accelerator(method)
    two_views = TwoViewTransform(image_size, scale=tuple(crop_scale))
    data = dataset.with_transform(labelled_two_view_transform(hierarchy, two_views, image_column))
    global_batch = batch_size * accelerator.num_processes
    # whole batches only: G-HMLC gathers equal shapes from every process
    loader = DataLoader(data, batch_size=batch_size, shuffle=True, drop_last=len(data) >= global_batch,
                        generator=torch.Generator().manual_seed(seed))
    opt = torch.optim.AdamW(model.parameters(), lr=learning_rate, weight_decay=weight_decay)
    model, opt, loader = accelerator.prepare(model, opt, loader)
    total = max_steps if max_steps is not None else epochs * max(1, len(loader))
    losses: list[float] = []
    model.train()
    for _ in range(math.ceil(total / max(1, len(loader)))):
        for batch in loader:
            if len(losses) >= total:
                break
            loss = model(batch["view1"], batch["view2"], batch["labels"], batch["label_mask"])
            opt.zero_grad()
            accelerator.backward(loss)
            opt.step()
            losses.append(float(accelerator.reduce(loss.detach(), reduction="mean")))
            if accelerator.is_main_process:
                logger.info("step %d loss %.4f", len(losses), losses[-1])
    accelerator.wait_for_everyone()
    weights = Path(output_dir) / "encoder.safetensors"
    if accelerator.is_main_process:
        unwrapped = accelerator.unwrap_model(model)
        weights = export_encoder(unwrapped.encoder, output_dir, architecture=encoder, image_size=image_size,
                                 mean=two_views.mean, std=two_views.std, method=method,
                                 extra={"hierarchical_contrastive_heads": unwrapped.head_names,
                                        "global_batch_size": global_batch,
                                        "num_processes": accelerator.num_processes})
    accelerator.wait_for_everyone()
    return weights, losses
