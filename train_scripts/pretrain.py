"""Self-supervised pre-training of a timm encoder on unlabelled seafloor images.

    accelerate launch train_scripts/pretrain.py --train_data demo/images --method barlow_twins \
        --encoder resnet50 --image_size 224 --batch_size 64 --epochs 100 --mixed_precision bf16 \
        --output_dir runs/bt_rn50 --checkpointing_steps 1000

Writes ``encoder.safetensors`` (timm keys) + ``encoder_config.json`` in ``--output_dir`` and, with
``--checkpointing_steps``, resumable ``checkpoints/step_00000000`` (``--resume_from_checkpoint latest``).
The loops live in ``benthicnet_hf.ssl.trainer`` and ``benthicnet_hf.contrastive.train`` (options:
``benthicnet_hf.ssl.args.PretrainArguments``, ``benthicnet_hf.contrastive.args.ContrastiveArguments``).
"""

from __future__ import annotations

import logging
import sys

from benthicnet_hf.hub import HubOfflineError
from benthicnet_hf.contrastive.cli import is_labelled_method, main as run_labelled_pretraining
from benthicnet_hf.ssl.args import parse_pretrain_args
from benthicnet_hf.ssl.trainer import run_pretraining


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    argv = sys.argv[1:] if argv is None else argv
    if is_labelled_method(argv):  # hierarchical contrastive methods (HMLC family) need labels
        path = run_labelled_pretraining(argv)
    else:
        try:
            path = run_pretraining(parse_pretrain_args(argv))
        except HubOfflineError as err:  # raised on the main process only, after everything is saved
            sys.exit(f"error: {err}")
    print(f"encoder written to {path}")


if __name__ == "__main__":
    main(sys.argv[1:])
