"""Self-supervised pre-training loop under ``accelerate`` (``train_scripts/pretrain.py`` is a thin CLI).

Per step: set the learning rate from ``warmup_cosine`` (a pure function of the step, so resume
needs no scheduler state), forward -> loss, backward, optimiser step, EMA update for BYOL and
MoCo v3. Checkpoints are atomic (see ``checkpointing``); the encoder is exported at the end.

The run owns its ``--output_dir`` and a resume must keep the run's settings: the rules of
:mod:`benthicnet_hf.training.run_dir`, with :data:`SSL_ARTEFACTS` and :data:`SSL_RESUME_HARMLESS`
(the settings travel in each checkpoint's ``trainer_state_<rank>.json`` under ``run_args``).
"""

from __future__ import annotations

import argparse
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

import torch
from torch.utils.data import DataLoader

from . import SINGLE_VIEW_METHODS, build_ssl_method
from .augment import BENTHICNET_MEAN, BENTHICNET_STD, SingleViewTransform, TwoViewTransform
from .checkpointing import latest_checkpoint, prune_checkpoints, read_trainer_state, save_checkpoint
from .data import ResumableShardSampler, StreamingUnlabelledImages, UnlabelledImages, collate_views, open_unlabelled_source
from .export import export_encoder
from .optim import build_optimizer, scaled_learning_rate
from .schedules import warmup_cosine
from ..training.main_process import run_on_main
from ..training.run_dir import args_snapshot, claim_output_dir, refuse_changed_settings

__all__ = ["PretrainConfig", "build_arg_parser", "run_pretraining"]

logger = logging.getLogger(__name__)

#: Folder kept in ``--output_dir`` with exactly what ``--push_to_hub`` uploads (card included).
HUB_DIR = "hub_upload"
#: What a pre-training run writes into ``--output_dir`` (another run's copies are refused).
SSL_ARTEFACTS = ("checkpoints", "encoder.safetensors", "encoder_config.json", HUB_DIR)
#: Pre-training flags that may change on resume (output, logging, save cadence, upload, speed).
SSL_RESUME_HARMLESS = frozenset({"output_dir", "resume_from_checkpoint", "overwrite_output_dir", "report_to",
                                 "logging_steps", "checkpointing_steps", "checkpoints_total_limit",
                                 "push_to_hub", "hub_model_id", "hub_private", "num_workers"})


@dataclass
class PretrainConfig:
    """Every option of ``train_scripts/pretrain.py`` (see ``build_arg_parser`` for help texts)."""

    train_data: str
    output_dir: str
    method: str = "barlow_twins"
    encoder: str = "resnet50"
    image_size: int = 224
    batch_size: int = 64
    epochs: int = 100
    max_steps: Optional[int] = None
    optimizer: Optional[str] = None
    learning_rate: Optional[float] = None
    weight_decay: Optional[float] = None
    warmup_ratio: float = 0.1
    max_grad_norm: Optional[float] = None
    crop_scale: Sequence[float] = (0.1, 1.0)
    mean: Sequence[float] = BENTHICNET_MEAN
    std: Sequence[float] = BENTHICNET_STD
    image_column: str = "image"
    streaming: bool = False
    num_workers: int = 4
    mixed_precision: str = "no"
    checkpointing_steps: Optional[int] = None
    checkpoints_total_limit: Optional[int] = None
    resume_from_checkpoint: Optional[str] = None
    overwrite_output_dir: bool = False
    report_to: str = "none"
    logging_steps: int = 10
    seed: int = 0
    method_kwargs: dict[str, Any] = field(default_factory=dict)
    push_to_hub: bool = False
    hub_model_id: Optional[str] = None
    hub_private: bool = False


