"""Writing a built dataset out: Parquet shards (the Hub's layout), streaming them back, Hub upload.

Parquet keeps the declared features (``datasets`` stores them in the schema metadata) and embeds
the image bytes, so a folder of shards is the whole dataset. ``push_dataset_to_hub`` is a thin
``create_repo`` + ``upload_folder`` over those shards plus a :func:`dataset_card`
(``huggingface_hub.DatasetCard``), so that it can be tested with a mocked ``HfApi`` and never needs
the network in tests.
"""

from __future__ import annotations

import math
import re
import tempfile
from pathlib import Path

import datasets
from huggingface_hub import DatasetCard, DatasetCardData, HfApi

from .progress import bars_on_a_terminal_only


_SHARD = re.compile(r"^(?P<split>.+)-(?P<index>\d{5})-of-(?P<count>\d{5})\.parquet$")


def save_parquet_shards(data: datasets.DatasetDict, out_dir: str | Path, max_rows_per_shard: int = 10_000,
                        overwrite: bool = False) -> list[Path]:
    """Write ``out_dir/data/<split>-00000-of-0000N.parquet`` shards (the Hub's file layout).

    The folder belongs to one dataset: shards already in ``out_dir/data`` (an earlier, maybe
    larger, build) would be read back mixed with the new ones, so they are an error unless
    ``overwrite`` (then they are deleted first).

    Returns the written paths in split order.
    """
    out = Path(out_dir) / "data"
    old = sorted(out.glob("*.parquet"))
    if old and not overwrite:
        raise FileExistsError(f"{out} already holds {len(old)} Parquet shard(s) of another build "
                              f"({', '.join(p.name for p in old[:3])}{' ...' if len(old) > 3 else ''}); "
                              "they would be loaded together with the new ones: choose an empty folder or "
                              "pass overwrite=True (--overwrite) to replace them")
    for path in old:
        path.unlink()
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for split, ds in data.items():
        n = max(1, math.ceil(len(ds) / max_rows_per_shard))
        for i in range(n):
            path = out / f"{split}-{i:05d}-of-{n:05d}.parquet"
            with bars_on_a_terminal_only():
                ds.shard(num_shards=n, index=i, contiguous=True).to_parquet(str(path))
            written.append(path)
    return written


def parquet_data_files(folder: str | Path) -> dict[str, list[str]]:
    """split → shard paths found under ``folder`` (or ``folder/data``)."""
    root = Path(folder)
    root = root / "data" if (root / "data").is_dir() else root
    files: dict[str, list[str]] = {}
    numbered: dict[str, list[tuple[int, int, str]]] = {}
    for path in sorted(root.glob("*.parquet")):
        files.setdefault(path.name.split("-")[0], []).append(str(path))
        match = _SHARD.match(path.name)
        if match:
            numbered.setdefault(match["split"], []).append((int(match["index"]), int(match["count"]), path.name))
    if not files:
        raise FileNotFoundError(f"no <split>-*.parquet shards under {root}")
    for split, shards in numbered.items():  # "i-of-N" names must form one complete set per split
        counts = {n for _, n, _ in shards}
        if len(counts) > 1 or sorted(i for i, _, _ in shards) != list(range(next(iter(counts)))):
            raise ValueError(f"{root}: the {split!r} shards do not form one complete i-of-N set "
                             f"({', '.join(name for _, _, name in shards)}): shards of two builds are mixed")
    return files


def load_parquet_shards(folder: str | Path, features: datasets.Features | None = None, streaming: bool = False
                        ) -> datasets.DatasetDict | datasets.IterableDatasetDict:
    """Load shards written by :func:`save_parquet_shards`; ``streaming=True`` reads them lazily.

    ``features`` (e.g. :func:`~benthicnet_hf.data.builder.hml_features`) pins the declared types;
    without it they come from the Parquet schema metadata.
    """
    return datasets.load_dataset("parquet", data_files=parquet_data_files(folder), features=features,
                                 streaming=streaming)


#: the Hub's ``size_categories`` buckets: (upper bound on rows, name)
_SIZE_CATEGORIES = ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M"),
                    (10_000_000, "1M<n<10M"))


def dataset_card(data: datasets.DatasetDict, repo_id: str, license: str | None = None) -> DatasetCard:
    """The Hub card of the shards :func:`save_parquet_shards` writes for ``data``.

    Its YAML metadata: ``configs`` (one ``data_files`` entry per split, ``data/<split>-*.parquet``),
    ``task_categories: image-classification``, ``size_categories``, tags and ``license`` when known
    (BenthicNet's images come from many surveys with their own licences, so none is assumed).
    """
    rows = sum(len(d) for d in data.values())
    size = next((name for bound, name in _SIZE_CATEGORIES if rows < bound), "n>10M")
    meta = DatasetCardData(
        license=license, task_categories=["image-classification"], size_categories=[size],
        tags=["benthic", "seafloor", "catami", "hierarchical-multi-label"], pretty_name=repo_id.split("/")[-1],
        configs=[{"config_name": "default",
                  "data_files": [{"split": s, "path": f"data/{s}-*.parquet"} for s in data]}],
    )
    n_rows = ", ".join(f"{s}: {len(d)}" for s, d in data.items())
    text = (f"---\n{meta.to_yaml()}\n---\n\n# {repo_id}\n\nBenthicNet-style seafloor images with CATAMI "
            f"hierarchical labels and per-node masks (1 = known). Rows: {n_rows}.\n")
    return DatasetCard(text)


def push_dataset_to_hub(data: datasets.DatasetDict, repo_id: str, api: HfApi | None = None,
                        private: bool = True, max_rows_per_shard: int = 10_000,
                        commit_message: str = "Upload BenthicNet-style HML dataset",
                        license: str | None = None) -> str:
    """Upload ``data`` as Parquet shards plus a :func:`dataset_card` to a Hub dataset repo.

    Args:
        api: an ``HfApi`` (tests pass ``create_autospec(HfApi, instance=True)``).
        license: the card's ``license`` (a Hub licence id), when known.

    Returns:
        the repo id.
    """
    api = api or HfApi()
    api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        save_parquet_shards(data, tmp, max_rows_per_shard)
        dataset_card(data, repo_id, license).save(Path(tmp, "README.md"))
        api.upload_folder(folder_path=tmp, repo_id=repo_id, repo_type="dataset", commit_message=commit_message)
    return repo_id
