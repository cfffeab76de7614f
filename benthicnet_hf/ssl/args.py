"""Every option of self-supervised pre-training (``train_scripts/pretrain.py``), parsed with
``transformers.HfArgumentParser`` like fine-tuning's :class:`benthicnet_hf.training.FinetuneArguments`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional, Sequence

from .augment import BENTHICNET_MEAN, BENTHICNET_STD
from ..training.args import parse_dataclass_args

__all__ = ["PretrainArguments", "build_arg_parser", "parse_pretrain_args", "parse_kwarg_value"]


def _help(text: str, **extra: Any) -> dict[str, Any]:
    return {"help": text, **extra}


@dataclass
class PretrainArguments:
    """Options of ``train_scripts/pretrain.py`` for the SSL methods (see ``--help``)."""

    train_data: str = field(metadata=_help(
        "image folder (recursive), saved `datasets` folder, or Parquet file/folder/glob"))
    output_dir: str = field(metadata=_help("run folder: checkpoints/, encoder.safetensors, encoder_config.json"))
    method: str = field(default="barlow_twins", metadata=_help("simsiam | byol | barlow_twins | mocov3 | mae"))
    encoder: str = field(default="resnet50", metadata=_help("timm model name (pretrained=False)"))
    image_size: int = 224
    batch_size: int = field(default=64, metadata=_help("per process"))
    epochs: int = 100
    max_steps: Optional[int] = field(default=None, metadata=_help("overrides --epochs; required with --streaming"))
    optimizer: Optional[str] = field(default=None, metadata=_help("lars | adamw | sgd (default: the method's)"))
    learning_rate: Optional[float] = field(default=None, metadata=_help(
        "per 256 images (scaled by the global batch); default: the method's"))
    weight_decay: Optional[float] = None
    warmup_ratio: float = field(default=0.1, metadata=_help(
        "linear warm-up over this fraction of the steps, then cosine decay to 0"))
    max_grad_norm: Optional[float] = None
    crop_scale: list[float] = field(default_factory=lambda: [0.1, 1.0], metadata=_help(
        "random resized crop area range: MIN MAX"))
    mean: list[float] = field(default_factory=lambda: list(BENTHICNET_MEAN), metadata=_help("normalisation mean (R G B)"))
    std: list[float] = field(default_factory=lambda: list(BENTHICNET_STD), metadata=_help("normalisation std (R G B)"))
    image_column: str = "image"
    streaming: bool = field(default=False, metadata=_help(
        "stream Parquet shards (datasets streaming): shard order + a --shuffle_buffer shuffled every epoch, "
        "shards split over processes and over DataLoader workers (at most one worker per shard)"))
    shuffle_buffer: int = field(default=10_000, metadata=_help(
        "--streaming: rows in the shuffle buffer (mixes shards, e.g. sites); changes the run: kept on resume"))
    num_workers: int = field(default=4, metadata=_help(
        "DataLoader workers per process (with --streaming capped at the process's shard count; a streamed "
        "run resumes with the worker count it was saved with)"))
    mixed_precision: str = field(default="no", metadata=_help("no | bf16 | fp16", choices=["no", "bf16", "fp16"]))
    checkpointing_steps: Optional[int] = field(default=None, metadata=_help(
        "save a resumable checkpoint every N steps (checkpoints/step_00000000)"))
    save_total_limit: Optional[int] = field(default=None, metadata=_help(
        "step checkpoints kept (oldest deleted first; --checkpoints_total_limit is its 0.1 name)",
        aliases=["--checkpoints_total_limit"]))
    resume_from_checkpoint: Optional[str] = field(default=None, metadata=_help("PATH or 'latest'"))
    overwrite_output_dir: bool = field(default=False, metadata=_help(
        "delete an earlier run's checkpoints and export in --output_dir first"))
    report_to: str = field(default="none", metadata=_help("tensorboard | wandb | all | none"))
    logging_steps: int = 10
    seed: int = 0
    sync_bn: bool = field(default=False, metadata=_help(
        "on more than 1 process, synchronise every BatchNorm (encoder, projectors, predictors) over the "
        "global batch (training.sync_bn; CPU/gloo too); a no-op on 1 process. Changes the run: kept on resume"))
    batched_views: bool = field(default=False, metadata=_help(
        "forward both views as one batch (faster on a GPU; BatchNorm statistics then mix the two views, "
        "unlike the papers' one forward per view); two-view methods only. Changes the run: kept on resume"))
    method_kwarg: list[str] = field(default_factory=list, metadata=_help(
        "extra method argument, e.g. proj_dim=2048 (int/float parsed); repeat for several",
        action="append", metavar="KEY=VALUE"))
    push_to_hub: bool = False
    hub_model_id: Optional[str] = None
    hub_private: bool = False

    def __post_init__(self) -> None:
        # ``--method_kwarg`` is repeatable (argparse "append" of nargs="+": a list of lists)
        self.method_kwarg = [kv for item in self.method_kwarg
                             for kv in (item if isinstance(item, (list, tuple)) else [item])]
        bad = [kv for kv in self.method_kwarg if "=" not in kv]
        if bad:
            raise ValueError(f"--method_kwarg expects KEY=VALUE, got {bad}")
        for name, size in (("crop_scale", 2), ("mean", 3), ("std", 3)):
            value = [float(v) for v in getattr(self, name)]
            if len(value) != size:
                raise ValueError(f"--{name} takes {size} numbers, got {value}")
            setattr(self, name, value)

    @property
    def method_kwargs(self) -> dict[str, Any]:
        """``--method_kwarg`` pairs as keyword arguments of the method."""
        return {k: parse_kwarg_value(v) for k, v in (kv.split("=", 1) for kv in self.method_kwarg)}


def parse_kwarg_value(text: str) -> Any:
    """``"3"`` → 3, ``"0.5"`` → 0.5, ``"true"``/``"false"`` → bool, anything else as given."""
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(text.lower(), text)


DESCRIPTION = "Self-supervised pre-training of a timm encoder on unlabelled images."


def build_arg_parser() -> Any:
    """The ``HfArgumentParser`` (an ``argparse.ArgumentParser``) of :class:`PretrainArguments`."""
    from transformers import HfArgumentParser

    return HfArgumentParser(PretrainArguments, description=DESCRIPTION)


def parse_pretrain_args(argv: Optional[Sequence[str]] = None) -> PretrainArguments:
    """Parse command-line flags (``argv`` default: ``sys.argv[1:]``) into :class:`PretrainArguments`."""
    return parse_dataclass_args(PretrainArguments, argv, DESCRIPTION)