def build_arg_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="Self-supervised pre-training of a timm encoder on unlabelled images.")
    p.add_argument("--train_data", required=True, help="image folder (recursive), saved `datasets` folder, or Parquet file/folder/glob")
    p.add_argument("--output_dir", required=True)
    p.add_argument("--method", default="barlow_twins", help="simsiam | byol | barlow_twins | mocov3 | mae")
    p.add_argument("--encoder", default="resnet50", help="timm model name (pretrained=False)")
    p.add_argument("--image_size", type=int, default=224)
    p.add_argument("--batch_size", type=int, default=64, help="per process")
    p.add_argument("--epochs", type=int, default=100)
    p.add_argument("--max_steps", type=int, default=None, help="overrides --epochs; required with --streaming")
    p.add_argument("--optimizer", default=None, help="lars | adamw | sgd (default: the method's)")
    p.add_argument("--learning_rate", type=float, default=None, help="per 256 images (scaled by the global batch)")
    p.add_argument("--weight_decay", type=float, default=None)
    p.add_argument("--warmup_ratio", type=float, default=0.1)
    p.add_argument("--max_grad_norm", type=float, default=None)
    p.add_argument("--crop_scale", type=float, nargs=2, default=(0.1, 1.0))
    p.add_argument("--mean", type=float, nargs=3, default=BENTHICNET_MEAN)
    p.add_argument("--std", type=float, nargs=3, default=BENTHICNET_STD)
    p.add_argument("--image_column", default="image")
    p.add_argument("--streaming", action="store_true", help="stream Parquet shards (datasets streaming)")
    p.add_argument("--num_workers", type=int, default=4)
    p.add_argument("--mixed_precision", default="no", choices=["no", "bf16", "fp16"])
    p.add_argument("--checkpointing_steps", type=int, default=None)
    p.add_argument("--checkpoints_total_limit", type=int, default=None)
    p.add_argument("--resume_from_checkpoint", default=None, help="PATH or 'latest'")
    p.add_argument("--overwrite_output_dir", action="store_true",
                   help="delete an earlier run's checkpoints and export in --output_dir first")
    p.add_argument("--report_to", default="none", help="tensorboard | wandb | all | none")
    p.add_argument("--logging_steps", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--method_kwarg", action="append", default=[], metavar="KEY=VALUE",
                   help="extra method argument, e.g. proj_dim=2048 (int/float parsed)")
    p.add_argument("--push_to_hub", action="store_true")
    p.add_argument("--hub_model_id", default=None)
    p.add_argument("--hub_private", action="store_true")
    return p


def _parse_value(text: str) -> Any:
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(text.lower(), text)


def config_from_args(argv: Optional[Sequence[str]] = None) -> PretrainConfig:
    ns = vars(build_arg_parser().parse_args(argv))
    pairs = ns.pop("method_kwarg")
    bad = [kv for kv in pairs if "=" not in kv]
    if bad:
        raise SystemExit(f"--method_kwarg expects KEY=VALUE, got {bad}")
    ns["method_kwargs"] = {k: _parse_value(v) for k, v in (kv.split("=", 1) for kv in pairs)}
    return PretrainConfig(**ns)


def _hub_functions():
    try:
        from benthicnet_hf.hub import push_folder_to_hub, render_encoder_card  # type: ignore[attr-defined]
    except ImportError as err:
        raise RuntimeError(f"--push_to_hub needs benthicnet_hf.hub (push_folder_to_hub, render_encoder_card): {err}") from err
    return push_folder_to_hub, render_encoder_card


