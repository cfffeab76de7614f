"""``benthicnet-hf import``: SQUIDLE+, BIIGLE and CoralNet exports → our table.

Fixture exports are written with the platforms' documented column names (see the reader modules for
the spec each follows). Expectations are derived by hand: the union of an image's point labels per
head, and which nodes are known under the documented per-head rule (substrate, relief and bedforms
exhaustive; biota: positives and their ancestors only). The table is then built by our builder and
a row's targets/masks are compared with those hand-written node lists.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from benthicnet_hf import Hierarchy
from benthicnet_hf.cli import main
from benthicnet_hf.data.imports import UnmappedLabelError, import_exports
from benthicnet_hf.data.table import TableError

SQUIDLE_COLUMNS = ["label.id", "label.uuid", "label.name", "label.lineage_names", "comment", "needs_review",
                   "tag_names", "updated_at", "point.id", "point.x", "point.y", "point.t", "point.is_targeted",
                   "point.media.id", "point.media.key", "point.media.path_best", "point.pose.timestamp",
                   "point.pose.lat", "point.pose.lon", "point.pose.alt", "point.pose.dep",
                   "point.media.deployment.key", "point.media.deployment.campaign.key"]
SPONGE = "Biota > Sponges > Massive forms"
SAND = "Physical > Substrate > Unconsolidated (soft) > Sand / mud (<2mm)"
ROCK = "Physical > Substrate > Consolidated (hard) > Rock"
ALGAE = "Biota > Macroalgae > Filamentous / filiform"
FLAT = "Physical > Relief > Flat"
URCHIN = "Biota > Echinoderms > Sea urchins"
MAPPING = [
    ("label", "catami", "notes"),
    (SPONGE, "[BIOTA] > Biota > Sponges > Massive forms", ""),
    (SAND, "[SUBSTRATE] > Substrate > Unconsolidated (soft) > Sand / mud (<2mm)", ""),
    (ROCK, "[SUBSTRATE] > Substrate > Consolidated (hard) > Rock", ""),
    (ALGAE, "[BIOTA] > Biota > Macroalgae > Filamentous / filiform", ""),
    (FLAT, "[RELIEF] > Flat", "whole-frame label"),
    ("Unscorable", "IGNORE", "not a class"),
]


def _write_csv(path: Path, rows: list) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows(rows)
    return path


def _squidle_row(i: int, media: str, lineage: str, x: str = "0.5", y: str = "0.5") -> list:
    name = lineage.rsplit(" > ", 1)[-1]
    pose = {"PR_001": ("-42.1001", "148.2001", "21.5", "dep_A"), "PR_002": ("-42.1002", "148.2002", "22.0", "dep_A"),
            "PR_003": ("-42.3003", "148.4003", "30.25", "dep_B")}[media]
    return [str(100 + i), f"uuid-{i}", name, lineage, "", "False", "", "2024-05-01T10:00:00", str(i), x, y, "",
            "False", str(10 + int(media[-1])), media, f"https://data.example.org/imgs/{media}.jpg?sig=abc",
            f"2020-03-0{media[-1]} 10:11:12", pose[0], pose[1], "1.2", pose[2], pose[3], "campaign_2020"]


@pytest.fixture()
def squidle_export(tmp_path: Path) -> tuple[Path, Path]:
    rows = [SQUIDLE_COLUMNS,
            _squidle_row(1, "PR_001", SPONGE, "0.1", "0.2"), _squidle_row(2, "PR_001", SAND, "0.6", "0.7"),
            _squidle_row(3, "PR_001", SPONGE, "0.8", "0.1"), _squidle_row(4, "PR_001", FLAT, "", ""),
            _squidle_row(5, "PR_002", ALGAE), _squidle_row(6, "PR_002", "Unscorable"),
            _squidle_row(7, "PR_003", URCHIN), _squidle_row(8, "PR_003", ROCK), _squidle_row(9, "PR_003", URCHIN)]
    export = _write_csv(tmp_path / "squidle_export.csv", rows)
    mapping = _write_csv(tmp_path / "map.csv", MAPPING)
    return export, mapping


def _node_set(h: Hierarchy, head: str, nodes: list[str]) -> np.ndarray:
    out = np.zeros(len(h.head(head).nodes), dtype=np.uint8)
    for n in nodes:
        out[h.head(head).index[n]] = 1
    return out


def test_unmapped_labels_are_all_reported_with_counts(squidle_export) -> None:
    export, mapping = squidle_export
    extra = tmp = export.with_name("second.csv")
    _write_csv(extra, [SQUIDLE_COLUMNS, _squidle_row(1, "PR_002", "Biota > Fishes > Bony fishes")])
    with pytest.raises(UnmappedLabelError) as err:
        import_exports("squidle", [export, tmp], mapping)
    assert err.value.unmapped == {URCHIN: 2, "Biota > Fishes > Bony fishes": 1}
    assert "PR_003.jpg" in str(err.value) and "--on_unmapped skip" in str(err.value)


def test_squidle_points_become_image_rows(squidle_export) -> None:
    export, mapping = squidle_export
    table, report = import_exports("squidle", [export], mapping, on_unmapped="skip")
    assert report.unmapped == {URCHIN: 2} and report.ignored == {"Unscorable": 1}
    assert report.points == 9 and report.images == 3
    rows = {r["image"]: r for r in table.to_dict("records")}
    assert list(rows) == ["PR_001.jpg", "PR_002.jpg", "PR_003.jpg"]  # URL → file name, query dropped
    a = rows["PR_001.jpg"]
    assert a["catami_biota"] == "Biota > Sponges > Massive forms"  # two sponge points, one path
    assert a["catami_substrate"] == "Substrate > Unconsolidated (soft) > Sand / mud (<2mm)"
    assert a["catami_relief"] == "Flat" and a["n_points"] == 4
    assert (a["dataset"], a["site"], a["latitude"], a["longitude"], a["depth"]) == (
        "campaign_2020", "dep_A", "-42.1001", "148.2001", "21.5")
    assert a["date"] == "2020-03-01 10:11:12"
    assert rows["PR_002.jpg"]["catami_substrate"] == "" and rows["PR_002.jpg"]["catami_relief"] == ""
    assert rows["PR_003.jpg"]["catami_biota"] == ""  # its urchins were unmapped and skipped
    # substrate and relief are exhaustive by default: no mask column; biota lists its unknown nodes
    assert "relief_mask" not in table.columns and "substrate_mask" not in table.columns
    h = Hierarchy.catami()
    unknown = json.loads(a["biota_mask"])
    known = sorted(set(range(len(h.head("biota").nodes))) - set(unknown))
    assert [h.head("biota").nodes[i] for i in known] == ["Biota", "Biota > Sponges", "Biota > Sponges > Massive forms"]
    assert rows["PR_002.jpg"]["biota_mask"] != "" and rows["PR_003.jpg"]["biota_mask"] == ""  # no biota: no list


def test_table_loads_through_the_builder_with_hand_derived_targets_and_masks(squidle_export, tmp_path) -> None:
    export, mapping = squidle_export
    out = tmp_path / "labels.csv"
    rc = main(["import", "--format", "squidle", str(export), "--mapping", str(mapping), "--output", str(out),
               "--on_unmapped", "skip"])
    assert rc == 0
    for name in ("PR_001", "PR_002", "PR_003"):
        Image.fromarray(np.full((16, 16, 3), 80, np.uint8)).save(tmp_path / f"{name}.jpg")
    from benthicnet_hf.data import build_dataset

    ds = build_dataset(str(out), cache_dir=str(tmp_path / "cache"), split_fractions={"train": 1.0})
    rows = {r["image_path"]: r for r in ds["train"]}
    h = Hierarchy.catami()
    a = rows["PR_001.jpg"]
    biota_pos = ["Biota", "Biota > Sponges", "Biota > Sponges > Massive forms"]
    assert np.array_equal(a["biota_target"], _node_set(h, "biota", biota_pos))
    assert np.array_equal(a["biota_mask"], _node_set(h, "biota", biota_pos))  # only the positives are known
    sand = ["Substrate", "Substrate > Unconsolidated (soft)", "Substrate > Unconsolidated (soft) > Sand / mud (<2mm)"]
    assert np.array_equal(a["substrate_target"], _node_set(h, "substrate", sand))
    # exhaustive: all known but the sizes below the cut-short "Sand / mud" label
    below = [f"{sand[-1]} > {s}" for s in ("Coarse sand (with shell fragments)", "Fine sand (no shell fragments)",
                                            "Mud / silt (<64um)")]
    assert np.array_equal(a["substrate_mask"], 1 - _node_set(h, "substrate", below))
    assert np.array_equal(a["relief_target"], _node_set(h, "relief", ["Flat"]))
    assert np.array_equal(a["relief_mask"], np.ones(7, np.uint8))  # exhaustive: every other class is absent
    assert not any(a["bedforms_mask"]) and not any(rows["PR_002.jpg"]["relief_mask"])  # missing heads
    assert (a["site"], a["latitude"], a["longitude"]) == ("dep_A", -42.1001, 148.2001)


def test_exhaustive_override_and_bad_mapping_rows(squidle_export, tmp_path) -> None:
    export, mapping = squidle_export
    table, _ = import_exports("squidle", [export], mapping, on_unmapped="skip",
                              exhaustive={"biota": True, "substrate": False})
    assert "biota_mask" not in table.columns and "substrate_mask" in table.columns
    bad = _write_csv(tmp_path / "bad.csv", [("label", "catami"), (SPONGE, "[BIOTA] > Biota > Sponge"),
                                            (SAND, ""), (ROCK, "Substrate > Rock")])
    with pytest.raises(TableError) as err:
        import_exports("squidle", [export], bad)
    msg = str(err.value)
    assert "row 1" in msg and "'Biota > Sponges'" in msg  # closest node offered
    assert "row 2" in msg and "IGNORE" in msg and "row 3" in msg and "head token" in msg


def test_biigle_annotation_and_image_label_reports(tmp_path) -> None:
    header = ["annotation_label_id", "label_id", "label_name", "label_hierarchy", "user_id", "firstname", "lastname",
              "image_id", "filename", "image_longitude", "image_latitude", "shape_id", "shape_name", "points",
              "attributes", "annotation_id", "created_at"]
    attrs = json.dumps({"size": 1000, "width": 64, "height": 48, "metadata": {"gps_altitude": -812.5}})
    rows = [header,
            ["1", "11", "Porifera", "Animalia > Porifera", "3", "Ann", "Otator", "7", "img7.jpg", "-30.5", "45.25",
             "1", "Point", "[10,20]", attrs, "501", "2023-01-01 10:00:00"],
            ["2", "12", "Sand", "Substrate > Sand", "3", "Ann", "Otator", "7", "img7.jpg", "-30.5", "45.25",
             "5", "Rectangle", "[1,1,5,1,5,5,1,5]", attrs, "502", "2023-01-01 10:01:00"],
            ["3", "11", "Porifera", "Animalia > Porifera", "3", "Ann", "Otator", "8", "img8.jpg", "-30.6", "45.35",
             "4", "Circle", "[30,30,4]", "{}", "503", "2023-01-01 10:02:00"]]
    report = _write_csv(tmp_path / "12-dive_3.csv", rows)
    labels = _write_csv(tmp_path / "12-dive_3_image_labels.csv", [
        ["image_label_id", "image_id", "filename", "longitude", "latitude", "user_id", "firstname", "lastname",
         "label_id", "label_name", "label_hierarchy", "created_at"],
        ["9", "8", "img8.jpg", "-30.6", "45.35", "3", "Ann", "Otator", "20", "High relief", "Relief > High relief",
         "2023-01-01"]])
    mapping = _write_csv(tmp_path / "map.csv", [("label", "catami"),
                                                ("Animalia > Porifera", "[BIOTA] > Biota > Sponges"),
                                                ("Sand", "[SUBSTRATE] > Substrate > Unconsolidated (soft) > Sand / mud (<2mm)"),
                                                ("Relief > High relief", "[RELIEF] > High")])
    table, rep = import_exports("biigle", [report, labels], mapping, source="dive_3")
    rows = {r["image"]: r for r in table.to_dict("records")}
    assert rows["img7.jpg"]["catami_substrate"].endswith("Sand / mud (<2mm)")  # mapped by label_name alias
    assert rows["img7.jpg"]["catami_biota"] == rows["img8.jpg"]["catami_biota"] == "Biota > Sponges"
    assert rows["img8.jpg"]["catami_relief"] == "High" and rows["img7.jpg"]["catami_relief"] == ""
    assert (rows["img7.jpg"]["depth"], rows["img7.jpg"]["longitude"], rows["img7.jpg"]["latitude"]) == (
        "812.5", "-30.5", "45.25")
    assert rows["img8.jpg"]["n_points"] == 2 and rows["img7.jpg"]["dataset"] == "dive_3"


def test_coralnet_codes_through_the_labelset(tmp_path) -> None:
    export = _write_csv(tmp_path / "annotations.csv", [
        ["Name", "Date", "Site", "Transect", "Quadrant", "Aux4", "Aux5", "Height (cm)", "Latitude", "Longitude",
         "Depth", "Camera", "Photographer", "Water quality", "Strobes", "Framing gear used", "White balance card",
         "Comments", "Row", "Column", "Label"],
        ["q1.jpg", "2001-02-03", "Site A", "T1", "Q5", "", "", "40", "5.789", "-50", "10m", "", "", "", "", "", "",
         "", "149", "99", "Sand"],
        ["q1.jpg", "2001-02-03", "Site A", "T1", "Q5", "", "", "40", "5.789", "-50", "10m", "", "", "", "", "", "",
         "", "149", "299", "SPON"],
        ["q2.jpg", "2001-02-04", "Site B", "T2", "Q1", "", "", "40", "5.8", "-50.1", "12 m", "", "", "", "", "", "",
         "", "10", "10", "Sand"]])
    labelset = _write_csv(tmp_path / "labelset.csv", [["Label ID", "Short Code"], ["1405", "Sand"], ["88", "SPON"]])
    # Sand is mapped by its code, sponges by the global Label ID (portable across sources)
    mapping = _write_csv(tmp_path / "map.csv", [("label", "catami"),
                                                ("Sand", "[SUBSTRATE] > Substrate > Unconsolidated (soft) > Sand / mud (<2mm)"),
                                                ("88", "[BIOTA] > Biota > Sponges")])
    table, _ = import_exports("coralnet", [export], mapping, labelset=labelset, site_column="Site")
    rows = {r["image"]: r for r in table.to_dict("records")}
    assert rows["q1.jpg"]["catami_biota"] == "Biota > Sponges" and rows["q2.jpg"]["catami_biota"] == ""
    assert (rows["q1.jpg"]["site"], rows["q1.jpg"]["depth"], rows["q2.jpg"]["depth"]) == ("Site A", "10", "12")
    assert rows["q2.jpg"]["date"] == "2001-02-04"
    foreign = _write_csv(tmp_path / "labelset2.csv", [["Label ID", "Short Code"], ["1405", "Sand"]])
    with pytest.raises(TableError, match="'SPON' × 1"):
        import_exports("coralnet", [export], mapping, labelset=foreign)


def test_cli_import_errors_name_the_problem(squidle_export, tmp_path, capsys) -> None:
    export, mapping = squidle_export
    template = tmp_path / "todo.csv"
    rc = main(["import", "--format", "squidle", str(export), "--mapping", str(mapping), "--output",
               str(tmp_path / "t.csv"), "--unmapped_template", str(template)])
    assert rc == 2
    err = capsys.readouterr().err
    assert "Sea urchins" in err and "2 point(s)" in err
    assert list(csv.DictReader(template.open())) == [{"label": URCHIN, "catami": "", "count": "2"}]
    rc = main(["import", "--format", "biigle", str(export), "--mapping", str(mapping), "--output",
               str(tmp_path / "t.csv")])
    assert rc == 2 and "not a BIIGLE export" in capsys.readouterr().err


def test_bad_metadata_and_unreadable_exports_name_file_and_row(squidle_export, tmp_path) -> None:
    export, mapping = squidle_export
    rows = list(csv.reader(export.open()))
    rows[2][SQUIDLE_COLUMNS.index("point.pose.lat")] = "south"  # data row 2
    rows[5][SQUIDLE_COLUMNS.index("point.media.deployment.key")] = "dep_X"  # PR_002 now in two sites
    bad = _write_csv(tmp_path / "bad_meta.csv", rows)
    with pytest.raises(TableError) as err:
        import_exports("squidle", [bad], mapping, on_unmapped="skip")
    assert "bad_meta.csv row 2: latitude 'south' is not a number" in str(err.value)
    assert "image 'PR_002' has several site values" in str(err.value)
    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")
    with pytest.raises(TableError, match="empty.csv"):
        import_exports("squidle", [empty], mapping)
