"""Real tables as users have them: released mask lists, "None" labels, label support and degenerate
heads, stale caches, decompression bombs, and the ordinary mistakes (typos in columns, sources and
split names, repeated images, header-only/empty/non-UTF-8/semicolon files, bad coordinates/dates).
Expected values are worked out here from the key strings and numpy, never from the code under test."""

from __future__ import annotations

import json
import logging
import os
import struct
import zlib

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from benthicnet_hf import Hierarchy
from benthicnet_hf.data import (BadRowError, DegenerateHeadError, ImageLoadError, TableError, build_dataset,
                                build_dataset_with_report, check_trainable_heads, format_label_support,
                                label_support)

CATAMI = Hierarchy.catami()
SOFT = "Substrate > Unconsolidated (soft)"
SAND = SOFT + " > Sand / mud (<2mm) > Fine sand (no shell fragments)"
SPONGES = "Biota > Sponges"
FISHES = "Biota > Fishes"


def _positives(head: str, labels: list[str]) -> np.ndarray:
    keys = CATAMI.head(head).nodes
    return np.array([any(lab == k or lab.startswith(k + " > ") for lab in labels) for k in keys], dtype=np.uint8)


def _exhaustive_mask(head: str, labels: list[str]) -> np.ndarray:
    """All known except strictly below a deepest labelled node (from the key strings)."""
    keys = CATAMI.head(head).nodes
    pos = [k for k, p in zip(keys, _positives(head, labels)) if p]
    deepest = [p for p in pos if not any(q.startswith(p + " > ") for q in pos)]
    return np.array([not any(k.startswith(d + " > ") for d in deepest) for k in keys], dtype=np.uint8)


def _images(root, n):
    rng = np.random.default_rng(0)
    root.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(root / f"im{i}.png")
    return [f"im{i}.png" for i in range(n)]


def _frame(names, **cols):
    n = len(names)
    base = dict(image=names, dataset=["survey"] * n, site=[f"s{i % 2}" for i in range(n)],
                latitude=["44.5"] * n, longitude=["-63.1"] * n, date=["2020-01-02"] * n, partition=["train"] * n)
    base.update({k: list(v) for k, v in cols.items()})
    return pd.DataFrame(base)


def _write(frame, path, **kw):
    frame.to_csv(path, index=False, **kw)
    return path


@pytest.fixture()
def imgs(tmp_path):
    return tmp_path, _images(tmp_path, 6)


# ------------------------------------------------------------------------- released mask lists
def test_mask_lists_are_applied_on_top_of_computed_masks(imgs):
    root, names = imgs
    sub_nodes = CATAMI.head("substrate").nodes
    bio_nodes = CATAMI.head("biota").nodes
    listed_sub = [sub_nodes.index("Water column"), sub_nodes.index("Unclear")]
    listed_bio = [bio_nodes.index("Biota > Cnidaria"), bio_nodes.index("Biota > Fishes > Bony fishes")]
    frame = _frame(names[:4],
                   catami_substrate=[SAND, SOFT, SAND, ""],
                   catami_biota=[SPONGES, SPONGES, "", FISHES],
                   substrate_mask=[json.dumps(listed_sub), "", "[]", "[0]"],
                   **{"Biota Mask": [json.dumps(listed_bio), "[]", "", json.dumps(listed_bio)]})  # older header
    ds = build_dataset(_write(frame, root / "t.csv"), root, cache_dir=root / "c")["train"]
    got = {r["image_path"]: r for r in ds}
    for i, (sub, bio) in enumerate([(SAND, SPONGES), (SOFT, SPONGES), (SAND, ""), ("", FISHES)]):
        row = got[names[i]]
        exp_sub = _exhaustive_mask("substrate", [sub]) if sub else np.zeros(len(sub_nodes), np.uint8)
        if i == 0:
            exp_sub[listed_sub] = 0
        exp_bio = _exhaustive_mask("biota", [bio]) if bio else np.zeros(len(bio_nodes), np.uint8)
        if i == 0 or i == 3:
            exp_bio[listed_bio] = 0
        np.testing.assert_array_equal(row["substrate_mask"], exp_sub, err_msg=f"row {i} substrate")
        np.testing.assert_array_equal(row["biota_mask"], exp_bio, err_msg=f"row {i} biota")
        np.testing.assert_array_equal(row["substrate_target"], _positives("substrate", [sub]) if sub else 0)
    # an empty cell is fully known: row 2 equals the computed mask alone
    assert sum(got[names[1]]["substrate_mask"]) == len(sub_nodes) - 12


