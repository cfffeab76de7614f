"""Builder on a hand-made table with tricky rows; splits; Parquet round trip; mocked Hub push."""

from __future__ import annotations

import json
from unittest.mock import create_autospec

import datasets
import numpy as np
import pandas as pd
import pytest
from huggingface_hub import DatasetCard, HfApi
from PIL import Image

from benthicnet_hf import Hierarchy, UnknownLabelError
from benthicnet_hf.data import BadRowError, ImageLoadError, build_dataset, hml_features
from benthicnet_hf.data.export import dataset_card, load_parquet_shards, push_dataset_to_hub, save_parquet_shards

CATAMI = Hierarchy.catami()
SOFT = "Substrate > Unconsolidated (soft)"
SAND = SOFT + " > Sand / mud (<2mm) > Fine sand (no shell fragments)"
KELP = "Biota > Macroalgae > Large canopy-forming > Brown"
SPONGE = "Biota > Sponges > Massive forms > Simple"


def _write_images(root):
    rng = np.random.default_rng(0)
    (root / "s1").mkdir(parents=True)
    (root / "s2").mkdir()
    Image.fromarray(rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)).save(root / "s1/rgb.png")
    for name in ("rgb2.png", "rgb3.png"):  # one image per row: a repeated image is a bad row
        Image.fromarray(rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)).save(root / "s1" / name)
    Image.fromarray(rng.integers(0, 65536, (20, 24), dtype=np.uint16)).save(root / "s1/g16.png")
    Image.fromarray(rng.integers(0, 256, (20, 24, 4), dtype=np.uint8), mode="CMYK").save(root / "s2/cmyk.jpg")
    Image.fromarray(rng.integers(0, 256, (20, 24, 4), dtype=np.uint8), mode="RGBA").save(root / "s2/rgba.png")
    (root / "s2/corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")


def _table(root, with_bad=True):
    rows = [
        # multi-label biota cell, full substrate path, relief + colour
        dict(image="s1/rgb.png", site="s1", catami_biota=f"{KELP};{SPONGE}", catami_substrate=SAND,
             catami_relief="Flat", catami_bedforms="None", colour_qualifier="Brown|Yellow"),
        # partial path (cut short), missing heads
        dict(image="s1/g16.png", site="s1", catami_biota="", catami_substrate=SOFT, catami_relief="",
             catami_bedforms="", colour_qualifier=""),
        # head tokens, and reference index lists (ancestors included, as in benthicnet_nn.csv)
        dict(image="s2/cmyk.jpg", site="s2", catami_biota="[BIOTA] > " + SPONGE,
             catami_substrate=json.dumps([CATAMI.head("substrate").index[k] for k in (
                 "Substrate", SOFT, SOFT + " > Sand / mud (<2mm)", SAND)]),
             catami_relief="", catami_bedforms="[BEDFORMS] > Bedforms > 2D", colour_qualifier=""),
        dict(image="s2/rgba.png", site="s2", catami_biota="No visible biota", catami_substrate="",
             catami_relief="High > Wall", catami_bedforms="", colour_qualifier=""),
    ]
    if with_bad:
        rows += [
            dict(image="s1/rgb2.png", site="s1", catami_biota="Biota > Sponges > Glowing", catami_substrate="",
                 catami_relief="", catami_bedforms="", colour_qualifier=""),   # unknown label (data row 5)
            dict(image="s2/missing.png", site="s2", catami_biota="", catami_substrate=SOFT,
                 catami_relief="", catami_bedforms="", colour_qualifier=""),   # missing file (data row 6)
            dict(image="s2/corrupt.png", site="s2", catami_biota="", catami_substrate=SOFT,
                 catami_relief="", catami_bedforms="", colour_qualifier=""),   # corrupt file (data row 7)
            dict(image="s1/rgb3.png", site="s1", latitude="north", catami_biota="", catami_substrate=SOFT,
                 catami_relief="", catami_bedforms="", colour_qualifier=""),   # unreadable row (data row 8)
        ]
    table = pd.DataFrame(rows)
    table.insert(1, "dataset", "survey")
    if "latitude" not in table:
        table["latitude"] = ""
    table["latitude"] = table["latitude"].fillna("44.5")
    table["longitude"] = "-63.1"
    table["date"] = "2020-01-02"
    table["partition"] = "train"
    path = root / "labels.csv"
    table.to_csv(path, index=False)
    return path


