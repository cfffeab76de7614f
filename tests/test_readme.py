"""The README as a contract: every fenced ```python / ```bash block of README.md (and docs/*.md)
runs, so the documentation cannot drift from the code.

How a block runs (markers: see ``tests/readme_blocks.py``):
- in a subprocess, in a fresh temporary folder laid out like a clone's root: ``train_scripts/``,
  ``dataset_scripts/``, ``benchmarks/``, ``scripts/``, ``demo.sh`` and ``test.sh`` are symlinked in,
  the package itself is *not* (blocks must work with the installed package, from any folder);
- python blocks with this interpreter (the venv's), bash blocks with ``bash -eo pipefail`` and the
  venv's ``bin`` first on PATH (``python``, ``accelerate``, ``benthicnet-hf``);
- offline (``HF_HUB_OFFLINE=1``), a private ``HF_HOME``, one torch thread (the CI machine has 2 cores);
- ``<!-- readme: setup NAME ... -->`` prepares fixtures in the folder (``SETUPS`` below; built once per
  session);
- ``<!-- readme: tiny -->`` applies the marked substitution list ``TINY`` (sizes → tiny ones) to
  that block's code only, so the README itself keeps the real defaults. A tiny block that no
  substitution changes, and a substitution that no block uses, are errors (the list cannot rot);
- ``<!-- readme: continue -->`` runs the previous code block(s) first, in the same process and folder
  (their code is concatenated), so a block may use names defined above it;
- ``<!-- readme: files PATH ... -->`` lists outputs the block promises; each must exist after it ran.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from readme_blocks import (
    Block,
    ReadmeMarkupError,
    all_blocks,
    apply_substitutions,
    chain_of,
    extract_blocks,
    markdown_files,
    reason_of,
)

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("BENTHICNET_SHARED_DATA", ROOT.parent / "shared" / "data"))
CLONE_ENTRIES = ("train_scripts", "dataset_scripts", "benchmarks", "scripts", "demo.sh", "test.sh")
DEFAULT_TIMEOUT_S = 300

# The marked substitution list: regex -> replacement, applied in this order to `tiny` blocks only.
# Real sizes in the README, CPU-seconds sizes here.
TINY: dict[str, str] = {
    r"\bresnet50\b": "test_resnet",                      # timm's ~0.1 M-parameter test net
    r"--image_size 224\b": "--image_size 32",
    r"--batch_size 64\b": "--batch_size 8",
    # SSL pre-training: 2 steps, no worker processes, a 64-wide projector (Barlow Twins' is 8192)
    r"--epochs 100\b": "--max_steps 2 --num_workers 0 --method_kwarg proj_hidden_dim=64 --method_kwarg proj_dim=64",
    r"--mixed_precision bf16\b": "--mixed_precision no",   # bf16 autocast is slow on a CPU
    r"_transform\(224\)": "_transform(32)",
    r"batch_size=64\b": "batch_size=8",
    r"\b224, 224\)": "32, 32)",
    r"(train_scripts/finetune\.py)": r"\1 --num_train_epochs 1 --image_size 32 "
                                     r"--per_device_train_batch_size 8 --head_hidden_dim 16 --report_to none",
    r"(--method himulcone)": r"\1 --epochs 1 --image_size 32 --batch_size 8",
    r"--seeds 3\b": "--seeds 1 --epochs 1 --batch-size 256",
    # --all over a one-dataset folder (setup hmc-subset): the full set is hours of CPU; batch 32 keeps
    # the dense B×N×N timing tensor small
    r"--all --dense-timing": "--all --data-dir hmc_subset --epochs 1 --batch-size 32 --dense-timing "
                             "--timing-steps 1 --timing-rounds 1",
    r"--epochs 123\b": "--epochs 1 --batch-size 256",
}


# ---------------------------------------------------------------- fixtures (built once per session)

def _demo_data(cache: Path) -> Path:
    """The synthetic demo dataset, 40 images of 32 px: ``labels.csv`` + ``images/``."""
    from benthicnet_hf.data.demo import make_demo_dataset

    out = cache / "demo"
    make_demo_dataset(out, num_images=160, image_size=32)  # 160: enough sites (10) for 3 site-grouped splits
    return out


def _table_in_image_root(cache: Path) -> Path:
    """The demo ``labels.csv`` with its ``image`` paths relative to ``images/`` (``--image_root images/``)."""
    import pandas as pd

    table = pd.read_csv(_cached(cache, "demo-data") / "labels.csv")
    prefix = "images/"
    if not table["image"].str.startswith(prefix).all():
        raise AssertionError(f"demo table: expected every image path to start with {prefix!r}")
    table["image"] = table["image"].str.slice(len(prefix))
    out = cache / "labels_in_image_root.csv"
    table.to_csv(out, index=False)
    return out


def _photos(cache: Path) -> Path:
    """Three JPEG photos (demo images re-encoded) in a folder, plus ``reef.jpg``."""
    from PIL import Image

    out = cache / "photos"
    out.mkdir()
    pngs = sorted((_cached(cache, "demo-data")).glob("images/*/*.png"))[:3]
    for i, png in enumerate(pngs):
        Image.open(png).convert("RGB").resize((64, 64)).save(out / f"photo_{i}.jpg")
    return out


def _demo_model(cache: Path) -> Path:
    """A tiny saved model folder (CATAMI hierarchy, ``test_resnet``, linear heads, 32 px)."""
    import torch

    from benthicnet_hf import BenthicNetConfig, BenthicNetForHierarchicalClassification

    torch.manual_seed(0)
    config = BenthicNetConfig(encoder_name="test_resnet", head_hidden_dim=0, image_size=32)
    out = cache / "demo-model"
    BenthicNetForHierarchicalClassification(config).eval().save_pretrained(out)
    return out


def _ssl_ckpt(cache: Path) -> Path:
    """A Lightning-style checkpoint (``{"state_dict": {"backbone.…"}}``) of a ``test_resnet`` encoder."""
    import timm
    import torch

    torch.manual_seed(0)
    encoder = timm.create_model("test_resnet", pretrained=False, num_classes=0)
    out = cache / "ssl.ckpt"
    torch.save({"state_dict": {f"backbone.{k}": v for k, v in encoder.state_dict().items()}, "epoch": 400}, out)
    return out


def _ssl_export(cache: Path) -> Path:
    """An SSL export folder (``encoder.safetensors`` + ``encoder_config.json``) of ``test_resnet``."""
    import timm
    import torch

    from benthicnet_hf.ssl.export import export_encoder

    torch.manual_seed(0)
    encoder = timm.create_model("test_resnet", pretrained=False, num_classes=0)
    out = cache / "ssl-export"
    export_encoder(encoder, out, architecture="test_resnet", image_size=32, mean=(0.5,) * 3, std=(0.25,) * 3,
                   method="barlow_twins")
    return out


def _hmc_data(cache: Path) -> Path:
    """The shared HMC benchmark folder (read only); skips when absent."""
    path = SHARED_DATA / "hmc"
    if not (path / "derisi_FUN.train.arff.gz").exists():
        pytest.skip(f"reference data {path} is absent (shared data folder not present beside the clone)")
    return path


_BUILDERS: dict[str, Callable[[Path], Path]] = {
    "demo-data": _demo_data, "photos": _photos, "demo-model": _demo_model, "ssl-ckpt": _ssl_ckpt,
    "ssl-export": _ssl_export, "hmc-data": _hmc_data, "table-in-image-root": _table_in_image_root,
}
_CACHE: dict[str, Path] = {}


def _cached(cache: Path, name: str) -> Path:
    if name not in _CACHE:
        _CACHE[name] = _BUILDERS[name](cache)
    return _CACHE[name]


def _link(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.symlink_to(src, target_is_directory=src.is_dir())


def _copy(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    (shutil.copytree if src.is_dir() else shutil.copy2)(src, dst)


# What each `setup` name puts into the block's folder: (cached artefact, placement).
# Data is copied (a block may write next to it); models and checkpoints are only read, so linked.
SETUPS: dict[str, Callable[[Path, Path], None]] = {
    # labels.csv + images/ in the folder, image paths relative to images/, as `image_root="images/"` expects
    "demo-data": lambda c, w: (_copy(_cached(c, "table-in-image-root"), w / "labels.csv"),
                               _copy(_cached(c, "demo-data") / "images", w / "images")),
    # demo/ as written by `python dataset_scripts/make_demo_data.py demo/`
    "demo-dir": lambda c, w: _copy(_cached(c, "demo-data"), w / "demo"),
    "reef.jpg": lambda c, w: _copy(_cached(c, "photos") / "photo_0.jpg", w / "reef.jpg"),
    "photos": lambda c, w: _copy(_cached(c, "photos"), w / "photos"),
    # what `bash demo.sh` leaves behind
    "demo-model": lambda c, w: _link(_cached(c, "demo-model"), w / "runs" / "demo" / "finetune" / "final"),
    "ssl-ckpt": lambda c, w: [_link(_cached(c, "ssl-ckpt"), w / n)
                              for n in ("benthicnet_bt_rn50.ckpt", "benthicnet_bt_rn50_e400.ckpt")],
    "ssl-export": lambda c, w: _link(_cached(c, "ssl-export"), w / "runs" / "ssl"),
    # an HMC dataset under a path prefix of its own (derisi_FUN's files stand in for gasch2_FUN)
    "hmc-prefix": lambda c, w: [_link(_cached(c, "hmc-data") / f"derisi_FUN.{s}.arff.gz",
                                      w / "path" / "to" / f"gasch2_FUN.{s}.arff.gz")
                                for s in ("train", "valid", "test")],
    "hmc-data": lambda c, w: _cached(c, "hmc-data"),  # only checks that the shared folder exists
    # a data folder holding one small benchmark, so that `--all` takes seconds
    "hmc-subset": lambda c, w: [_link(p, w / "hmc_subset" / p.name)
                                for p in sorted(_cached(c, "hmc-data").glob("derisi_FUN.*"))],
}


# ---------------------------------------------------------------- running a block

BLOCKS: list[Block] = all_blocks(ROOT)
CODE_BLOCKS = [b for b in BLOCKS if b.is_code]


def block_code(block: Block) -> str:
    """The code that runs for ``block``: its chain concatenated, ``tiny`` substitutions applied."""
    parts = []
    for b in chain_of(BLOCKS, BLOCKS.index(block)):
        code = b.code
        if "tiny" in b.directives:
            code, used = apply_substitutions(code, TINY)
            if not used:
                raise ReadmeMarkupError(f"{b.id}: marked 'tiny' but no TINY substitution matches it")
        parts.append(code)
    return "\n".join(parts)


def block_env(block: Block, hf_home: Path) -> dict[str, str]:
    """Offline, venv first on PATH, private HF cache, one thread, plus the block's ``env`` marker."""
    venv_bin = str(Path(sys.executable).parent)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTEST_CURRENT_TEST")}
    env.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TRANSFORMERS_OFFLINE="1", HF_HOME=str(hf_home),
               PATH=f"{venv_bin}{os.pathsep}{env.get('PATH', '')}", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1",
               PYTHONUNBUFFERED="1", MPLBACKEND="Agg")
    for b in chain_of(BLOCKS, BLOCKS.index(block)):
        for item in b.directives.get("env", "").split():
            name, sep, value = item.partition("=")
            if not sep:
                raise ReadmeMarkupError(f"{b.id}: env marker item {item!r} is not NAME=VALUE")
            env[name] = value
    return env


