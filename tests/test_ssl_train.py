"""Pre-training end to end: loss goes down, exact resume, encoder export, data sources, 2 processes."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
from PIL import Image
from safetensors.torch import load_file

from benthicnet_hf.ssl import SINGLE_VIEW_METHODS, build_ssl_method
from benthicnet_hf.ssl.augment import SingleViewTransform, TwoViewTransform
from benthicnet_hf.ssl.optim import build_optimizer
from benthicnet_hf.ssl.trainer import config_from_args, run_pretraining
from benthicnet_hf.training.checkpointing import find_checkpoint, read_process_state
from benthicnet_hf.training.run_dir import read_run_args

REPO = Path(__file__).resolve().parents[1]
SMALL = {
    "simsiam": dict(proj_hidden_dim=32, proj_dim=32, pred_hidden_dim=8),
    "byol": dict(proj_hidden_dim=32, proj_dim=16),
    "barlow_twins": dict(proj_hidden_dim=32, proj_dim=32),
    "mocov3": dict(proj_hidden_dim=32, proj_dim=16),
    "mae": dict(decoder_dim=32, decoder_depth=1, decoder_heads=2),
}
ENCODER = {"simsiam": "test_resnet", "byol": "test_resnet", "barlow_twins": "test_resnet",
           "mocov3": "test_vit", "mae": "test_vit"}


def _write_images(folder: Path, n: int, size: int = 40, seed: int = 0) -> Path:
    """Smooth random colour fields (a bit like seafloor texture), some in a sub-folder."""
    rng = np.random.default_rng(seed)
    (folder / "sub").mkdir(parents=True, exist_ok=True)
    for i in range(n):
        low = rng.random((5, 5, 3))
        img = np.kron(low, np.ones((size // 5, size // 5, 1))) * 200 + rng.random((size, size, 3)) * 55
        Image.fromarray(img.astype(np.uint8)).save(folder / ("sub" if i % 3 == 0 else "") / f"img_{i}.png")
    return folder


@pytest.fixture(scope="module")
def image_dir(tmp_path_factory) -> Path:
    return _write_images(tmp_path_factory.mktemp("unlabelled"), 12)


@pytest.fixture(autouse=True)
def _fresh_accelerate_state_one_thread():
    """Each run builds its own Accelerator; one intra-op thread (tiny models: threads only spin)."""
    from accelerate.state import AcceleratorState

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    AcceleratorState._reset_state(reset_partial_state=True)
    yield
    AcceleratorState._reset_state(reset_partial_state=True)
    torch.set_num_threads(threads)


@pytest.mark.parametrize("method", sorted(SMALL))
def test_a_few_steps_reduce_the_loss(method, image_dir):
    torch.manual_seed(0)
    model = build_ssl_method(method, ENCODER[method], image_size=32, **SMALL[method])
    files = sorted(image_dir.rglob("*.png"))[:8]
    images = [Image.open(f).convert("RGB") for f in files]
    if method in SINGLE_VIEW_METHODS:
        batch = (torch.stack([SingleViewTransform(32)(im) for im in images]),)
    else:
        views = [TwoViewTransform(32)(im) for im in images]
        batch = tuple(torch.stack(v) for v in zip(*views))
    opt = build_optimizer(model, "adamw", 2e-3, 0.0)
    losses = []
    for step in range(8):
        torch.manual_seed(123)  # same MAE mask every step: compare like with like
        loss = model(*batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if hasattr(model, "update_momentum"):
            model.update_momentum(step, 8)
        losses.append(loss.item())
    assert np.isfinite(losses).all()
    assert losses[-1] < losses[0], losses


def _args(data, out, method="byol", extra=()):
    kw = [f"--method_kwarg={k}={v}" for k, v in SMALL[method].items()]
    return ["--train_data", str(data), "--output_dir", str(out), "--method", method, "--encoder", ENCODER[method],
            "--image_size", "32", "--batch_size", "4", "--num_workers", "0", "--logging_steps", "1", *kw, *extra]


@pytest.mark.parametrize("method", ["byol", "mae"])
def test_exact_resume_and_encoder_export(method, image_dir, tmp_path):
    # 12 images / batch 4 = 3 steps per epoch: the resumed part crosses an epoch boundary.
    full = tmp_path / "full"
    run_pretraining(config_from_args(_args(image_dir, full, method, ["--max_steps", "5", "--checkpointing_steps", "2"])))
    assert find_checkpoint(full, "latest").name == "step_00000004"
    (full / "checkpoints" / ".tmp-step_00000009").mkdir()  # a save killed half-way is never picked up
    assert find_checkpoint(full, "latest").name == "step_00000004"

    resumed = tmp_path / "resumed"
    run_pretraining(config_from_args(_args(image_dir, resumed, method, [
        "--max_steps", "5", "--resume_from_checkpoint", str(full / "checkpoints" / "step_00000002")])))
    a, b = load_file(full / "encoder.safetensors"), load_file(resumed / "encoder.safetensors")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k

    # the export is the plain timm encoder: strict load, timm keys, same outputs
    cfg = json.loads((full / "encoder_config.json").read_text())
    assert cfg["architecture"] == ENCODER[method] and cfg["method"] == method and cfg["image_size"] == 32
    fresh = timm.create_model(cfg["architecture"], pretrained=False, num_classes=0, **cfg["model_args"])
    assert set(a) == set(fresh.state_dict())
    fresh.load_state_dict(a, strict=True)
    assert not torch.equal(a[next(iter(a))], timm.create_model(cfg["architecture"], num_classes=0,
                                                               **cfg["model_args"]).state_dict()[next(iter(a))])


def test_resume_latest_with_nothing_saved_starts_fresh(image_dir, tmp_path):
    out = tmp_path / "o"
    run_pretraining(config_from_args(_args(image_dir, out, "simsiam",
                                           ["--max_steps", "1", "--resume_from_checkpoint", "latest"])))
    assert (out / "encoder.safetensors").is_file()


def test_saved_dataset_and_streaming_parquet_sources(image_dir, tmp_path):
    import datasets

    files = sorted(str(p) for p in image_dir.rglob("*.png"))
    ds = datasets.Dataset.from_dict({"image": files}).cast_column("image", datasets.Image())
    ds.save_to_disk(str(tmp_path / "saved"))
    run_pretraining(config_from_args(_args(tmp_path / "saved", tmp_path / "o1", "barlow_twins", ["--max_steps", "1"])))
    (tmp_path / "shards").mkdir()
    ds.select(range(6)).to_parquet(str(tmp_path / "shards" / "part-0.parquet"))
    ds.select(range(6, 12)).to_parquet(str(tmp_path / "shards" / "part-1.parquet"))
    run_pretraining(config_from_args(_args(tmp_path / "shards", tmp_path / "o2", "barlow_twins",
                                           ["--max_steps", "4", "--streaming"])))
    for o in ("o1", "o2"):
        assert (tmp_path / o / "encoder.safetensors").is_file()


def test_streaming_with_workers_resumes_exactly(image_dir, tmp_path, monkeypatch, caplog):
    # 3 shards of 4 rows, 2 DataLoader workers (then 3, capped at the 3 shards), batch 4: 3 steps an
    # epoch, each worker's drop-last differs; the resumed part crosses an epoch boundary.
    import datasets

    monkeypatch.setattr(datasets.config, "SLEEP_TIME_ON_THREADS_SHUTDOWN", 0.05)  # see test_ssl_streaming.py
    files = sorted(str(p) for p in image_dir.rglob("*.png"))
    ds = datasets.Dataset.from_dict({"image": files}).cast_column("image", datasets.Image())
    (tmp_path / "shards").mkdir()
    for k in range(3):
        ds.select(range(4 * k, 4 * k + 4)).to_parquet(str(tmp_path / "shards" / f"part-{k}.parquet"))
    full, resumed = tmp_path / "full", tmp_path / "resumed"
    stream = ["--streaming", "--max_steps", "5", "--num_workers", "2"]
    run_pretraining(config_from_args(_args(tmp_path / "shards", full, "byol", stream + ["--checkpointing_steps", "2"])))
    assert read_process_state(full / "checkpoints" / "step_00000002", 0)["stream_workers"] == 2
    with caplog.at_level("WARNING", logger="benthicnet_hf.ssl.trainer"):
        run_pretraining(config_from_args(_args(tmp_path / "shards", resumed, "byol", stream[:-1] + [
            "8", "--resume_from_checkpoint", str(full / "checkpoints" / "step_00000002")])))
    assert "written with 2 DataLoader worker(s): using 2, not 3" in caplog.text
    a, b = load_file(full / "encoder.safetensors"), load_file(resumed / "encoder.safetensors")
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_bad_inputs_give_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="unknown SSL method"):
        build_ssl_method("simclr", "test_resnet")
    with pytest.raises(ValueError, match="does not take"):
        build_ssl_method("mae", "test_vit", proj_dim=3)
    with pytest.raises(ValueError, match="no images"):
        run_pretraining(config_from_args(_args(tmp_path, tmp_path / "o", "byol", ["--max_steps", "1"])))
    with pytest.raises(ValueError, match="crop scale"):
        TwoViewTransform(32, scale=(0.0, 1.0))


def test_two_process_cpu_run(image_dir, tmp_path):
    # also the offline --push_to_hub failure: it comes after everything is saved, once, from the
    # main process, as one line (no traceback, no rank left waiting) naming a folder that exists
    out = tmp_path / "ddp"
    env = {**os.environ, "ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    launcher = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
                "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", "0"]
    cmd = launcher + [str(REPO / "train_scripts" / "pretrain.py"),
                      *_args(image_dir, out, "barlow_twins", ["--max_steps", "2", "--checkpointing_steps", "2",
                                                              "--push_to_hub", "--hub_model_id", "org/bt",
                                                              "--sync_bn"])]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=170)
    assert proc.returncode != 0
    # no traceback from the training processes (the launcher still reports the failed child)
    for code in ("benthicnet_hf", "train_scripts"):
        assert f'File "{REPO / code}' not in proc.stderr, proc.stderr[-3000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "HF_HUB_OFFLINE is set" in errors[0], proc.stderr[-3000:]
    assert f"`hf upload org/bt {out / 'hub_upload'} .`" in errors[0] and "huggingface-cli" not in errors[0]
    assert sorted(p.name for p in (out / "hub_upload").iterdir()) == [
        "README.md", "config.json", "encoder_config.json", "model.safetensors"]
    cfg = json.loads((out / "encoder_config.json").read_text())
    assert cfg["global_batch_size"] == 8  # world size 2, not two independent world-size-1 copies
    # --sync_bn reached the pre-training loop: the projector's BatchNorm layers became synchronised ones
    synced = re.findall(r"--sync_bn: (\d+) BatchNorm layers synchronised over 2 processes", proc.stderr)
    assert synced and int(synced[0]) >= 2, proc.stderr[-3000:]
    assert (out / "checkpoints" / "step_00000002" / "trainer_state_1.json").is_file()
    assert read_process_state(out / "checkpoints" / "step_00000002", 1)["completed_steps"] == 2


def test_push_to_hub_uploads_a_timm_loadable_encoder(image_dir, tmp_path, monkeypatch):
    import benthicnet_hf.hub as hub

    pushed = {}

    def fake_push(folder, repo_id, **kwargs):  # stands in for the network call
        pushed["repo_id"] = repo_id
        pushed["files"] = sorted(p.name for p in Path(folder).iterdir())
        model = timm.create_model(f"local-dir:{folder}", pretrained=True)
        pushed["state"] = {k: v.clone() for k, v in model.state_dict().items()}
        pushed["card"] = (Path(folder) / "README.md").read_text()
        return "https://huggingface.co/fake/commit"

    monkeypatch.setattr(hub, "push_folder_to_hub", fake_push)
    out = tmp_path / "p"
    run_pretraining(config_from_args(_args(image_dir, out, "simsiam", [
        "--max_steps", "1", "--push_to_hub", "--hub_model_id", "org/bt-test"])))
    assert pushed["repo_id"] == "org/bt-test"
    assert pushed["files"] == ["README.md", "config.json", "encoder_config.json", "model.safetensors"]
    exported = load_file(out / "encoder.safetensors")
    assert pushed["state"].keys() == exported.keys()
    assert all(torch.equal(pushed["state"][k], exported[k]) for k in exported)
    assert "simsiam" in pushed["card"]


def test_push_to_hub_needs_a_model_id(image_dir, tmp_path):
    with pytest.raises(ValueError, match="hub_model_id"):
        run_pretraining(config_from_args(_args(image_dir, tmp_path / "o", "simsiam", ["--max_steps", "1", "--push_to_hub"])))


def test_output_dir_belongs_to_one_run_and_resume_keeps_its_settings(image_dir, tmp_path):
    out = tmp_path / "o"
    first = ["--max_steps", "2", "--checkpointing_steps", "2"]
    run_pretraining(config_from_args(_args(image_dir, out, "simsiam", first)))
    saved = read_run_args(out / "checkpoints" / "step_00000002")
    assert saved["method"] == "simsiam" and saved["batch_size"] == 4
    with pytest.raises(FileExistsError, match=r"already holds another run \(checkpoints, encoder.safetensors"):
        run_pretraining(config_from_args(_args(image_dir, out, "simsiam", first)))
    with pytest.raises(ValueError, match="--learning_rate: None in the checkpoint, 0.01 now"):
        run_pretraining(config_from_args(_args(image_dir, out, "simsiam", [
            *first, "--resume_from_checkpoint", "latest", "--learning_rate", "0.01"])))
    # logging and save cadence may change on resume
    run_pretraining(config_from_args(_args(image_dir, out, "simsiam", [
        "--max_steps", "2", "--checkpointing_steps", "1", "--resume_from_checkpoint", "latest", "--logging_steps", "2"])))
    (out / "stale").mkdir()
    run_pretraining(config_from_args(_args(image_dir, out, "simsiam", [*first, "--overwrite_output_dir"])))
    assert (out / "stale").is_dir()  # only the run's own artefacts are removed


def test_a_run_that_would_take_no_step_is_refused(image_dir, tmp_path):
    # 12 images and a batch of 16: no full batch, so --max_steps would loop forever and --epochs
    # would export an untrained encoder
    for extra in (["--max_steps", "3"], ["--epochs", "1"]):
        with pytest.raises(ValueError, match=r"12 images are fewer than one global batch \(1 x 16\)"):
            run_pretraining(config_from_args(_args(image_dir, tmp_path / "o", "simsiam",
                                                   extra + ["--batch_size", "16"])))
    with pytest.raises(ValueError, match="no optimisation step to take"):
        run_pretraining(config_from_args(_args(image_dir, tmp_path / "o", "simsiam", ["--epochs", "0"])))
    assert not (tmp_path / "o" / "encoder.safetensors").exists()


def test_a_stream_without_a_full_batch_is_refused_not_looped(image_dir, tmp_path):
    import datasets

    files = sorted(str(p) for p in image_dir.rglob("*.png"))[:3]
    (tmp_path / "shards").mkdir()
    datasets.Dataset.from_dict({"image": files}).cast_column("image", datasets.Image()).to_parquet(
        str(tmp_path / "shards" / "part-0.parquet"))
    with pytest.raises(ValueError, match=r"epoch 0: the training data .* yielded no full batch of 4"):
        run_pretraining(config_from_args(_args(tmp_path / "shards", tmp_path / "o", "simsiam",
                                               ["--max_steps", "2", "--streaming"])))


def test_scheduler_follows_the_closed_form_warmup_cosine():
    # independent of ssl/schedules.py: lr of step s = base*(s+1)/W in warm-up, then cosine to 0
    from benthicnet_hf.ssl.schedules import warmup_cosine_scheduler

    base, total, warm = 0.4, 50, 10
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=base)
    sched = warmup_cosine_scheduler(opt, total, warm)
    for s in range(total):
        expected = base * (s + 1) / warm if s < warm else \
            0.5 * base * (1 + np.cos(np.pi * (s - warm) / (total - warm)))
        assert opt.param_groups[0]["lr"] == pytest.approx(expected, abs=1e-12), s
        opt.step()
        sched.step()


def test_flags_parse_like_the_argparse_cli(tmp_path):
    cfg = config_from_args(["--train_data", "d", "--output_dir", "o", "--method_kwarg=proj_dim=16",
                            "--method_kwarg", "scale=0.5", "--crop_scale", "0.2", "0.9", "--streaming",
                            "--checkpoints_total_limit", "3"])
    assert cfg.method_kwargs == {"proj_dim": 16, "scale": 0.5}
    assert cfg.crop_scale == [0.2, 0.9] and cfg.streaming and cfg.save_total_limit == 3
    assert (cfg.method, cfg.batch_size, cfg.warmup_ratio, cfg.report_to) == ("barlow_twins", 64, 0.1, "none")
    with pytest.raises(ValueError, match="KEY=VALUE"):
        config_from_args(["--train_data", "d", "--output_dir", "o", "--method_kwarg", "oops"])
    with pytest.raises(ValueError, match="--mean takes 3 numbers"):
        config_from_args(["--train_data", "d", "--output_dir", "o", "--mean", "0.5", "0.5"])


def test_an_old_step_n_checkpoint_is_refused_with_a_clear_message(image_dir, tmp_path):
    old = tmp_path / "o" / "checkpoints" / "step_4"  # the pre-training naming before 0.2
    old.mkdir(parents=True)
    with pytest.raises(ValueError, match=r"benthicnet_hf < 0.2 \(named step_N"):
        run_pretraining(config_from_args(_args(image_dir, tmp_path / "o", "simsiam",
                                               ["--max_steps", "1", "--resume_from_checkpoint", "latest"])))


def test_build_arg_parser_is_kept_for_both_pretraining_clis():
    from benthicnet_hf.contrastive.cli import build_arg_parser as contrastive_parser
    from benthicnet_hf.ssl.trainer import PretrainConfig, PretrainArguments, build_arg_parser

    ns = build_arg_parser().parse_args(["--train_data", "d", "--output_dir", "o", "--epochs", "3"])
    assert ns.epochs == 3 and ns.learning_rate is None and PretrainConfig is PretrainArguments
    ns = contrastive_parser().parse_args(["--method", "g_hmlc", "--train_data", "d", "--output_dir", "o"])
    assert (ns.learning_rate, ns.weight_decay, ns.temperature, ns.proj_dim) == (1e-3, 1e-4, 0.1, 128)
