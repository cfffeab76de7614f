"""The labelled pre-training loop of the hierarchical contrastive methods.

Input: a ``datasets`` split from :func:`benthicnet_hf.data.build_dataset` (an image column and the
per-head ``{head}_target``/``{head}_mask`` columns). Each step: two augmented views per image
(:class:`benthicnet_hf.ssl.augment.TwoViewTransform`), the batch's labels and masks, the method's
loss, an optimiser step. The encoder is exported like the SSL encoders
(:func:`benthicnet_hf.ssl.export.export_encoder`: ``encoder.safetensors`` + ``encoder_config.json``),
so the fine-tuning script loads it like any SSL encoder.

Runs under ``accelerate launch`` on 1..N processes: each process reads its shard of a per-epoch
permutation (:class:`benthicnet_hf.ssl.data.ResumableShardSampler`), gradients are averaged
(DDP), each process contrasts within its own batch (as the authors' code does per GPU), and with
``--gmm_fit batch_fisher`` the G-HMLC mixture is refitted on the batch gathered from all processes,
so every process holds the same masks (the default per-vector masks need no exchange). The run infrastructure is the shared one of :mod:`benthicnet_hf.training` (output-folder
rules, atomic ``checkpoints/step_00000000``, exact resume, logging): a run resumed from a
checkpoint ends with the same weights as the uninterrupted run (the data order is a function of
``(seed, epoch)``, and accelerate restores the RNG states the augmentations draw from).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Callable

import torch
from accelerate import Accelerator
from accelerate.utils import DistributedDataParallelKwargs
from torch.utils.data import DataLoader

from ..data.images import load_rgb
from ..data.transforms import label_arrays
from ..hierarchy import Hierarchy
from ..training.checkpointing import TrainingState, read_process_state, save_checkpoint
from ..training.main_process import run_on_main
from ..training.resumable_loop import resumable_batches
from ..training.run_dir import args_snapshot, start_run
from ..training.run_log import StepLogger, init_trackers, progress_bar, resolve_tracker
from ..training.sync_bn import convert_sync_batchnorm
from .args import ContrastiveArguments
from .method import build_contrastive_method

logger = logging.getLogger(__name__)

__all__ = ["CONTRASTIVE_ARTEFACTS", "CONTRASTIVE_RESUME_HARMLESS", "labelled_two_view_transform",
           "make_accelerator", "run_labelled_pretraining", "start_contrastive_run"]

LOSSES_FILE = "train_losses.json"
#: What a labelled pre-training run writes into ``--output_dir`` (another run's copies are refused).
CONTRASTIVE_ARTEFACTS = ("checkpoints", "encoder.safetensors", "encoder_config.json", LOSSES_FILE)
#: Flags that may change on resume (output, logging, save cadence, dataset cache).
CONTRASTIVE_RESUME_HARMLESS = frozenset({"output_dir", "resume_from_checkpoint", "overwrite_output_dir", "report_to",
                                         "logging_steps", "checkpointing_steps", "save_total_limit", "cache_dir"})
_UNCHECKED: Any = object()


def labelled_two_view_transform(hierarchy: Hierarchy, two_views: Callable, image_column: str = "image"
                                ) -> Callable[[dict[str, list[Any]]], dict[str, Any]]:
    """Batch transform: rows → ``view1``/``view2`` ``(B, 3, H, W)``, ``labels``/``label_mask`` ``(B, N)``."""
    def transform(batch: dict[str, list[Any]]) -> dict[str, Any]:
        pairs = [two_views(load_rgb(img)) for img in batch[image_column]]
        labels, mask = label_arrays(batch, hierarchy)
        return {"view1": torch.stack([p[0] for p in pairs]), "view2": torch.stack([p[1] for p in pairs]),
                "labels": torch.from_numpy(labels), "label_mask": torch.from_numpy(mask)}
    return transform


def make_accelerator(args: ContrastiveArguments) -> Accelerator:
    """The run's ``Accelerator`` (reads ``accelerate launch``'s settings, ``ACCELERATE_USE_CPU`` too)."""
    # A-HMLC's per-head attention gets no gradient in a batch where its head has no usable label
    ddp = DistributedDataParallelKwargs(find_unused_parameters=args.method == "a_hmlc")
    return Accelerator(kwargs_handlers=[ddp], log_with=resolve_tracker(args.report_to), project_dir=args.output_dir)


def start_contrastive_run(accelerator: Accelerator, args: ContrastiveArguments) -> Path | None:
    """Claim ``--output_dir`` and check a resume's settings (:func:`~benthicnet_hf.training.run_dir.start_run`);
    returns the checkpoint to resume (None: fresh; ``latest`` with none yet starts fresh)."""
    return start_run(accelerator, args, CONTRASTIVE_ARTEFACTS, ("checkpoints",), CONTRASTIVE_RESUME_HARMLESS,
                     missing_ok=True)


def run_labelled_pretraining(dataset: Any, hierarchy: Hierarchy, args: ContrastiveArguments,
                             accelerator: Accelerator | None = None, resume: Path | None = _UNCHECKED
                             ) -> tuple[Path, list[float]]:
    """Train ``args.method`` on ``dataset`` and export its encoder; returns (weights path, step losses).

    ``accelerator``: default :func:`make_accelerator`. ``resume``: the checkpoint returned by
    :func:`start_contrastive_run` when the caller already ran it; by default it is run here.
    The step losses (reduced over processes) of the whole run, resumed parts included, are also
    written to ``train_losses.json``.
    """
    from ..ssl.augment import TwoViewTransform
    from ..ssl.data import ResumableShardSampler
    from ..ssl.export import export_encoder

    accelerator = accelerator or make_accelerator(args)
    if resume is _UNCHECKED:
        resume = start_contrastive_run(accelerator, args)
    rank, world = accelerator.process_index, accelerator.num_processes
    torch.manual_seed(args.seed)  # the same initial weights on every process
    model = build_contrastive_method(args.method, args.encoder, hierarchy, heads=args.heads,
                                     image_size=args.image_size, temperature=args.temperature, proj_dim=args.proj_dim,
                                     gmm_fit=args.gmm_fit)
    model = convert_sync_batchnorm(model, world, args.sync_bn, accelerator.device)  # before the optimizer and prepare
    two_views = TwoViewTransform(args.image_size, scale=tuple(args.crop_scale))
    data = dataset.with_transform(labelled_two_view_transform(hierarchy, two_views))
    # whole batches only (G-HMLC gathers equal shapes from every process); a set smaller than one
    # global batch trains on one smaller batch per epoch rather than not at all
    batch_size = min(args.batch_size, len(data) // world) or args.batch_size
    if batch_size < args.batch_size:
        logger.warning("%d training rows are fewer than one global batch (%d x %d): batches of %d per process",
                       len(data), world, args.batch_size, batch_size)
    sampler = ResumableShardSampler(len(data), batch_size, rank=rank, world_size=world, seed=args.seed)
    total = args.max_steps if args.max_steps is not None else args.epochs * sampler.batches_per_epoch
    opt = torch.optim.AdamW(model.parameters(), lr=args.learning_rate, weight_decay=args.weight_decay)
    model, opt = accelerator.prepare(model, opt)
    state = TrainingState()  # position, and the step losses in ``history``
    if resume is not None:
        accelerator.load_state(str(resume))  # weights, optimiser, RNG states (the augmentations draw from them)
        state.load_state_dict(read_process_state(resume, rank))
    init_trackers(accelerator, "benthicnet_contrastive", args)
    step_log = StepLogger(accelerator, progress_bar(accelerator, total, state.completed_steps, desc=args.method),
                          args.logging_steps, last_step=total)

    def loader_for(epoch: int, batches_done: int) -> DataLoader:
        sampler.set_epoch(epoch, batches_done)
        return DataLoader(data, batch_size=batch_size, sampler=sampler, drop_last=True,
                          generator=torch.Generator().manual_seed(args.seed + epoch))  # keeps the global RNG untouched

    def empty(epoch: int) -> str:
        return f"epoch {epoch}: {args.train_data!r} yielded no batch of {batch_size} on process {rank}"

    model.train()
    for batch in resumable_batches(state, total, loader_for, empty):
        batch = {k: v.to(accelerator.device, non_blocking=True) for k, v in batch.items()}
        loss = model(batch["view1"], batch["view2"], batch["labels"], batch["label_mask"])
        opt.zero_grad()
        accelerator.backward(loss)
        opt.step()
        state.completed_steps += 1
        state.batches_done += 1
        state.history.append({"step": state.completed_steps,
                              "loss": float(accelerator.reduce(loss.detach(), reduction="mean"))})
        step_log.step(state.completed_steps, loss)
        if args.checkpointing_steps and state.completed_steps % args.checkpointing_steps == 0:
            save_checkpoint(accelerator, args.output_dir, state.completed_steps, args.save_total_limit,
                            args_snapshot(args), process_state=state.state_dict())
    step_log.progress.close()
    accelerator.wait_for_everyone()
    losses = [h["loss"] for h in state.history]

    def export() -> Path:
        unwrapped = accelerator.unwrap_model(model)
        weights = export_encoder(unwrapped.encoder, args.output_dir, architecture=args.encoder,
                                 image_size=args.image_size, mean=two_views.mean, std=two_views.std, method=args.method,
                                 extra={"hierarchical_contrastive_heads": unwrapped.head_names,
                                        "global_batch_size": batch_size * world, "num_processes": world,
                                        "global_step": state.completed_steps})
        (Path(args.output_dir) / LOSSES_FILE).write_text(json.dumps(losses))
        return weights

    weights = run_on_main(accelerator, f"exporting the encoder to {args.output_dir}", export)
    accelerator.end_training()
    return weights or Path(args.output_dir) / "encoder.safetensors", losses
