"""Safe reading and writing of encoder checkpoints (tensors only, nothing foreign is ever executed).

Published self-supervised encoders (solo-learn / Lightning ``.ckpt``) are pickles holding, besides the
weights, ``hyper_parameters`` and callback states built from arbitrary classes. ``torch.load(...,
weights_only=True)`` refuses those globals. Instead of unpickling them for real, every refused global is
replaced by an inert :class:`Placeholder` subclass registered through ``torch.serialization.safe_globals``:
the weights-only unpickler then builds harmless placeholders (its ``REDUCE``/``NEWOBJ``/``BUILD`` only
ever call *our* stub's ``__new__``/``__init__``/``__setstate__``), so no constructor, ``__reduce__``
callable or ``__setstate__`` of the foreign code runs. Modules torch blocks outright (``os``, ``sys``,
``posix``, ``nt``) stay blocked: such a file is refused with an error.

Public API: :func:`read_checkpoint_tensors`, :func:`unwrap_state_dict`, :func:`save_encoder_safetensors`.
"""

from __future__ import annotations

import logging
import pickle
import re
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

logger = logging.getLogger(__name__)

#: Container keys a checkpoint may nest its state dict under, searched in this order.
WRAPPER_KEYS: tuple[str, ...] = ("state_dict", "model", "module")
SAFETENSORS_SUFFIXES = (".safetensors",)
#: File names looked up when ``path`` is a folder (timm / transformers Hub layouts).
FOLDER_WEIGHT_FILES = ("model.safetensors", "encoder.safetensors", "pytorch_model.bin", "open_clip_pytorch_model.bin")
_MAX_STUB_ROUNDS = 256
_REFUSED_GLOBAL = re.compile(r"GLOBAL (\S+) was not an allowed global")
# torch only lets SETITEMS/APPENDS target real dicts/lists: tells which placeholder must be dict- or list-like
_REFUSED_CONTAINER = re.compile(r"Can only (SETITEMS?|append to lists)\b.*?but got <class '([^']+)'>")


class CheckpointReadError(RuntimeError):
    """A checkpoint file could not be read safely (names the file and the reason)."""


class Placeholder:
    """Inert stand-in for a class or function a checkpoint refers to but we refuse to import.

    Calling it, ``__new__`` and ``__setstate__`` only record their arguments; nothing else runs.
    ``qualified_name`` says what the pickle asked for.
    """

    qualified_name: str = "?"

    def __new__(cls, *args: Any, **kwargs: Any) -> Placeholder:  # NEWOBJ path: cls.__new__(cls, *args)
        inst = object.__new__(cls)
        object.__setattr__(inst, "_args", args)
        return inst

    def __init__(self, *args: Any, **kwargs: Any) -> None:  # REDUCE path: cls(*args)
        object.__setattr__(self, "_args", args)

    def __setstate__(self, state: Any) -> None:  # BUILD path
        object.__setattr__(self, "_state", state)

    def __repr__(self) -> str:
        return f"<placeholder for {self.qualified_name}>"


class PlaceholderList(list):
    """Placeholder for a ``list`` subclass (the unpickler appends items to it); records state only."""

    qualified_name: str = "?"

    def __new__(cls, *args: Any, **kwargs: Any) -> PlaceholderList:
        return list.__new__(cls)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        list.__init__(self)

    def __setstate__(self, state: Any) -> None:
        self.__dict__["_state"] = state


class _PlaceholderDictFactory:
    """Placeholder for a ``dict`` subclass: builds a plain ``OrderedDict`` (the only dict type the
    unpickler both fills and BUILDs), so the items survive and no foreign code runs."""

    qualified_name: str = "?"

    def __new__(cls, *args: Any, **kwargs: Any) -> OrderedDict:  # type: ignore[misc]
        return OrderedDict()


_PLACEHOLDER_BASES: dict[str, type] = {"object": Placeholder, "dict": _PlaceholderDictFactory, "list": PlaceholderList}