def _expected(label_keys, head="substrate"):
    """Independent reference from the key strings: positives = labels and their path prefixes;
    exhaustive head: all known except strictly below a label with no labelled child."""
    keys = CATAMI.head(head).nodes
    pos = {k for k in keys for lab in label_keys if lab == k or lab.startswith(k + " > ")}
    deepest = [p for p in pos if not any(q.startswith(p + " > ") for q in pos)]
    target = np.array([k in pos for k in keys], dtype=np.uint8)
    mask = np.array([not any(k.startswith(d + " > ") for d in deepest) for k in keys], dtype=np.uint8)
    return target, mask


@pytest.fixture()
def tricky(tmp_path):
    _write_images(tmp_path / "img")
    return tmp_path


def test_bad_rows_raise_clear_errors(tricky):
    table = _table(tricky)
    with pytest.raises(BadRowError, match=r"1-based data rows.*row 8: column 'latitude': 'north' is not a number"):
        build_dataset(table, tricky / "img", cache_dir=tricky / "c1")
    frame = pd.read_csv(table, dtype=str, keep_default_na=False)
    frame.loc[7, "latitude"] = "44.5"
    with pytest.raises(UnknownLabelError, match=r"column 'catami_biota'.*Glowing' in 1 row\(s\): 5"):
        build_dataset(frame, tricky / "img", cache_dir=tricky / "c2")
    frame = frame.drop(index=4).reset_index(drop=True)
    with pytest.raises(ImageLoadError, match=r"row 5: image file .*missing\.png does not exist.*1-based data row"):
        build_dataset(frame, tricky / "img", cache_dir=tricky / "c3")
    frame = frame.drop(index=4).reset_index(drop=True)
    with pytest.raises(ImageLoadError, match=r"row 5: image .*corrupt\.png cannot be decoded"):
        build_dataset(frame, tricky / "img", cache_dir=tricky / "c4")


def test_skip_bad_report_and_encoded_rows(tricky):
    report = tricky / "skipped.jsonl"
    ds = build_dataset(_table(tricky), tricky / "img", cache_dir=tricky / "c", skip_bad=True,
                       report_path=str(report), use_split_column=True)
    assert list(ds) == ["train"]
    train = ds["train"]
    skipped = [json.loads(line) for line in report.read_text().splitlines()]
    # "row" is the 1-based data row, as in the error messages
    assert [(s["row"], s["stage"]) for s in skipped] == [(5, "table"), (6, "image"), (7, "image"), (8, "table")]
    assert "Glowing" in skipped[0]["reason"] and "missing.png" in skipped[1]["reason"]
    assert train.num_rows == 4
    rows = {r["image_path"]: r for r in train}
    # multi-label cell: both organisms and their ancestors positive; biota exhaustive by default
    b = rows["s1/rgb.png"]
    t, m = _expected([KELP, SPONGE], "biota")
    np.testing.assert_array_equal(b["biota_target"], t)
    np.testing.assert_array_equal(b["biota_mask"], m)
    assert 0 < m.sum() < len(m) and (1 - t[m == 1]).sum() > 200  # known negatives exist
    assert b["bedforms_labels"] == ["None"] and sum(b["bedforms_target"]) == 1  # the class "None" is kept
    assert b["colour_labels"] == ["Brown", "Yellow"]
    assert sum(b["colour_target"]) == 2 and all(b["colour_mask"])
    for path, labs in (("s1/rgb.png", [SAND]), ("s1/g16.png", [SOFT]), ("s2/cmyk.jpg", [SAND])):
        t, m = _expected(labs)
        np.testing.assert_array_equal(rows[path]["substrate_target"], t, err_msg=path)
        np.testing.assert_array_equal(rows[path]["substrate_mask"], m, err_msg=path)
    # missing heads → all-zero mask
    g = rows["s1/g16.png"]
    assert not any(g["biota_mask"]) and not any(g["relief_mask"]) and g["relief_labels"] == []
    assert not any(rows["s2/rgba.png"]["substrate_mask"])
    # index lists are mapped back to label strings
    assert rows["s2/cmyk.jpg"]["substrate_labels"][-1] == SAND
    # odd image modes are stored and decode to RGB through our loader
    from benthicnet_hf.data import load_rgb
    for r in train:
        assert load_rgb(r["image"]).mode == "RGB"
    assert rows["s1/rgb.png"]["latitude"] == pytest.approx(44.5)