def test_released_mask_indices_follow_the_reference_order(imgs):
    """Mask lists written with BenthicNet's reference index → path map (real reference data) unmask
    exactly those paths in our features."""
    from conftest import shared_file

    ref = json.loads(shared_file("catami", "reference_index_to_node.json").read_text())
    root, names = imgs
    by_path = {head: {path: int(i) for i, path in ref[head].items()} for head in ("biota", "bedforms")}
    unknown_bio = ["Biota > Fishes", "Biota > Cnidaria > Hydroids", "Anthropogenic > Cable"]
    unknown_bed = ["Bedforms > 2D"]
    frame = _frame(names[:2], catami_biota=[SPONGES, SPONGES], catami_bedforms=["None", "None"],
                   biota_mask=[json.dumps([by_path["biota"][p] for p in unknown_bio]), ""],
                   bedforms_mask=[json.dumps([by_path["bedforms"][p] for p in unknown_bed]), ""])
    ds = build_dataset(_write(frame, root / "t.csv"), root, cache_dir=root / "c")["train"]
    rows = {r["image_path"]: r for r in ds}
    for head, listed in (("biota", unknown_bio), ("bedforms", unknown_bed)):
        keys = CATAMI.head(head).nodes
        label = SPONGES if head == "biota" else "None"
        full, cut = np.asarray(rows[names[1]][f"{head}_mask"]), np.asarray(rows[names[0]][f"{head}_mask"])
        np.testing.assert_array_equal(full, _exhaustive_mask(head, [label]))
        assert sorted(keys[i] for i in np.flatnonzero(full != cut)) == sorted(listed)


def test_listed_unknowns_scatter_equals_a_row_by_row_loop():
    from benthicnet_hf.data.mask_columns import listed_unknowns

    rng = np.random.default_rng(3)
    heads = {"biota": "biota_mask", "relief": "Relief Mask"}
    frame = pd.DataFrame({col: [json.dumps(rng.choice(len(CATAMI.head(h).nodes), rng.integers(0, 5),
                                                      replace=False).tolist()) if rng.random() < 0.8 else ""
                                for _ in range(300)] for h, col in heads.items()})
    frame["biota_mask"] = frame["biota_mask"].astype(object)
    frame.at[7, "biota_mask"] = [4, 2]  # a list cell, as read from JSON lines or Parquet
    got, bad = listed_unknowns(frame, CATAMI, heads)
    expected = np.zeros((300, CATAMI.num_nodes), dtype=np.uint8)
    for r in range(300):
        for h, col in heads.items():
            cell = frame.loc[r, col]
            for i in (cell if isinstance(cell, list) else json.loads(cell) if cell else []):
                expected[r, CATAMI.index(h, CATAMI.head(h).nodes[i])] = 1
    assert bad == [] and expected.sum() > 300
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("cell, why", [
    ("[3, 23]", r"node index\(es\) \[23\] outside 0..22 for head 'substrate'"),
    ("[-1]", r"node index\(es\) \[-1\] outside 0..22"),
    ("three", r"unreadable mask cell 'three'"),
    ("[1.5]", r"unreadable mask cell"),
])
def test_bad_mask_cells_name_row_and_column(imgs, cell, why):
    root, names = imgs
    frame = _frame(names[:3], catami_substrate=[SAND] * 3, substrate_mask=["", "", cell])
    with pytest.raises(BadRowError, match=r"1-based data rows.*row 3: column 'substrate_mask': " + why):
        build_dataset(_write(frame, root / "t.csv"), root, cache_dir=root / "c")