def run_pretraining(cfg: PretrainConfig) -> Path:
    """Train, checkpoint, export; returns the exported ``encoder.safetensors`` path."""
    from accelerate import Accelerator
    from accelerate.utils import set_seed

    if cfg.push_to_hub:
        if not cfg.hub_model_id:
            raise ValueError("--push_to_hub needs --hub_model_id ORG/NAME")
        _hub_functions()  # fail before training, not after
    if cfg.streaming and cfg.max_steps is None:
        raise ValueError("--streaming needs --max_steps (a stream has no known length)")
    log_with = None if cfg.report_to in ("none", "", None) else cfg.report_to
    acc = Accelerator(mixed_precision=cfg.mixed_precision, log_with=log_with, project_dir=cfg.output_dir)
    rank, world = acc.process_index, acc.num_processes
    resume, resumed_state = _start_run(acc, cfg)

    set_seed(cfg.seed)  # identical initial weights on every process
    model = build_ssl_method(cfg.method, cfg.encoder, image_size=cfg.image_size, **cfg.method_kwargs)
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
        transform = TwoViewTransform(cfg.image_size, scale=cfg.crop_scale, mean=cfg.mean, std=cfg.std)
    items, streaming = open_unlabelled_source(cfg.train_data, streaming=cfg.streaming)
    if streaming:
        from datasets.distributed import split_dataset_by_node

        stream = split_dataset_by_node(items.shuffle(seed=cfg.seed, buffer_size=1000), rank=rank, world_size=world)
        dataset: Any = StreamingUnlabelledImages(stream, transform, image_column=cfg.image_column, seed=cfg.seed + rank)
        sampler, batches_per_epoch = None, None
        total_steps = cfg.max_steps
    else:
        dataset = UnlabelledImages(items, transform, image_column=cfg.image_column, seed=cfg.seed)
        sampler = ResumableShardSampler(len(dataset), cfg.batch_size, rank=rank, world_size=world, seed=cfg.seed)
        batches_per_epoch = sampler.batches_per_epoch
        total_steps = cfg.max_steps or cfg.epochs * batches_per_epoch
    if not total_steps or total_steps <= 0:
        raise ValueError(f"no optimisation step to take (--epochs {cfg.epochs}, --max_steps {cfg.max_steps}): "
                         "an untrained encoder would be exported")
    warmup_steps = int(round(cfg.warmup_ratio * total_steps))

    model, optimizer = acc.prepare(model, optimizer)
    unwrapped = acc.unwrap_model(model)

    global_step, epoch, batch_in_epoch = 0, 0, 0
    if resume:
        acc.load_state(str(resume))  # weights, optimiser, RNG states
        state = resumed_state
        global_step, epoch, batch_in_epoch = state["global_step"], state["epoch"], state["batch_in_epoch"]
    else:
        torch.manual_seed(cfg.seed + 1000 * rank)  # per-process randomness (e.g. MAE masks)

    if log_with:
        acc.init_trackers("benthicnet_pretrain", config={k: (v if isinstance(v, (int, float, str, bool)) else str(v))
                                                         for k, v in asdict(cfg).items()})
    from tqdm.auto import tqdm

    bar = tqdm(total=total_steps, initial=global_step, disable=not acc.is_local_main_process, desc=method)
    model.train()
    running = torch.zeros((), device=acc.device)
    momentum = None
    while global_step < total_steps:
        dataset.set_epoch(epoch)
        if sampler is not None:
            sampler.set_epoch(epoch, batch_in_epoch)
        else:
            dataset.skip = batch_in_epoch * cfg.batch_size
        loader = DataLoader(dataset, batch_size=cfg.batch_size, sampler=sampler, collate_fn=collate_views,
                            num_workers=0 if streaming else cfg.num_workers, drop_last=True,
                            generator=torch.Generator().manual_seed(cfg.seed + epoch))  # keeps the global RNG untouched
        stepped = global_step
        for batch in loader:
            cur_lr = warmup_cosine(global_step, total_steps, warmup_steps, lr)
            for g in optimizer.param_groups:
                g["lr"] = cur_lr
            if isinstance(batch, tuple):
                loss = model(*(v.to(acc.device, non_blocking=True) for v in batch))
            else:
                loss = model(batch.to(acc.device, non_blocking=True))
            acc.backward(loss)
            if cfg.max_grad_norm:
                acc.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            if hasattr(unwrapped, "update_momentum"):
                momentum = unwrapped.update_momentum(global_step, total_steps)
            global_step += 1
            batch_in_epoch += 1
            running += loss.detach().float()
            bar.update(1)
            if global_step % cfg.logging_steps == 0 or global_step == total_steps:
                n = (global_step - 1) % cfg.logging_steps + 1
                mean_loss = acc.reduce(running, reduction="mean").item() / n
                running.zero_()
                logs = {"loss": mean_loss, "lr": cur_lr, "epoch": epoch}
                if momentum is not None:
                    logs["ema_momentum"] = momentum
                bar.set_postfix(loss=f"{mean_loss:.4f}")
                acc.log(logs, step=global_step)
            if cfg.checkpointing_steps and global_step % cfg.checkpointing_steps == 0:
                save_checkpoint(acc, cfg.output_dir, global_step,
                                {"global_step": global_step, "epoch": epoch, "batch_in_epoch": batch_in_epoch,
                                 "run_args": args_snapshot(cfg)})
                if cfg.checkpoints_total_limit and acc.is_main_process:
                    prune_checkpoints(cfg.output_dir, cfg.checkpoints_total_limit)
            if global_step >= total_steps:
                break
        else:
            if global_step == stepped and batch_in_epoch == 0:  # an empty stream: never loop forever
                raise ValueError(f"epoch {epoch}: the training data {cfg.train_data!r} yielded no full batch of "
                                 f"{cfg.batch_size} on process {rank}")
            epoch, batch_in_epoch = epoch + 1, 0
    bar.close()
    acc.wait_for_everyone()

    weights = Path(cfg.output_dir) / "encoder.safetensors"

    def export() -> Path:
        return export_encoder(unwrapped.encoder, cfg.output_dir, architecture=cfg.encoder, image_size=cfg.image_size,
                              mean=cfg.mean, std=cfg.std, method=method,
                              extra={"global_step": global_step, "global_batch_size": global_batch})

    weights = run_on_main(acc, f"exporting the encoder to {cfg.output_dir}", export) or weights
    acc.end_training()
    # after the last collective: a failed upload (e.g. offline) raises once, on the main process
    # only, with the export and the upload folder saved
    if cfg.push_to_hub and acc.is_main_process:
        push_folder_to_hub, render_encoder_card = _hub_functions()
        _push_encoder(cfg, push_folder_to_hub, render_encoder_card, global_step, world)
    return weights


