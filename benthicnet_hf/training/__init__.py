"""Fine-tuning with accelerate, and the run infrastructure every training loop shares.

Fine-tuning: options (:mod:`.args`), the loop (:mod:`.loop`) and the published output
(:mod:`.publish`). Shared with self-supervised (``ssl.trainer``) and labelled contrastive
(``contrastive.train``) pre-training: crash-safe checkpoints (:mod:`.checkpointing`), output-folder
ownership and resume-settings checks (:mod:`.run_dir`), main-process-only steps
(:mod:`.main_process`), logging and progress (:mod:`.run_log`) and the resumable step iteration of
the pre-training loops (:mod:`.resumable_loop`)."""

from .args import FinetuneArguments, parse_args
from .checkpointing import TrainingState, find_checkpoint, list_checkpoints, save_checkpoint
from .loop import run_finetune

__all__ = ["FinetuneArguments", "TrainingState", "find_checkpoint", "list_checkpoints", "parse_args",
           "run_finetune", "save_checkpoint"]
