"""Everything a user downloads, in ``OUTPUT_DIR/final``, and its upload to the Hub.

``final/`` holds the model (safetensors + config + remote-code files + image processor + custom
pipeline), the model card ``README.md`` and the widget-servable flat export in ``final/widget``
(when the model's heads can be exported exactly). It is written to a temp folder and renamed, so a
failed or interrupted save never leaves a half-written ``final/``. The upload (``--push_to_hub``)
only reads that folder: a failed push loses nothing local.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path
from typing import Any

from ..hierarchy import Hierarchy

logger = logging.getLogger(__name__)

FINAL_DIR = "final"
WIDGET_DIR = "widget"


class PushError(RuntimeError):
    """Uploading ``final/`` failed; the message names the repo and the local folder kept."""


def _export_widget(model: Any, folder: Path, card_text: str) -> Path | None:
    """The flat timm-format export, or None (with a logged reason) when it does not apply."""
    from ..widget_export import export_for_widget

    try:
        export_for_widget(model, folder, card_text=card_text)
    except ValueError as err:  # MLP heads (hidden layer) have no exact single-Linear equivalent
        logger.warning("no widget export: %s", err)
        return None
    return folder


def render_card(hierarchy: Hierarchy, args: Any, result: dict[str, Any], widget: bool) -> Any:
    """The model card (``huggingface_hub.ModelCard``) from the hub helper."""
    from ..hub import render_model_card

    training_args = {k: v for k, v in args.to_dict().items()
                     if k in ("encoder", "init_from", "encoder_checkpoint", "linear_probe", "learning_rate",
                              "weight_decay", "warmup_epochs", "num_train_epochs", "per_device_train_batch_size",
                              "gradient_accumulation_steps", "max_grad_norm", "mixed_precision", "seed",
                              "image_size", "head_hidden_dim", "head_dropout", "metric_for_best_model",
                              "init_head_bias", "lpros", "node_weights", "ensemble_size",
                              "mc_dropout_samples")}
    training_args["num_processes"] = result.get("num_processes", 1)
    training_args["best_epoch"] = result.get("best_epoch")
    return render_model_card(
        hierarchy, metrics=result.get("test", {}), training_args=training_args,
        base_model=None, datasets=[args.dataset_name] if args.dataset_name else None,
        model_id=args.hub_model_id, widget_export=widget, baseline=result.get("baseline"),
    )


def save_final(model: Any, output_dir: str | Path, args: Any, hierarchy: Hierarchy, result: dict[str, Any]) -> Path:
    """Write ``output_dir/final`` (model, processor, remote code, card, widget export); main process only."""
    final = Path(output_dir) / FINAL_DIR
    tmp = final.with_name(FINAL_DIR + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    model.save_pretrained(tmp, safe_serialization=True)  # also writes the image processor
    _export_widget(model, tmp / WIDGET_DIR, str(render_card(hierarchy, args, result, widget=True)))
    render_card(hierarchy, args, result, widget=False).save(str(tmp / "README.md"))
    old = final.with_name(FINAL_DIR + ".old")
    if final.exists():
        os.replace(final, old)
    os.replace(tmp, final)
    if old.exists():
        shutil.rmtree(old)
    return final


def push_final(output_dir: str | Path, args: Any, api: Any = None) -> str:
    """Upload ``output_dir/final`` to ``args.hub_model_id`` through the hub helper.

    Raises:
        PushError: naming the repo, the cause and the local folder that stays as it was.
    """
    from ..hub import push_folder_to_hub

    final = Path(output_dir) / FINAL_DIR
    if not (final / "config.json").is_file():
        raise PushError(f"nothing to push: {final} has no saved model")
    try:
        url = push_folder_to_hub(final, args.hub_model_id, api=api, private=args.hub_private,
                                 commit_message="Upload BenthicNet fine-tuned model")
    except Exception as err:  # any upload failure: say what is kept locally
        raise PushError(f"pushing {final} to https://huggingface.co/{args.hub_model_id} failed: "
                        f"{type(err).__name__}: {err}. The model is saved locally in {final}; "
                        "nothing was deleted.") from err
    return str(url)
