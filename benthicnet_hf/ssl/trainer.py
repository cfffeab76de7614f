"""Self-supervised pre-training loop under ``accelerate`` (``train_scripts/pretrain.py`` is a thin CLI).

Per step: forward -> loss, backward, optimiser step, learning-rate scheduler step, EMA update for
BYOL and MoCo v3. Everything around the step is the shared run infrastructure of
:mod:`benthicnet_hf.training`: options as an ``HfArgumentParser`` dataclass (:mod:`.args`), the
output-folder and resume-settings rules (:func:`~benthicnet_hf.training.run_dir.start_run` with
:data:`SSL_ARTEFACTS` and :data:`SSL_RESUME_HARMLESS`), atomic ``checkpoints/step_00000000`` folders
(:mod:`benthicnet_hf.training.checkpointing`, each process's position in
``trainer_state_<rank>.json`` since a streamed shard may end at another step on each process), and
logging (:mod:`benthicnet_hf.training.run_log`). The encoder is exported at the end.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Iterable, Optional, Sequence

import torch
from torch.utils.data import DataLoader

from . import SINGLE_VIEW_METHODS, build_ssl_method
from .args import PretrainArguments, build_arg_parser, parse_pretrain_args
from .augment import SingleViewTransform, TwoViewTransform
from .data import (ResumableShardSampler, StreamingUnlabelledImages, UnlabelledImages, collate_views,
                   open_unlabelled_source, shuffled_stream, stream_batches, stream_workers)
from .export import export_encoder
from .optim import build_optimizer, scaled_learning_rate
from .schedules import warmup_cosine_scheduler
from ..training.checkpointing import TrainingState, read_process_state, save_checkpoint
from ..training.main_process import run_on_main
from ..training.resumable_loop import resumable_batches
from ..training.run_dir import args_snapshot, start_run
from ..training.run_log import StepLogger, init_trackers, progress_bar, resolve_tracker
from ..training.sync_bn import convert_sync_batchnorm

__all__ = ["PretrainArguments", "PretrainConfig", "build_arg_parser", "config_from_args", "run_pretraining"]

logger = logging.getLogger(__name__)

#: Deprecated 0.1 name of :class:`PretrainArguments`.
PretrainConfig = PretrainArguments

#: Folder kept in ``--output_dir`` with exactly what ``--push_to_hub`` uploads (card included).
HUB_DIR = "hub_upload"
#: What a pre-training run writes into ``--output_dir`` (another run's copies are refused).
SSL_ARTEFACTS = ("checkpoints", "encoder.safetensors", "encoder_config.json", HUB_DIR)
#: Pre-training flags that may change on resume (output, logging, save cadence, upload, speed).
SSL_RESUME_HARMLESS = frozenset({"output_dir", "resume_from_checkpoint", "overwrite_output_dir", "report_to",
                                 "logging_steps", "checkpointing_steps", "save_total_limit",
                                 "push_to_hub", "hub_model_id", "hub_private", "num_workers"})


def config_from_args(argv: Optional[Sequence[str]] = None) -> PretrainArguments:
    """Parse the command line of ``train_scripts/pretrain.py`` (0.1 name of :func:`.args.parse_pretrain_args`)."""
    return parse_pretrain_args(argv)


def _hub_functions():
    try:
        from benthicnet_hf.hub import push_folder_to_hub, render_encoder_card  # type: ignore[attr-defined]
    except ImportError as err:
        raise RuntimeError(f"--push_to_hub needs benthicnet_hf.hub (push_folder_to_hub, render_encoder_card): {err}") from err
    return push_folder_to_hub, render_encoder_card


def run_pretraining(cfg: PretrainArguments) -> Path:
    """Train, checkpoint, export; returns the exported ``encoder.safetensors`` path."""
    from accelerate import Accelerator
    from accelerate.utils import set_seed

    from ..hub import _offline as hub_offline

    if cfg.push_to_hub:
        if not cfg.hub_model_id:
            raise ValueError("--push_to_hub needs --hub_model_id ORG/NAME")
        _hub_functions()  # fail before training, not after
    if cfg.streaming and cfg.max_steps is None:
        raise ValueError("--streaming needs --max_steps (a stream has no known length)")
    acc = Accelerator(mixed_precision=cfg.mixed_precision, log_with=resolve_tracker(cfg.report_to),
                      project_dir=cfg.output_dir)
    rank, world = acc.process_index, acc.num_processes
    resume = start_run(acc, cfg, SSL_ARTEFACTS, ("checkpoints", HUB_DIR), SSL_RESUME_HARMLESS, missing_ok=True)
    if cfg.push_to_hub and hub_offline() and acc.is_main_process:
        logger.warning("HF_HUB_OFFLINE is set: --push_to_hub will fail at the end; the files to upload "
                       "will be kept in %s", Path(cfg.output_dir) / HUB_DIR)

    set_seed(cfg.seed)  # identical initial weights on every process
    model = build_ssl_method(cfg.method, cfg.encoder, image_size=cfg.image_size, batched_views=cfg.batched_views,
                             **cfg.method_kwargs)
    model = convert_sync_batchnorm(model, world, cfg.sync_bn, acc.device)  # before the optimizer and prepare
    method = cfg.method.lower().replace("-", "_")
    recipe = dict(type(model).default_optimizer)
    opt_name = cfg.optimizer or recipe["name"]
    global_batch = cfg.batch_size * world
    lr = scaled_learning_rate(cfg.learning_rate if cfg.learning_rate is not None else recipe["lr"], global_batch)
    wd = cfg.weight_decay if cfg.weight_decay is not None else recipe["weight_decay"]
    optimizer = build_optimizer(model, opt_name, lr, wd, betas=recipe.get("betas"))

    if method in SINGLE_VIEW_METHODS:
        transform: Any = SingleViewTransform(cfg.image_size, scale=(max(0.2, cfg.crop_scale[0]), cfg.crop_scale[1]),
                                             mean=cfg.mean, std=cfg.std)
    else:
        transform = TwoViewTransform(cfg.image_size, scale=tuple(cfg.crop_scale), mean=cfg.mean, std=cfg.std)
    items, streaming = open_unlabelled_source(cfg.train_data, streaming=cfg.streaming)
    if streaming:
        stream = shuffled_stream(items, seed=cfg.seed, buffer_size=cfg.shuffle_buffer, rank=rank, world_size=world)
        dataset: Any = StreamingUnlabelledImages(stream, transform, image_column=cfg.image_column, seed=cfg.seed + rank)
        workers = stream_workers(stream, cfg.num_workers)
        sampler = None
        total_steps = cfg.max_steps
    else:
        dataset = UnlabelledImages(items, transform, image_column=cfg.image_column, seed=cfg.seed)
        sampler = ResumableShardSampler(len(dataset), cfg.batch_size, rank=rank, world_size=world, seed=cfg.seed)
        workers = cfg.num_workers
        total_steps = cfg.max_steps or cfg.epochs * sampler.batches_per_epoch
    if not total_steps or total_steps <= 0:
        raise ValueError(f"no optimisation step to take (--epochs {cfg.epochs}, --max_steps {cfg.max_steps}): "
                         "an untrained encoder would be exported")

    model, optimizer = acc.prepare(model, optimizer)
    # not prepared: accelerate would step it once per process; registered, so it is checkpointed
    scheduler = warmup_cosine_scheduler(optimizer, total_steps, int(round(cfg.warmup_ratio * total_steps)))
    acc.register_for_checkpointing(scheduler)
    unwrapped = acc.unwrap_model(model)

    state = TrainingState()  # this process's position: epoch, batches_done (in it), completed_steps
    if resume is not None:
        acc.load_state(str(resume))  # weights, optimiser, scheduler, RNG states
        saved = read_process_state(resume, rank)
        saved_workers = saved.pop("stream_workers", 0)  # a stream's batch order depends on its worker count
        if streaming and saved_workers != workers:
            logger.warning("resuming a stream written with %d DataLoader worker(s): using %d, not %d, so that "
                           "the batch order is the uninterrupted run's", saved_workers, saved_workers, workers)
            workers = saved_workers
        state.load_state_dict(saved)
    else:
        torch.manual_seed(cfg.seed + 1000 * rank)  # per-process randomness (e.g. MAE masks)

    init_trackers(acc, "benthicnet_pretrain", cfg)
    step_log = StepLogger(acc, progress_bar(acc, total_steps, state.completed_steps, desc=method),
                          cfg.logging_steps, prefix="", last_step=total_steps)
    model.train()
    momentum = None

    pin = acc.device.type == "cuda"

    def loader_for(epoch: int, batches_done: int) -> Iterable[Any]:
        dataset.set_epoch(epoch)
        generator = torch.Generator().manual_seed(cfg.seed + epoch)  # keeps the global RNG untouched
        if sampler is None:  # stream: workers read disjoint shards; resumes in the same batch order
            return stream_batches(dataset, cfg.batch_size, workers, skip_batches=batches_done, generator=generator,
                                  pin_memory=pin)
        sampler.set_epoch(epoch, batches_done)
        return DataLoader(dataset, batch_size=cfg.batch_size, sampler=sampler, collate_fn=collate_views,
                          num_workers=cfg.num_workers, drop_last=True, generator=generator, pin_memory=pin)

    def empty(epoch: int) -> str:
        return (f"epoch {epoch}: the training data {cfg.train_data!r} yielded no full batch of {cfg.batch_size} "
                f"on process {rank}")

    for batch in resumable_batches(state, total_steps, loader_for, empty):
        cur_lr = scheduler.get_last_lr()[0]
        if isinstance(batch, tuple):
            loss = model(*(v.to(acc.device, non_blocking=True) for v in batch))
        else:
            loss = model(batch.to(acc.device, non_blocking=True))
        acc.backward(loss)
        if cfg.max_grad_norm:
            acc.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        if hasattr(unwrapped, "update_momentum"):
            momentum = unwrapped.update_momentum(state.completed_steps, total_steps)
        state.completed_steps += 1
        state.batches_done += 1
        extra = {"lr": cur_lr, "epoch": state.epoch}
        if momentum is not None:
            extra["ema_momentum"] = momentum
        step_log.step(state.completed_steps, loss, **extra)
        if cfg.checkpointing_steps and state.completed_steps % cfg.checkpointing_steps == 0:
            save_checkpoint(acc, cfg.output_dir, state.completed_steps, cfg.save_total_limit, args_snapshot(cfg),
                            process_state={**state.state_dict(), **({"stream_workers": workers} if streaming else {})})
    step_log.progress.close()
    acc.wait_for_everyone()

    weights = Path(cfg.output_dir) / "encoder.safetensors"

    def export() -> Path:
        return export_encoder(unwrapped.encoder, cfg.output_dir, architecture=cfg.encoder, image_size=cfg.image_size,
                              mean=cfg.mean, std=cfg.std, method=method,
                              extra={"global_step": state.completed_steps, "global_batch_size": global_batch})

    weights = run_on_main(acc, f"exporting the encoder to {cfg.output_dir}", export) or weights
    acc.end_training()
    # after the last collective: a failed upload (e.g. offline) raises once, on the main process
    # only, with the export and the upload folder saved
    if cfg.push_to_hub and acc.is_main_process:
        push_folder_to_hub, render_encoder_card = _hub_functions()
        _push_encoder(cfg, push_folder_to_hub, render_encoder_card, state.completed_steps, world)
    return weights


def _push_encoder(cfg: PretrainArguments, push_folder_to_hub: Any, render_encoder_card: Any, steps: int,
                  world: int) -> None:
    """Upload the encoder export in timm's Hub layout (``config.json`` + ``model.safetensors``, so
    ``timm.create_model("hf-hub:ORG/NAME", pretrained=True, num_classes=0)`` works) plus
    ``encoder_config.json`` and the card; checkpoints stay local. The folder uploaded is kept as
    ``OUTPUT_DIR/hub_upload``, so a failed push can be redone by hand (``hf upload``)."""
    import shutil

    from .export import write_timm_hub_folder

    folder = Path(cfg.output_dir) / HUB_DIR
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir()
    write_timm_hub_folder(Path(cfg.output_dir), folder)
    settings = {"image size": cfg.image_size, "steps": steps, "global batch": cfg.batch_size * world,
                "mean": list(cfg.mean), "std": list(cfg.std), "crop scale": list(cfg.crop_scale)}
    card = render_encoder_card(method=cfg.method, backbone=cfg.encoder, settings=settings, model_id=cfg.hub_model_id)
    (folder / "README.md").write_text(str(card))
    push_folder_to_hub(folder, cfg.hub_model_id, private=cfg.hub_private,
                       commit_message=f"{cfg.method} pre-trained {cfg.encoder} encoder")
