"""A saved folder loads with trust_remote_code=True in a fresh process where benthicnet_hf is absent."""

from __future__ import annotations

import json
import os
import site
import subprocess
import sys
import textwrap

import numpy as np
import torch

from benthicnet_hf.configuration_benthicnet import BenthicNetConfig
from benthicnet_hf.hierarchy import Taxonomy, Hierarchy
from benthicnet_hf.modeling_benthicnet import BenthicNetForHierarchicalClassification

# Runs with `python -I -S`: no site processing, so the editable install's .pth finder is never
# loaded; only the plain site-packages folders are put back on sys.path.
CHILD = textwrap.dedent(
    """
    import json, sys
    sys.path[:0] = json.loads(sys.argv[1])
    try:
        import benthicnet_hf
    except ImportError:
        pass
    else:
        raise SystemExit("benthicnet_hf is importable: the test would not prove remote-code loading")
    import numpy as np, torch
    from PIL import Image
    from transformers import AutoModelForImageClassification, pipeline
    folder = sys.argv[2]
    try:
        AutoModelForImageClassification.from_pretrained(folder)
    except ValueError as err:
        no_trust = "trust_remote_code" in str(err)
    else:
        no_trust = False
    model = AutoModelForImageClassification.from_pretrained(folder, trust_remote_code=True).eval()
    x = torch.from_numpy(np.load(folder + "/x.npy"))
    with torch.no_grad():
        out = model(x)
    np.save(folder + "/logits_child.npy", out.logits.numpy())
    np.save(folder + "/probs_child.npy", out.probabilities.numpy())
    y = torch.from_numpy(np.load(folder + "/y.npy"))
    with torch.no_grad():  # node weights on the MCLoss bits: needs no benthicnet_hf either
        np.save(folder + "/loss_child.npy", model(x, labels=y).loss.numpy())
    np.savez(folder + "/state_child.npz", **{k: v.numpy() for k, v in model.state_dict().items()})
    img = Image.fromarray((np.random.default_rng(0).random((40, 60, 3)) * 255).astype("uint8"))
    pipe = pipeline("image-classification", model=folder, trust_remote_code=True, top_k=4)
    result = pipe(img)
    print("RESULT " + json.dumps({"module": type(model).__module__, "no_trust_error": no_trust,
                      "pipeline": type(pipe).__name__, "result": result}))
    """
)


def test_remote_code_loads_without_the_package(tmp_path):
    hier = Hierarchy((Taxonomy.from_paths("zeta", ["A", "A > B", "C"]), Taxonomy.flat("alpha", ["red", "blue"])))
    torch.manual_seed(0)
    config = BenthicNetConfig(encoder_name="test_resnet", hierarchy=hier.to_list(), head_hidden_dim=8, image_size=32,
                              node_weights=[0.5, 2.0, 1.0, 3.0, 0.25])
    model = BenthicNetForHierarchicalClassification(config).eval()
    folder = tmp_path / "model"
    model.save_pretrained(folder)
    assert json.loads((folder / "config.json").read_text())["auto_map"]["AutoModelForImageClassification"] == (
        "modeling_benthicnet.BenthicNetForHierarchicalClassification"
    )
    x = torch.randn(2, 3, 32, 32)
    np.save(folder / "x.npy", x.numpy())
    y = torch.tensor([[1.0, 1.0, 0.0, 1.0, 0.0], [0.0, 0.0, 1.0, 0.0, 1.0]])
    np.save(folder / "y.npy", y.numpy())

    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env.update(HF_HUB_OFFLINE="1", HF_MODULES_CACHE=str(tmp_path / "modules"), HF_HOME=str(tmp_path / "hf"))
    paths = [p for p in site.getsitepackages() if os.path.isdir(p)]
    proc = subprocess.run(
        [sys.executable, "-I", "-S", "-c", CHILD, json.dumps(paths), str(folder)],
        cwd=tmp_path, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    # the untrusted load prints a [y/N] prompt (stdin is empty) without a newline: find the marker
    assert "RESULT " in proc.stdout, proc.stdout[-2000:] + proc.stderr[-2000:]
    report = json.loads(proc.stdout.rsplit("RESULT ", 1)[1].splitlines()[0])
    assert report["module"].startswith("transformers_modules"), report["module"]
    assert report["no_trust_error"] is True
    assert report["pipeline"] == "BenthicNetImageClassificationPipeline"
    assert len(report["result"]) == 4 and all(r["label"] in hier.labels for r in report["result"])

    # the weights must round-trip bit for bit ...
    child_state = np.load(folder / "state_child.npz")
    assert sorted(child_state.files) == sorted(model.state_dict())
    for key, value in model.state_dict().items():
        np.testing.assert_array_equal(child_state[key], value.numpy(), err_msg=key)
    # ... the outputs only to float rounding: another process may pick other SIMD kernels or
    # thread splits for the same convolution (seen once as a 1e-8 difference)
    with torch.no_grad():
        out = model(x)
    np.testing.assert_allclose(np.load(folder / "logits_child.npy"), out.logits.numpy(), rtol=0, atol=1e-6)
    np.testing.assert_allclose(np.load(folder / "probs_child.npy"), out.probabilities.numpy(), rtol=0, atol=1e-6)
    with torch.no_grad():
        loss = model(x, labels=y).loss
    np.testing.assert_allclose(np.load(folder / "loss_child.npy"), loss.numpy(), rtol=1e-6)
