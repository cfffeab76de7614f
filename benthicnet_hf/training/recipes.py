"""Named fine-tuning recipes: the BenthicNet authors' configurations as ``--recipe NAME``.

Xu et al., "Hierarchical Multi-Label Classification with Missing Information for Benthic Habitat
Imagery" (arXiv 2409.06618). Values read from the authors' ``cfgs/`` (``DalhousieAI/benthicnet_probes``)
and their augmentation stack (``utils/utils.py``, ``get_augs`` with colour jitter on):

- optimiser: AdamW, warm-up cosine with 10 warm-up epochs, batch 128 (one-hot: 256);
- ``linear_probe`` (their ``hp``): encoder frozen, lr 3e-5, weight decay 1e-5, 100 epochs;
- ``hft_resnet50`` / ``hft_vit`` (their ``hft``): everything trained, lr 3e-8 (ResNet-50) / 3e-7
  (ViT-B, AdamW betas (0.9, 0.95)), weight decay 0, 300 epochs; ``hft`` picks one by ``--encoder``;
- ``one_hot_probe`` / ``one_hot_hft`` (their ``ohp`` / ``ohft``): a linear softmax head, batch 256,
  lr 3e-5 / 3e-6, weight decay 1e-5 / 0, 100 / 300 epochs;
- augmentation: random resized crop scale 0.1–1, horizontal flip, colour jitter 0.4 (brightness,
  contrast, saturation), AlexNet PCA lighting with alpha std 0.1.

A recipe fills defaults only: :func:`apply_recipe_defaults` sets them on the argument parser, so a
flag given on the command line wins whatever its position. The run keeps the name (``--recipe``
is saved with the other settings) and the model card lists the recipe, its values and the
settings that overrode them (:func:`recipe_summary`). A ``FinetuneArguments(recipe=...)`` built in
Python records the name only (a dataclass cannot tell a default from a given value): pass
``**RECIPES[name].values`` too, or the card lists every value that differs as overridden.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Mapping, Sequence

#: The authors' augmentation (``get_augs(colour_jitter=True)``), as ``FinetuneArguments`` fields.
AUTHORS_AUGMENTATION: Mapping[str, Any] = MappingProxyType({
    "crop_scale_min": 0.1, "vflip": 0.0, "color_jitter": 0.4, "pca_lighting": 0.1})

_HML_HEADS = {"head_hidden_dim": 2048, "head_dropout": 0.7}
_SCHEDULE = {"warmup_epochs": 10.0, "adam_beta1": 0.9, "adam_beta2": 0.999}


@dataclass(frozen=True)
class Recipe:
    """One named set of ``FinetuneArguments`` defaults.

    Attributes:
        name: the ``--recipe`` value.
        source: where the values come from (the authors' config file).
        values: field name → value.
    """

    name: str
    source: str
    values: Mapping[str, Any] = field(default_factory=dict)


RECIPES: Mapping[str, Recipe] = MappingProxyType({r.name: r for r in (
    Recipe("linear_probe", "cfgs/cnn/resnet50_hp.json (frozen encoder, HML heads)",
           {"linear_probe": True, "learning_rate": 3e-5, "weight_decay": 1e-5, "num_train_epochs": 100,
            "per_device_train_batch_size": 128, **_SCHEDULE, **_HML_HEADS, **AUTHORS_AUGMENTATION}),
    Recipe("hft_resnet50", "cfgs/cnn/resnet50_hft.json (full fine-tune, HML heads)",
           {"linear_probe": False, "learning_rate": 3e-8, "weight_decay": 0.0, "num_train_epochs": 300,
            "per_device_train_batch_size": 128, **_SCHEDULE, **_HML_HEADS, **AUTHORS_AUGMENTATION}),
    Recipe("hft_vit", "cfgs/vit/vit_b_hft.json (full fine-tune, HML heads)",
           {"linear_probe": False, "learning_rate": 3e-7, "weight_decay": 0.0, "num_train_epochs": 300,
            "per_device_train_batch_size": 128, **_SCHEDULE, "adam_beta2": 0.95, **_HML_HEADS,
            **AUTHORS_AUGMENTATION}),
    Recipe("one_hot_probe", "cfgs/cnn/resnet50_ohp.json (frozen encoder, linear softmax head)",
           {"linear_probe": True, "learning_rate": 3e-5, "weight_decay": 1e-5, "num_train_epochs": 100,
            "per_device_train_batch_size": 256, **_SCHEDULE, "head_hidden_dim": 0, "head_dropout": 0.7,
            **AUTHORS_AUGMENTATION}),
    Recipe("one_hot_hft", "cfgs/cnn/resnet50_ohft.json (full fine-tune, linear softmax head)",
           {"linear_probe": False, "learning_rate": 3e-6, "weight_decay": 0.0, "num_train_epochs": 300,
            "per_device_train_batch_size": 256, **_SCHEDULE, "head_hidden_dim": 0, "head_dropout": 0.7,
            **AUTHORS_AUGMENTATION}),
)})

#: Names that resolve to another recipe by encoder family.
ALIASES = ("hft",)
RECIPE_NAMES = tuple(RECIPES) + ALIASES


def resolve_recipe(name: str, encoder: str = "resnet50") -> Recipe:
    """The :class:`Recipe` called ``name``; ``hft`` → ``hft_vit`` for a ViT ``encoder``, else ``hft_resnet50``.

    Raises:
        ValueError: an unknown name (the message lists the known ones).
    """
    if name == "hft":
        name = "hft_vit" if encoder.lower().startswith(("vit", "deit", "eva")) else "hft_resnet50"
    if name not in RECIPES:
        raise ValueError(f"--recipe {name!r} is not a known recipe; known: {', '.join(RECIPE_NAMES)}")
    return RECIPES[name]


def _pre_parse(argv: Sequence[str]) -> tuple[str | None, str]:
    """``--recipe`` and ``--encoder`` from ``argv`` before the full parse (either ``--x v`` or ``--x=v``)."""
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--recipe", default=None)
    pre.add_argument("--encoder", default="resnet50")
    known, _ = pre.parse_known_args(list(argv))
    return known.recipe, known.encoder


def apply_recipe_defaults(parser: argparse.ArgumentParser, argv: Sequence[str]) -> Recipe | None:
    """Set the defaults of ``parser`` to the recipe ``argv`` names (``--recipe``), if any.

    Explicit flags in ``argv`` still win: argparse uses a default only for a flag not given.
    ``--recipe hft`` is resolved by ``--encoder`` here and stored under its resolved name.
    """
    name, encoder = _pre_parse(argv)
    if name is None:
        return None
    recipe = resolve_recipe(name, encoder)
    known = {action.dest for action in parser._actions}
    missing = sorted(set(recipe.values) - known)
    if missing:  # a recipe naming a field the parser lacks is a programming error: say which
        raise ValueError(f"recipe {recipe.name!r} sets {missing}, which are not options of this parser")
    parser.set_defaults(**recipe.values, recipe=recipe.name)
    return recipe


def recipe_overrides(args: Any) -> dict[str, tuple[Any, Any]]:
    """Field → ``(recipe value, value used)`` for every recipe value the run changed (``{}`` without a recipe)."""
    if not getattr(args, "recipe", None):
        return {}
    recipe = resolve_recipe(args.recipe, getattr(args, "encoder", "resnet50"))
    return {k: (v, getattr(args, k)) for k, v in recipe.values.items() if getattr(args, k) != v}


def recipe_summary(args: Any) -> str | None:
    """One line for the model card: the recipe, its source and values, and what overrode them."""
    if not getattr(args, "recipe", None):
        return None
    recipe = resolve_recipe(args.recipe, getattr(args, "encoder", "resnet50"))
    values = ", ".join(f"{k}={v}" for k, v in recipe.values.items())
    line = f"{recipe.name} (authors' {recipe.source}: {values})"
    overrides = recipe_overrides(args)
    if overrides:
        line += "; overridden: " + ", ".join(f"{k}={new} (recipe {old})" for k, (old, new) in overrides.items())
    return line