def _make_placeholder(full_name: str, kind: str = "object") -> type:
    """A fresh placeholder class whose ``__module__``/``__qualname__`` mirror ``full_name``."""
    module, _, qualname = full_name.rpartition(".")
    stub = type(qualname or full_name, (_PLACEHOLDER_BASES[kind],), {"qualified_name": full_name})
    stub.__module__ = module or "builtins"
    stub.__qualname__ = qualname or full_name
    return stub


def _refused_global(err: BaseException) -> str | None:
    """The global named in torch's 'Unsupported global' message, with ``builtins.`` restored."""
    match = _REFUSED_GLOBAL.search(str(err))
    if match is None:
        return None
    name = match.group(1)
    return name if "." in name else f"builtins.{name}"


def _static_unsafe_globals(path: Path) -> list[str]:
    """Globals torch would refuse, read from the pickle without running it (zip checkpoints only)."""
    try:
        return sorted(torch.serialization.get_unsafe_globals_in_checkpoint(str(path)))
    except (ValueError, RuntimeError):  # legacy (non-zip) format: found one by one below instead
        return []


def load_torch_weights_only(path: str | Path) -> Any:
    """``torch.load(path, map_location="cpu", weights_only=True)``, with foreign globals as placeholders.

    Returns the unpickled object; every object of a refused class is a :class:`Placeholder` (a
    :class:`PlaceholderList` or a plain ``OrderedDict`` for list / dict subclasses, whose items are kept).
    Raises :class:`CheckpointReadError` when the file uses a global torch blocks outright.
    """
    path = Path(path)
    stubs: dict[str, type] = {name: _make_placeholder(name) for name in _static_unsafe_globals(path)}
    for _ in range(_MAX_STUB_ROUNDS):
        try:
            with torch.serialization.safe_globals([(stub, name) for name, stub in stubs.items()]):
                obj = torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as err:
            container = _REFUSED_CONTAINER.search(str(err))
            stub_name = container.group(2) if container else None
            if stub_name in stubs and issubclass(stubs[stub_name], Placeholder):  # still the plain kind
                kind = "list" if container.group(1).startswith("append") else "dict"
                stubs[stub_name] = _make_placeholder(stub_name, kind)
                continue
            name = _refused_global(err)
            if name is None or name in stubs:
                lines = str(err).splitlines()
                reason = next((line for line in lines if "GLOBAL" in line or "Can only" in line), str(err))
                raise CheckpointReadError(
                    f"{path}: refused by the weights-only unpickler and not replaceable by a placeholder "
                    f"(torch blocks the modules os/sys/posix/nt outright): {reason.strip()}"
                ) from err
            stubs[name] = _make_placeholder(name)
            continue
        if stubs:
            logger.info("%s: replaced %d foreign globals by placeholders: %s", path, len(stubs), sorted(stubs))
        return obj
    raise CheckpointReadError(f"{path}: more than {_MAX_STUB_ROUNDS} foreign globals; refusing to read it")


def _tensors_only(mapping: Mapping[Any, Any], where: str) -> dict[str, torch.Tensor]:
    """The ``str -> Tensor`` items of ``mapping``; anything else is dropped (logged)."""
    tensors = {k: v for k, v in mapping.items() if isinstance(k, str) and isinstance(v, torch.Tensor)}
    dropped = [str(k) for k in mapping if k not in tensors]
    if dropped:
        logger.info("%s: ignored %d non-tensor entries: %s", where, len(dropped), dropped[:10])
    return tensors


