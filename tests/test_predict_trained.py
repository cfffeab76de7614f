"""Only what was trained is predicted: ``benthicnet-hf predict`` and the pipeline leave out nodes
without a positive training example and heads without training labels (``config.node_support``)."""

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
from benthicnet_hf.modeling_benthicnet import BenthicNetForHierarchicalClassification


def _support(hierarchy: Hierarchy) -> dict[str, list[int]]:
    """A training split that labelled substrate fully but only the 'Flat' branch of relief, and never
    the colour head."""
    pos = np.zeros(hierarchy.num_nodes, dtype=int)
    neg = np.zeros(hierarchy.num_nodes, dtype=int)
    pos[hierarchy.head_slice("substrate")] = 5
    neg[hierarchy.head_slice("substrate")] = 5
    relief = hierarchy.head_slice("relief")
    neg[relief] = 10
    pos[hierarchy.index("relief", "Flat")] = 10
    return {"positives": pos.tolist(), "negatives": neg.tolist()}


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    hierarchy = Hierarchy.catami().subset(["substrate", "relief", "colour"])
    torch.manual_seed(0)
    config = BenthicNetConfig(encoder_name="test_resnet", hierarchy=hierarchy.to_list(), head_hidden_dim=0,
                              image_size=32, node_support=_support(hierarchy))
    model = BenthicNetForHierarchicalClassification(config).eval()
    with torch.no_grad():  # push every node's score above 0.5: only the support can hold them back
        for head in model.heads.modules():
            if isinstance(head, torch.nn.Linear):
                head.weight.zero_()
                head.bias.fill_(4.0)
    folder = tmp_path_factory.mktemp("model")
    model.save_pretrained(folder)
    return folder


def test_config_round_trips_support_and_rejects_bad_support(saved_model: Path) -> None:
    config = BenthicNetConfig.from_pretrained(saved_model)
    trained = config.trained_nodes()
    hierarchy = config.get_hierarchy()
    assert sum(trained[hierarchy.head_slice("relief")]) == 1
    assert not any(trained[hierarchy.head_slice("colour")])
    with pytest.raises(ValueError, match="node_support"):
        BenthicNetConfig(encoder_name="test_resnet", node_support={"positives": [1, 2]})
    with pytest.raises(ValueError, match=r"node_support\['positives'\] must hold 324 counts"):
        BenthicNetConfig(encoder_name="test_resnet", node_support={"positives": [1], "negatives": [0] * 324})


def test_predict_leaves_out_untrained_nodes_and_heads(saved_model: Path, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    img = tmp_path / "a.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(img)
    out = tmp_path / "p.csv"
    assert main(["predict", "--model", str(saved_model), str(img), "--output", str(out), "--no_progress"]) == 0
    (row,) = list(csv.DictReader(out.open()))
    assert not any(k.startswith("colour_") for k in row)  # never trained: no column, no guess
    assert "colour" in capsys.readouterr().err
    assert row["relief_paths"] == "Flat"  # every relief node scores > 0.5, only "Flat" was trained
    assert row["substrate_deepest"]  # trained heads still predict


def test_pipeline_offers_only_trained_nodes(saved_model: Path, tmp_path: Path) -> None:
    from transformers import pipeline

    from benthicnet_hf.pipeline_benthicnet import BenthicNetImageClassificationPipeline

    model = BenthicNetForHierarchicalClassification.from_pretrained(saved_model).eval()
    from benthicnet_hf.image_processing import make_image_processor

    clf = pipeline("image-classification", model=model, image_processor=make_image_processor(model.config),
                   pipeline_class=BenthicNetImageClassificationPipeline)
    image = Image.fromarray(np.zeros((40, 40, 3), dtype=np.uint8))
    labels = [r["label"] for r in clf(image, top_k=model.config.num_labels)]
    trained = {name for name, ok in zip(model.config.get_hierarchy().labels, model.config.trained_nodes()) if ok}
    assert labels and set(labels) == trained


def test_predict_skips_a_decompression_bomb_and_keeps_the_good_rows(saved_model: Path, tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    from test_data_tables import _png_claiming

    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(2):
        Image.fromarray(np.full((40, 40, 3), 60 * i, dtype=np.uint8)).save(folder / f"good_{i}.png")
    (folder / "bomb.png").write_bytes(_png_claiming(30000, 30000))
    out = tmp_path / "p.csv"
    assert main(["predict", "--model", str(saved_model), str(folder), "--output", str(out), "--no_progress"]) == 1
    rows = {Path(r["image"]).name: r for r in csv.DictReader(out.open())}
    assert set(rows) == {"good_0.png", "good_1.png", "bomb.png"}
    assert "decompression bomb" in rows["bomb.png"]["error"]
    assert all(rows[f"good_{i}.png"]["error"] == "" and rows[f"good_{i}.png"]["relief_paths"] for i in range(2))
    assert "bomb.png" in capsys.readouterr().err
