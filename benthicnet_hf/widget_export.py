"""Flat export for the Hub widget: backbone + stacked head weights in timm's own Hub format.

The Hub's hosted inference does not run custom code, so the widget needs a plain timm model.
What is exported, precisely:

- **Linear heads** (``head_hidden_dim=0``: ``BN(affine=False) → Dropout → Linear`` per head): each
  head's BatchNorm (eval statistics) is folded into its Linear, ``W' = W / sqrt(var + eps)``,
  ``b' = b − W' · mean``, and the heads are stacked into one ``Linear(num_features, num_nodes)``
  that becomes the timm model's own classifier (``model.get_classifier()``). Raw logits equal the
  full model's (eval mode) up to float rounding.
- **MLP heads** (``head_hidden_dim > 0``: ``BN → Linear → ReLU → Dropout → Linear``) are **not**
  exported: timm classifiers are a single Linear for most encoders (ResNet, ViT), and the MLP heads
  timm offers for some families (``head_hidden_size``) use tanh/GELU and a LayerNorm, so no exact
  equivalent exists. :class:`WidgetExportError` says so; train linear heads for a widget model.

The max-constraint is not linear either: the widget serves raw per-node sigmoid scores, which may
rank a child above its parent. The written card says so (``UNCONSTRAINED_NOTE``).

Written files, by timm's :func:`timm.models.save_for_hf`: ``config.json`` (``architecture``,
``num_classes``, ``num_features``, ``label_names``, ``model_args`` = the encoder kwargs without
``num_classes``, ``pretrained_cfg`` with the model's eval preprocessing, ``problem_type``),
``model.safetensors`` (un-prefixed timm keys); and ``README.md``. Loadable by
``timm.create_model("local-dir:PATH", pretrained=True)`` and by ``pipeline("image-classification",
model=PATH)`` (TimmWrapper, no remote code). Fine-tuning writes it to ``OUTPUT_DIR/widget``, a
repository of its own (``--hub_widget_model_id``): the widget reads a repository's root only.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import timm
import torch
from timm.models import save_for_hf
from torch import Tensor, nn

from .image_processing import eval_data_config

UNCONSTRAINED_NOTE = (
    "Scores from this export are **unconstrained**: raw per-node sigmoid scores, without the "
    "hierarchical max-constraint, so a child node may score above its parent. Load the full model "
    "with `trust_remote_code=True` for coherent scores."
)


class WidgetExportError(ValueError):
    """The model cannot be exported exactly as a plain timm classifier."""


def stacked_linear_heads(model: nn.Module) -> tuple[Tensor, Tensor]:
    """Fold each head's eval BatchNorm into its Linear and stack the heads.

    Args:
        model: a ``BenthicNetForHierarchicalClassification`` with linear heads.

    Returns:
        ``weight (num_nodes, num_features)`` and ``bias (num_nodes,)`` in float32, such that
        ``features @ weight.T + bias`` equals the model's raw logits in eval mode (divided by the
        head temperatures of a calibrated model, ``config.head_temperatures``, as the model does).
    """
    members = getattr(model.config, "ensemble_size", 1)
    if members > 1:
        raise WidgetExportError(
            f"the model is an ensemble of {members} head stacks: the mean of their coherent probabilities "
            "has no exact equivalent among timm's classifiers, so no widget export."
        )
    if model.config.head_hidden_dim != 0:
        raise WidgetExportError(
            f"the heads are MLPs (head_hidden_dim={model.config.head_hidden_dim}): BN → Linear → ReLU → "
            "Dropout → Linear has no exact equivalent among timm's classifiers, so no widget export. "
            "Train with head_hidden_dim=0 (linear heads) to export for the Hub widget."
        )
    weights, biases = [], []
    for name, head in zip(model.heads.head_names, model.heads.heads):
        norm, fc = head.norm, head.fc
        if norm.running_mean is None:
            raise WidgetExportError(f"head {name!r}: BatchNorm without running statistics cannot be folded")
        scale = (norm.running_var.double() + norm.eps).rsqrt()  # (F,)
        w = fc.weight.double() * scale  # (nodes, F)
        weights.append(w)
        biases.append(fc.bias.double() - w @ norm.running_mean.double())
    weight, bias = torch.cat(weights), torch.cat(biases)
    temperatures = getattr(model.config, "head_temperatures", None)
    if temperatures:  # calibrated: the model divides each head's logits by its temperature, a linear map too
        sizes = [len(h.nodes) for h in model.config.get_hierarchy().heads]
        per_node = torch.repeat_interleave(
            torch.tensor([float(temperatures[n]) for n in model.heads.head_names], dtype=torch.float64),
            torch.tensor(sizes))
        weight, bias = weight / per_node[:, None], bias / per_node
    return weight.float(), bias.float()


def classifier_name(timm_model: nn.Module) -> str:
    """Module path of ``timm_model.get_classifier()`` (``"fc"`` for ResNet, ``"head"`` for ViT)."""
    clf = timm_model.get_classifier()
    for name, module in timm_model.named_modules():
        if module is clf:
            return name
    raise WidgetExportError(f"{type(timm_model).__name__}: its classifier is not one of its modules")


def build_timm_classifier(model: nn.Module) -> nn.Module:
    """A plain timm model (eval mode) = the model's encoder + stacked heads as its classifier."""
    config = model.config
    n = config.num_labels
    timm_model = timm.create_model(config.encoder_name, pretrained=False, num_classes=n, **config.encoder_kwargs)
    clf = timm_model.get_classifier()
    if not isinstance(clf, nn.Linear) or clf.in_features != model.num_features:
        raise WidgetExportError(
            f"encoder {config.encoder_name!r}: its classifier is {type(clf).__name__}, expected "
            f"Linear({model.num_features}, {n}); it cannot hold the stacked heads"
        )
    name = classifier_name(timm_model)
    weight, bias = stacked_linear_heads(model)
    state = {k: v.detach().float() for k, v in model.backbone.state_dict().items()}
    state[f"{name}.weight"] = weight
    state[f"{name}.bias"] = bias
    timm_model.load_state_dict(state, strict=True)  # any key mismatch is an error, not a partial export
    return timm_model.eval()