def unwrap_state_dict(obj: Any, where: str = "checkpoint") -> dict[str, torch.Tensor]:
    """Descend ``{"state_dict"|"model"|"module": ...}`` wrappers (nested) to the ``name -> Tensor`` map.

    Key prefixes (``backbone.`` ...) are kept; choosing among them is the loader's job. Raises
    ``CheckpointReadError`` naming the keys found when no tensors can be located.
    """
    path_taken = []
    while isinstance(obj, Mapping):
        wrapped = next((k for k in WRAPPER_KEYS if isinstance(obj.get(k), Mapping)), None)
        if wrapped is None:
            break
        path_taken.append(wrapped)
        obj = obj[wrapped]
    if not isinstance(obj, Mapping):
        raise CheckpointReadError(f"{where}: expected a dict of tensors, found {type(obj).__name__}")
    label = where + "".join(f"[{k!r}]" for k in path_taken)
    tensors = _tensors_only(obj, label)
    if not tensors:
        raise CheckpointReadError(
            f"{label}: no tensors found; top-level keys are {sorted(map(str, obj))[:20]} "
            f"(expected a state dict, possibly under one of {list(WRAPPER_KEYS)})"
        )
    return tensors


#: What a torch.save file starts with: a zip archive (torch >= 1.6) or a pickle (legacy format, protocol 2+).
_TORCH_MAGIC = (b"PK\x03\x04", b"\x80")
_EXPECTED_TORCH = "a torch.save checkpoint (a zip archive, as .pth/.pt/.ckpt/.bin files written by torch are)"
_EXPECTED_SAFETENSORS = "a safetensors file (an 8-byte header length, a JSON header, then the tensor data)"


def _describe_start(head: bytes) -> str:
    """What the first bytes of a file look like, for error messages."""
    if head.startswith(b"version https://git-lfs"):
        return "it is a Git LFS pointer, not the weights (run `git lfs pull` in its repository)"
    if head.startswith((b"<!DOCTYPE", b"<html", b"<HTML")):
        return "it is an HTML page (a download that saved an error or login page?)"
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        text = ""
    if text and all(c.isprintable() or c.isspace() for c in text):
        return f"it looks like a text file, starting {text[:60]!r}"
    return f"it starts with the bytes {head[:16]!r}"


def _check_file_start(path: Path, safetensors: bool) -> None:
    """Refuse an empty file, or a torch file that is neither a zip archive nor a pickle, naming what
    was expected (cheap: reads 64 bytes)."""
    size = path.stat().st_size
    expected = _EXPECTED_SAFETENSORS if safetensors else _EXPECTED_TORCH
    if size == 0:
        raise CheckpointReadError(f"{path}: the file is empty (0 bytes); expected {expected}")
    with open(path, "rb") as handle:
        head = handle.read(64)
    if not safetensors and not head.startswith(_TORCH_MAGIC):
        raise CheckpointReadError(f"{path}: not a torch checkpoint: {_describe_start(head)}; expected {expected}")


def _unreadable(path: Path, err: BaseException, safetensors: bool) -> CheckpointReadError:
    """The error for a file whose reader failed half-way (truncated download, corrupt copy)."""
    expected = _EXPECTED_SAFETENSORS if safetensors else _EXPECTED_TORCH
    with open(path, "rb") as handle:
        head = handle.read(64)
    looks = "" if head.startswith(_TORCH_MAGIC) or safetensors and head[8:9] == b"{" else f" ({_describe_start(head)})"
    return CheckpointReadError(
        f"{path}: could not be read ({type(err).__name__}: {str(err).strip()[:200] or 'no message'}); the file "
        f"({path.stat().st_size} bytes) is probably truncated or corrupt{looks}; expected {expected}"
    )


def _read_safetensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """All tensors and the metadata of a safetensors file, with clear errors for broken files."""
    _check_file_start(path, safetensors=True)
    try:
        with safe_open(str(path), framework="pt", device="cpu") as handle:
            return {key: handle.get_tensor(key) for key in handle.keys()}, dict(handle.metadata() or {})
    except (SafetensorError, OSError, ValueError) as err:
        raise _unreadable(path, err, safetensors=True) from err


def _resolve_folder(path: Path) -> Path:
    for name in FOLDER_WEIGHT_FILES:
        if (path / name).is_file():
            return path / name
    raise CheckpointReadError(f"{path}: a folder without any of {list(FOLDER_WEIGHT_FILES)}")


