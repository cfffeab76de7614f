"""``benthicnet-hf predict``: one row per image, corrupt images reported, predictions checked
against a brute-force reading of the model's own probabilities."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from benthicnet_hf import Hierarchy
from benthicnet_hf.cli import main
from benthicnet_hf.configuration_benthicnet import BenthicNetConfig
from benthicnet_hf.image_processing import make_image_processor
from benthicnet_hf.modeling_benthicnet import BenthicNetForHierarchicalClassification


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    hierarchy = Hierarchy.catami().subset(["substrate", "relief", "colour"])
    torch.manual_seed(0)
    config = BenthicNetConfig(encoder_name="test_resnet", hierarchy=hierarchy.to_list(), head_hidden_dim=0,
                              image_size=32)
    model = BenthicNetForHierarchicalClassification(config).eval()
    with torch.no_grad():  # spread the scores so that several depths clear the threshold
        for p in model.heads.parameters():
            p.mul_(8.0)
    folder = tmp_path_factory.mktemp("model")
    model.save_pretrained(folder)
    return folder


@pytest.fixture()
def images(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    (tmp_path / "imgs" / "sub").mkdir(parents=True)
    for i in range(5):
        arr = rng.integers(0, 255, (40 + i, 48, 3), dtype=np.uint8)
        Image.fromarray(arr).save(tmp_path / "imgs" / ("sub" if i == 4 else ".") / f"img_{i}.png")
    (tmp_path / "imgs" / "img_2_corrupt.jpg").write_bytes(b"\xff\xd8\xff not really a jpeg")
    (tmp_path / "imgs" / "notes.txt").write_text("not an image: ignored")
    return tmp_path / "imgs"


def brute_force_deepest(keys: list[str], depth: np.ndarray, probs: np.ndarray, threshold: float) -> tuple[str, float]:
    """The deepest node scoring > threshold (ties: the higher score), by a plain loop."""
    best = None
    for i, (k, d, p) in enumerate(zip(keys, depth, probs)):
        if p > threshold and (best is None or (d, p) > (best[1], best[2])):
            best = (k, d, p)
    return ("", float("nan")) if best is None else (best[0], float(best[2]))


def test_predict_folder_with_a_corrupt_image(saved_model: Path, images: Path, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "pred" / "predictions.csv"
    rc = main(["predict", "--model", str(saved_model), str(images), "--output", str(out), "--batch_size", "2",
               "--no_progress"])
    assert rc == 1  # one image failed: the exit status says so
    rows = list(csv.DictReader(out.open()))
    names = sorted(Path(r["image"]).name for r in rows)
    assert names == sorted([f"img_{i}.png" for i in range(5)] + ["img_2_corrupt.jpg"])
    bad = [r for r in rows if r["error"]]
    assert len(bad) == 1 and "img_2_corrupt.jpg" in bad[0]["error"]
    assert "img_2_corrupt.jpg" in capsys.readouterr().err

    model = BenthicNetForHierarchicalClassification.from_pretrained(saved_model).eval()
    processor = make_image_processor(model.config)
    hierarchy = model.config.get_hierarchy()
    good = [r for r in rows if not r["error"]]
    pixel_values = processor([Image.open(r["image"]).convert("RGB") for r in good], return_tensors="pt")["pixel_values"]
    with torch.no_grad():
        probs = model(pixel_values=pixel_values).probabilities.numpy()
    found_deep = 0
    for row, p in zip(good, probs):
        for h, head in enumerate(hierarchy.heads):
            s = hierarchy.head_slice(h)
            key, score = brute_force_deepest(list(head.nodes), hierarchy.depth[s], p[s], 0.5)
            assert row[f"{head.name}_deepest"] == key
            if key:
                assert float(row[f"{head.name}_score"]) == pytest.approx(score, abs=1e-5)
                assert key in row[f"{head.name}_paths"].split("; ")
                found_deep += hierarchy.depth[s][list(head.nodes).index(key)] > 1
            # every listed path is predicted and none of its children is
            for path in filter(None, row[f"{head.name}_paths"].split("; ")):
                i = head.index[path]
                assert p[s][i] > 0.5
                assert all(p[s][c] <= 0.5 for c in head.children[i])
    assert found_deep > 0  # the check covered more than root nodes


def test_predict_reports_missing_input(saved_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["predict", "--model", str(saved_model), str(tmp_path / "missing.png"), "--output",
               str(tmp_path / "p.csv"), "--no_progress"])
    assert rc == 2
    assert "missing.png" in capsys.readouterr().err
