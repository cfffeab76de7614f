"""The HMC benchmark datasets: split files beside a prefix, loaded on one hierarchy.

One file is parsed by :func:`benthicnet_hf.data.arff.read_arff` (numeric and one-hot nominal
features, ``?`` kept as NaN for :mod:`.preprocess` to impute, targets with all ancestors).

A dataset is a prefix with splits beside it: ``X.train.arff`` / ``X.valid.arff`` / ``X.test.arff``
(FunCat, GO), ``X_train.arff`` / ``X_Test.arff`` or ``X_trainvalid.arff`` / ``X_test.arff`` (the
"others"), each optionally ``.gz`` (see :func:`find_splits`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ...data.arff import ArffFormatError, ArffTable, read_arff
from ...hierarchy import Hierarchy

__all__ = ["ROOT_KEYS", "ArffFormatError", "ArffTable", "HMCDataset", "dataset_prefixes", "find_splits",
           "load_hmc", "read_arff", "split_files"]

#: nodes the reference never evaluates nor trains on: the tree root and the three GO roots
ROOT_KEYS = ("root", "GO0003674", "GO0005575", "GO0008150")
SPLITS = ("train", "valid", "test")
#: A split file's name: ``PREFIX`` + ``.`` or ``_`` + split word (any case) + ``.arff`` (+ ``.gz``).
#: ``trainvalid`` (train and validation in one file) is read as the train split.
SPLIT_FILE = re.compile(r"^(?P<prefix>.+?)[._](?P<split>trainvalid|train|valid|test)\.arff(?:\.gz)?$", re.IGNORECASE)


def split_files(folder: str | Path) -> dict[str, dict[str, list[Path]]]:
    """``{prefix: {split word (lower case): [files]}}`` of the split files in ``folder`` (:data:`SPLIT_FILE`)."""
    out: dict[str, dict[str, list[Path]]] = {}
    for path in sorted(Path(folder).iterdir()):
        m = SPLIT_FILE.match(path.name)
        if m and path.is_file():
            out.setdefault(m["prefix"], {}).setdefault(m["split"].lower(), []).append(path)
    return out


def dataset_prefixes(folder: str | Path) -> list[str]:
    """Dataset names in ``folder``: prefixes with a train (or trainvalid) and a test split, sorted."""
    return sorted(p for p, splits in split_files(folder).items()
                  if ("train" in splits or "trainvalid" in splits) and "test" in splits)


def find_splits(prefix: str | Path) -> dict[str, Path]:
    """Split files beside ``prefix``: ``{"train": ..., "valid": ... (optional), "test": ...}``.

    Accepted names: ``PREFIX`` + ``.`` or ``_`` + ``train`` / ``valid`` / ``test`` / ``trainvalid``
    in any case (``X.train.arff``, ``X_Train.arff``, ``X_TEST.arff``, ``X.trainvalid.arff``) +
    ``.arff`` or ``.arff.gz``. ``trainvalid`` (train and validation in one file) is the train split
    when there is no separate train file; with both, train (+ valid) are used and trainvalid is
    not. Two files for one split (``X.train.arff`` and ``X_train.arff.gz``) are an error.
    """
    prefix = Path(prefix)
    folder = prefix.parent
    splits = split_files(folder).get(prefix.name, {}) if folder.is_dir() else {}
    several = {s: files for s, files in splits.items() if len(files) > 1}
    if several:
        raise FileNotFoundError(f"ambiguous split files for {prefix}: " + "; ".join(
            f"{s}: {[f.name for f in files]}" for s, files in several.items()) + " (keep one per split)")
    found = {s: files[0] for s, files in splits.items()}
    if "train" not in found and "trainvalid" in found:
        found["train"] = found["trainvalid"]
        if "valid" in found:
            raise FileNotFoundError(f"{found['valid']}: a valid split beside {found['trainvalid'].name}, which "
                                    "already holds the validation rows; remove one")
    found.pop("trainvalid", None)
    missing = [s for s in ("train", "test") if s not in found]
    if missing:
        raise FileNotFoundError(
            f"no {'/'.join(missing)} split for {prefix}: expected e.g. {prefix}.train.arff(.gz), "
            f"{prefix}_train.arff(.gz) or {prefix}_trainvalid.arff(.gz) and the matching test file"
            + (f" (found {sorted(f.name for f in found.values())})" if found else "")
        )
    return {s: found[s] for s in SPLITS if s in found}


@dataclass
class HMCDataset:
    """A benchmark dataset: splits on one hierarchy. ``valid`` is None for train/test datasets."""

    name: str
    hierarchy: Hierarchy
    train: ArffTable
    valid: ArffTable | None
    test: ArffTable

    @property
    def to_eval(self) -> np.ndarray:
        """``(N,)`` bool: nodes scored and trained on (all but :data:`ROOT_KEYS`)."""
        keys = self.hierarchy.heads[0].nodes
        return np.array([k not in ROOT_KEYS for k in keys])

    @property
    def input_dim(self) -> int:
        return self.train.features.shape[1]


def load_hmc(prefix: str | Path) -> HMCDataset:
    """Load all splits of a dataset prefix (see :func:`find_splits`) on the train split's hierarchy."""
    files = find_splits(prefix)
    train, hierarchy = read_arff(files["train"])
    tables = {"train": train}
    for split in ("valid", "test"):
        if split in files:
            tables[split], _ = read_arff(files[split], hierarchy)
            if tables[split].declaration != train.declaration:
                raise ArffFormatError(f"{files[split]}: class hierarchy differs from {files['train']}")
            if tables[split].features.shape[1] != train.features.shape[1]:
                raise ArffFormatError(
                    f"{files[split]}: {tables[split].features.shape[1]} feature columns, "
                    f"train has {train.features.shape[1]}"
                )
    return HMCDataset(Path(prefix).name, hierarchy, train, tables.get("valid"), tables["test"])
