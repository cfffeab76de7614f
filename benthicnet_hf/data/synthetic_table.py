"""A synthetic label table in the released BenthicNet format, at any size (for rehearsals and benchmarks).

The released ``benthicnet_nn.csv`` has one row per image with node-index lists per head
(``catami_biota`` = ``"[12, 40]"``, reference index order = :meth:`Hierarchy.catami` node order) and,
per head, a ``<head>_mask`` list of the row's **unknown** node indices. This module writes such a
table with realistic label statistics:

- per head, labels drawn from a Zipf-like distribution over the head's leaves (a seeded shuffle
  decides which leaves are common), biota with 1–3 labels per row;
- cut-short paths: with probability ``cut_short`` a label stops at a random proper ancestor of the
  drawn leaf; its mask list then names the node's descendants (unknown below the annotated level),
  never a positive of the row;
- missing heads: per head probability (:data:`MISSING_RATES`), empty label and mask cells;
- ``dataset`` / ``site`` / ``latitude`` / ``longitude`` / ``date`` per site, sites spread over surveys.

Images are given as ``images/<row>.jpg``; :func:`link_image_pool` makes each such path a symbolic
link to one file of a small pool of real images (the builder refuses a file named by two rows).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from ..hierarchy import Hierarchy
from .table import DEFAULT_LABEL_COLUMNS

#: BenthicNet's labelled subset size (rows of the released table).
BENTHICNET_ROWS = 188_688
#: share of rows with no label for each head (the released table leaves many heads empty)
MISSING_RATES: dict[str, float] = {"biota": 0.35, "substrate": 0.1, "relief": 0.45, "bedforms": 0.7, "colour": 0.85}


def _index_text(indices: Sequence[int]) -> str:
    return "[" + ", ".join(str(int(i)) for i in indices) + "]"


def _zipf_probabilities(n: int, s: float, rng: np.random.Generator) -> np.ndarray:
    """Probabilities ``∝ 1 / rank^s`` over ``n`` items, ranks assigned by a seeded shuffle."""
    p = 1.0 / np.arange(1, n + 1, dtype=np.float64) ** s
    return (p / p.sum())[rng.permutation(n)]


def _head_columns(head, n_rows: int, rng: np.random.Generator, zipf_s: float, cut_short: float,
                  missing: float, max_labels: int) -> tuple[np.ndarray, np.ndarray]:
    """Label-cell and mask-cell texts ``(n_rows,)`` of one head."""
    children = [set() for _ in head.nodes]
    for i, parents in enumerate(head.parents):
        for p in parents:
            children[p].add(i)
    leaves = np.array([i for i in range(len(head.nodes)) if not children[i]])
    probs = _zipf_probabilities(len(leaves), zipf_s, rng)
    k = rng.integers(1, max_labels + 1, n_rows) if max_labels > 1 else np.ones(n_rows, dtype=np.int64)
    drawn = leaves[rng.choice(len(leaves), size=(n_rows, max_labels), p=probs)]
    # cut short: replace a leaf by one of its proper ancestors, uniformly
    proper = [sorted(head.ancestors[i] - {i}) for i in range(len(head.nodes))]
    cut = rng.random((n_rows, max_labels)) < cut_short
    pick = rng.random((n_rows, max_labels))
    for r, c in zip(*np.nonzero(cut)):
        anc = proper[drawn[r, c]]
        if anc:
            drawn[r, c] = anc[int(pick[r, c] * len(anc))]
    below = [sorted(head.descendants[i] - {i}) for i in range(len(head.nodes))]
    single_label = np.array([_index_text([i]) for i in range(len(head.nodes))], dtype=object)
    single_mask = np.array([_index_text(b) if b else "" for b in below], dtype=object)
    labels, masks = single_label[drawn[:, 0]], single_mask[drawn[:, 0]]
    for r in np.flatnonzero(k > 1):
        nodes = sorted(set(drawn[r, : k[r]].tolist()))
        positives = set().union(*(head.ancestors[i] for i in nodes))
        unknown = sorted(set().union(*(below[i] for i in nodes)) - positives)
        labels[r], masks[r] = _index_text(nodes), _index_text(unknown) if unknown else ""
    gone = rng.random(n_rows) < missing
    labels[gone], masks[gone] = "", ""
    return labels, masks


def synthetic_benthicnet_table(n_rows: int = BENTHICNET_ROWS, hierarchy: Hierarchy | None = None, seed: int = 0,
                               zipf_s: float = 1.1, cut_short: float = 0.3,
                               missing: Mapping[str, float] | None = None, n_datasets: int = 40,
                               rows_per_site: int = 60, biota_max_labels: int = 3) -> pd.DataFrame:
    """A ``(n_rows, 16)`` table in the released BenthicNet format (see the module docstring).

    Columns: ``image`` (``images/<row:07d>.jpg``), ``dataset``, ``site``, ``latitude``,
    ``longitude``, ``date``, one label column per head (:data:`DEFAULT_LABEL_COLUMNS` names, index
    lists) and ``<head>_mask`` (unknown index lists). Same arguments → same table.
    """
    hierarchy = hierarchy or Hierarchy.catami()
    missing = dict(MISSING_RATES if missing is None else missing)
    rng = np.random.default_rng(seed)
    n_sites = max(1, n_rows // rows_per_site)
    site_dataset = rng.choice(n_datasets, size=n_sites, p=_zipf_probabilities(n_datasets, 0.8, rng))
    site = np.sort(rng.integers(0, n_sites, n_rows))
    lat, lon = rng.uniform(-60, 60, n_sites), rng.uniform(-180, 180, n_sites)
    day = pd.Timestamp("2005-01-01") + pd.to_timedelta(rng.integers(0, 15 * 365, n_sites), unit="D")
    frame = pd.DataFrame({
        "image": [f"images/{r:07d}.jpg" for r in range(n_rows)],
        "dataset": np.char.add("survey_", site_dataset[site].astype(str)),
        "site": np.char.add("site_", site.astype(str)),
        "latitude": np.round(lat[site], 5),
        "longitude": np.round(lon[site], 5),
        "date": day[site].strftime("%Y-%m-%d"),
    })
    for head in hierarchy.heads:
        labels, masks = _head_columns(head, n_rows, rng, zipf_s, cut_short, missing.get(head.name, 0.0),
                                      biota_max_labels if head.name == "biota" else 1)
        frame[DEFAULT_LABEL_COLUMNS.get(head.name, head.name)] = labels
        frame[f"{head.name}_mask"] = masks
    return frame


def link_image_pool(table: pd.DataFrame, pool: Sequence[str | Path], root: str | Path) -> int:
    """Make every ``root/<image>`` of ``table`` a symbolic link to ``pool[row % len(pool)]``; returns the count.

    The builder refuses two rows naming one file, so each row gets its own path to a shared file.
    """
    root = Path(root)
    pool = [str(Path(p).resolve()) for p in pool]
    made_dirs: set[Path] = set()
    for r, rel in enumerate(table["image"].tolist()):
        path = root / rel
        if path.parent not in made_dirs:
            path.parent.mkdir(parents=True, exist_ok=True)
            made_dirs.add(path.parent)
        if not os.path.lexists(path):
            os.symlink(pool[r % len(pool)], path)
    return len(table)
