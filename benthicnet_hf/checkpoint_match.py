"""Does a saved checkpoint match a config? Head shapes (per head, ensemble members) and the
hierarchy fingerprint, checked when ``from_pretrained`` loads a BenthicNet model, so a config
whose hierarchy differs from the weights' is refused with what differs instead of loading with
newly initialised or unused heads.

Remote-code safe: imports only installed packages and relative siblings.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .configuration_benthicnet import BenthicNetConfig
from .hierarchy import fingerprint_difference


def check_loaded_heads(folder: str | Path, config: BenthicNetConfig, info: dict[str, Any],
                       ignore_mismatched_sizes: bool = False, **where: Any) -> None:
    """Raise ``ValueError`` when a load left head weights unused or newly initialised (``info`` of
    ``from_pretrained(output_loading_info=True)``), or when ``config``'s hierarchy differs from the
    ``hierarchy_fingerprint`` of ``folder``'s ``config.json`` (a ``config=`` or ``hierarchy=`` given
    at load time)."""
    if not ignore_mismatched_sizes:
        head_keys = sorted(k for k in [*info.get("unexpected_keys", ()), *info.get("missing_keys", ())]
                           if k.startswith("heads."))
        if head_keys:
            detail = head_shape_mismatch(folder, config)
            raise ValueError(detail or f"the checkpoint's head weights do not match the config: {head_keys[:10]}")
    saved = _saved_fingerprint(folder, **where)
    diff = None if saved is None else fingerprint_difference(saved, config.get_hierarchy().fingerprint())
    if diff:
        raise ValueError(f"the config's hierarchy is not the one {folder} was saved with ({diff}): the head "
                         "outputs would be read as the wrong labels; load without config=/hierarchy= overrides")


def _saved_fingerprint(folder: str | Path, **where: Any) -> dict[str, Any] | None:
    """``hierarchy_fingerprint`` of ``folder``'s ``config.json`` (local or cached; ``where``: the
    ``subfolder``/``revision``/``cache_dir`` of the load), None if absent."""
    import json

    from transformers.utils import cached_file

    try:
        path = cached_file(str(folder), "config.json", _raise_exceptions_for_missing_entries=False, **where)
        saved = json.loads(Path(path).read_text(encoding="utf-8")).get("hierarchy_fingerprint") if path else None
    except (OSError, ValueError):
        return None
    return saved if isinstance(saved, dict) else None


def head_shape_mismatch(folder: str | Path, config: BenthicNetConfig) -> str | None:
    """Describe how the head shapes of ``folder``'s ``model.safetensors`` differ from ``config``'s
    hierarchy and ``ensemble_size`` (``None`` when they agree or the file cannot be found locally)."""
    from safetensors import safe_open
    from transformers.utils import cached_file

    path = Path(folder) / "model.safetensors"
    if not path.is_file():
        resolved = cached_file(str(folder), "model.safetensors", _raise_exceptions_for_missing_entries=False)
        if resolved is None:
            return None
        path = Path(resolved)
    hier = config.get_hierarchy()
    with safe_open(str(path), framework="pt") as f:
        shapes = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys() if k.startswith("heads.heads.")}
    problems = []
    members = set()
    joint = config.output_type == "joint_embedding"
    for i, head in enumerate(hier.heads):
        found = shapes.get(f"heads.heads.{i}.fc2.bias", shapes.get(f"heads.heads.{i}.fc.bias"))
        if found is None:
            problems.append(f"head {i} {head.name!r}: expected {len(head.nodes)} nodes, not in the checkpoint")
            continue
        # output bias: (nodes,) for one head stack, (K, nodes) for an ensemble of K
        members.add(found[0] if len(found) == 2 else 1)
        # a joint-embedding tree head ends in embedding_dim values; its (nodes, dim) label points count the nodes
        points = shapes.get(f"heads.heads.{i}.energy.label_embeddings")
        if points is not None and not joint:
            problems.append(f"head {i} {head.name!r}: the checkpoint holds label embeddings "
                            f"(output_type='joint_embedding'), the config has output_type={config.output_type!r}")
            continue
        if points is not None:
            if points[1] != config.embedding_dim:
                problems.append(f"head {i} {head.name!r}: config has embedding_dim={config.embedding_dim}, "
                                f"checkpoint has {points[1]}")
            found = points[:1]
        elif joint and head.kind != "flat":
            problems.append(f"head {i} {head.name!r}: the config has output_type='joint_embedding', the "
                            "checkpoint holds no label embeddings for this head")
            continue
        if found[-1] != len(head.nodes):
            problems.append(f"head {i} {head.name!r}: config has {len(head.nodes)} nodes, checkpoint has {found[-1]}")
    if members and members != {config.ensemble_size}:
        problems.insert(0, f"checkpoint has {'/'.join(map(str, sorted(members)))} ensemble member(s), "
                           f"config has ensemble_size={config.ensemble_size}")
    extra = {int(k.split(".")[2]) for k in shapes} - set(range(len(hier.heads)))
    if extra:
        problems.append(f"checkpoint has {len(extra)} more head(s) than the config's {len(hier.heads)}")
    if not problems:
        return None
    return f"the config (hierarchy, ensemble_size) does not match the checkpoint {path}: " + "; ".join(problems)
