"""Read the HMC benchmark ARFF files into features and hierarchy targets.

One file holds numeric attributes, nominal attributes ``{a,b,c}`` (one-hot encoded, as the
C-HMCNN reference does; a missing or unknown nominal value is all zeros), missing values ``?``
(kept as NaN for :mod:`.preprocess` to impute) and one ``hierarchical`` class attribute whose rows
carry ``@``-separated node keys. A row's target is its nodes and all their ancestors.

A dataset is a prefix with splits beside it: ``X.train.arff`` / ``X.valid.arff`` / ``X.test.arff``
(FunCat, GO), ``X_train.arff`` / ``X_Test.arff`` or ``X_trainvalid.arff`` / ``X_test.arff`` (the
"others"), each optionally ``.gz`` (see :func:`find_splits`).

A line is a comment only when it *starts* with ``%`` (after blanks), as the ARFF format says: ``%``
inside an attribute name or a quoted value is data. Values may be quoted with ``'`` or ``"`` (commas
inside quotes are kept).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..arff_hierarchy import taxonomy_from_declaration, open_text
from ..hierarchy import Hierarchy

#: nodes the reference never evaluates nor trains on: the tree root and the three GO roots
ROOT_KEYS = ("root", "GO0003674", "GO0005575", "GO0008150")
SPLITS = ("train", "valid", "test")
#: A split file's name: ``PREFIX`` + ``.`` or ``_`` + split word (any case) + ``.arff`` (+ ``.gz``).
#: ``trainvalid`` (train and validation in one file) is read as the train split.
SPLIT_FILE = re.compile(r"^(?P<prefix>.+?)[._](?P<split>trainvalid|train|valid|test)\.arff(?:\.gz)?$", re.IGNORECASE)


class ArffFormatError(ValueError):
    """Malformed ARFF input; the message names the file and line."""


@dataclass(frozen=True)
class Attribute:
    name: str
    kind: str  #: "numeric" | "nominal" | "hierarchical"
    values: tuple[str, ...] = ()  #: nominal categories, or the hierarchical declaration (one item)

    @property
    def width(self) -> int:
        """Number of feature columns: 1 for numeric, one per category for nominal."""
        return len(self.values) if self.kind == "nominal" else 1


@dataclass
class ArffTable:
    """One split.

    Attributes:
        features: ``(rows, F)`` float64, NaN where a numeric value is missing.
        targets: ``(rows, N)`` uint8 over ``hierarchy``'s global layout (ancestors included).
        attributes: the feature attributes (class attribute excluded).
        declaration: the class attribute's term list (to check splits share one hierarchy).
    """

    path: Path
    features: np.ndarray
    targets: np.ndarray
    attributes: tuple[Attribute, ...]
    declaration: str


def _parse_attribute(line: str, path: Path, lineno: int) -> Attribute:
    body = line.strip()[len("@attribute") :].strip()
    if body.startswith(("'", '"')):  # quoted names may contain spaces
        q = body[0]
        end = body.find(q, 1)
        if end < 0:
            raise ArffFormatError(f"{path}:{lineno}: unterminated quoted attribute name")
        name, rest = body[1:end], body[end + 1 :].strip()
    else:
        parts = body.split(None, 1)
        if len(parts) != 2:
            raise ArffFormatError(f"{path}:{lineno}: attribute line without a type: {line.strip()!r}")
        name, rest = parts
    low = rest.lower()
    if low.startswith("hierarchical"):
        return Attribute(name, "hierarchical", (rest[len("hierarchical") :].strip(),))
    if low in ("numeric", "real", "integer"):
        return Attribute(name, "numeric")
    if rest.startswith("{") and rest.endswith("}"):
        cats = tuple(c.strip("'\"") for c in split_row(rest[1:-1]))
        return Attribute(name, "nominal", cats)
    raise ArffFormatError(f"{path}:{lineno}: attribute {name!r} has unsupported type {rest!r}")


def _read_lines(path: Path) -> tuple[list[Attribute], list[tuple[int, str]]]:
    attrs: list[Attribute] = []
    rows: list[tuple[int, str]] = []
    in_data = False
    with open_text(path) as f:
        for lineno, raw in enumerate(f, 1):
            line = raw.strip()
            if not line or line.startswith("%"):  # '%' elsewhere is data (names, quoted values)
                continue
            if in_data:
                rows.append((lineno, line))
            elif line.lower().startswith("@attribute"):
                attrs.append(_parse_attribute(line, path, lineno))
            elif line.lower().startswith("@data"):
                in_data = True
    if not in_data:
        raise ArffFormatError(f"{path}: no @DATA section")
    return attrs, rows


def split_row(line: str) -> list[str]:
    """The comma-separated cells of a data row, stripped; quoted cells (``'...'`` or ``"..."``) may
    hold commas and keep their quotes (nominal lookups strip them)."""
    if "'" not in line and '"' not in line:  # the common, numeric case: no scanning
        return [x.strip() for x in line.split(",")]
    cells, current, quote = [], [], ""
    for ch in line:
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch == ",":
            cells.append("".join(current).strip())
            current = []
            continue
        current.append(ch)
    cells.append("".join(current).strip())
    return cells


def _features(attrs: list[Attribute], cells: np.ndarray, linenos: np.ndarray, path: Path) -> np.ndarray:
    """``(rows, F)`` float64 from the ``(rows, attrs)`` string cells."""
    cols: list[np.ndarray] = []
    for j, a in enumerate(attrs):
        col = cells[:, j]
        if a.kind == "numeric":
            missing = col == "?"
            try:
                cols.append(np.where(missing, "nan", col).astype(np.float64)[:, None])
            except ValueError:
                bad = next(i for i, c in enumerate(col) if c != "?" and not _is_float(c))
                raise ArffFormatError(
                    f"{path}:{linenos[bad]}: attribute {a.name!r} expects a number, got {col[bad]!r}"
                ) from None
        else:  # nominal: one-hot; '?' and unknown categories stay all zeros like the reference
            lookup = {c: i for i, c in enumerate(a.values)}
            idx = np.array([lookup.get(c.strip("'\""), -1) for c in col])
            onehot = np.zeros((len(col), len(a.values)))
            rows = np.flatnonzero(idx >= 0)
            onehot[rows, idx[rows]] = 1.0
            cols.append(onehot)
    return np.concatenate(cols, axis=1) if cols else np.zeros((len(cells), 0))


def _is_float(s: str) -> bool:
    try:
        float(s)
        return True
    except ValueError:
        return False


def _targets(labels: list[str], linenos: np.ndarray, hierarchy: Hierarchy, path: Path) -> np.ndarray:
    """``(rows, N)`` uint8: each label's node and all its ancestors."""
    head = hierarchy.heads[0]
    index = head.index
    rows, nodes = [], []
    for r, cell in enumerate(labels):
        for key in cell.split("@"):
            key = key.strip()
            if key not in index:
                raise ArffFormatError(
                    f"{path}:{linenos[r]}: class {key!r} is not declared in the hierarchical attribute"
                )
            rows.append(r)
            nodes.append(index[key])
    anc = hierarchy.ancestors_padded[np.asarray(nodes, dtype=np.int64)]  # (K, A), -1 padded
    rr = np.repeat(np.asarray(rows, dtype=np.int64), anc.shape[1])
    aa = anc.reshape(-1)
    keep = aa >= 0
    out = np.zeros((len(labels), hierarchy.num_nodes), dtype=np.uint8)
    out[rr[keep], aa[keep]] = 1
    return out