def test_listed_unknown_positive_is_a_bad_row_and_skippable(imgs):
    root, names = imgs
    sub = CATAMI.head("substrate").nodes
    frame = _frame(names[:3], catami_substrate=[SAND, SAND, SOFT],
                   substrate_mask=["", json.dumps([sub.index(SOFT)]), json.dumps([sub.index(SAND)])])
    path = _write(frame, root / "t.csv")
    with pytest.raises(BadRowError, match=r"row 2: column 'substrate_mask': node\(s\) \['Substrate > "
                                          r"Unconsolidated \(soft\)'\] listed as unknown but labelled present"):
        build_dataset(path, root, cache_dir=root / "c")
    report = root / "skipped.jsonl"
    ds = build_dataset(path, root, cache_dir=root / "c2", skip_bad=True, report_path=str(report))
    assert ds["train"]["image_path"] == [names[0], names[2]]  # SAND is below SOFT: unknown anyway, no clash
    assert [json.loads(x)["row"] for x in report.read_text().splitlines()] == [2]


def test_mask_column_override_must_exist(imgs):
    root, names = imgs
    frame = _frame(names[:2], catami_substrate=[SAND, SOFT])
    with pytest.raises(TableError, match=r"masks.substrate='unknown_sub'.*columns are"):
        build_dataset(_write(frame, root / "t.csv"), root, cache_dir=root / "c",
                      columns={"masks": {"substrate": "unknown_sub"}})


# ------------------------------------------------------------------------- "None" labels
def test_none_labels_kept_from_csv_and_reported_from_default_dataframe(imgs, caplog):
    root, names = imgs
    frame = _frame(names[:4], catami_bedforms=["None", "None", "Bedforms > 2D", "NA"],
                   catami_substrate=[SAND] * 4)
    frame.loc[3, "catami_bedforms"] = ""  # keep the CATAMI names only
    path = _write(frame, root / "t.csv")
    ds = build_dataset(path, root, cache_dir=root / "c")["train"]
    assert ds["bedforms_labels"] == [["None"], ["None"], ["Bedforms > 2D"], []]
    none = CATAMI.head("bedforms").nodes.index("None")
    assert [r[none] for r in ds["bedforms_target"]] == [1, 1, 0, 0]
    # pandas defaults turn "None" into NaN: accepted, but counted and explained
    lossy = pd.read_csv(path)
    with caplog.at_level(logging.WARNING, logger="benthicnet_hf.data"):
        ds2, report = build_dataset_with_report(lossy, root, cache_dir=root / "c2")
    assert report["nan_label_cells"]["catami_bedforms"] == 3 and "catami_substrate" not in report["nan_label_cells"]
    assert "keep_default_na=False" in caplog.text and "'None'" in caplog.text and "catami_bedforms" in caplog.text
    assert sum(len(x) == 0 for x in ds2["train"]["bedforms_labels"]) == 3


# ------------------------------------------------------------------------- label support
def test_label_support_equals_brute_force():
    rng = np.random.default_rng(1)
    t = (rng.random((40, CATAMI.num_nodes)) < 0.2).astype(np.uint8)
    m = (rng.random((40, CATAMI.num_nodes)) < 0.5).astype(np.uint8)
    m[:, CATAMI.head_slice("relief")] = 0
    m[3, CATAMI.head_slice("relief")][2] = 1
    got = label_support(t, m, CATAMI)
    for i, head in enumerate(CATAMI.heads):
        sl = CATAMI.head_slice(i)
        rows = pos = neg = 0
        for r in range(40):
            rows += int(any(m[r, j] for j in range(sl.start, sl.stop)))
            for j in range(sl.start, sl.stop):
                pos += int(m[r, j] == 1 and t[r, j] == 1)
                neg += int(m[r, j] == 1 and t[r, j] == 0)
        assert got[i] == {"head": head.name, "rows": rows, "positives": pos, "negatives": neg}
    assert got[2]["rows"] == 1
    assert label_support(t[:0], m[:0], CATAMI)[0] == {"head": "biota", "rows": 0, "positives": 0, "negatives": 0}
    with pytest.raises(ValueError, match=r"\(rows, 324\)"):
        label_support(t[:, :10], m[:, :10], CATAMI)