def test_num_proc_builds_the_same_rows_and_report(tricky):
    """Two processes (one 2-row shard at a time) give the rows, order, bytes and skipped report of one."""
    table = _table(tricky)
    built, reports = {}, {}
    for n in (1, 2):
        reports[n] = tricky / f"skipped{n}.jsonl"
        built[n] = build_dataset(table, tricky / "img", cache_dir=tricky / f"c{n}", skip_bad=True,
                                 report_path=str(reports[n]), rows_per_source_shard=2, num_proc=n)["train"]
    one, two = built[1], built[2]
    # the work really went to two processes: one Arrow file per process
    assert [len(list((tricky / f"c{n}").rglob("*-train*.arrow"))) for n in (1, 2)] == [1, 2]
    frame = pd.read_csv(table, dtype=str, keep_default_na=False)
    kept = [p for i, p in enumerate(frame["image"]) if i + 1 not in (5, 6, 7, 8)]  # the test table's bad rows
    assert two["image_path"] == one["image_path"] == kept
    for a, b in zip(one, two):
        assert a["image"].tobytes() == b["image"].tobytes()
        for head in CATAMI.head_names:
            assert a[f"{head}_target"] == b[f"{head}_target"] and a[f"{head}_mask"] == b[f"{head}_mask"]
    lines = [reports[n].read_text().splitlines() for n in (1, 2)]
    assert lines[0] == lines[1]
    assert [(json.loads(x)["row"], json.loads(x)["stage"]) for x in lines[1]] == [
        (5, "table"), (6, "image"), (7, "image"), (8, "table")]


def test_grouped_split_never_leaks(tmp_path):
    from benthicnet_hf.data.demo import make_demo_dataset
    table = make_demo_dataset(tmp_path / "demo", num_images=160, image_size=32, seed=1)
    ds = build_dataset(table, cache_dir=tmp_path / "c", seed=3)
    sites = {s: set(ds[s]["site"]) for s in ds}
    names = list(sites)
    assert set(names) == {"train", "validation", "test"}
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            assert not sites[a] & sites[b], (a, b, sites[a] & sites[b])
    assert sum(len(ds[s]) for s in ds) == 160
    # grouping by survey: each survey in a single split
    ds2 = build_dataset(table, cache_dir=tmp_path / "c2", group_by="dataset",
                        split_fractions={"train": 0.5, "test": 0.5})
    surveys = [set(ds2[s]["dataset"]) for s in ds2]
    assert all(len(s) == 1 for s in surveys) and len(set.union(*surveys)) == 2


def test_grouped_split_hits_row_fractions_closer_than_sklearn():
    # why data/splits.py keeps its own assignment: sklearn's GroupShuffleSplit sizes splits by groups
    from sklearn.model_selection import GroupShuffleSplit

    from benthicnet_hf.data.splits import grouped_split

    fractions = {"train": 0.8, "validation": 0.1, "test": 0.1}

    def sklearn_split(groups: np.ndarray, seed: int) -> np.ndarray:
        rows = np.arange(len(groups))
        train, rest = next(GroupShuffleSplit(1, test_size=0.2, random_state=seed).split(rows, groups=groups))
        val, test = next(GroupShuffleSplit(1, test_size=0.5, random_state=seed).split(rest, groups=groups[rest]))
        out = np.empty(len(groups), dtype=object)
        out[train], out[rest[val]], out[rest[test]] = "train", "validation", "test"
        return out

    def error(out: np.ndarray) -> float:
        return sum(abs(float(np.mean(out == k)) - v) for k, v in fractions.items())

    ours, theirs = [], []
    for seed in range(30):
        sizes = np.maximum(1, np.random.default_rng(seed).lognormal(3, 1.2, 40).astype(int))  # uneven sites
        groups = np.repeat(np.arange(40), sizes)
        out = grouped_split(groups, fractions, seed)
        assert all(len(set(out[groups == g])) == 1 for g in range(40))  # still leak-free
        ours.append(error(out))
        theirs.append(error(sklearn_split(groups, seed)))
    assert np.mean(ours) < 0.5 * np.mean(theirs)