def read_arff(path: str | Path, hierarchy: Hierarchy | None = None) -> tuple[ArffTable, Hierarchy]:
    """Read one split; builds the hierarchy from its declaration unless one is given.

    Returns:
        the table and the hierarchy its targets are laid out on (one head named after the class
        attribute; trees carry an explicit ``root`` node).
    """
    path = Path(path)
    attrs, rows = _read_lines(path)
    cls = [i for i, a in enumerate(attrs) if a.kind == "hierarchical"]
    if len(cls) != 1:
        raise ArffFormatError(f"{path}: expected one hierarchical class attribute, found {len(cls)}")
    c = cls[0]
    if hierarchy is None:
        hierarchy = Hierarchy((taxonomy_from_declaration(attrs[c].values[0], name=attrs[c].name),))
    linenos = np.array([n for n, _ in rows])
    split = []
    for n, line in rows:
        if line.startswith("{"):
            raise ArffFormatError(f"{path}:{n}: sparse ARFF rows are not supported")
        cells = split_row(line)
        if len(cells) != len(attrs):
            raise ArffFormatError(f"{path}:{n}: {len(cells)} values, expected {len(attrs)} attributes")
        split.append(cells)
    cells = np.array(split, dtype=object).reshape(len(split), len(attrs)).astype(str)
    feat_attrs = [a for i, a in enumerate(attrs) if i != c]
    feat_cells = np.delete(cells, c, axis=1)
    features = _features(feat_attrs, feat_cells, linenos, path)
    targets = _targets(list(cells[:, c]), linenos, hierarchy, path)
    return ArffTable(path, features, targets, tuple(feat_attrs), attrs[c].values[0]), hierarchy


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