def test_degenerate_head_is_refused_with_counts_and_fixes(imgs, caplog):
    root, names = imgs
    frame = _frame(names[:4], catami_biota=[SPONGES, FISHES, SPONGES, "Biota > Sponges > Crusts"],
                   catami_substrate=[SAND, SOFT, SAND, SAND])
    path = _write(frame, root / "t.csv")
    with caplog.at_level(logging.INFO, logger="benthicnet_hf.data"):
        ds, report = build_dataset_with_report(path, root, cache_dir=root / "c", exhaustive={"biota": False})
    assert "label support per split" in caplog.text and "degenerate" in caplog.text
    support = report["label_support"]["train"]
    biota = support[0]
    # non-exhaustive opt-in: only positives known (4 rows; Biota+Sponges / Biota+Fishes / ... / +Crusts)
    assert biota == {"head": "biota", "rows": 4, "positives": 2 + 2 + 2 + 3, "negatives": 0}
    assert support[1]["negatives"] > 0 and support[4] == {"head": "colour", "rows": 0, "positives": 0, "negatives": 0}
    with pytest.raises(DegenerateHeadError, match=r"(?s)head 'biota': 4 labelled rows, 9 known positive bits, 0 known "
                                                  r"negative bits \(no known negatives\).*exhaustive.*_mask columns"
                                                  r".*--allow_degenerate_heads"):
        check_trainable_heads(support)
    check_trainable_heads(support, allow=["biota"])
    check_trainable_heads(support, allow=True)
    only_neg = [{"head": "relief", "rows": 2, "positives": 0, "negatives": 14}]
    with pytest.raises(DegenerateHeadError, match="no known positives"):
        check_trainable_heads(only_neg, split="validation")
    assert "<- degenerate" in format_label_support({"train": support})
    # the default (exhaustive) gives biota known negatives: trainable
    _, report2 = build_dataset_with_report(path, root, cache_dir=root / "c2")
    check_trainable_heads(report2["label_support"]["train"])


# ------------------------------------------------------------------------- cache and images
def test_cache_key_covers_the_images(imgs):
    root, names = imgs
    frame = _frame(names[:3], catami_substrate=[SAND] * 3)
    frame.loc[2, "image"] = "late.png"
    path = _write(frame, root / "t.csv")
    first = build_dataset(path, root, cache_dir=root / "c", skip_bad=True, report_path=str(root / "r.jsonl"))
    assert first["train"]["image_path"] == names[:2]
    # fix the missing file, and edit an image in place (same name): both must be picked up
    Image.new("RGB", (8, 8), (1, 2, 3)).save(root / "late.png")
    Image.new("RGB", (5, 7), (200, 0, 0)).save(root / names[0])
    os.utime(root / names[0], ns=(1, 10**18))  # a different mtime even on coarse clocks
    again = build_dataset(path, root, cache_dir=root / "c", skip_bad=True, report_path=str(root / "r.jsonl"))
    assert again["train"]["image_path"] == names[:2] + ["late.png"]
    img = again["train"][0]["image"]
    assert img.size == (5, 7) and img.getpixel((0, 0)) == (200, 0, 0)


