"""Command line of the labelled (hierarchical contrastive) pre-training methods.

``train_scripts/pretrain.py --method himulcone|hicone|himulcone|g_hmlc|a_hmlc`` hands its
arguments here::

    python train_scripts/pretrain.py --method g_hmlc --train_data demo/labels.csv \
        --encoder resnet50 --image_size 224 --batch_size 64 --epochs 100 --heads substrate relief \
        --output_dir runs/ghmlc_rn50

``--train_data`` is a label table (BenthicNet columns) or image folder with metadata, read with
:func:`benthicnet_hf.data.build_dataset`; the ``train`` split is used. Writes
``encoder.safetensors`` + ``encoder_config.json`` like the SSL methods.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Sequence

from .method import CONTRASTIVE_METHODS


def is_labelled_method(argv: Sequence[str]) -> bool:
    """True when ``argv`` selects one of :data:`CONTRASTIVE_METHODS` with ``--method``."""
    for i, arg in enumerate(argv):
        value = argv[i + 1] if arg == "--method" and i + 1 < len(argv) else (
            arg.split("=", 1)[1] if arg.startswith("--method=") else None)
        if value is not None:
            return value.lower().replace("-", "_") in CONTRASTIVE_METHODS
    return False


def build_arg_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="Hierarchical contrastive pre-training on labelled images.")
    p.add_argument("--method", required=True, choices=sorted(CONTRASTIVE_METHODS))
    p.add_argument("--train_data", required=True, help="label table or image folder for build_dataset")
    p.add_argument("--image_root", default=None)
    p.add_argument("--hierarchy", default=None, help="hierarchy JSON (default: the shipped CATAMI scheme)")
    p.add_argument("--heads", nargs="*", default=None, help="tree heads to contrast on (default: all tree heads)")
    p.add_argument("--output_dir", required=True)
    p.add_argument("--encoder", default="resnet50")
    p.add_argument("--image_size", type=int, default=224)
    p.add_argument("--batch_size", type=int, default=64)
    p.add_argument("--epochs", type=int, default=100)
    p.add_argument("--max_steps", type=int, default=None)
    p.add_argument("--learning_rate", type=float, default=1e-3)
    p.add_argument("--weight_decay", type=float, default=1e-4)
    p.add_argument("--temperature", type=float, default=0.1)
    p.add_argument("--proj_dim", type=int, default=128)
    p.add_argument("--cache_dir", default=None)
    p.add_argument("--seed", type=int, default=0)
    return p


def main(argv: Sequence[str] | None = None) -> Path:
    from ..data import build_dataset
    from ..hierarchy import Hierarchy
    from .train import make_accelerator, run_labelled_pretraining

    args = build_arg_parser().parse_args(argv)
    hierarchy = Hierarchy.from_json(args.hierarchy) if args.hierarchy else Hierarchy.catami()
    accelerator = make_accelerator(args.method)
    with accelerator.main_process_first():  # one process builds the Arrow cache, the others reuse it
        splits = build_dataset(args.train_data, image_root=args.image_root, hierarchy=hierarchy,
                               cache_dir=args.cache_dir)
    if "train" not in splits:
        raise SystemExit(f"{args.train_data}: no 'train' split (found {sorted(splits)})")
    weights, losses = run_labelled_pretraining(
        splits["train"], hierarchy, args.output_dir, method=args.method, encoder=args.encoder,
        image_size=args.image_size, batch_size=args.batch_size, epochs=args.epochs, max_steps=args.max_steps,
        learning_rate=args.learning_rate, weight_decay=args.weight_decay, heads=args.heads, seed=args.seed,
        method_kwargs={"temperature": args.temperature, "proj_dim": args.proj_dim}, accelerator=accelerator,
    )
    if accelerator.is_main_process:
        (Path(args.output_dir) / "train_losses.json").write_text(json.dumps(losses))
    return weights
