"""Model cards and Hub publishing.

- :func:`render_model_card`: the card of a fine-tuned BenthicNet model (or of its flat widget
  export), from ``benthicnet_hf/model_cards/benthicnet_model_card.md``, with ``model-index`` metadata built from
  the evaluation metrics.
- :func:`render_encoder_card`: the card of a self-supervised encoder export.
- :func:`push_folder_to_hub`: create the repo if needed and upload a saved folder.

Templates are package data (``benthicnet_hf/model_cards/``), read with ``importlib.resources`` so
that a wheel install finds them too.
"""

from __future__ import annotations

import math
import os
from importlib import resources
from pathlib import Path
from typing import Any, Mapping, Sequence

from huggingface_hub import EvalResult, HfApi, ModelCard, ModelCardData

from .hierarchy import Hierarchy

#: Package-data folder of the card templates.
TEMPLATES = "model_cards"
LIBRARY_NAME = "transformers"
TAGS = ["image-classification", "hierarchical-multi-label", "benthic", "seafloor", "catami",
        "benthicnet", "partial-labels"]
# Metrics put into model-index (scope "overall"); the full table goes into the card body.
CARD_METRICS = ("ap_micro", "ap_macro", "hml_ap", "f1_micro", "ap_micro_thresholded")


class HubOfflineError(RuntimeError):
    """A push was asked for while ``HF_HUB_OFFLINE`` is set; nothing was uploaded or changed."""


def _template(name: str) -> str:
    """The text of the card template ``name`` from the installed package."""
    path = resources.files(__package__).joinpath(TEMPLATES, name)
    if not path.is_file():
        raise FileNotFoundError(f"model card template {name} is missing from the installed package "
                                f"({path}); reinstall benthicnet_hf")
    return path.read_text(encoding="utf-8")


def _hierarchy_rows(hierarchy: Hierarchy) -> str:
    rows = []
    for i, head in enumerate(hierarchy.heads):
        s = hierarchy.head_slice(i)
        rows.append(f"| {head.name} | {head.kind} | {len(head.nodes)} | {int(head.depth.max())} | "
                    f"{int(hierarchy.is_leaf[s].sum())} |")
    return "\n".join(rows)


def _eval_results(metrics: Mapping[str, float], model_id: str, datasets: Sequence[str]) -> list[EvalResult]:
    dataset = datasets[0] if datasets else "benthicnet"
    results = []
    for name in CARD_METRICS:
        value = metrics.get(f"overall/{name}")
        if value is None or (isinstance(value, float) and math.isnan(value)):
            continue
        results.append(EvalResult(
            task_type="image-classification", task_name="Hierarchical multi-label classification",
            dataset_type=dataset, dataset_name=dataset, dataset_split="test",
            metric_type=name, metric_name=name.replace("_", " "), metric_value=round(float(value), 4),
        ))
    return results


def _not_evaluable_note(metrics: Mapping[str, float]) -> str:
    """A sentence naming the heads whose metrics are NaN because the split has no known negative
    (or no known positive) bit for them ("" when every head is evaluable)."""
    heads = sorted(k.split("/")[0] for k, v in metrics.items() if k.endswith("/not_evaluable") and v)
    if not heads:
        return ""
    return (f"\n\nNot evaluable on this split (no known negative or no known positive bit, so every "
            f"metric is NaN and left out of `overall`): {', '.join(heads)}.")


def _figures_section(plots: Mapping[str, str] | None) -> str:
    """Markdown images of ``{caption: relative path}`` ("" without plots)."""
    lines = []
    for caption, link in (plots or {}).items():
        if Path(link).is_absolute() or ".." in Path(link).parts:
            raise ValueError(f"a card links its figures relative to itself, got {link!r}")
        lines.append(f"![{caption}]({Path(link).as_posix()})\n\n*{caption}.*")
    return "\n\n".join(lines)


