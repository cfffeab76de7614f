"""The Space app in a real headless browser: Debian's chromium driven by Selenium on localhost.

Uploads a demo image, reads the rendered top path of every head and compares it with what
``benthicnet-hf predict`` writes for the same image; the rendered tree must be coherent (no child
above its parent), hide untrained nodes, and the downloaded row must be predict's row.
"""

from __future__ import annotations

import csv
import io
import os
import socket
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # nothing leaves the machine
os.environ.setdefault("SE_OFFLINE", "true")  # Selenium Manager must never try to download a driver

CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
pytestmark = pytest.mark.skipif(
    not (CHROMIUM.is_file() and CHROMEDRIVER.is_file()),
    reason=f"needs Debian's chromium and chromium-driver ({CHROMIUM}, {CHROMEDRIVER}; .ci/run installs them)")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random model; relief and bedforms untrained, half of the biota nodes never seen."""
    from benthicnet_hf import Hierarchy
    from benthicnet_hf.configuration_benthicnet import BenthicNetConfig
    from benthicnet_hf.modeling_benthicnet import BenthicNetForHierarchicalClassification

    hierarchy = Hierarchy.catami().subset(["biota", "substrate", "relief"])
    pos = np.ones(hierarchy.num_nodes, dtype=int)
    pos[hierarchy.head_slice("relief")] = 0
    biota = hierarchy.head_slice("biota")
    pos[biota.start:biota.stop][hierarchy.depth[biota] >= 3] = 0  # deep biota nodes were never positives
    torch.manual_seed(0)
    config = BenthicNetConfig(encoder_name="test_resnet", hierarchy=hierarchy.to_list(), head_hidden_dim=0,
                              image_size=32, node_support={"positives": pos.tolist(),
                                                           "negatives": np.ones_like(pos).tolist()})
    model = BenthicNetForHierarchicalClassification(config).eval()
    with torch.no_grad():  # spread the scores so that some paths are confident and some are not
        for module in model.heads.modules():
            if isinstance(module, torch.nn.Linear):
                module.bias.copy_(torch.linspace(-3.0, 3.0, module.bias.numel())[torch.randperm(module.bias.numel())])
    folder = tmp_path_factory.mktemp("model") / "demo-model"
    model.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def demo_image(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from benthicnet_hf.data.demo import make_demo_dataset

    root = tmp_path_factory.mktemp("demo")
    make_demo_dataset(root, num_images=8, image_size=64, seed=0)
    return sorted((root / "images").rglob("*.png"))[0]


@pytest.fixture(scope="module")
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--window-size=1400,1000"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
    yield driver
    driver.quit()


def predict_cli(model: Path, image: Path, out: Path) -> dict[str, str]:
    """The row ``benthicnet-hf predict`` writes (the reference the page must agree with)."""
    from benthicnet_hf.cli import main

    assert main(["predict", "--model", str(model), str(image), "--output", str(out), "--no_progress"]) == 0
    (row,) = list(csv.DictReader(out.open()))
    return row


def test_app_shows_predicts_answer_in_a_browser(saved_model: Path, demo_image: Path, browser, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    from benthicnet_hf import Hierarchy
    from benthicnet_hf.app import build_app

    expected = predict_cli(saved_model, demo_image, tmp_path / "p.csv")
    assert "relief_deepest" not in expected  # untrained head: no column, and no section on the page
    assert any(expected[f"{h}_deepest"] for h in ("biota", "substrate"))  # something to highlight

    port = free_port()
    demo = build_app(str(saved_model))
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, footer_links=[], quiet=True)
    try:
        browser.get(f"http://127.0.0.1:{port}/")
        wait = WebDriverWait(browser, 30)
        upload = wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "#image-input input[type=file]")))
        upload.send_keys(str(demo_image))
        wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "p.top-path[data-head=substrate]")))
        shown = {el.get_attribute("data-head"): el.get_attribute("data-key")
                 for el in browser.find_elements(By.CSS_SELECTOR, "p.top-path")}
        assert shown == {h: expected[f"{h}_deepest"] for h in ("biota", "substrate")}

        hierarchy = Hierarchy.catami().subset(["biota", "substrate", "relief"])
        depth = hierarchy.depth
        for head in ("biota", "substrate"):
            section = browser.find_element(By.CSS_SELECTOR, f"section.head[data-head={head}]")
            nodes = [int(el.get_attribute("data-node")) for el in section.find_elements(By.CSS_SELECTOR, ".node-score")]
            s = hierarchy.head_slice(head)
            trained = set(range(s.start, s.stop)) if head == "substrate" else {
                i for i in range(s.start, s.stop) if depth[i] < 3}
            assert set(nodes) == trained  # every trained node once, no untrained node
            # coherence as rendered: a node's score never exceeds its parent's
            scores = {int(el.get_attribute("data-node")): float(el.get_attribute("textContent"))
                      for el in section.find_elements(By.CSS_SELECTOR, ".node-score")}
            parents = hierarchy.parent_index
            assert all(scores[i] <= scores[parents[i]] + 1e-3 for i in scores if parents[i] >= 0)
            # the highlighted nodes are exactly the top path: the deepest node and its ancestors
            deepest = expected[f"{head}_deepest"]
            on_path = {int(el.get_attribute("data-node")) for el in
                       section.find_elements(By.CSS_SELECTOR, "li.on-path > .node-score, "
                                                              "li.on-path > details > summary > .node-score")}
            want = set()
            if deepest:
                want = {int(a) for a in hierarchy.ancestors_padded[hierarchy.index(head, deepest)] if a >= 0}
            assert on_path == want
            if deepest:
                assert scores[hierarchy.index(head, deepest)] == pytest.approx(float(expected[f"{head}_score"]),
                                                                                abs=1e-3)

        link = wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "#prediction-csv a[href]")))
        with urllib.request.urlopen(link.get_attribute("href"), timeout=10) as response:
            (downloaded,) = list(csv.DictReader(io.StringIO(response.read().decode("utf-8"))))
        assert downloaded.pop("image") == demo_image.name
        assert downloaded == {k: v for k, v in expected.items() if k != "image"}
    finally:
        demo.close()


def test_app_command_is_registered() -> None:
    from benthicnet_hf.cli import build_parser

    from benthicnet_hf.cli import app_argv

    args = build_parser().parse_args(["app", "--model", "m", "--port", "7000"])
    assert (args.model, args.port, args.share, args.host) == ("m", 7000, "no", "127.0.0.1")
    assert build_parser().parse_args(["app", *app_argv(args)]) == args  # what cli hands to `python -m ...app`
    with pytest.raises(SystemExit):
        build_parser().parse_args(["app", "--model", "m", "--share", "maybe"])


def test_space_template_builds_the_app(saved_model: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import runpy

    import gradio as gr
    import yaml

    space = Path(__file__).resolve().parents[1] / "spaces"
    monkeypatch.setenv("BENTHICNET_MODEL", str(saved_model))
    namespace = runpy.run_path(str(space / "app.py"), run_name="space")  # not "__main__": no launch
    assert isinstance(namespace["demo"], gr.Blocks)
    header = (space / "README.md").read_text().split("---")[1]
    meta = yaml.safe_load(header)
    assert (meta["sdk"], meta["app_file"]) == ("gradio", "app.py")
    assert meta["sdk_version"] == gr.__version__  # the Space runs the Gradio this app is tested with
    assert "benthicnet_hf" in (space / "requirements.txt").read_text()


def test_app_row_and_tree_come_from_one_forward_pass(saved_model: Path, demo_image: Path, tmp_path: Path) -> None:
    """The tree's scores and the row are one prediction: the model runs once per upload."""
    from benthicnet_hf import Hierarchy
    from benthicnet_hf.app import predict_image
    from benthicnet_hf.cli import load_model

    model, processor = load_model(str(saved_model), "cpu")
    calls = []
    model.register_forward_hook(lambda *_: calls.append(1))
    row, probs = predict_image(model, processor, demo_image)
    assert len(calls) == 1
    expected = predict_cli(saved_model, demo_image, tmp_path / "p.csv")
    assert row == {**expected, "image": demo_image.name}
    hierarchy = Hierarchy.catami().subset(["biota", "substrate", "relief"])
    for head in ("biota", "substrate"):
        if row[f"{head}_deepest"]:
            assert row[f"{head}_score"] == f"{probs[hierarchy.index(head, row[f'{head}_deepest'])]:.6f}"
    with pytest.raises(ValueError, match="broken.png"):
        (tmp_path / "broken.png").write_bytes(b"not a png")
        predict_image(model, processor, tmp_path / "broken.png")
