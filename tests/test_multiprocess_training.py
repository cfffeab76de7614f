"""Multi-process training for real: 2 gloo processes end with the weights of 1 process.

Setup: 1 process with batch 2b and 2 processes with per-device batch b see the same global batches
in the same order: the training sampler draws one permutation from ``(seed, epoch)`` whatever the
number of processes, and accelerate shards *batches*: process i gets batches i, i + 2, ..., so
global step k is batches 2k and 2k + 1 of size b, i.e. rows [2kb, 2kb + 2b) of the permutation, the
1-process batch k. The number of training rows is a multiple of 2b (no padded last batch).

What differs by design, and how the test removes it:

- nothing to remove for the **augmentation**: it is keyed per sample by (seed, epoch, position in
  the epoch's global order) (training.keyed_loader), so the same row is augmented the same way
  whichever process loads it, and the test trains with the real random augmentation;
- **dropout** masks are keyed by the process: ``--head_dropout 0``;
- **the loss** is a mean over the rows labelled in each head of the local batch; DDP averages the
  per-process means, which equals the global mean only when each half has as many labelled rows per
  head: every row of the test's table is labelled in every head;
- **BatchNorm** statistics are per process without ``--sync_bn`` (and DDP broadcasts process 0's
  running statistics): the weights then differ by far more than the tolerance, which the test
  asserts too (so the comparison can fail).

With ``--sync_bn`` the weights (and the BatchNorm running statistics) match to ``atol = 2e-5``
(measured 3e-6 to 5e-6; 6 Adam steps of lr 1e-3 move a weight by up to ~6e-3). Not zero because
float32 sums are not associative, and the two runs sum in different orders: the BatchNorm statistics
are two partial sums all-reduced instead of one sum, and every gradient is the mean of two half-
batch gradients (DDP's all-reduce then division by 2) instead of one sum over 2b rows. Those ~1e-7
relative differences go through Adam, whose update ``m / (sqrt(v) + eps)`` divides small gradients
by their own magnitude, so a rounding difference in a near-zero gradient becomes a difference of a
fraction of the learning rate in the step.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "train_scripts" / "finetune.py"
BATCH = 8  # per process on 2 processes; 1 process takes 2 * BATCH
TRAIN_ROWS = 48  # 3 global batches of 16 per epoch
ATOL = 2e-5
FILL = {"catami_biota": "No visible biota", "catami_substrate": "Substrate > Consolidated (hard) > Rock",
        "catami_relief": "Flat", "catami_bedforms": "None", "colour_qualifier": "Orange"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def fully_labelled(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """Data flags: demo images, every row labelled in every head (missing heads filled)."""
    from benthicnet_hf.data.demo import make_demo_dataset

    root = tmp_path_factory.mktemp("mp")
    make_demo_dataset(root / "data", num_images=120, image_size=40, seed=0)
    table = pd.read_csv(root / "data" / "labels.csv")
    for column, value in FILL.items():
        table[column] = table[column].fillna(value)
    table.to_csv(root / "full.csv", index=False)
    return ["--table", str(root / "full.csv"), "--image_root", str(root / "data"), "--cache_dir", str(root / "cache")]


def one_process(argv: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """The 1-process run in this process, as if it were a new one (accelerate keeps global state)."""
    from accelerate.state import AcceleratorState, GradientState

    from benthicnet_hf.training import parse_args, run_finetune

    monkeypatch.setenv("ACCELERATE_USE_CPU", "1")  # as the 2-process runs
    AcceleratorState._reset_state(True)
    GradientState._reset_state()
    run_finetune(parse_args(argv))


def run(argv: list[str], processes: int) -> None:
    env = {**os.environ, "ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", str(processes),
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
           "--main_process_port", str(free_port()), str(SCRIPT), *argv]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-4000:]


def weights(out: Path) -> dict[int, dict[str, torch.Tensor]]:
    """``{step: state dict}`` of the run's step checkpoints."""
    ckpts = sorted((out / "checkpoints").glob("step_*"))
    return {int(p.name.split("_")[1]): load_file(str(p / "model.safetensors")) for p in ckpts}