def prepare_workdir(block: Block, workdir: Path, cache: Path) -> None:
    """Lay out a clone-like root and the chain's fixtures in ``workdir``."""
    for name in CLONE_ENTRIES:
        if (ROOT / name).exists():
            _link(ROOT / name, workdir / name)
    for b in chain_of(BLOCKS, BLOCKS.index(block)):
        for name in b.setups:
            if name not in SETUPS:
                raise ReadmeMarkupError(f"{b.id}: unknown setup {name!r} (known: {', '.join(sorted(SETUPS))})")
            SETUPS[name](cache, workdir)


def run_block(block: Block, workdir: Path, cache: Path) -> subprocess.CompletedProcess[str]:
    script = workdir / ("readme_block.py" if block.lang == "python" else "readme_block.sh")
    script.write_text(block_code(block), encoding="utf-8")
    cmd = [sys.executable, script.name] if block.lang == "python" else ["bash", "-eo", "pipefail", script.name]
    timeout = int(block.directives.get("timeout", DEFAULT_TIMEOUT_S))
    return subprocess.run(cmd, cwd=workdir, env=block_env(block, cache / "hf_home"), capture_output=True,
                          text=True, timeout=timeout)


def _report(block: Block, proc: subprocess.CompletedProcess[str]) -> str:
    out = (proc.stdout + "\n" + proc.stderr).strip()
    return (f"{block.id} ({block.lang}) exited {proc.returncode}\n--- code run ---\n{block_code(block)}"
            f"--- output (last 4000 chars) ---\n{out[-4000:]}")


