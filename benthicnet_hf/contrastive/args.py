"""Every option of labelled (hierarchical contrastive) pre-training, parsed with
``transformers.HfArgumentParser`` like the SSL and fine-tuning options."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional, Sequence

from .method import CONTRASTIVE_METHODS
from ..training.args import parse_dataclass_args

__all__ = ["ContrastiveArguments", "build_arg_parser", "parse_contrastive_args"]


def _help(text: str, **extra: Any) -> dict[str, Any]:
    return {"help": text, **extra}


@dataclass
class ContrastiveArguments:
    """Options of ``train_scripts/pretrain.py --method himulcon|hicone|himulcone|g_hmlc|a_hmlc``."""

    method: str = field(metadata=_help(f"hierarchical contrastive method: {' | '.join(sorted(CONTRASTIVE_METHODS))}"))
    train_data: str = field(metadata=_help("label table or image folder for build_dataset"))
    output_dir: str = field(metadata=_help("run folder: checkpoints/, encoder.safetensors, encoder_config.json, "
                                           "train_losses.json"))
    image_root: Optional[str] = None
    hierarchy: Optional[str] = field(default=None, metadata=_help("hierarchy JSON (default: the shipped CATAMI scheme)"))
    heads: Optional[list[str]] = field(default=None, metadata=_help(
        "tree heads to contrast on (default: all tree heads)"))
    encoder: str = "resnet50"
    image_size: int = 224
    batch_size: int = field(default=64, metadata=_help("per process"))
    epochs: int = 100
    max_steps: Optional[int] = field(default=None, metadata=_help("overrides --epochs"))
    learning_rate: float = 1e-3
    weight_decay: float = 1e-4
    temperature: float = 0.1
    proj_dim: int = 128
    gmm_fit: str = field(default="per_vector", metadata=_help(
        "g_hmlc masks: per_vector (a 1-D mixture over each embedding's entries, the paper's reading) | "
        "batch_fisher (shared masks from a mixture over dimensions, label Fisher scores)"))
    crop_scale: list[float] = field(default_factory=lambda: [0.1, 1.0], metadata=_help(
        "random resized crop area range: MIN MAX"))
    cache_dir: Optional[str] = None
    seed: int = 0
    sync_bn: bool = field(default=False, metadata=_help(
        "on more than 1 process, synchronise every BatchNorm over the global batch (training.sync_bn; "
        "CPU/gloo too); a no-op on 1 process. Changes the run: kept on resume"))
    checkpointing_steps: Optional[int] = field(default=None, metadata=_help(
        "save a resumable checkpoint every N steps (checkpoints/step_00000000)"))
    save_total_limit: Optional[int] = field(default=None, metadata=_help("step checkpoints kept (oldest deleted first)"))
    resume_from_checkpoint: Optional[str] = field(default=None, metadata=_help(
        "PATH or 'latest'; the settings must match the checkpoint's (see training.run_dir)"))
    overwrite_output_dir: bool = field(default=False, metadata=_help(
        "delete an earlier run's checkpoints and export in --output_dir first"))
    report_to: str = field(default="none", metadata=_help("tensorboard | wandb | all | none"))
    logging_steps: int = 10

    def __post_init__(self) -> None:
        self.method = self.method.lower().replace("-", "_")
        if self.method not in CONTRASTIVE_METHODS:
            raise ValueError(f"--method must be one of {sorted(CONTRASTIVE_METHODS)}, got {self.method!r}")
        if self.gmm_fit not in ("per_vector", "batch_fisher"):
            raise ValueError(f"--gmm_fit must be per_vector or batch_fisher, got {self.gmm_fit!r}")
        if len(self.crop_scale) != 2:
            raise ValueError(f"--crop_scale takes 2 numbers, got {self.crop_scale}")
        self.crop_scale = [float(v) for v in self.crop_scale]


DESCRIPTION = "Hierarchical contrastive pre-training on labelled images."


def build_arg_parser() -> Any:
    """The ``HfArgumentParser`` (an ``argparse.ArgumentParser``) of :class:`ContrastiveArguments`."""
    from transformers import HfArgumentParser

    return HfArgumentParser(ContrastiveArguments, description=DESCRIPTION)


def parse_contrastive_args(argv: Optional[Sequence[str]] = None) -> ContrastiveArguments:
    """Parse command-line flags (``argv`` default: ``sys.argv[1:]``) into :class:`ContrastiveArguments`."""
    return parse_dataclass_args(ContrastiveArguments, argv, DESCRIPTION)
