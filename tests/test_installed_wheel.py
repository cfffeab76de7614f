"""The built wheel works on its own: a tiny fine-tune with the *installed* package, run from
outside the clone, writes its model card (the templates ship as package data).

Skipped unless ``BENTHICNET_WHEEL_PYTHON`` names the interpreter of a venv where the wheel is
installed; ``scripts/check_wheel.sh`` (called by ``.ci/run``) builds that venv and runs this test.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
WHEEL_PYTHON = os.environ.get("BENTHICNET_WHEEL_PYTHON")

pytestmark = pytest.mark.skipif(not WHEEL_PYTHON, reason="BENTHICNET_WHEEL_PYTHON not set: "
                                "run scripts/check_wheel.sh to test the installed wheel")

FINETUNE = """
import json, sys
from pathlib import Path
import benthicnet_hf
from benthicnet_hf.training import parse_args, run_finetune

out = Path(sys.argv[1])
run_finetune(parse_args(["--demo", "--demo_num_images", "160", "--demo_image_size", "32",
    "--encoder", "test_resnet", "--image_size", "32", "--head_hidden_dim", "0", "--num_train_epochs", "1",
    "--per_device_train_batch_size", "16", "--warmup_epochs", "0", "--report_to", "none",
    "--checkpointing_steps", "0", "--output_dir", str(out)]))
print(json.dumps({"package": benthicnet_hf.__file__}))
"""


def test_installed_wheel_fine_tunes_and_writes_the_model_card(tmp_path: Path) -> None:
    out = tmp_path / "run"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "PYTHONPATH": ""}
    proc = subprocess.run([WHEEL_PYTHON, "-c", FINETUNE, str(out)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    package = Path(json.loads(proc.stdout.strip().splitlines()[-1])["package"]).resolve()
    assert REPO not in package.parents, f"imported the clone ({package}), not the installed wheel"
    card = (out / "final" / "README.md").read_text()
    assert "hierarchical multi-label" in card.lower() and "library_name: transformers" in card
    assert not (out / "final.tmp").exists()
