"""BenthicNet-size rehearsal on CPU: a 188,688-row table in the released format over a small image pool.

Steps, each timed (wall seconds) with the process's peak RSS after it (``resource.getrusage``,
a high-water mark, so each figure is the peak so far):

1. a pool of ``--pool`` real JPEG files (the demo generator's seafloor images, re-encoded);
2. the table (:func:`benthicnet_hf.data.synthetic_table.synthetic_benthicnet_table`: index lists,
   mask lists, Zipf-like CATAMI labels, cut-short paths, missing heads), written as CSV, and one
   symbolic link per row into the pool (the builder refuses a file named by two rows);
3. ``build_dataset`` (read table, encode labels, verify + embed every image, grouped splits;
   ``--num-proc N`` processes for the images);
4. ``label_matrices`` of every split (what the fine-tuning loop calls on each rank);
5. ``save_parquet_shards`` (10,000 rows per shard);
6. one streamed pass over the train shards (``load_parquet_shards(streaming=True)``, images
   decoded as a training loop gets them) → rows/s.

``--rows`` scales down (the smoke test uses 2,000). Last line: one JSON object.

    python benchmarks/bench_rehearsal.py [--rows 188688] [--pool 64] [--num-proc 2] [--workdir DIR] [--keep]
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import tempfile
import time
from pathlib import Path

from PIL import Image

from benthicnet_hf import Hierarchy
from benthicnet_hf.data import build_dataset
from benthicnet_hf.data.demo import make_demo_dataset
from benthicnet_hf.data.export import load_parquet_shards, save_parquet_shards
from benthicnet_hf.data.synthetic_table import BENTHICNET_ROWS, link_image_pool, synthetic_benthicnet_table
from benthicnet_hf.data.label_matrices import label_matrices


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, MB (Linux reports KB)."""
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def image_pool(folder: Path, n: int, size: int) -> list[Path]:
    """``n`` JPEG files re-encoded from the demo generator's PNGs."""
    table = make_demo_dataset(folder / "demo", n, size, seed=0)
    pngs = sorted((table.parent / "images").rglob("*.png"))[:n]
    out = []
    for i, png in enumerate(pngs):
        path = folder / "pool" / f"{i:03d}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.open(png).convert("RGB").save(path, quality=90)
        out.append(path)
    return out


def rehearse(rows: int, pool_size: int, image_size: int, work: Path, stream_rows: int | None = None,
             num_proc: int | None = None) -> dict:
    """Run the six steps in ``work``; returns the figures (see the module docstring)."""
    figures: dict = {"rows": rows, "pool": pool_size, "image_size": image_size, "num_proc": num_proc or 1}
    hierarchy = Hierarchy.catami()

    t = time.perf_counter()
    pool = image_pool(work, pool_size, image_size)
    figures["pool_s"] = round(time.perf_counter() - t, 2)
    figures["pool_bytes_mean"] = int(sum(p.stat().st_size for p in pool) / len(pool))

    t = time.perf_counter()
    table = synthetic_benthicnet_table(rows, hierarchy, seed=0)
    figures["table_generate_s"] = round(time.perf_counter() - t, 2)
    t = time.perf_counter()
    csv = work / "benthicnet_synthetic.csv"
    table.to_csv(csv, index=False)
    link_image_pool(table, pool, work)
    figures["table_write_and_link_s"] = round(time.perf_counter() - t, 2)
    figures["table_csv_mb"] = round(csv.stat().st_size / 2**20, 1)
    figures["labelled_share"] = {c: round(float((table[c] != "").mean()), 3) for c in table.columns[6::2]}
    del table
    figures["rss_before_build_mb"] = peak_rss_mb()
    print("so far:", json.dumps(figures), flush=True)

    t = time.perf_counter()
    ds = build_dataset(csv, cache_dir=work / "cache", num_proc=num_proc)
    figures["build_s"] = round(time.perf_counter() - t, 2)
    figures["build_rows_per_s"] = round(rows / figures["build_s"], 1)
    figures["peak_rss_after_build_mb"] = peak_rss_mb()
    figures["split_rows"] = {k: len(v) for k, v in ds.items()}
    print("so far:", json.dumps(figures), flush=True)

    t = time.perf_counter()
    for split in ds.values():
        y, m = label_matrices(split, hierarchy)
    figures["label_matrices_s"] = round(time.perf_counter() - t, 3)
    figures["known_bit_share_last_split"] = round(float(m.mean()), 3)
    print("so far:", json.dumps(figures), flush=True)

    t = time.perf_counter()
    shards = save_parquet_shards(ds, work / "parquet")
    figures["parquet_s"] = round(time.perf_counter() - t, 2)
    figures["parquet_shards"] = len(shards)
    figures["parquet_mb"] = round(sum(p.stat().st_size for p in shards) / 2**20, 1)
    figures["peak_rss_after_parquet_mb"] = peak_rss_mb()
    print("so far:", json.dumps(figures), flush=True)
    del ds

    stream = load_parquet_shards(work / "parquet", streaming=True)["train"]
    t, n = time.perf_counter(), 0
    for row in stream:
        n += 1
        if n == 1:
            assert row["image"].size == (image_size, image_size), row["image"].size
        if stream_rows is not None and n >= stream_rows:
            break
    figures["stream_rows"] = n
    figures["stream_s"] = round(time.perf_counter() - t, 2)
    figures["stream_rows_per_s"] = round(n / figures["stream_s"], 1)
    figures["peak_rss_end_mb"] = peak_rss_mb()
    return figures


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=BENTHICNET_ROWS)
    p.add_argument("--pool", type=int, default=64)
    p.add_argument("--image-size", type=int, default=96)
    p.add_argument("--stream-rows", type=int, default=None, help="stop the streamed pass after this many rows")
    p.add_argument("--num-proc", type=int, default=None, help="build_dataset processes (datasets' num_proc)")
    p.add_argument("--workdir", default=None, help="default: a temporary folder, deleted at the end")
    p.add_argument("--keep", action="store_true", help="keep --workdir")
    a = p.parse_args(argv)
    work = Path(a.workdir or tempfile.mkdtemp(prefix="rehearsal-"))
    work.mkdir(parents=True, exist_ok=True)
    t = time.perf_counter()
    try:
        figures = rehearse(a.rows, a.pool, a.image_size, work, a.stream_rows, a.num_proc)
    finally:
        if not a.keep:
            shutil.rmtree(work, ignore_errors=True)
    figures["total_s"] = round(time.perf_counter() - t, 1)
    figures["s_per_1000_rows"] = round(1000 * figures["total_s"] / a.rows, 3)
    result = {"bench": "rehearsal", **figures}
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
