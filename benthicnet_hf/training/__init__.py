"""Fine-tuning with accelerate: options (:mod:`.args`), the loop (:mod:`.loop`), crash-safe
checkpoints (:mod:`.checkpointing`) and the published output (:mod:`.publish`)."""

from .args import FinetuneArguments, parse_args
from .checkpointing import TrainingState, find_checkpoint, list_checkpoints, save_checkpoint
from .loop import run_finetune

__all__ = ["FinetuneArguments", "TrainingState", "find_checkpoint", "list_checkpoints", "parse_args",
           "run_finetune", "save_checkpoint"]