def _calibration_section(report: Mapping[str, Any] | None) -> str:
    """Temperatures, thresholds and ECE/Brier before → after ("" without a report)."""
    if not report:
        return ""
    parts = []
    temps = report.get("temperatures")
    if temps:
        parts.append("One temperature per head, fitted on the validation split by minimising the masked NLL "
                     "(`config.head_temperatures`; the model divides each head's logits by it, coherence "
                     "is kept): " + ", ".join(f"{h} {t:.3f}" for h, t in temps.items()) + ".")
    thr = report.get("thresholds")
    if thr:
        kept = thr.get("few_positives", 0) + thr.get("no_negatives", 0) + thr.get("target_not_reached", 0)
        parts.append(f"Per-node decision thresholds ({thr['mode']}, validation split; `config.node_thresholds`, "
                     f"used by `predict` and `predict_paths_for_config`): {thr.get('tuned', 0)} nodes tuned, "
                     f"{kept} keep {thr['default']} (too few known validation positives or no negative"
                     f"{', or the target precision not reached' if thr.get('target_not_reached') else ''}).")
    rows = []
    for split in ("validation", "test"):
        figures = report.get(split) or {}
        before, after = figures.get("before") or {}, figures.get("after") or {}
        for name in ("ece", "brier"):
            b, a = before.get(f"overall/{name}"), after.get(f"overall/{name}")
            if b is not None and a is not None:
                rows.append(f"| {split} | {name.upper() if name == 'ece' else 'Brier'} | {b:.4f} | {a:.4f} |")
    if rows:
        parts.append("Over all known bits (ECE: 15 equal-width bins):\n\n| split | metric | before | after |\n"
                     "|---|---|---:|---:|\n" + "\n".join(rows))
    f1 = (report.get("test") or {}).get("f1_micro")
    if f1:
        parts.append("Test micro F1 per head at the default threshold → at the tuned thresholds: " + ", ".join(
            f"{h} {v['default']:.3f} → {v['tuned']:.3f}" for h, v in f1.items()
            if not (math.isnan(v["default"]) or math.isnan(v["tuned"]))) + ".")
    return "\n\n".join(parts)


def _settings_table(settings: Mapping[str, Any]) -> str:
    return "\n".join(f"| {k} | `{v}` |" for k, v in settings.items()) or "| (not recorded) | |"


def render_model_card(
    hierarchy: Hierarchy,
    *,
    metrics: Mapping[str, float] | None = None,
    training_args: Mapping[str, Any] | None = None,
    base_model: str | None = None,
    datasets: Sequence[str] | str | None = None,
    model_id: str | None = None,
    widget_export: bool = False,
    baseline: Mapping[str, float] | None = None,
    plots: Mapping[str, str] | None = None,
    calibration: Mapping[str, Any] | None = None,
) -> ModelCard:
    """The card of a fine-tuned model (``widget_export=True``: of its flat timm export).

    Args:
        hierarchy: the model's label hierarchy (summarised in the card).
        metrics: ``compute_metrics`` output; ``overall/*`` headline figures become ``model-index``
            ``eval_results``, the whole set a table in the body.
        training_args: settings to list (learning rate, epochs, ...).
        base_model: Hub id of the encoder the model was fine-tuned from.
        datasets: Hub dataset id(s).
        model_id: ``org/name`` of the model repo (title and usage snippets).
        baseline: the label-prior baseline's metrics on the same split, shown in brackets.
        plots: ``{caption: relative path}`` of PNG files saved next to the card
            (:func:`benthicnet_hf.plots.write_plots`), embedded as images (relative links: the Hub
            renders a repository's own files; absolute or ``..`` paths are refused).
        calibration: the fine-tuning's calibration report (temperatures, threshold tuning, ECE and
            Brier before/after), shown as a section.
    """
    from .metrics import format_metrics_table  # deferred: keeps `import benthicnet_hf.hub` light

    datasets = [datasets] if isinstance(datasets, str) else list(datasets or [])
    name = model_id or "benthicnet-hml-model"
    eval_results = _eval_results(metrics, name, datasets) if metrics else None
    card_data = ModelCardData(
        library_name="timm" if widget_export else LIBRARY_NAME,
        pipeline_tag="image-classification",
        tags=TAGS + (["widget-export"] if widget_export else []),
        datasets=datasets or None,
        base_model=base_model,
        license="apache-2.0",
        model_name=name,
        eval_results=eval_results,
    )
    if widget_export:
        summary = ("Flat export of a BenthicNet hierarchical multi-label model: the encoder and the "
                   "stacked head layers in timm's Hub format, servable by the hosted widget and by "
                   "`pipeline(\"image-classification\")` without remote code.")
        coherence = ("**This export returns unconstrained raw per-node sigmoids**: the "
                     "max-constraint is not linear and is not part of it, so a child node may "
                     "score above its parent here. Use the full model for coherent scores.")
        usage = (f"```python\nfrom transformers import pipeline\n\npipe = pipeline(\"image-classification\", "
                 f"model=\"{name}\")\npipe(\"seafloor.jpg\", top_k=None)  # raw sigmoids, not coherent\n```")
    else:
        summary = ("A hierarchical multi-label (HML) classifier of seafloor imagery: an image encoder "
                   "with one MLP head per label hierarchy, trained with partial labels (masked loss) "
                   "and a max-constraint that makes the probabilities coherent with the hierarchy.")
        coherence = "Without remote code the scores are not guaranteed coherent."
        usage = (f"```python\nfrom transformers import pipeline\n\npipe = pipeline(\"image-classification\", "
                 f"model=\"{name}\", trust_remote_code=True)\npipe(\"seafloor.jpg\", "
                 f"top_k={hierarchy.num_nodes})\n```\n\nor, for many images, "
                 f"`benthicnet-hf predict --model {name} IMAGES_FOLDER --output predictions.csv`.")
    training = ("| setting | value |\n|---------|-------|\n" + _settings_table(training_args or {}))
    if base_model:
        training = f"Fine-tuned from `{base_model}`.\n\n" + training
    evaluation = "No evaluation recorded."
    if metrics:
        evaluation = ("Dataset-level figures on the test split, over known (unmasked) bits only "
                      "(`benthicnet_hf.metrics.compute_metrics`):\n\n```\n"
                      + format_metrics_table(metrics, baseline, headline_only=True) + "\n```"
                      + _not_evaluable_note(metrics))
    return ModelCard.from_template(
        card_data, template_str=_template("benthicnet_model_card.md"),
        model_name=name, summary=summary, num_heads=len(hierarchy.heads),
        num_nodes=hierarchy.num_nodes, hierarchy_rows=_hierarchy_rows(hierarchy), usage=usage,
        training=training, evaluation=evaluation, coherence_note=coherence,
        calibration=_calibration_section(calibration), figures=_figures_section(plots),
    )