def timm_model_config(model: nn.Module) -> dict[str, Any]:
    """The fields :func:`timm.models.save_for_hf` adds to its ``config.json`` for the widget."""
    config = model.config
    return {
        "label_names": [config.id2label[i] for i in range(config.num_labels)],
        "problem_type": "multi_label_classification",  # TimmWrapper pipeline: sigmoid, not softmax
        # our weights' tag (not timm's source checkpoint's) and the model's eval preprocessing; given
        # here rather than as data_config= (same config.json) so older timm's save_for_hf works too
        "pretrained_cfg": {"tag": "benthicnet", **eval_data_config(config)},
    }


def write_timm_folder(model: nn.Module, timm_model: nn.Module, out: Path) -> dict[str, Any]:
    """``config.json`` + ``model.safetensors`` in timm's Hub layout; returns the config written."""
    save_for_hf(timm_model, str(out), model_config=timm_model_config(model), safe_serialization=True)
    path = out / "config.json"
    hf_config = json.loads(path.read_text())
    # timm (1.0.31) records num_classes/in_chans/global_pool in model_args; TimmWrapper passes
    # num_classes itself and fails with "got multiple values for keyword argument 'num_classes'", so
    # model_args are the encoder kwargs (never num_classes; {} not null when empty), as timm's hub had them
    hf_config["model_args"] = {k: v for k, v in model.config.encoder_kwargs.items() if k != "num_classes"}
    path.write_text(json.dumps(hf_config, indent=2) + "\n")
    return hf_config


def default_card(config: dict[str, Any]) -> str:
    """A minimal model card; the package's hub module may pass a richer ``card_text``."""
    return (
        "---\nlibrary_name: timm\npipeline_tag: image-classification\ntags:\n- benthicnet\n"
        "- hierarchical-multi-label\n---\n\n"
        f"# BenthicNet widget export ({config['architecture']}, {config['num_classes']} nodes)\n\n"
        f"{UNCONSTRAINED_NOTE}\n"
    )


def export_for_widget(model: nn.Module, save_directory: str | Path, card_text: str | None = None,
                      timm_model: nn.Module | None = None) -> Path:
    """Write the flat timm export of ``model`` to ``save_directory`` (see the module docstring).

    Args:
        model: a ``BenthicNetForHierarchicalClassification`` with linear heads.
        save_directory: output folder (created).
        card_text: README.md content; must mention that scores are unconstrained. Defaults to
            :func:`default_card`.
        timm_model: the :func:`build_timm_classifier` of ``model`` when already built (e.g. to
            evaluate it first); built here otherwise.

    Returns:
        the folder.
    """
    out = Path(save_directory)
    out.mkdir(parents=True, exist_ok=True)
    config = write_timm_folder(model, build_timm_classifier(model) if timm_model is None else timm_model, out)
    text = default_card(config) if card_text is None else card_text
    if "unconstrained" not in text.lower():
        raise ValueError("the widget card must say that its scores are unconstrained (see UNCONSTRAINED_NOTE)")
    (out / "README.md").write_text(text)
    return out
