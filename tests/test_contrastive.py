"""Hierarchical contrastive losses against a per-anchor loop of the paper's equations; masks."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from benthicnet_hf.contrastive import (
    AttentionFeatureMasks,
    LevelLabeller,
    build_contrastive_method,
    gmm_feature_masks,
    hmlc_loss,
)
from benthicnet_hf.contrastive.method import CONTRASTIVE_METHODS
from benthicnet_hf.hierarchy import Taxonomy, Hierarchy


def reference_loss(features: np.ndarray, labels: np.ndarray, loss_type: str, tau: float) -> float:
    """Zhang et al. 2022 Eqs. 3-7, one anchor and one positive at a time (λ = 2^(1/k), k=1 finest).

    features: (B, V, D) or (B, V, L, D); labels: (B, L) with -1 unknown.
    """
    b, v = features.shape[:2]
    n_levels = labels.shape[1]
    n = b * v
    sample = [a % b for a in range(n)]  # anchor a = view * B + sample
    penalty = loss_type in ("himulcon", "himulcone")
    constrain = loss_type in ("hicone", "himulcone")
    running = [-math.inf] * n
    total, used = 0.0, 0
    for col in reversed(range(n_levels)):
        k = n_levels - col
        f = features if features.ndim == 3 else features[:, :, col]
        vec = [f[a % b, a // b] for a in range(n)]
        lab = [labels[sample[a], col] for a in range(n)]
        new_running = list(running)
        per_anchor = []
        for i in range(n):
            if lab[i] < 0:
                continue
            others = [a for a in range(n) if a != i and lab[a] >= 0]
            pos = [p for p in others if lab[p] == lab[i]]
            if not pos:
                continue
            log_den = math.log(sum(math.exp(vec[i] @ vec[a] / tau) for a in others))
            pair = []
            for p in pos:
                loss = -(vec[i] @ vec[p] / tau - log_den)
                if constrain:
                    loss = max(loss, running[i])
                pair.append(loss)
            per_anchor.append(sum(pair) / len(pair))
            if constrain:
                new_running[i] = max(running[i], max(pair))
        running = new_running
        if per_anchor:
            total += (2 ** (1 / k) if penalty else 1.0) * sum(per_anchor) / len(per_anchor)
            used += 1
    return total / used


LABELS = torch.tensor([[0, 10, 100], [0, 10, 101], [0, 11, 102], [1, 12, 103], [1, 12, -1],
                       [0, -1, -1], [1, 12, 103], [-1, -1, -1], [0, 10, 100]])


@pytest.mark.parametrize("loss_type", ["himulcon", "hicone", "himulcone"])
@pytest.mark.parametrize("level_specific", [False, True])
def test_hmlc_matches_per_anchor_loop(loss_type: str, level_specific: bool) -> None:
    g = torch.Generator().manual_seed(0)
    shape = (9, 2, 3, 5) if level_specific else (9, 2, 5)
    f = F.normalize(torch.randn(shape, generator=g, dtype=torch.float64), dim=-1)
    got = hmlc_loss(f, LABELS, loss_type, temperature=0.5)
    expected = reference_loss(f.numpy(), LABELS.numpy(), loss_type, 0.5)
    assert float(got) == pytest.approx(expected, rel=1e-10)


def test_unknown_sample_is_neither_positive_nor_negative() -> None:
    g = torch.Generator().manual_seed(1)
    f = F.normalize(torch.randn(9, 2, 5, generator=g, dtype=torch.float64), dim=-1)
    base = hmlc_loss(f, LABELS, "himulcone", 0.5)
    # a sample with no label at all: its features must not matter
    extra = F.normalize(torch.randn(1, 2, 5, generator=g, dtype=torch.float64), dim=-1)
    more = hmlc_loss(torch.cat([f, extra]), torch.cat([LABELS, torch.tensor([[-1, -1, -1]])]), "himulcone", 0.5)
    assert float(more) == pytest.approx(float(base), rel=1e-12)


def test_gradients_finite_with_missing_levels() -> None:
    f = F.normalize(torch.randn(9, 2, 5, dtype=torch.float64), dim=-1).requires_grad_()
    hmlc_loss(f, LABELS, "himulcone", 0.1).backward()
    assert torch.isfinite(f.grad).all()
    # the fully unknown sample (row 7) gets no gradient
    assert torch.count_nonzero(f.grad[7]) == 0


def test_level_labeller_unknown_and_multi_path() -> None:
    tree = Taxonomy.from_paths("t", ["A > A1 > A1a", "A > A2", "B > B1"])
    hier = Hierarchy((Taxonomy.flat("c", ["x", "y"]), tree))
    idx = {k: i + 2 for i, k in enumerate(tree.nodes)}  # after the flat head's two nodes
    t = torch.zeros(3, hier.num_nodes)
    m = torch.ones(3, hier.num_nodes)
    t[0, [idx["A"], idx["A > A1"]]] = 1  # cut short at depth 2: depth 3 unknown
    m[0, idx["A > A1 > A1a"]] = 0
    t[1, [idx["A"], idx["A > A1"], idx["A > A2"]]] = 1  # two labels at depth 2
    m[2, 2:] = 0  # missing head
    ids = LevelLabeller(hier, "t")(t, m)
    assert ids.tolist() == [[idx["A"], idx["A > A1"], -1], [idx["A"], -1, -1], [-1, -1, -1]]
    with pytest.raises(ValueError, match="head 't', row 1"):
        LevelLabeller(hier, "t", on_multi="error")(t, m)


def test_gmm_masks_separate_level_specific_dimensions() -> None:
    rng = np.random.default_rng(0)
    parent = rng.integers(0, 3, 300)
    child = rng.integers(0, 3, 300)
    coarse = np.eye(3)[parent].repeat(3, 1) * 3  # dims 0-8 encode the level-1 class
    fine = np.eye(3)[child].repeat(3, 1) * 3  # dims 9-17 encode the child within its parent
    x = torch.tensor(np.concatenate([coarse, fine], 1) + rng.normal(0, 0.3, (300, 18)))
    labels = torch.tensor(np.stack([parent, parent * 3 + child], 1))
    masks = gmm_feature_masks(x, labels).numpy()
    assert masks[0].tolist() == [True] * 9 + [False] * 9
    assert masks[1].tolist() == [False] * 9 + [True] * 9


def test_attention_masks_are_soft_gates() -> None:
    att = AttentionFeatureMasks(dim=6, num_levels=3)
    z = torch.randn(4, 2, 6)
    gates = att.soft_masks(z)
    assert gates.shape == (4, 2, 3, 6) and (gates > 0).all() and (gates < 1).all()
    out = att(z)
    torch.testing.assert_close(out, F.normalize(z.unsqueeze(2) * gates, dim=-1))


class TinyEncoder(torch.nn.Module):
    num_features = 16

    def __init__(self) -> None:
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 16))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


@pytest.mark.parametrize("method", sorted(CONTRASTIVE_METHODS))
def test_short_run_reduces_loss(method: str) -> None:
    torch.manual_seed(0)
    tree = Taxonomy.from_paths("t", ["A > A1", "A > A2", "B > B1", "B > B2"])
    hier = Hierarchy((tree,))
    leaves = [tree.index[k] for k in ("A > A1", "A > A2", "B > B1", "B > B2")]
    cls = torch.arange(32) % 4
    targets = torch.zeros(32, hier.num_nodes)
    targets[torch.arange(32), torch.tensor(leaves)[cls]] = 1
    targets[torch.arange(32), torch.tensor([tree.parents[leaf][0] for leaf in leaves])[cls]] = 1
    mask = torch.ones_like(targets)
    protos = torch.randn(4, 3, 8, 8)
    images = protos[cls] + 0.5 * torch.randn(32, 3, 8, 8)
    model = build_contrastive_method(method, TinyEncoder(), hier, proj_hidden_dim=32, proj_dim=16,
                                     temperature=0.5, gmm_refit_every=10)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(25):
        v1 = images + 0.1 * torch.randn_like(images)
        v2 = images + 0.1 * torch.randn_like(images)
        loss = model(v1, v2, targets, mask)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    # SupCon has a floor of about log(#positives) per level: require a clear absolute drop
    assert np.mean(losses[-5:]) < losses[0] - 0.25, losses


def test_pretrain_cli_on_demo_data_exports_a_loadable_encoder(tmp_path) -> None:
    from safetensors.torch import load_file

    from benthicnet_hf.configuration_benthicnet import BenthicNetConfig
    from benthicnet_hf.contrastive.cli import is_labelled_method, main
    from benthicnet_hf.data.demo import make_demo_dataset
    from benthicnet_hf.modeling_benthicnet import BenthicNetForHierarchicalClassification

    assert is_labelled_method(["--method", "G-HMLC"]) and is_labelled_method(["--method=himulcon"])
    assert not is_labelled_method(["--method", "barlow_twins"]) and not is_labelled_method([])
    table = make_demo_dataset(tmp_path / "demo", num_images=40, image_size=32, seed=0)
    out = tmp_path / "out"
    weights = main(["--method", "himulcone", "--train_data", str(table), "--output_dir", str(out),
                    "--encoder", "test_resnet", "--image_size", "32", "--batch_size", "16", "--max_steps", "8",
                    "--learning_rate", "3e-3", "--heads", "substrate", "--proj_dim", "16",
                    "--cache_dir", str(tmp_path / "cache")])
    import json

    losses = json.loads((out / "train_losses.json").read_text())
    assert len(losses) == 8 and np.mean(losses[-3:]) < losses[0]
    assert json.loads((out / "encoder_config.json").read_text())["method"] == "himulcone"
    # loads strictly into the fine-tuning model like any SSL encoder
    model = BenthicNetForHierarchicalClassification(BenthicNetConfig(encoder_name="test_resnet", image_size=32))
    model.load_encoder(weights)
    state = load_file(str(weights))
    for key, value in model.backbone.state_dict().items():
        torch.testing.assert_close(value, state[key])


def test_pretrain_cli_resumes_exactly_and_owns_its_output_dir(tmp_path) -> None:
    # a run stopped after 2 steps and resumed ends bit-identical to the uninterrupted run
    import json

    from accelerate.state import AcceleratorState
    from safetensors.torch import load_file

    from benthicnet_hf.contrastive.cli import main
    from benthicnet_hf.data.demo import make_demo_dataset
    from benthicnet_hf.training.run_dir import read_run_args

    table = make_demo_dataset(tmp_path / "demo", num_images=40, image_size=32, seed=0)

    def run(out, *extra):
        AcceleratorState._reset_state(reset_partial_state=True)  # one Accelerator per run
        return main(["--method", "g_hmlc", "--train_data", str(table), "--output_dir", str(out),
                     "--encoder", "test_resnet", "--image_size", "32", "--batch_size", "8", "--max_steps", "5",
                     "--heads", "substrate", "--proj_dim", "16", "--cache_dir", str(tmp_path / "cache"),
                     "--logging_steps", "2", *extra])

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        full = tmp_path / "full"
        run(full, "--checkpointing_steps", "2")
        step2 = full / "checkpoints" / "step_00000002"
        assert sorted(p.name for p in (full / "checkpoints").iterdir()) == ["step_00000002", "step_00000004"]
        assert read_run_args(step2)["method"] == "g_hmlc"
        resumed = tmp_path / "resumed"
        run(resumed, "--resume_from_checkpoint", str(step2))
        a, b = load_file(full / "encoder.safetensors"), load_file(resumed / "encoder.safetensors")
        assert a.keys() == b.keys()
        for k in a:
            assert torch.equal(a[k], b[k]), k
        losses = json.loads((full / "train_losses.json").read_text())
        assert len(losses) == 5 and json.loads((resumed / "train_losses.json").read_text()) == losses
        # the folder belongs to its run: a fresh run is refused, a resume with other settings too
        with pytest.raises(FileExistsError, match=r"already holds another run \(checkpoints, encoder.safetensors"):
            run(full)
        with pytest.raises(ValueError, match="--learning_rate: 0.001 in the checkpoint, 0.01 now"):
            run(full, "--resume_from_checkpoint", "latest", "--learning_rate", "0.01")
        run(full, "--resume_from_checkpoint", "latest", "--checkpointing_steps", "1")  # cadence may change
        run(full, "--overwrite_output_dir")
        assert not (full / "checkpoints").exists()
    finally:
        AcceleratorState._reset_state(reset_partial_state=True)
        torch.set_num_threads(threads)


# ------------------------------------------------------------------------- several processes
def _tiny_problem(seed: int) -> tuple[Hierarchy, torch.Tensor, torch.Tensor, torch.Tensor]:
    """A two-level tree and 12 labelled 8×8 images; ``seed`` changes which classes and noise."""
    tree = Taxonomy.from_paths("t", ["A > A1", "A > A2", "B > B1", "B > B2"])
    hier = Hierarchy((tree,))
    g = torch.Generator().manual_seed(seed)
    leaves = torch.tensor([tree.index[k] for k in ("A > A1", "A > A2", "B > B1", "B > B2")])
    parents = torch.tensor([tree.parents[int(leaf)][0] for leaf in leaves])
    cls = torch.randint(0, 4, (12,), generator=g)
    targets = torch.zeros(12, hier.num_nodes)
    targets[torch.arange(12), leaves[cls]] = 1
    targets[torch.arange(12), parents[cls]] = 1
    images = torch.randn(4, 3, 8, 8, generator=g)[cls] + 0.5 * torch.randn(12, 3, 8, 8, generator=g)
    return hier, targets, torch.ones_like(targets), images


def _gmm_model(hier: Hierarchy) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_contrastive_method("g_hmlc", TinyEncoder(), hier, proj_hidden_dim=32, proj_dim=16,
                                    gmm_fit="batch_fisher").train()


def _refit_worker(rank: int, world: int, init_file: str, out_dir: str) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        hier, targets, mask, images = _tiny_problem(rank)
        model = _gmm_model(hier)
        model(images, images, targets, mask)  # step 0: the mixture is refitted
        np.save(f"{out_dir}/masks_{rank}.npy", model.feature_masks["t"].masks.numpy())
    finally:
        dist.destroy_process_group()


def test_gmm_masks_are_refitted_on_the_batch_of_all_processes(tmp_path) -> None:
    import torch.multiprocessing as mp

    mp.spawn(_refit_worker, args=(2, str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=True)
    # reference: one process that sees both processes' batches (same weights, so the same embeddings)
    parts = [_tiny_problem(rank) for rank in range(2)]
    hier = parts[0][0]
    model = _gmm_model(hier)
    model(*(torch.cat([p[i] for p in parts]) for i in (3, 3, 1, 2)))
    expected = model.feature_masks["t"].masks.numpy()
    local = _gmm_model(hier)
    local(parts[0][3], parts[0][3], parts[0][1], parts[0][2])
    assert not np.array_equal(local.feature_masks["t"].masks.numpy(), expected)  # the gather matters here
    for rank in range(2):
        np.testing.assert_array_equal(np.load(tmp_path / f"masks_{rank}.npy"), expected)


def test_pretrain_cli_two_processes(tmp_path) -> None:
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    from benthicnet_hf.data.demo import make_demo_dataset

    table = make_demo_dataset(tmp_path / "demo", num_images=40, image_size=32, seed=0)
    out = tmp_path / "out"
    env = {**os.environ, "ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", "0",
           str(Path(__file__).resolve().parents[1] / "train_scripts" / "pretrain.py"),
           "--method", "g_hmlc", "--train_data", str(table), "--output_dir", str(out), "--encoder", "test_resnet",
           "--image_size", "32", "--batch_size", "8", "--max_steps", "3", "--heads", "substrate",
           "--proj_dim", "16", "--cache_dir", str(tmp_path / "cache"), "--sync_bn"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    # --sync_bn reached the loop: the encoder's and projector's BatchNorm layers became synchronised ones
    import re

    synced = re.findall(r"--sync_bn: (\d+) BatchNorm layers synchronised over 2 processes", proc.stderr)
    assert len(synced) >= 1 and int(synced[0]) >= 2, proc.stderr[-3000:]
    config = json.loads((out / "encoder_config.json").read_text())
    assert (config["num_processes"], config["global_batch_size"]) == (2, 16)  # one run of world size 2
    losses = json.loads((out / "train_losses.json").read_text())
    assert len(losses) == 3 and all(math.isfinite(x) for x in losses)