def render_encoder_card(
    *,
    method: str,
    backbone: str,
    data: str = "Unlabelled BenthicNet seafloor images.",
    settings: Mapping[str, Any] | None = None,
    model_id: str | None = None,
    datasets: Sequence[str] | str | None = None,
) -> ModelCard:
    """The card of a self-supervised encoder export (method, backbone, data, settings)."""
    datasets = [datasets] if isinstance(datasets, str) else list(datasets or [])
    name = model_id or f"benthicnet-{method}-{backbone}".lower()
    card_data = ModelCardData(
        library_name="timm", pipeline_tag="image-feature-extraction", license="apache-2.0",
        tags=["self-supervised", method.lower(), "benthic", "seafloor", "benthicnet", "feature-extraction"],
        datasets=datasets or None, model_name=name,
    )
    rows = {"method": method, "backbone": backbone, **dict(settings or {})}
    usage = (f"```python\nimport timm\n\nencoder = timm.create_model(\"hf-hub:{name}\", pretrained=True, "
             "num_classes=0)\n```")
    return ModelCard.from_template(
        card_data, template_str=_template("encoder_card.md"), model_name=name,
        settings_rows=_settings_table(rows), data=data, usage=usage,
    )


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}


def push_folder_to_hub(
    folder: str | Path,
    repo_id: str,
    *,
    api: HfApi | None = None,
    token: str | None = None,
    private: bool = False,
    commit_message: str = "Upload BenthicNet model",
) -> str:
    """Create ``repo_id`` if needed and upload ``folder``; returns the commit URL.

    Fails fast, before any network call and without touching ``folder``, when ``HF_HUB_OFFLINE``
    is set or the folder is missing/empty.
    """
    folder = Path(folder)
    if not folder.is_dir() or not any(folder.iterdir()):
        raise FileNotFoundError(f"cannot push {folder}: not a folder or empty (save the model first)")
    if "/" not in repo_id:
        raise ValueError(f"hub model id {repo_id!r} must look like 'org/name'")
    if api is None and _offline():
        raise HubOfflineError(
            f"HF_HUB_OFFLINE is set: not pushing {folder} to {repo_id}. The saved files are intact "
            f"in {folder.resolve()}; to publish them, unset HF_HUB_OFFLINE and run "
            f"`hf upload {repo_id} {folder.resolve()} .`"
        )
    api = api or HfApi(token=token)
    api.create_repo(repo_id, exist_ok=True, private=private, repo_type="model", token=token)
    info = api.upload_folder(folder_path=str(folder), repo_id=repo_id, repo_type="model",
                             commit_message=commit_message, token=token)
    return str(getattr(info, "commit_url", info))
