"""Table + images → dataset: save_to_disk, Parquet shards and/or push_to_hub.

Example::

    python dataset_scripts/build_dataset.py demo/labels.csv --save-to-disk out/ds --parquet-dir out/pq \
        --skip-bad --report out/skipped.jsonl --column site=station --label-column biota=my_biota

Prints the label support of every split (labelled rows, known positive and negative bits per head)
and any NaN label cells; ``--build-report`` also writes them as JSON.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from benthicnet_hf import Hierarchy
from benthicnet_hf.data import build_dataset_with_report, format_label_support
from benthicnet_hf.data.export import dataset_card, push_dataset_to_hub, save_parquet_shards


def _pairs(items: list[str], what: str) -> dict[str, str]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"{what} expects KEY=VALUE, got {item!r}")
        out[key] = value
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("table", help="CSV/TSV/JSONL/Parquet table, or image folder with metadata.jsonl/.csv")
    p.add_argument("--image-root", help="folder the image paths are relative to (default: the table's folder)")
    p.add_argument("--hierarchy", help="hierarchy JSON (default: shipped CATAMI)")
    p.add_argument("--cache-dir")
    p.add_argument("--column", action="append", default=[], metavar="FIELD=NAME",
                   help="metadata column name override (image, dataset, site, latitude, longitude, date, partition)")
    p.add_argument("--label-column", action="append", default=[], metavar="HEAD=NAME")
    p.add_argument("--mask-column", action="append", default=[], metavar="HEAD=NAME",
                   help="column listing each row's unknown node indices (default <head>_mask or '<Head> Mask')")
    p.add_argument("--non-exhaustive", action="append", default=[], metavar="HEAD",
                   help="opt a head out of the exhaustive default for every source (only listed nodes known)")
    p.add_argument("--source-exhaustive", help='JSON, e.g. {"survey_B": {"biota": false}}')
    p.add_argument("--split", action="append", default=[], metavar="NAME=FRACTION",
                   help="grouped split fractions (default train=0.8 validation=0.1 test=0.1)")
    p.add_argument("--group-by", default="dataset,site", help="comma-separated group columns")
    p.add_argument("--ignore-split-column", action="store_true")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--skip-bad", action="store_true", help="skip bad rows, listing each in --report")
    p.add_argument("--report", help="skipped-rows report (JSON lines)")
    p.add_argument("--build-report", help="write the build report (label support, NaN label cells) as JSON")
    p.add_argument("--num-proc", type=int, help="processes that read, verify and embed the images (default: one)")
    p.add_argument("--save-to-disk")
    p.add_argument("--parquet-dir")
    p.add_argument("--overwrite", action="store_true", help="replace the shards already in --parquet-dir")
    p.add_argument("--rows-per-shard", type=int, default=10_000)
    p.add_argument("--push-to-hub", metavar="REPO_ID")
    a = p.parse_args(argv)

    columns: dict = _pairs(a.column, "--column")
    if a.label_column:
        columns["labels"] = _pairs(a.label_column, "--label-column")
    if a.mask_column:
        columns["masks"] = _pairs(a.mask_column, "--mask-column")
    config = dict(columns=columns or None, seed=a.seed, skip_bad=a.skip_bad, report_path=a.report,
                  group_by=tuple(c for c in a.group_by.split(",") if c),
                  use_split_column=not a.ignore_split_column)
    if a.split:
        config["split_fractions"] = {k: float(v) for k, v in _pairs(a.split, "--split").items()}
    if a.source_exhaustive:
        config["source_exhaustive"] = json.loads(a.source_exhaustive)
    if a.non_exhaustive:
        config["exhaustive"] = {head: False for head in a.non_exhaustive}
    hierarchy = Hierarchy.from_json(a.hierarchy) if a.hierarchy else None
    ds, report = build_dataset_with_report(a.table, a.image_root, hierarchy=hierarchy, cache_dir=a.cache_dir,
                                           num_proc=a.num_proc, **config)
    print(ds)
    print(format_label_support(report["label_support"]))
    if a.build_report:
        with open(a.build_report, "w") as f:
            json.dump(report, f, indent=1)
    # each local copy carries the dataset card (README.md) that push_dataset_to_hub uploads with the shards
    card_name = a.push_to_hub or Path(a.parquet_dir or a.save_to_disk or "dataset").name
    if a.save_to_disk:
        ds.save_to_disk(a.save_to_disk)
        dataset_card(ds, card_name).save(str(Path(a.save_to_disk) / "README.md"))
    if a.parquet_dir:
        save_parquet_shards(ds, a.parquet_dir, a.rows_per_shard, overwrite=a.overwrite)
        dataset_card(ds, card_name).save(str(Path(a.parquet_dir) / "README.md"))
    if a.push_to_hub:
        push_dataset_to_hub(ds, a.push_to_hub, max_rows_per_shard=a.rows_per_shard)


if __name__ == "__main__":
    main()
