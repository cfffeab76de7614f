"""``benthicnet-hf predict --table``: the table's metadata travels with the predictions, CSV or Parquet,
AphiaIDs of the deepest biota node, and a missing image is an error naming its row.

References: the table as written here (metadata), ``predict`` on the same image files without a table
(predictions), and the WoRMS ids read from ``schemes/catami_aphia.csv`` with plain ``csv``.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from benthicnet_hf import Hierarchy
from benthicnet_hf.aphia import APHIA_FILE
from benthicnet_hf.cli import main
from benthicnet_hf.configuration_benthicnet import BenthicNetConfig
from benthicnet_hf.modeling_benthicnet import BenthicNetForHierarchicalClassification

SPONGE = "Biota > Sponges > Massive forms"
META = ["image", "dataset", "site", "latitude", "longitude", "date", "depth", "n_points"]


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    hierarchy = Hierarchy.catami()
    torch.manual_seed(0)
    config = BenthicNetConfig(encoder_name="test_resnet", hierarchy=hierarchy.to_list(), head_hidden_dim=0,
                              image_size=32)
    model = BenthicNetForHierarchicalClassification(config).eval()
    with torch.no_grad():  # biota: only the massive sponge (and, coherently, its ancestors) clears 0.5
        biota = model.heads.heads[hierarchy.head_names.index("biota")].fc
        biota.weight.zero_()
        biota.bias.fill_(-6.0)
        biota.bias[hierarchy.head("biota").index[SPONGE]] = 6.0
    folder = tmp_path_factory.mktemp("model")
    model.save_pretrained(folder)
    return folder


@pytest.fixture()
def table(tmp_path: Path) -> Path:
    (tmp_path / "imgs").mkdir()
    rng = np.random.default_rng(0)
    rows = [META + ["catami_biota", "catami_substrate", "biota_mask"]]
    for i in range(3):
        Image.fromarray(rng.integers(0, 255, (30 + i, 40, 3), dtype=np.uint8)).save(tmp_path / "imgs" / f"im{i}.png")
        rows.append([f"imgs/im{i}.png", "campaign_1", f"dep_{i % 2}", f"-42.{i}5", f"148.{i}1", f"2020-03-0{i + 1}",
                     f"{20 + i}.5", str(3 + i), "Biota > Sponges", "", "[1, 2]"])
    path = tmp_path / "labels.csv"
    with open(path, "w", newline="") as f:
        csv.writer(f).writerows(rows)
    return path


def _shipped_aphia(node: str) -> str:
    with open(APHIA_FILE, newline="", encoding="utf-8") as f:
        rows = csv.DictReader(line for line in f if not line.startswith("#"))
        return next((r["aphia_id"] for r in rows if r["head"] == "biota" and r["node"] == node), "")


def test_predict_table_carries_metadata_and_aphia_ids(saved_model: Path, table: Path, tmp_path: Path) -> None:
    out = tmp_path / "pred.csv"
    assert main(["predict", "--model", str(saved_model), "--table", str(table), "--output", str(out),
                 "--no_progress", "--batch_size", "2"]) == 0
    got = list(csv.DictReader(out.open()))
    source = list(csv.DictReader(table.open()))
    header = list(got[0])
    assert header[:len(META)] == META  # metadata first, in the table's order
    assert not {"catami_biota", "catami_substrate", "biota_mask"} & set(header)  # labels/masks are not metadata
    for g, s in zip(got, source):
        assert {k: g[k] for k in META} == {k: s[k] for k in META}
        assert g["biota_deepest"] == SPONGE
        assert g["biota_aphia_id"] == _shipped_aphia(SPONGE) == "558"
    assert "substrate_aphia_id" not in header  # no WoRMS ids for substrate

    # the same images without a table give the same predictions
    plain = tmp_path / "plain.csv"
    assert main(["predict", "--model", str(saved_model), str(table.parent / "imgs"), "--output", str(plain),
                 "--no_progress"]) == 0
    by_name = {Path(r["image"]).name: r for r in csv.DictReader(plain.open())}
    for g in got:
        ref = by_name[Path(g["image"]).name]
        assert {k: ref[k] for k in ref if k not in ("image", "error")} == {k: g[k] for k in ref if k not in
                                                                               ("image", "error")}


def test_predict_table_to_parquet_types_columns(saved_model: Path, table: Path, tmp_path: Path) -> None:
    out = tmp_path / "pred.parquet"
    assert main(["predict", "--model", str(saved_model), "--table", str(table), "--output", str(out),
                 "--no_progress"]) == 0
    frame = pd.read_parquet(out)
    assert frame["latitude"].tolist() == [-42.05, -42.15, -42.25]
    assert frame["site"].tolist() == ["dep_0", "dep_1", "dep_0"] and frame["date"].iloc[0] == "2020-03-01"
    assert frame["biota_aphia_id"].dtype == "Int64" and frame["biota_aphia_id"].tolist() == [558] * 3
    assert frame["biota_score"].dtype == float and (frame["biota_score"] > 0.5).all()


def test_predict_table_missing_image_names_the_row(saved_model: Path, table: Path, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    (table.parent / "imgs" / "im1.png").unlink()
    rc = main(["predict", "--model", str(saved_model), "--table", str(table), "--output", str(tmp_path / "p.csv"),
               "--no_progress"])
    assert rc == 2
    err = capsys.readouterr().err
    assert "row 2" in err and "im1.png" in err and "does not exist" in err
    assert not (tmp_path / "p.csv").exists()
    rc = main(["predict", "--model", str(saved_model), str(table.parent / "imgs"), "--table", str(table),
               "--output", str(tmp_path / "p.csv"), "--no_progress"])
    assert rc == 2 and "one of the two" in capsys.readouterr().err