def read_checkpoint_metadata(path: str | Path) -> dict[str, str]:
    """The string metadata of a safetensors file (``{}`` for other formats)."""
    path = Path(path)
    if path.is_dir():
        path = _resolve_folder(path)
    if path.suffix not in SAFETENSORS_SUFFIXES:
        return {}
    _check_file_start(path, safetensors=True)
    try:
        with safe_open(str(path), framework="pt") as handle:
            return dict(handle.metadata() or {})
    except (SafetensorError, OSError, ValueError) as err:
        raise _unreadable(path, err, safetensors=True) from err


def read_checkpoint_tensors(path: str | Path) -> dict[str, torch.Tensor]:
    """All weights of a checkpoint file as ``{name: tensor}`` on the CPU, prefixes kept.

    ``.safetensors`` is read with safetensors; anything else (``.pth``, ``.pt``, ``.ckpt``, ``.bin``)
    with ``torch.load(weights_only=True)`` (see :func:`load_torch_weights_only`), then unwrapped from
    ``state_dict``/``model``/``module`` containers. A folder is searched for ``model.safetensors`` etc.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    if path.is_dir():
        path = _resolve_folder(path)
    if path.suffix in SAFETENSORS_SUFFIXES:
        tensors, _ = _read_safetensors(path)
        if not tensors:
            raise CheckpointReadError(f"{path}: the safetensors file holds no tensors")
        return tensors
    _check_file_start(path, safetensors=False)
    try:
        obj = load_torch_weights_only(path)
    except CheckpointReadError:
        raise
    except (RuntimeError, OSError, EOFError, KeyError, ValueError, pickle.UnpicklingError) as err:
        # a truncated zip ("failed finding central directory", EINVAL) or pickle (EOFError)
        raise _unreadable(path, err, safetensors=False) from err
    return unwrap_state_dict(obj, where=str(path))


def _classifier_prefixes(model: torch.nn.Module) -> tuple[str, ...]:
    """Key prefixes of the model's classifier: timm's ``pretrained_cfg["classifier"]``, else ``fc``/``head``."""
    cfg = getattr(model, "pretrained_cfg", None) or {}
    names = cfg.get("classifier")
    if not names:
        names = ("fc", "head")
    elif isinstance(names, str):
        names = (names,)
    return tuple(f"{name}." for name in names)


def save_encoder_safetensors(
    model: torch.nn.Module, path: str | Path, metadata: Mapping[str, Any] | None = None
) -> Path:
    """Write the encoder's timm-native state dict (classifier stripped) to a ``.safetensors`` file.

    The header metadata records ``format=timm`` (so loading does no conversion), the architecture and
    ``num_features``; ``metadata`` entries are added as strings. Returns the path written.
    """
    path = Path(path)
    if path.suffix not in SAFETENSORS_SUFFIXES:
        raise ValueError(f"{path}: expected a file name ending in .safetensors")
    classifier = _classifier_prefixes(model)
    tensors: dict[str, torch.Tensor] = {}
    seen_storage: set[int] = set()
    for key, value in model.state_dict().items():
        if key.startswith(classifier):
            continue
        value = value.detach().to("cpu").contiguous()
        ptr = value.untyped_storage().data_ptr()
        # safetensors refuses tensors sharing memory (tied weights): give repeats their own copy
        tensors[key] = value.clone() if ptr in seen_storage else value
        seen_storage.add(ptr)
    cfg = getattr(model, "pretrained_cfg", None) or {}
    header = {
        "format": "timm",
        "architecture": str(cfg.get("architecture", type(model).__name__)),
        "num_features": str(getattr(model, "num_features", "")),
        "classifier_stripped": ",".join(p.rstrip(".") for p in classifier),
    }
    for key, value in (metadata or {}).items():
        if not isinstance(key, str):
            raise TypeError(f"safetensors metadata keys must be strings, got {key!r}")
        header[key] = value if isinstance(value, str) else str(value)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path), metadata=header)
    return path
