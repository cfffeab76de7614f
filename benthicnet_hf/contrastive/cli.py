"""Command line of the labelled (hierarchical contrastive) pre-training methods.

``train_scripts/pretrain.py --method himulcon|hicone|himulcone|g_hmlc|a_hmlc`` hands its
arguments here (options: :class:`.args.ContrastiveArguments`)::

    python train_scripts/pretrain.py --method g_hmlc --train_data demo/labels.csv \
        --encoder resnet50 --image_size 224 --batch_size 64 --epochs 100 --heads substrate relief \
        --output_dir runs/ghmlc_rn50 --checkpointing_steps 1000

``--train_data`` is a label table (BenthicNet columns) or image folder with metadata, read with
:func:`benthicnet_hf.data.build_dataset`; the ``train`` split is used. Writes
``encoder.safetensors`` + ``encoder_config.json`` like the SSL methods, ``train_losses.json`` (the
loss of every step, a resumed run's included) and resumable ``checkpoints/step_00000000``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from .args import ContrastiveArguments, build_arg_parser, parse_contrastive_args
from .method import CONTRASTIVE_METHODS

__all__ = ["ContrastiveArguments", "build_arg_parser", "is_labelled_method", "main"]


def is_labelled_method(argv: Sequence[str]) -> bool:
    """True when ``argv`` selects one of :data:`CONTRASTIVE_METHODS` with ``--method``."""
    for i, arg in enumerate(argv):
        value = argv[i + 1] if arg == "--method" and i + 1 < len(argv) else (
            arg.split("=", 1)[1] if arg.startswith("--method=") else None)
        if value is not None:
            return value.lower().replace("-", "_") in CONTRASTIVE_METHODS
    return False


def main(argv: Sequence[str] | None = None) -> Path:
    """Parse ``argv``, build the ``train`` split and run :func:`.train.run_labelled_pretraining`."""
    from ..data import build_dataset
    from ..hierarchy import Hierarchy
    from .train import make_accelerator, run_labelled_pretraining, start_contrastive_run

    args = parse_contrastive_args(argv)
    hierarchy = Hierarchy.from_json(args.hierarchy) if args.hierarchy else Hierarchy.catami()
    accelerator = make_accelerator(args)
    resume = start_contrastive_run(accelerator, args)  # before any data is read
    with accelerator.main_process_first():  # one process builds the Arrow cache, the others reuse it
        splits = build_dataset(args.train_data, image_root=args.image_root, hierarchy=hierarchy,
                               cache_dir=args.cache_dir)
    if "train" not in splits:
        raise SystemExit(f"{args.train_data}: no 'train' split (found {sorted(splits)})")
    weights, _ = run_labelled_pretraining(splits["train"], hierarchy, args, accelerator, resume)
    return weights