@pytest.fixture(scope="session")
def fixture_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("readme_fixtures")


@pytest.mark.slow
@pytest.mark.parametrize("block", CODE_BLOCKS, ids=[b.id for b in CODE_BLOCKS])
def test_block_runs(block: Block, tmp_path: Path, fixture_cache: Path) -> None:
    if block.skip_reason is not None:
        pytest.skip(f"{block.id}: {block.skip_reason}")
    prepare_workdir(block, tmp_path, fixture_cache)
    proc = run_block(block, tmp_path, fixture_cache)
    if "expect-error" in block.directives:
        name = block.directives["expect-error"].split()[0]
        reason_of(block, "expect-error")
        assert proc.returncode != 0, f"{block.id}: expected to fail with {name}, but exited 0"
        assert name in proc.stdout + proc.stderr, f"expected {name} in the output\n" + _report(block, proc)
        _assert_files(block, tmp_path, proc)
        return
    if "xfail" in block.directives:
        if proc.returncode != 0:
            pytest.xfail(f"{block.id}: {reason_of(block, 'xfail')}")
        pytest.fail(f"{block.id} is marked xfail but now runs: remove the marker")
    assert proc.returncode == 0, _report(block, proc)
    _assert_files(block, tmp_path, proc)


def _assert_files(block: Block, workdir: Path, proc: subprocess.CompletedProcess[str]) -> None:
    """Every output named by the block's ``files`` marker exists in its folder."""
    missing = [f for f in block.directives.get("files", "").split() if not (workdir / f).exists()]
    assert not missing, f"{block.id}: ran, but did not write {missing}\n" + _report(block, proc)