def test_parquet_round_trip_streaming_and_mocked_push(tmp_path):
    from benthicnet_hf.data.demo import make_demo_dataset
    table = make_demo_dataset(tmp_path / "demo", num_images=48, image_size=32, seed=2)
    ds = build_dataset(table, cache_dir=tmp_path / "c")
    files = save_parquet_shards(ds, tmp_path / "pq", max_rows_per_shard=16)
    assert any("-00001-of-" in f.name for f in files)
    back = load_parquet_shards(tmp_path / "pq")
    assert back["train"].features == hml_features(CATAMI) == ds["train"].features
    assert back["train"]["substrate_mask"] == ds["train"]["substrate_mask"]
    np.testing.assert_array_equal(np.asarray(back["train"][0]["image"]), np.asarray(ds["train"][0]["image"]))
    # the folder belongs to one build: a second, smaller build must not leave the first's shards behind
    with pytest.raises(FileExistsError, match=r"already holds \d+ Parquet shard\(s\) of another build"):
        save_parquet_shards(ds, tmp_path / "pq", max_rows_per_shard=1000)
    smaller = save_parquet_shards(ds, tmp_path / "pq2", max_rows_per_shard=1000)
    for f in files:  # simulate an older tool that wrote into the same folder
        if f.name.startswith("train-"):
            (tmp_path / "pq2" / "data" / f.name).write_bytes(f.read_bytes())
    with pytest.raises(ValueError, match=r"'train' shards do not form one complete i-of-N set"):
        load_parquet_shards(tmp_path / "pq2")
    replaced = save_parquet_shards(ds, tmp_path / "pq2", max_rows_per_shard=1000, overwrite=True)
    assert sorted(p.name for p in (tmp_path / "pq2" / "data").iterdir()) == sorted(p.name for p in replaced)
    assert [p.name for p in replaced] == [p.name for p in smaller]
    assert load_parquet_shards(tmp_path / "pq2")["train"].num_rows == ds["train"].num_rows
    stream = load_parquet_shards(tmp_path / "pq", features=hml_features(CATAMI), streaming=True)
    first = next(iter(stream["train"]))
    assert first["image_path"] == ds["train"][0]["image_path"] and len(first["biota_target"]) == 272

    api = create_autospec(HfApi, instance=True)
    uploaded = {}
    api.upload_folder.side_effect = lambda folder_path, **kw: uploaded.update(
        files=sorted(p.relative_to(folder_path).as_posix() for p in __import__("pathlib").Path(folder_path).rglob("*")
                     if p.is_file()), readme=(__import__("pathlib").Path(folder_path) / "README.md").read_text())
    push_dataset_to_hub(ds, "me/demo", api=api)
    api.create_repo.assert_called_once_with("me/demo", repo_type="dataset", private=True, exist_ok=True)
    assert api.upload_folder.call_args.kwargs["repo_type"] == "dataset"
    assert "README.md" in uploaded["files"] and "data/train-00000-of-00001.parquet" in uploaded["files"]
    assert "path: data/test-*.parquet" in uploaded["readme"]
    card = DatasetCard(uploaded["readme"])  # the Hub's parser reads the metadata back
    assert card.data.task_categories == ["image-classification"] and card.data.size_categories == ["n<1K"]
    assert card.data.configs[0]["data_files"] == [{"split": s, "path": f"data/{s}-*.parquet"} for s in ds]


def test_dataset_card_metadata_loads_the_shards(tmp_path):
    from benthicnet_hf.data.demo import make_demo_dataset
    table = make_demo_dataset(tmp_path / "demo", num_images=40, image_size=32, seed=4)
    ds = build_dataset(table, cache_dir=tmp_path / "c")
    folder = tmp_path / "repo"
    save_parquet_shards(ds, folder, max_rows_per_shard=10)
    dataset_card(ds, "me/demo", license="cc-by-4.0").save(folder / "README.md")
    card = DatasetCard.load(folder / "README.md")
    assert card.data.license == "cc-by-4.0" and "hierarchical-multi-label" in card.data.tags
    for entry in card.data.configs[0]["data_files"]:  # every split's pattern names its shards
        assert sorted(p.name for p in folder.glob(entry["path"])) and entry["split"] in ds
    # `datasets` itself follows the card's configs (the Hub viewer does the same)
    back = datasets.load_dataset(str(folder))
    assert {s: back[s].num_rows for s in back} == {s: ds[s].num_rows for s in ds}
    assert back["train"].features == ds["train"].features
