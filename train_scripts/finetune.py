"""Fine-tune a BenthicNet hierarchical multi-label classifier (run with ``accelerate launch``).

Examples::

    accelerate launch train_scripts/finetune.py --demo --output_dir runs/demo --encoder resnet18 \
        --image_size 64 --num_train_epochs 3 --per_device_train_batch_size 32
    accelerate launch train_scripts/finetune.py --table labels.csv --image_root images/ \
        --encoder resnet50 --encoder_checkpoint ssl_run/ --linear_probe --output_dir runs/probe
    accelerate launch train_scripts/finetune.py ... --resume_from_checkpoint latest

All options: ``python train_scripts/finetune.py --help`` (defaults are the reference recipe).
"""

from __future__ import annotations

import sys

from benthicnet_hf.training import parse_args, run_finetune
from benthicnet_hf.training.publish import PushError


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        run_finetune(args)
    except PushError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