# ---------------------------------------------------------------- the inventory cannot run nothing

def test_extractor_finds_the_readme_blocks() -> None:
    """README.md and docs/*.md have python and bash blocks; an extractor that found none would make
    this file vacuous. The reference material moved from the README into docs/ (issue 16), so the
    README keeps the commands and the quick start and the count of runnable blocks is over all pages."""
    readme = [b for b in CODE_BLOCKS if b.file == "README.md"]
    for path in markdown_files(ROOT):
        name = path.relative_to(ROOT).as_posix()
        fences = sum(1 for line in path.read_text(encoding="utf-8").splitlines() if line.startswith("```"))
        assert fences % 2 == 0 and fences // 2 == len([b for b in BLOCKS if b.file == name]), name
    assert {b.lang for b in readme} == {"python", "bash"}
    assert {b.lang for b in CODE_BLOCKS} == {"python", "bash"}
    assert len(readme) >= 3
    assert len(CODE_BLOCKS) >= 16  # 15 before the split into docs/, plus the quick start's two new ones


def test_every_code_block_is_run_or_skipped_with_a_reason() -> None:
    """Each code block runs (setups known, chain valid, tiny substitutions apply) or names why not."""
    skipped = {b.id: b.skip_reason for b in CODE_BLOCKS if b.skip_reason is not None}
    run = [b for b in CODE_BLOCKS if b.skip_reason is None]
    for b in run:  # raise ReadmeMarkupError naming the block for anything the runner cannot honour
        block_code(b)
        for c in chain_of(BLOCKS, BLOCKS.index(b)):
            assert set(c.setups) <= set(SETUPS), f"{c.id}: unknown setup in {c.setups}"
        for name in ("expect-error", "xfail"):
            if name in b.directives:
                reason_of(b, name)
    assert all(reason for reason in skipped.values())
    assert len(run) + len(skipped) == len(CODE_BLOCKS)
    assert len(skipped) <= len(CODE_BLOCKS) // 4, f"too many skipped blocks: {skipped}"
    print(f"\n{len(CODE_BLOCKS)} code blocks: {len(run)} run, {len(skipped)} skipped {skipped}; "
          f"{len(BLOCKS) - len(CODE_BLOCKS)} other fences (not code)")


def test_every_tiny_substitution_is_used() -> None:
    """A substitution that matches no ``tiny`` block is stale (the README changed under it)."""
    used: set[str] = set()
    for b in CODE_BLOCKS:
        if "tiny" in b.directives:
            used |= set(apply_substitutions(b.code, TINY)[1])
    assert set(TINY) - used == set()


SAMPLE = """# t
text
<!-- readme: skip (needs the network) -->
```bash
echo hi
```

```
layout
```
<!-- readme: setup demo-data -->
<!-- readme: tiny -->
```python
x = 1
```
<!-- readme: continue -->
```python
print(x)
```
"""


def test_extractor_on_a_hand_counted_sample() -> None:
    blocks = extract_blocks(SAMPLE, "S.md")
    assert [(b.line, b.lang) for b in blocks] == [(4, "bash"), (8, ""), (13, "python"), (17, "python")]
    assert blocks[0].skip_reason == "needs the network"
    assert blocks[2].directives == {"setup": "demo-data", "tiny": ""} and blocks[2].setups == ["demo-data"]
    assert blocks[2].code == "x = 1\n"
    assert [b.line for b in chain_of(blocks, 3)] == [13, 17]


@pytest.mark.parametrize("text, message", [
    ("<!-- readme: skip -->\n```bash\nx\n```\n", "needs a reason"),
    ("<!-- readme: sikp (x) -->\n```bash\nx\n```\n", "unknown readme directive 'sikp'"),
    ("<!-- readme: tiny -->\n\ntext\n```bash\nx\n```\n", "not directly above a code fence"),
    ("```bash\nx\n", "never closed"),
    ("<!-- readme: continue -->\n```bash\nx\n```\n", "needs a previous bash block"),
])
def test_bad_markup_is_refused_with_the_line(text: str, message: str) -> None:
    with pytest.raises(ReadmeMarkupError, match=message):
        blocks = extract_blocks(text, "S.md")
        [b.skip_reason for b in blocks]
        chain_of(blocks, 0)