def _png_claiming(width: int, height: int) -> bytes:
    """A small valid PNG whose header says ``width`` x ``height`` (a decompression bomb)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 16)) + chunk(b"IEND", b"")


@pytest.mark.parametrize("side", [30000, 12000])  # above 2x PIL's limit (error) and between 1x and 2x (warning)
def test_decompression_bomb_is_a_bad_row(imgs, side):
    root, names = imgs
    (root / "bomb.png").write_bytes(_png_claiming(side, side))
    frame = _frame(names[:2] + ["bomb.png"], catami_substrate=[SAND] * 3)
    path = _write(frame, root / "t.csv")
    with pytest.raises(ImageLoadError, match=r"row 3: image .*bomb\.png is refused as a possible decompression bomb"):
        build_dataset(path, root, cache_dir=root / "c")
    report = root / "skipped.jsonl"
    ds = build_dataset(path, root, cache_dir=root / "c2", skip_bad=True, report_path=str(report))
    assert ds["train"]["image_path"] == names[:2]
    (item,) = [json.loads(x) for x in report.read_text().splitlines()]
    assert item["row"] == 3 and item["stage"] == "image" and "decompression bomb" in item["reason"]


# ------------------------------------------------------------------------- ordinary mistakes
def test_misspelled_or_missing_columns_are_errors(imgs):
    root, names = imgs
    frame = _frame(names[:2], catami_substrat=[SAND, SOFT])
    with pytest.raises(TableError, match=r"head 'substrate' expects column 'catami_substrate', the table has "
                                         r"\['catami_substrat'\].*columns=\{'labels'"):
        build_dataset(_write(frame, root / "t.csv"), root, cache_dir=root / "c")
    frame = _frame(names[:2], catami_substrate=[SAND, SOFT], station=["a", "b"])
    with pytest.raises(TableError, match=r"site='stations' \(close: \['station'\]\).*columns are \['image'"):
        build_dataset(_write(frame, root / "t.csv"), root, cache_dir=root / "c2", columns={"site": "stations"})
    with pytest.raises(TableError, match=r"labels.biota='my_biota'"):
        build_dataset(root / "t.csv", root, cache_dir=root / "c3", columns={"labels": {"biota": "my_biota"}})


def test_unknown_source_and_bad_partition_values(imgs):
    root, names = imgs
    frame = _frame(names[:4], catami_substrate=[SAND] * 4)
    frame["dataset"] = ["survey_A", "survey_A", "survey_B", "survey_B"]
    path = _write(frame, root / "t.csv")
    with pytest.raises(TableError, match=r"source_exhaustive names source\(s\) \['survey_b'\]"
                                         r".*\['survey_A', 'survey_B'\]"):
        build_dataset(path, root, cache_dir=root / "c", source_exhaustive={"survey_b": {"biota": False}})
    ds = build_dataset(_write(frame.assign(partition=["train", "valid", "dev", "Test"]), root / "ok.csv"), root,
                       cache_dir=root / "c1")  # aliases are normalised
    frame["partition"] = ["train", "val", "tset", "Test"]
    assert {k: len(v) for k, v in ds.items()} == {"train": 1, "validation": 2, "test": 1}
    frame.loc[0, "partition"] = ""
    with pytest.raises(TableError, match=r"column 'partition' must say train.*2 row\(s\) do not.*'' in row\(s\) \[1\]; "
                                         r"'tset' in row\(s\) \[3\]"):
        build_dataset(_write(frame, root / "t2.csv"), root, cache_dir=root / "c2")


def test_duplicate_images_header_only_coordinates_and_dates(imgs):
    root, names = imgs
    frame = _frame([names[0], names[1], names[0]], catami_substrate=[SAND] * 3)
    with pytest.raises(BadRowError, match=r"row 3: column 'image': image 'im0.png' is also in row 1"):
        build_dataset(_write(frame, root / "t.csv"), root, cache_dir=root / "c")
    _write(frame.iloc[:0], root / "empty_rows.csv")
    with pytest.raises(TableError, match=r"empty_rows\.csv has a header .* but no data rows"):
        build_dataset(root / "empty_rows.csv", root, cache_dir=root / "c2")
    with pytest.raises(TableError, match="no data rows"):
        build_dataset(frame.iloc[:0], root, cache_dir=root / "c2b")
    frame = _frame(names[:5], catami_substrate=[SAND] * 5)
    frame["latitude"] = ["44.5", "95", "44.5", "-90", "44.5"]
    frame["longitude"] = ["-63", "-63", "181.5", "180", "-63"]
    frame["date"] = ["2020-01-02", "2020-01-02", "2020-01-02", "2020-13-45", "2019-07-01 10:00:00"]
    with pytest.raises(BadRowError) as info:
        build_dataset(_write(frame, root / "t3.csv"), root, cache_dir=root / "c3")
    msg = str(info.value)
    assert "3 bad row(s)" in msg
    assert "row 2: column 'latitude': '95' is outside [-90, 90]" in msg
    assert "row 3: column 'longitude': '181.5' is outside [-180, 180]" in msg
    assert "row 4: column 'date': '2020-13-45' is not a date" in msg


def test_csv_files_empty_non_utf8_and_other_delimiters(imgs):
    root, names = imgs
    (root / "empty.csv").write_bytes(b"")
    with pytest.raises(TableError, match=r"empty\.csv is empty"):
        build_dataset(root / "empty.csv", root, cache_dir=root / "c")
    frame = _frame(names[:2], catami_substrate=[SAND, SOFT], colour_qualifier=["Brown", "Grey"])
    text = frame.to_csv(index=False).replace("Grey", "Gr\xe9y")
    (root / "latin.csv").write_bytes(text.encode("latin-1"))
    with pytest.raises(TableError, match=r"latin\.csv is not UTF-8 text.*CSV UTF-8"):
        build_dataset(root / "latin.csv", root, cache_dir=root / "c2")
    (root / "latin_header.csv").write_bytes(text.replace("site", "sit\xe9").encode("latin-1"))
    with pytest.raises(TableError, match=r"latin_header\.csv is not UTF-8 text"):
        build_dataset(root / "latin_header.csv", root, cache_dir=root / "c2b")
    for sep, name in ((";", "semi.csv"), ("\t", "tab.csv")):
        _write(frame, root / name, sep=sep)
        ds = build_dataset(root / name, root, cache_dir=root / f"c_{name}")["train"]
        assert ds["substrate_labels"] == [[SAND], [SOFT]] and ds["colour_labels"] == [["Brown"], ["Grey"]]


def test_cli_prints_support_and_writes_build_report(imgs, capsys):
    import importlib.util
    from pathlib import Path

    root, names = imgs
    spec = importlib.util.spec_from_file_location(
        "build_dataset_cli", Path(__file__).resolve().parents[1] / "dataset_scripts" / "build_dataset.py")
    cli = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cli)
    water = CATAMI.head("substrate").nodes.index("Water column")
    frame = _frame(names[:3], catami_substrate=[SAND, SOFT, SAND], my_unknowns=["", f"[{water}]", ""],
                   catami_biota=[SPONGES, FISHES, SPONGES])
    cli.main([str(_write(frame, root / "t.csv")), "--cache-dir", str(root / "c"), "--non-exhaustive", "biota",
              "--mask-column", "substrate=my_unknowns", "--build-report", str(root / "report.json")])
    out = capsys.readouterr().out
    assert "known +" in out and "<- degenerate" in out
    report = json.loads((root / "report.json").read_text())
    sub = next(s for s in report["label_support"]["train"] if s["head"] == "substrate")
    # known bits from the key strings, minus the one listed unknown ("Water column", a negative)
    expected = sum(int(_exhaustive_mask("substrate", [lab]).sum()) for lab in (SAND, SOFT, SAND)) - 1
    pos = sum(int(_positives("substrate", [lab]).sum()) for lab in (SAND, SOFT, SAND))
    assert sub == {"head": "substrate", "rows": 3, "positives": pos, "negatives": expected - pos}