def max_diff(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys()
    return max((a[k].double() - b[k].double()).abs().max().item() for k in a)


def test_two_processes_with_sync_bn_end_with_the_weights_of_one_process(
        fully_labelled: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    common = fully_labelled + [
        "--encoder", "test_resnet", "--image_size", "32", "--head_hidden_dim", "16", "--head_dropout", "0",
        "--learning_rate", "1e-3", "--warmup_epochs", "1", "--num_train_epochs", "2", "--report_to", "none",
        "--max_train_samples", str(TRAIN_ROWS), "--max_eval_samples", "8", "--mixed_precision", "no",
        "--checkpointing_steps", "3", "--seed", "3"]
    one_process(common + ["--output_dir", str(tmp_path / "one"), "--per_device_train_batch_size", str(2 * BATCH),
                          "--sync_bn"], monkeypatch)  # a no-op on 1 process
    run(common + ["--output_dir", str(tmp_path / "sync"), "--per_device_train_batch_size", str(BATCH), "--sync_bn"], 2)
    run(common + ["--output_dir", str(tmp_path / "local"), "--per_device_train_batch_size", str(BATCH)], 2)

    for name in ("sync", "local"):  # really one run of world size 2
        assert json.loads((tmp_path / name / "test_metrics.json").read_text())["num_processes"] == 2
    one, sync, local = (weights(tmp_path / n) for n in ("one", "sync", "local"))
    assert sorted(one) == sorted(sync) == sorted(local) == [3, 6]  # 2 epochs of 3 optimizer steps
    assert max_diff(one[3], one[6]) > 1e-3  # the weights moved: not two untouched initialisations
    assert any("running_mean" in k for k in one[6])  # BatchNorm statistics are compared too
    diffs = {step: max_diff(one[step], sync[step]) for step in (3, 6)}
    unsynced = max_diff(one[6], local[6])
    print(f"max |1 process - 2 processes|: sync_bn {diffs}, without sync_bn {unsynced:.3g}")
    for step, diff in diffs.items():
        assert diff <= ATOL, (step, diff)
    assert unsynced > 20 * ATOL  # per-process BatchNorm statistics: a different run, as documented


def _sync_bn_worker(rank: int, init_file: str, out_dir: str) -> None:
    """One of 2 gloo processes: its half of a batch through gloo-synchronised BatchNorm layers."""
    import timm.layers

    from benthicnet_hf.training.sync_bn import convert_sync_batchnorm

    torch.distributed.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    torch.manual_seed(0)
    x = [torch.randn(*shape) * 3 + 1 for shape in ((8, 5), (6, 4, 3, 3), (6, 4, 3, 3))]
    layers = nn_layers()
    rows = {0: slice(0, 5), 1: slice(5, None)}[rank]  # unequal halves: 5 + 3 rows, 4 + 2 images
    rows_img = {0: slice(0, 4), 1: slice(4, None)}[rank]
    model = convert_sync_batchnorm(torch.nn.ModuleList(layers), 2)
    assert all(type(m).__name__.startswith("GlooSync") for m in model)
    assert isinstance(model[2], timm.layers.BatchNormAct2d)  # the class is kept, the activation too
    result = {}
    for i, (layer, full) in enumerate(zip(model, x)):
        part = (full[rows] if i == 0 else full[rows_img]).clone().requires_grad_(True)
        y = layer(part)
        # a loss that weighs every output differently: the gradient flows through the statistics
        (y * torch.arange(y.numel(), dtype=y.dtype).view_as(y).cos()).sum().backward()
        result[i] = {"y": y.detach(), "dx": part.grad, "running_mean": layer.running_mean,
                     "running_var": layer.running_var,
                     "dw": layer.weight.grad.clone() if layer.affine else None}
        if layer.affine:  # summed over processes, as DDP would (it averages: the loss is summed here)
            torch.distributed.all_reduce(result[i]["dw"])
    torch.save(result, f"{out_dir}/rank{rank}.pt")
    torch.distributed.destroy_process_group()


def nn_layers() -> list[torch.nn.Module]:
    import timm.layers

    torch.manual_seed(1)
    layers = [torch.nn.BatchNorm1d(5, affine=False), torch.nn.BatchNorm2d(4),
              timm.layers.BatchNormAct2d(4, act_layer=torch.nn.ReLU)]
    with torch.no_grad():
        for layer in layers[1:]:
            layer.weight.uniform_(0.5, 1.5)
            layer.bias.uniform_(-0.5, 0.5)
    return layers


def test_gloo_sync_batchnorm_matches_batchnorm_on_the_whole_batch(tmp_path: Path) -> None:
    """Forward, input and weight gradients and running statistics of 2 gloo halves = plain
    BatchNorm (torch's CPU kernel) on the concatenated batch, up to float32 rounding."""
    import torch.multiprocessing as mp

    mp.spawn(_sync_bn_worker, args=(str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=True)
    halves = [torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1)]
    torch.manual_seed(0)
    x = [torch.randn(*shape) * 3 + 1 for shape in ((8, 5), (6, 4, 3, 3), (6, 4, 3, 3))]
    for i, (layer, full) in enumerate(zip(nn_layers(), x)):
        full = full.clone().requires_grad_(True)
        y = layer.train()(full)
        (y * torch.cat([torch.arange(h[i]["y"].numel(), dtype=y.dtype).view_as(h[i]["y"]).cos()
                        for h in halves])).sum().backward()
        got_y = torch.cat([h[i]["y"] for h in halves])
        got_dx = torch.cat([h[i]["dx"] for h in halves])
        torch.testing.assert_close(got_y, y.detach(), rtol=0, atol=1e-5)
        torch.testing.assert_close(got_dx, full.grad, rtol=0, atol=1e-5)
        assert got_dx.abs().max() > 0.1  # the gradient is not trivially zero
        for h in halves:  # every process holds the global running statistics
            torch.testing.assert_close(h[i]["running_mean"], layer.running_mean, rtol=0, atol=1e-6)
            torch.testing.assert_close(h[i]["running_var"], layer.running_var, rtol=0, atol=1e-5)
            if layer.affine:
                torch.testing.assert_close(h[i]["dw"], layer.weight.grad, rtol=0, atol=1e-5)


def test_sync_bn_is_a_noop_on_one_process_and_keeps_the_state_dict() -> None:
    from benthicnet_hf.training.sync_bn import convert_sync_batchnorm, count_sync_batchnorm

    model = torch.nn.Sequential(*nn_layers())
    keys = list(model.state_dict())
    assert count_sync_batchnorm(convert_sync_batchnorm(model, 1)) == 0  # 1 process: left as it is
    assert count_sync_batchnorm(convert_sync_batchnorm(model, 2, enabled=False)) == 0
    params = list(model.parameters())
    converted = convert_sync_batchnorm(model, 2)
    assert count_sync_batchnorm(converted) == 3 and list(converted.state_dict()) == keys
    assert all(a is b for a, b in zip(converted.parameters(), params))  # an earlier optimizer still holds them
    x = torch.randn(4, 4, 2, 2)
    # no process group: the layers fall back to their own forward (eval and train)
    torch.testing.assert_close(converted[2](x), nn_layers()[2](x), rtol=0, atol=0)


def test_sync_bn_must_match_on_resume() -> None:
    from benthicnet_hf.contrastive import train as contrastive_train
    from benthicnet_hf.ssl.trainer import SSL_RESUME_HARMLESS
    from benthicnet_hf.training import FinetuneArguments
    from benthicnet_hf.training.run_dir import RESUME_HARMLESS, changed_settings

    for harmless in (RESUME_HARMLESS, SSL_RESUME_HARMLESS, contrastive_train.CONTRASTIVE_RESUME_HARMLESS):
        assert "sync_bn" not in harmless
    saved = FinetuneArguments(output_dir="x", demo=True, sync_bn=True).to_dict()
    now = FinetuneArguments(output_dir="x", demo=True).to_dict()
    assert changed_settings(saved, now) == [("sync_bn", True, False)]