def _start_run(acc: Any, cfg: PretrainConfig) -> tuple[Optional[Path], Optional[dict[str, Any]]]:
    """Resolve ``--resume_from_checkpoint``, claim ``--output_dir`` (main process, errors reach every
    process) and refuse a resume with changed settings, before any weight is loaded.

    Returns ``(checkpoint, its trainer state)`` or ``(None, None)`` for a fresh run.
    """
    from ..hub import _offline as hub_offline

    resume: Optional[Path] = None
    if cfg.resume_from_checkpoint == "latest":
        resume = latest_checkpoint(cfg.output_dir)
        if resume is None:
            logger.info("no checkpoint under %s: starting from scratch", cfg.output_dir)
    elif cfg.resume_from_checkpoint:
        resume = Path(cfg.resume_from_checkpoint)
        if not resume.is_dir():
            raise FileNotFoundError(f"--resume_from_checkpoint {resume}: no such checkpoint folder")

    def claim() -> None:
        claim_output_dir(cfg.output_dir, resume, cfg.overwrite_output_dir, SSL_ARTEFACTS, ("checkpoints", HUB_DIR))
        Path(cfg.output_dir).mkdir(parents=True, exist_ok=True)

    run_on_main(acc, f"checking --output_dir {cfg.output_dir}", claim)
    if cfg.push_to_hub and hub_offline() and acc.is_main_process:
        logger.warning("HF_HUB_OFFLINE is set: --push_to_hub will fail at the end; the files to upload "
                       "will be kept in %s", Path(cfg.output_dir) / HUB_DIR)
    if resume is None:
        return None, None
    state = read_trainer_state(resume, acc.process_index)
    refuse_changed_settings(resume, state.get("run_args"), args_snapshot(cfg), SSL_RESUME_HARMLESS)
    return resume, state



def _push_encoder(cfg: PretrainConfig, push_folder_to_hub: Any, render_encoder_card: Any, steps: int,
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
