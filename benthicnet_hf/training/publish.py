"""Everything a user downloads, in ``OUTPUT_DIR/final`` and ``OUTPUT_DIR/widget``, and their upload.

``final/`` holds the model (safetensors + config + remote-code files + image processor + custom
pipeline) and its card ``README.md``. ``widget/`` holds the widget-servable flat export (when the
model's heads can be exported exactly) with its own card, as a repository of its own: the Hub's
widget and ``pipeline(model="ORG/NAME")`` read a repository's root, never a subfolder, so it is
pushed to ``--hub_widget_model_id``. The widget card's metrics are the export's own: its raw,
unconstrained per-node sigmoid scores on the test split, evaluated with the same masked metrics
(they differ from the full model's coherent scores, usually for the worse).

Both folders are written to a temp folder and renamed, so a failed or interrupted save never leaves
a half-written one. Cards name no local path: ``--encoder_checkpoint``/``--init_from`` appear as the
Hub id they were downloaded from (also the card's ``base_model``) or as a bare file name. The upload
(``--push_to_hub``) only reads those folders: a failed push loses nothing local.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np

from ..hierarchy import Hierarchy
from .recipes import recipe_summary

logger = logging.getLogger(__name__)

FINAL_DIR = "final"
WIDGET_DIR = "widget"
#: Settings listed in the cards.
CARD_SETTINGS = ("encoder", "init_from", "encoder_checkpoint", "linear_probe", "learning_rate", "weight_decay",
                 "warmup_epochs", "num_train_epochs", "per_device_train_batch_size", "gradient_accumulation_steps",
                 "max_grad_norm", "mixed_precision", "seed", "image_size", "head_hidden_dim", "head_dropout",
                 "metric_for_best_model", "init_head_bias", "lpros", "node_weights", "ensemble_size",
                 "mc_dropout_samples", "one_hot_task", "crop_scale_min", "vflip", "color_jitter", "pca_lighting")
# a file of the Hugging Face cache: .../models--ORG--NAME/snapshots/<revision>/...
_HF_CACHE = re.compile(r"(?:^|/)models--(?P<org>[^/]+?)--(?P<name>[^/]+)/snapshots/")


class PushError(RuntimeError):
    """Uploading ``final/`` (or ``widget/``) failed; the message names the repo and the local folder kept."""


def checkpoint_hub_id(path: str | None) -> str | None:
    """The Hub model id a checkpoint path was downloaded from (a file or folder in the Hugging Face
    cache, ``models--ORG--NAME/snapshots/...``); None when unknown (a local training output)."""
    if not path:
        return None
    match = _HF_CACHE.search(Path(path).expanduser().absolute().as_posix())
    return f"{match['org']}/{match['name']}" if match else None


def card_value(name: str, value: Any) -> Any:
    """A setting as the card shows it: checkpoint paths become their Hub id or a bare file name, so
    that no local path reaches a card."""
    if name in ("init_from", "encoder_checkpoint") and value:
        return checkpoint_hub_id(value) or f"local {Path(value).name}"
    return value


def base_model_of(args: Any) -> str | None:
    """``base_model`` of the cards: the Hub id of ``--init_from`` or ``--encoder_checkpoint`` when known."""
    return checkpoint_hub_id(getattr(args, "init_from", None)) or checkpoint_hub_id(
        getattr(args, "encoder_checkpoint", None))


def render_card(hierarchy: Hierarchy, args: Any, result: dict[str, Any], widget: bool,
                metrics: dict[str, float] | None = None) -> Any:
    """The model card (``huggingface_hub.ModelCard``) from the hub helper.

    Args:
        metrics: the metrics to show; default ``result["test"]`` (the full model's).
    """
    from ..hub import render_model_card

    training_args = {k: card_value(k, v) for k, v in args.to_dict().items() if k in CARD_SETTINGS}
    training_args["recipe"] = recipe_summary(args) or "none (the settings above)"
    training_args["num_processes"] = result.get("num_processes", 1)
    training_args["best_epoch"] = result.get("best_epoch")
    model_id = args.hub_widget_model_id if widget else args.hub_model_id
    return render_model_card(
        hierarchy, metrics=result.get("test", {}) if metrics is None else metrics, training_args=training_args,
        base_model=base_model_of(args), datasets=[args.dataset_name] if args.dataset_name else None,
        model_id=model_id, widget_export=widget, baseline=result.get("baseline"),
        plots=None if widget else result.get("plots"), calibration=None if widget else result.get("calibration"),
    )


def widget_scores(timm_model: Any, batches: Iterable[dict[str, Any]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The widget export's own outputs on a split: raw per-node sigmoids (no max-constraint).

    Args:
        timm_model: the flat timm classifier (:func:`~benthicnet_hf.widget_export.build_timm_classifier`).
        batches: dicts with ``pixel_values`` ``(B, 3, H, W)``, ``labels`` and ``label_mask`` ``(B, N)``.

    Returns:
        ``probs`` float32, ``targets`` and ``mask`` uint8, each ``(rows, N)``.
    """
    import torch

    probs, targets, masks = [], [], []
    timm_model.eval()
    with torch.no_grad():
        for batch in batches:
            probs.append(torch.sigmoid(timm_model(batch["pixel_values"].float())).numpy())
            targets.append(batch["labels"].numpy().astype(np.uint8))
            masks.append(batch["label_mask"].numpy().astype(np.uint8))
    if not probs:
        raise ValueError("the evaluation split has no rows")
    return np.concatenate(probs), np.concatenate(targets), np.concatenate(masks)


def _replace_folder(folder: Path, write: Callable[[Path], Any]) -> Any:
    """``write(tmp)`` then swap ``tmp`` in for ``folder`` (a kill mid-write keeps the old folder)."""
    tmp = folder.with_name(folder.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    written = write(tmp)
    if written is None:  # nothing to save: leave no folder behind
        if tmp.exists():
            shutil.rmtree(tmp)
        return None
    old = folder.with_name(folder.name + ".old")
    if folder.exists():
        os.replace(folder, old)
    os.replace(tmp, folder)
    if old.exists():
        shutil.rmtree(old)
    return written


def save_widget(model: Any, output_dir: str | Path, args: Any, hierarchy: Hierarchy, result: dict[str, Any],
                eval_loader: Iterable[dict[str, Any]] | None = None) -> Path | None:
    """Write ``output_dir/widget`` (flat timm export + its card); None, with a logged reason, when the
    heads have no exact flat equivalent. With ``eval_loader`` (the test split, eval transform) the
    card's metrics are the export's own, else it has none."""
    from ..metrics import compute_metrics
    from ..widget_export import WidgetExportError, build_timm_classifier, export_for_widget

    try:
        timm_model = build_timm_classifier(model)
    except WidgetExportError as err:  # MLP heads, ensembles: no exact single-Linear equivalent
        logger.warning("no widget export: %s", err)
        return None
    metrics: dict[str, float] = {}
    if eval_loader is not None:
        try:
            probs, targets, mask = widget_scores(timm_model, eval_loader)
        except ValueError as err:
            logger.warning("widget export not evaluated: %s", err)
        else:
            metrics = compute_metrics(probs, targets, mask, hierarchy, threshold=args.threshold)
            logger.info("widget export (raw sigmoids) on %d test rows: overall/hml_ap %.4f", len(probs),
                        metrics.get("overall/hml_ap", float("nan")))
    card = render_card(hierarchy, args, result, widget=True, metrics=metrics)
    full = f"[{args.hub_model_id}](https://huggingface.co/{args.hub_model_id})" if args.hub_model_id else "the full model"
    card.text += (f"\n\n## Which scores these metrics describe\n\nThe figures above are this export's own: its raw, "
                  f"unconstrained per-node sigmoid scores on the test split, not those of {full} (coherent "
                  "scores, usually better).\n" if metrics else
                  "\n\nThis export was not evaluated on its own scores; see the full model's card.\n")

    def write(tmp: Path) -> Path:
        return export_for_widget(model, tmp, card_text=str(card), timm_model=timm_model)

    return _replace_folder(Path(output_dir) / WIDGET_DIR, write)


def save_final(model: Any, output_dir: str | Path, args: Any, hierarchy: Hierarchy, result: dict[str, Any],
               eval_loader: Iterable[dict[str, Any]] | None = None) -> Path:
    """Write ``output_dir/final`` (model, processor, remote code, card) and ``output_dir/widget``
    (:func:`save_widget`, evaluated on ``eval_loader``); main process only."""
    from .run_log import quiet_saves

    def write(tmp: Path) -> Path:
        with quiet_saves():
            model.save_pretrained(tmp, safe_serialization=True)  # also writes the image processor
        render_card(hierarchy, args, result, widget=False).save(str(tmp / "README.md"))
        for link in (result.get("plots") or {}).values():  # the card links them relative to itself
            (tmp / link).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(Path(output_dir) / link, tmp / link)
        return tmp

    final = Path(output_dir) / FINAL_DIR
    _replace_folder(final, write)
    save_widget(model, output_dir, args, hierarchy, result, eval_loader)
    return final


def _push(folder: Path, repo_id: str, args: Any, api: Any, message: str) -> str:
    from ..hub import push_folder_to_hub

    try:
        return str(push_folder_to_hub(folder, repo_id, api=api, private=args.hub_private, commit_message=message))
    except Exception as err:  # any upload failure: say what is kept locally
        raise PushError(f"pushing {folder} to https://huggingface.co/{repo_id} failed: "
                        f"{type(err).__name__}: {err}. The files are saved locally in {folder}; "
                        "nothing was deleted.") from err


def push_final(output_dir: str | Path, args: Any, api: Any = None) -> str:
    """Upload ``output_dir/final`` to ``args.hub_model_id`` and, with ``args.hub_widget_model_id``,
    ``output_dir/widget`` to that repository. Returns the model's commit URL.

    Raises:
        PushError: naming the repo, the cause and the local folder that stays as it was; also when
            a widget repository is named but no widget export exists.
    """
    final = Path(output_dir) / FINAL_DIR
    if not (final / "config.json").is_file():
        raise PushError(f"nothing to push: {final} has no saved model")
    url = _push(final, args.hub_model_id, args, api, "Upload BenthicNet fine-tuned model")
    widget_id = getattr(args, "hub_widget_model_id", None)
    if widget_id:
        widget = Path(output_dir) / WIDGET_DIR
        if not (widget / "config.json").is_file():
            raise PushError(f"--hub_widget_model_id {widget_id}: no widget export in {widget} (the heads have no "
                            "exact flat equivalent, e.g. head_hidden_dim > 0: see the training log)")
        _push(widget, widget_id, args, api, "Upload BenthicNet widget export (raw per-node sigmoids)")
    return url
