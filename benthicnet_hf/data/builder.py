"""A ``datasets`` builder: BenthicNet-style table + images → labelled, masked rows.

``datasets`` ≥ 4 runs no loading scripts, so the builder is package code used directly::

    b = BenthicNetDatasetBuilder(cache_dir=..., table="labels.csv", image_root="images/")
    b.download_and_prepare()
    ds = b.as_dataset()          # DatasetDict: train / validation / test

or simply :func:`benthicnet_hf.data.build_dataset`. Each row holds the image, per head
``{head}_target``/``{head}_mask`` (uint8, length = nodes of the head, mask 1 = known, see
:mod:`benthicnet_hf.labels`), the original label strings ``{head}_labels`` and the metadata.

The table's ``<head>_mask`` columns (lists of unknown node indices, :mod:`.mask_columns`), when
present, are applied on top of the computed masks.

Bad input stops the build with an error naming the row (1-based data row, header not counted) and
the reason (missing/corrupt/decompression-bomb image, unreadable cell or mask list, unknown label,
duplicate image, coordinates out of range, unparsable date). With ``skip_bad=True`` such rows are
left out and every one is written to a JSON-lines report (``report_path``; ``"row"`` is the same
1-based data row) and counted in a warning: never silently. Table-level mistakes (a misspelled or
missing configured column, an unknown source in ``source_exhaustive``, a split column value that is
not train/validation/test) always raise.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import datasets
import numpy as np
from datasets.builder import Key

from ..hierarchy import Hierarchy
from ..labels import LabelEncoder, UnknownLabelError
from .images import ImageLoadError, read_image_bytes
from .mask_columns import apply_listed_unknowns, listed_unknowns, positive_conflicts, resolve_mask_columns
from .splits import DEFAULT_FRACTIONS, assign_splits, group_keys, invalid_split_values
from .table import (ROW_CONVENTION, BadRowError, TableColumns, TableError, check_explicit_columns,
                    label_strings, metadata_columns, read_table, resolve_label_columns)

logger = logging.getLogger(__name__)


def hml_features(hierarchy: Hierarchy) -> datasets.Features:
    """The declared features: image, metadata, and per head labels/target/mask."""
    feats: dict[str, Any] = {
        "image": datasets.Image(),
        "image_path": datasets.Value("string"),
        "dataset": datasets.Value("string"),
        "site": datasets.Value("string"),
        "latitude": datasets.Value("float64"),
        "longitude": datasets.Value("float64"),
        "date": datasets.Value("string"),
    }
    for head in hierarchy.heads:
        feats[f"{head.name}_labels"] = datasets.List(datasets.Value("string"))
        feats[f"{head.name}_target"] = datasets.List(datasets.Value("uint8"), length=len(head.nodes))
        feats[f"{head.name}_mask"] = datasets.List(datasets.Value("uint8"), length=len(head.nodes))
    return datasets.Features(feats)


@dataclass
class BenthicNetDatasetConfig(datasets.BuilderConfig):
    """Builder settings (all plain values, so they key the ``datasets`` cache).

    Args:
        table: CSV/TSV/JSONL/Parquet table, or an image folder with ``metadata.jsonl``/``.csv``.
        image_root: folder the table's image paths are relative to (default: the table's folder).
        hierarchy_json: :meth:`Hierarchy.to_json` text; None = :meth:`Hierarchy.catami`.
        columns: overrides of :class:`~benthicnet_hf.data.table.TableColumns`, e.g.
            ``{"site": "station", "labels": {"biota": "my_biota"}}``.
        exhaustive, source_exhaustive, on_unknown: passed to
            :class:`~benthicnet_hf.labels.LabelEncoder`.
        split_fractions: split → share of rows for grouped splits (default 0.8/0.1/0.1).
        group_by: metadata columns whose joint value is a split group (``("dataset",)`` = by survey).
        use_split_column: use the table's partition column when it has one.
        seed: seed of the grouped split.
        skip_bad: leave bad rows out (reported) instead of raising.
        report_path: JSON-lines report of skipped rows (default ``<table>.skipped.jsonl``).
        embed_images: store image bytes in the dataset (portable) rather than absolute paths.
        verify_images: decode each image once while building, so corrupt files fail here.
        table_fingerprint: anything that changes when the table changes (cache key).
        rows_per_source_shard: rows per generator shard: the unit ``download_and_prepare(num_proc=N)``
            hands to each of its N processes (a split of fewer shards uses fewer processes).
    """

    table: str | None = None
    image_root: str | None = None
    hierarchy_json: str | None = None
    columns: dict | None = None
    exhaustive: dict | None = None
    source_exhaustive: dict | None = None
    on_unknown: str = "error"
    split_fractions: dict | None = None
    group_by: tuple = ("dataset", "site")
    use_split_column: bool = True
    seed: int = 0
    skip_bad: bool = False
    report_path: str | None = None
    embed_images: bool = True
    verify_images: bool = True
    table_fingerprint: str = ""
    rows_per_source_shard: int = 1000

    def hierarchy(self) -> Hierarchy:
        return Hierarchy.from_json(self.hierarchy_json) if self.hierarchy_json else Hierarchy.catami()

    def skipped_report_path(self) -> Path:
        """Where ``skip_bad`` writes the skipped rows: ``report_path``, else ``<table>.skipped.jsonl``."""
        return Path(self.report_path or Path(str(self.table).rstrip("/")).with_suffix(".skipped.jsonl"))


@dataclass
class _Prepared:
    """What ``_split_generators`` computed for ``_generate_examples``."""

    image_root: Path
    meta: dict[str, list[Any]]
    labels: dict[str, list[list[str] | None]]
    targets: np.ndarray
    mask: np.ndarray
    report_path: Path | None
    skipped: list[dict[str, Any]] = field(default_factory=list)


class BenthicNetDatasetBuilder(datasets.GeneratorBasedBuilder):
    """Builds the labelled, masked dataset (see the module docstring)."""

    BUILDER_CONFIG_CLASS = BenthicNetDatasetConfig
    VERSION = datasets.Version("1.0.0")
    config: BenthicNetDatasetConfig

    def _info(self) -> datasets.DatasetInfo:
        return datasets.DatasetInfo(
            description="BenthicNet-style hierarchical multi-label seafloor images with partial labels",
            features=hml_features(self.config.hierarchy()),
        )

    # --------------------------------------------------------------- table
    def _split_generators(self, dl_manager: Any) -> list[datasets.SplitGenerator]:
        cfg = self.config
        if cfg.table is None:
            raise ValueError("BenthicNetDatasetBuilder needs table=<path to the label table or image folder>")
        hierarchy = cfg.hierarchy()
        columns = TableColumns.from_overrides(cfg.columns)
        frame, folder = read_table(cfg.table)
        check_explicit_columns(frame, columns, str(cfg.table))
        image_root = Path(cfg.image_root) if cfg.image_root else (folder or Path(cfg.table).parent)
        meta, bad = metadata_columns(frame, columns)
        label_cols = resolve_label_columns(frame, hierarchy, columns)
        labels, bad_labels = label_strings(frame, hierarchy, label_cols)
        mask_cols = resolve_mask_columns(frame, hierarchy, columns)
        unknown, bad_masks = listed_unknowns(frame, hierarchy, mask_cols)
        bad += bad_labels + bad_masks
        if bad and not cfg.skip_bad:
            raise BadRowError(sorted(bad), source=str(cfg.table))
        self._check_sources(meta["dataset"], columns)
        explicit = self._explicit_splits(frame, columns)
        encoder_policy = "mask" if (cfg.skip_bad and cfg.on_unknown == "error") else cfg.on_unknown
        encoder = LabelEncoder(hierarchy, cfg.exhaustive, cfg.source_exhaustive, on_unknown=encoder_policy)
        try:
            encoded = encoder.encode(labels, sources=meta["dataset"], column_names=label_cols)
        except UnknownLabelError as err:
            raise UnknownLabelError(f"{cfg.table}: {err}", unknown=err.unknown) from err
        if encoder_policy != cfg.on_unknown:
            for row, head, label, _ in encoded.report.get("mask", []):
                bad.append((row, f"column {label_cols[head]!r}: unknown label {label!r} for head {head!r}"))
        conflicts = positive_conflicts(encoded.targets, unknown, hierarchy, mask_cols)
        if conflicts and not cfg.skip_bad:
            raise BadRowError(sorted(conflicts), source=str(cfg.table))
        bad += conflicts
        mask = apply_listed_unknowns(encoded.mask, unknown) if mask_cols else encoded.mask
        bad_rows = sorted({r for r, _ in bad})
        report_path = None
        if cfg.skip_bad:
            report_path = cfg.skipped_report_path()
        self._prepared = _Prepared(image_root, meta, labels, encoded.targets, mask, report_path)
        for r, why in sorted(bad):
            self._prepared.skipped.append({"row": r + 1, "image": meta["image_path"][r], "stage": "table",
                                           "reason": why})
        self._write_report()

        keep = np.setdiff1d(np.arange(len(frame)), np.asarray(bad_rows, dtype=np.int64))
        groups = group_keys(meta, cfg.group_by)
        splits = assign_splits([groups[r] for r in keep], None if explicit is None else [explicit[r] for r in keep],
                               cfg.split_fractions or DEFAULT_FRACTIONS, cfg.seed)
        order = list(dict.fromkeys((cfg.split_fractions or DEFAULT_FRACTIONS).keys())) + sorted(set(splits))
        if cfg.rows_per_source_shard < 1:
            raise ValueError(f"rows_per_source_shard must be >= 1, got {cfg.rows_per_source_shard}")
        gens = []
        for name in dict.fromkeys(order):
            rows = keep[splits == name]
            if len(rows):
                # a list of tuples: datasets splits the list (never a tuple) between num_proc processes
                shards = [tuple(rows[i:i + cfg.rows_per_source_shard].tolist())
                          for i in range(0, len(rows), cfg.rows_per_source_shard)]
                gens.append(datasets.SplitGenerator(name=name, gen_kwargs={"shards": shards}))
        return gens

    def _download_and_prepare(self, dl_manager: Any, verification_mode: Any, **prepare_splits_kwargs: Any) -> None:
        super()._download_and_prepare(dl_manager, verification_mode, **prepare_splits_kwargs)
        self._sort_report()

    def _check_sources(self, sources: list[str], columns: TableColumns) -> None:
        """Every source named in ``source_exhaustive`` must occur in the table's dataset column."""
        named = set(self.config.source_exhaustive or {})
        known = sorted(set(sources) - {""})
        missing = sorted(named - set(known))
        if missing:
            raise TableError(f"{self.config.table}: source_exhaustive names source(s) {missing} that are not in "
                             f"column {columns.dataset!r}; the table's sources are {known[:20]}"
                             f"{' ...' if len(known) > 20 else ''}")

    def _explicit_splits(self, frame: Any, columns: TableColumns) -> list | None:
        """The partition column's values when it is used, after checking every cell."""
        split_col = columns.partition if self.config.use_split_column else None
        if not (split_col and split_col in frame.columns and frame[split_col].notna().any()):
            return None
        values = frame[split_col].tolist()
        wrong = invalid_split_values(values)
        if wrong:
            kinds: dict[str, list[int]] = {}
            for r, v in wrong:
                kinds.setdefault(v, []).append(r + 1)
            shown = "; ".join(f"{v!r} in row(s) {rs[:5]}{' ...' if len(rs) > 5 else ''}" for v, rs in kinds.items())
            raise TableError(f"{self.config.table}: column {split_col!r} must say train, validation (val, valid, "
                             f"dev) or test on every row; {len(wrong)} row(s) do not ({ROW_CONVENTION}): "
                             f"{shown}. Fix them, or pass use_split_column=False (--ignore-split-column) for "
                             "a grouped split")
        return values

    def _write_report(self) -> None:
        """Write the table-stage skipped rows (the image stage appends to the file, from any process)."""
        p = self._prepared
        if p.report_path is None:
            return
        p.report_path.parent.mkdir(parents=True, exist_ok=True)
        with open(p.report_path, "w") as f:
            for item in sorted(p.skipped, key=lambda d: d["row"]):
                f.write(json.dumps(item) + "\n")

    def _append_report(self, items: list[dict[str, Any]]) -> None:
        # one O_APPEND write per shard: lines from num_proc processes never interleave mid-line
        if items and self._prepared.report_path is not None:
            with open(self._prepared.report_path, "a") as f:
                f.write("".join(json.dumps(item) + "\n" for item in items))

    def _sort_report(self) -> None:
        """After all processes wrote: order the report by row and say how many rows it lists."""
        path = getattr(getattr(self, "_prepared", None), "report_path", None)
        if path is None or not path.exists():
            return
        items = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        items.sort(key=lambda d: (d["row"], d["stage"]))
        path.write_text("".join(json.dumps(item) + "\n" for item in items))
        if items:
            logger.warning("skip_bad: %d row(s) skipped, listed in %s", len(items), path)

    # -------------------------------------------------------------- images
    def _generate_examples(self, shards: list[tuple[int, ...]]) -> Iterator[tuple[Key, dict[str, Any]]]:
        """Rows of this process's shards; ``Key`` numbers shards within this call, as datasets counts them."""
        hierarchy = self.config.hierarchy()
        slices = [(h.name, hierarchy.head_slice(i)) for i, h in enumerate(hierarchy.heads)]
        for shard_index, rows in enumerate(shards):
            skipped: list[dict[str, Any]] = []
            for i, r in enumerate(rows):
                example = self._example(r, slices, skipped)
                if example is not None:
                    yield Key(shard_index, i), example
            self._append_report(skipped)

    def _example(self, r: int, slices: list[tuple[str, slice]], skipped: list[dict[str, Any]]) -> dict | None:
        """Row ``r`` (0-based table row) as an example, or None when ``skip_bad`` leaves it out."""
        p = self._prepared
        rel = p.meta["image_path"][r]
        path = Path(rel) if Path(rel).is_absolute() else p.image_root / rel
        try:
            if self.config.embed_images:
                image = {"bytes": read_image_bytes(path, row=r + 1, verify=self.config.verify_images), "path": rel}
            else:
                if self.config.verify_images:
                    read_image_bytes(path, row=r + 1, verify=True)
                elif not path.exists():
                    raise ImageLoadError(f"row {r + 1}: image file {path} does not exist")
                image = {"bytes": None, "path": str(path.resolve())}
        except ImageLoadError as err:
            if not self.config.skip_bad:
                raise ImageLoadError(f"{self.config.table}: {err} ({ROW_CONVENTION})") from err
            skipped.append({"row": r + 1, "image": rel, "stage": "image", "reason": str(err)})
            return None
        example: dict[str, Any] = {"image": image}
        for key in ("image_path", "dataset", "site", "latitude", "longitude", "date"):
            example[key] = p.meta[key][r]
        for name, sl in slices:
            head_labels = p.labels.get(name)
            example[f"{name}_labels"] = (head_labels[r] if head_labels else None) or []
            example[f"{name}_target"] = p.targets[r, sl]
            example[f"{name}_mask"] = p.mask[r, sl]
        return example
