"""Import self-supervised encoder checkpoints into timm encoders: explicit key maps, strict loading.

Sources: timm state dicts, torchvision ResNet-50 and ViT-B/16 state dicts, possibly wrapped Lightning /
solo-learn style (``{"state_dict": {"backbone.conv1.weight": ...}}``) and read safely by
:mod:`benthicnet_hf.checkpoint_io`. Every torchvision key is renamed by an explicit rule (never by
position); a key no rule names is reported, and with ``strict=True`` any missing, unexpected or
mis-shaped key is an error that lists them all.

Usage::

    encoder = timm.create_model("resnet50", pretrained=False, num_classes=0)
    report = load_encoder_weights(encoder, "benthicnet_bt_rn50_e400.ckpt")   # picks "backbone." keys
    report.converted_from  # "torchvision_resnet"
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch

from .checkpoint_io import (
    _classifier_prefixes,
    read_checkpoint_metadata,
    read_checkpoint_tensors,
    save_encoder_safetensors,
    unwrap_state_dict,
)

logger = logging.getLogger(__name__)

CheckpointFormat = Literal["timm", "torchvision_resnet", "torchvision_vit"]

#: Prefixes an encoder may sit under in a training checkpoint, in order of preference when several fit
#: equally well: solo-learn keeps the online encoder under ``backbone.`` and an EMA copy under
#: ``momentum_backbone.`` (last, so it is only chosen when asked for or when it is all there is).
ENCODER_PREFIXES: tuple[str, ...] = ("backbone.", "encoder.", "model.", "module.", "momentum_backbone.")
#: Wrapper prefixes stripped when *every* key carries them (DistributedDataParallel, torch.compile).
_WHOLE_DICT_PREFIXES: tuple[str, ...] = ("module.", "_orig_mod.")

_BN = r"(weight|bias|running_mean|running_var|num_batches_tracked)"
_WB = r"(weight|bias)"

#: torchvision ``resnet*`` -> timm ``resnet*``. timm's ResNet keeps torchvision's names, so each rule maps a
#: name to itself; the table still documents (and checks) every key a torchvision ResNet may have.
TORCHVISION_RESNET_KEY_MAP: tuple[tuple[str, str], ...] = (
    (r"conv1\.weight", r"conv1.weight"),
    (rf"bn1\.{_BN}", r"bn1.\1"),
    (r"layer([1-4])\.(\d+)\.conv([1-3])\.weight", r"layer\1.\2.conv\3.weight"),
    (rf"layer([1-4])\.(\d+)\.bn([1-3])\.{_BN}", r"layer\1.\2.bn\3.\4"),
    (r"layer([1-4])\.(\d+)\.downsample\.0\.weight", r"layer\1.\2.downsample.0.weight"),
    (rf"layer([1-4])\.(\d+)\.downsample\.1\.{_BN}", r"layer\1.\2.downsample.1.\3"),
    (rf"fc\.{_WB}", r"fc.\1"),
)

_TV_LAYER = r"encoder\.layers\.encoder_layer_(\d+)\."
#: torchvision ``VisionTransformer`` (``vit_b_16`` ...) -> timm ``VisionTransformer``. Shapes agree key by
#: key: ``in_proj_*`` packs q, k, v in the order timm's ``qkv`` splits them.
TORCHVISION_VIT_KEY_MAP: tuple[tuple[str, str], ...] = (
    (r"class_token", r"cls_token"),
    (rf"conv_proj\.{_WB}", r"patch_embed.proj.\1"),
    (r"encoder\.pos_embedding", r"pos_embed"),
    (rf"{_TV_LAYER}ln_1\.{_WB}", r"blocks.\1.norm1.\2"),
    (rf"{_TV_LAYER}self_attention\.in_proj_{_WB}", r"blocks.\1.attn.qkv.\2"),
    (rf"{_TV_LAYER}self_attention\.out_proj\.{_WB}", r"blocks.\1.attn.proj.\2"),
    (rf"{_TV_LAYER}ln_2\.{_WB}", r"blocks.\1.norm2.\2"),
    (rf"{_TV_LAYER}mlp\.(?:0|linear_1)\.{_WB}", r"blocks.\1.mlp.fc1.\2"),
    (rf"{_TV_LAYER}mlp\.(?:3|linear_2)\.{_WB}", r"blocks.\1.mlp.fc2.\2"),
    (rf"encoder\.ln\.{_WB}", r"norm.\1"),
    (rf"heads\.head\.{_WB}", r"head.\1"),
)

_COMPILED: dict[str, list[tuple[re.Pattern[str], str]]] = {
    "torchvision_resnet": [(re.compile(p), t) for p, t in TORCHVISION_RESNET_KEY_MAP],
    "torchvision_vit": [(re.compile(p), t) for p, t in TORCHVISION_VIT_KEY_MAP],
}


class CheckpointMismatchError(ValueError):
    """The checkpoint does not fit the model: lists the missing, unexpected and mis-shaped keys."""


@dataclass
class LoadReport:
    """What :func:`load_encoder_weights` did.

    ``missing``: model keys the checkpoint did not fill; ``unexpected``: checkpoint keys (after
    conversion) the model has no place for; ``mismatched``: ``(key, checkpoint shape, model shape)``;
    ``ignored``: classifier keys dropped because of ``ignore_classifier``; ``converted_from``: the
    detected source format; ``prefix``: the key prefix the encoder was taken from.
    """

    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    converted_from: str = "timm"
    prefix: str = ""
    loaded: int = 0
    ignored: list[str] = field(default_factory=list)
    mismatched: list[tuple[str, tuple[int, ...], tuple[int, ...]]] = field(default_factory=list)
    source: str = ""

    @property
    def ok(self) -> bool:
        return not (self.missing or self.unexpected or self.mismatched)

    def describe(self) -> str:
        lines = [
            f"{self.source or 'state dict'} ({self.converted_from}, prefix {self.prefix!r}): "
            f"{self.loaded} tensors loaded, {len(self.ignored)} classifier keys ignored"
        ]
        if self.missing:
            lines.append(f"missing from the checkpoint ({len(self.missing)}): {self.missing}")
        if self.unexpected:
            lines.append(f"unexpected in the checkpoint ({len(self.unexpected)}): {self.unexpected}")
        for key, got, want in self.mismatched:
            lines.append(f"shape mismatch for {key!r}: checkpoint {list(got)} vs model {list(want)}")
        return "\n".join(lines)


def _is_torchvision_resnet(keys: Sequence[str]) -> bool:
    rules = _COMPILED["torchvision_resnet"]
    return (
        "conv1.weight" in keys
        and "layer1.0.conv1.weight" in keys
        and all(any(p.fullmatch(k) for p, _ in rules) for k in keys)
    )


def detect_checkpoint_format(state_dict: Mapping[str, torch.Tensor]) -> CheckpointFormat:
    """``"torchvision_vit"``, ``"torchvision_resnet"`` or ``"timm"`` from the key names of an unprefixed dict.

    timm ResNets share torchvision's key names; such a dict is reported as ``"torchvision_resnet"`` and
    converted by an identity map, which gives the same result.
    """
    keys = list(state_dict)
    if "class_token" in state_dict or "conv_proj.weight" in state_dict or any(
        k.startswith("encoder.layers.encoder_layer_") for k in keys
    ):
        return "torchvision_vit"
    if _is_torchvision_resnet(keys):
        return "torchvision_resnet"
    return "timm"


def _apply_key_map(
    state_dict: Mapping[str, torch.Tensor], fmt: str, *, keep_unknown: bool
) -> dict[str, torch.Tensor]:
    """Rename every key by the first rule of ``fmt`` that matches it in full."""
    rules = _COMPILED[fmt]
    out: dict[str, torch.Tensor] = {}
    unknown: list[str] = []
    for key, value in state_dict.items():
        new = next((p.fullmatch(key).expand(t) for p, t in rules if p.fullmatch(key)), None)
        if new is None:
            unknown.append(key)
            new = key
        if new in out:
            raise CheckpointMismatchError(f"{fmt}: two checkpoint keys map to {new!r} (the second is {key!r})")
        out[new] = value
    if unknown and not keep_unknown:
        raise CheckpointMismatchError(f"{fmt}: no key-map rule for {len(unknown)} keys: {unknown}")
    return out


def convert_torchvision_resnet(
    state_dict: Mapping[str, torch.Tensor], *, keep_unknown: bool = False
) -> dict[str, torch.Tensor]:
    """torchvision ``resnet50`` keys -> timm ``resnet50`` keys (tensors unchanged, shared not copied).

    Raises ``CheckpointMismatchError`` listing keys no rule names, unless ``keep_unknown`` keeps them as they are.
    """
    return _apply_key_map(state_dict, "torchvision_resnet", keep_unknown=keep_unknown)


def convert_torchvision_vit(
    state_dict: Mapping[str, torch.Tensor], *, keep_unknown: bool = False
) -> dict[str, torch.Tensor]:
    """torchvision ``vit_b_16`` keys -> timm ``vit_base_patch16_224`` keys (see ``TORCHVISION_VIT_KEY_MAP``).

    Raises ``CheckpointMismatchError`` listing keys no rule names, unless ``keep_unknown`` keeps them as they are.
    """
    return _apply_key_map(state_dict, "torchvision_vit", keep_unknown=keep_unknown)


def convert_to_timm(
    state_dict: Mapping[str, torch.Tensor], fmt: CheckpointFormat | None = None, *, keep_unknown: bool = False
) -> tuple[dict[str, torch.Tensor], CheckpointFormat]:
    """Detect (unless ``fmt`` is given) and convert to timm key names; returns ``(state_dict, format)``."""
    fmt = fmt or detect_checkpoint_format(state_dict)
    if fmt == "timm":
        return dict(state_dict), fmt
    if fmt not in _COMPILED:
        raise ValueError(f"unknown checkpoint format {fmt!r}; expected one of timm, {', '.join(_COMPILED)}")
    return _apply_key_map(state_dict, fmt, keep_unknown=keep_unknown), fmt


def _strip_prefix(state_dict: Mapping[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k[len(prefix) :]: v for k, v in state_dict.items() if k.startswith(prefix)}


def _top_level_prefixes(state_dict: Mapping[str, torch.Tensor]) -> list[str]:
    return sorted({k.split(".", 1)[0] + "." for k in state_dict if "." in k})


def _strip_whole_dict_prefixes(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    stripped = True
    while stripped:
        stripped = False
        for prefix in _WHOLE_DICT_PREFIXES:
            if state_dict and all(k.startswith(prefix) for k in state_dict):
                state_dict, stripped = _strip_prefix(state_dict, prefix), True
    return state_dict


def _select_encoder(
    state_dict: dict[str, torch.Tensor],
    model_keys: set[str],
    prefix: str | None,
    fmt_hint: CheckpointFormat | None,
) -> tuple[str, dict[str, torch.Tensor], CheckpointFormat]:
    """Choose the prefix whose converted keys cover most model keys; returns ``(prefix, converted, format)``."""
    state_dict = _strip_whole_dict_prefixes(state_dict)
    if prefix is not None:
        view = _strip_prefix(state_dict, prefix) if prefix else state_dict
        if not view:
            raise CheckpointMismatchError(
                f"no checkpoint key starts with prefix {prefix!r}; prefixes present: {_top_level_prefixes(state_dict)}"
            )
        views = [(prefix, view)]
    else:
        views = [("", state_dict)]
        present = [p for p in ENCODER_PREFIXES if any(k.startswith(p) for k in state_dict)]
        views += [(p, _strip_prefix(state_dict, p)) for p in present]
    best: tuple[int, int, str, dict[str, torch.Tensor], CheckpointFormat] | None = None
    for rank, (name, view) in enumerate(views):
        converted, fmt = convert_to_timm(view, fmt_hint if name == "" else None, keep_unknown=True)
        score = len(model_keys.intersection(converted))
        if best is None or score > best[0]:
            best = (score, rank, name, converted, fmt)
    assert best is not None
    if best[0] == 0 and prefix is None:
        raise CheckpointMismatchError(
            "no part of the checkpoint matches the model's keys. Checkpoint prefixes: "
            f"{_top_level_prefixes(state_dict)}; checkpoint keys e.g. {sorted(state_dict)[:5]}; "
            f"model keys e.g. {sorted(model_keys)[:5]}. Pass prefix=... to choose one."
        )
    return best[2], best[3], best[4]


def load_encoder_weights(
    model: torch.nn.Module,
    source: str | Path | Mapping[str, object],
    *,
    strict: bool = True,
    prefix: str | None = None,
    ignore_classifier: bool = True,
) -> LoadReport:
    """Load a checkpoint's encoder into a timm ``model``, converting torchvision keys; returns a :class:`LoadReport`.

    ``source``: a file (``.safetensors``, ``.pth``/``.pt``/``.ckpt`` read with ``weights_only=True``), a folder,
    or an in-memory (possibly wrapped) state dict. ``prefix``: the key prefix of the encoder (``"backbone."``,
    ``"momentum_backbone."``, ``""`` for none); ``None`` picks the prefix whose keys fit the model best,
    preferring the online ``backbone.``. ``ignore_classifier``: drop the checkpoint's classifier and do not
    count the model's as missing (timm's ``pretrained_cfg["classifier"]``, else ``fc``/``head``).
    With ``strict=True`` any missing or unexpected key raises :class:`CheckpointMismatchError` listing them;
    with ``strict=False`` the rest is loaded and a warning logged. Shape mismatches always raise.
    """
    metadata: dict[str, str] = {}
    if isinstance(source, Mapping):
        label = "state dict"
        tensors = unwrap_state_dict(source, where=label)
    else:
        label = str(source)
        tensors = read_checkpoint_tensors(source)
        metadata = read_checkpoint_metadata(source)
    fmt_hint = metadata.get("format")
    if fmt_hint is not None and fmt_hint not in ("timm", *_COMPILED):
        fmt_hint = None

    model_state = model.state_dict()
    on_meta = [k for k, v in model_state.items() if v.is_meta]
    if on_meta:  # copying into meta tensors is a silent no-op
        raise ValueError(
            f"{type(model).__name__} has {len(on_meta)} tensors on the meta device (e.g. {on_meta[0]!r}): "
            "materialise the model (e.g. model.to_empty(device='cpu')) before loading encoder weights"
        )
    classifier = _classifier_prefixes(model) if ignore_classifier else ()
    expected = {k for k in model_state if not k.startswith(classifier)} if classifier else set(model_state)
    chosen_prefix, converted, fmt = _select_encoder(tensors, expected, prefix, fmt_hint)  # type: ignore[arg-type]

    ignored = sorted(k for k in converted if classifier and k.startswith(classifier))
    candidate = {k: v for k, v in converted.items() if k not in ignored}
    report = LoadReport(
        missing=sorted(expected - candidate.keys()),
        unexpected=sorted(candidate.keys() - model_state.keys()),
        converted_from=fmt,
        prefix=chosen_prefix,
        ignored=ignored,
        source=label,
    )
    report.mismatched = [
        (k, tuple(v.shape), tuple(model_state[k].shape))
        for k, v in sorted(candidate.items())
        if k in model_state and v.shape != model_state[k].shape
    ]
    if report.mismatched or (strict and not report.ok):
        raise CheckpointMismatchError(
            f"checkpoint does not fit {type(model).__name__}"
            + (" (pass strict=False to load what fits)" if not report.mismatched else "")
            + ":\n"
            + report.describe()
        )
    to_load = {k: v for k, v in candidate.items() if k in model_state}
    with torch.no_grad():
        result = model.load_state_dict(to_load, strict=False)
    if result.unexpected_keys:  # cannot happen: to_load holds only model keys; guard against silent drift
        raise RuntimeError(f"load_state_dict reported unexpected keys {result.unexpected_keys}")
    report.loaded = len(to_load)
    if not report.ok:
        logger.warning("partial encoder load (strict=False):\n%s", report.describe())
    else:
        logger.info("%s", report.describe().splitlines()[0])
    return report


__all__ = [
    "CheckpointFormat",
    "CheckpointMismatchError",
    "ENCODER_PREFIXES",
    "LoadReport",
    "TORCHVISION_RESNET_KEY_MAP",
    "TORCHVISION_VIT_KEY_MAP",
    "convert_to_timm",
    "convert_torchvision_resnet",
    "convert_torchvision_vit",
    "detect_checkpoint_format",
    "load_encoder_weights",
    "read_checkpoint_tensors",
    "save_encoder_safetensors",
]
