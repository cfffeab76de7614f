"""SSL losses, heads, schedules, optimiser and cross-process gather against independent references.

References: lightly 1.6 (NegativeCosineSimilarity, BarlowTwinsLoss, LARS, patchify) on identical
inputs for values and gradients; the papers' formulas written out here (MoCo v3, MAE, BYOL's
momentum schedule) for what lightly lacks.
"""

from __future__ import annotations

import math
import os
import socket

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from benthicnet_hf.ssl import (MAE, barlow_twins_loss, build_ssl_method, byol_loss, mae_loss, mae_target,
                               moco_v3_loss, SimSiamLoss, BYOLLoss, MoCoV3Loss)
from benthicnet_hf.ssl.lars import LARS, lars_param_groups
from benthicnet_hf.ssl.mae import patchify
from benthicnet_hf.ssl.schedules import cosine_momentum, warmup_cosine

lightly_loss = pytest.importorskip("lightly.loss")  # test-only dependency (installed in the venv)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _leaves(*shapes, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(*s, generator=g, dtype=dtype).requires_grad_(True) for s in shapes]


def _grads(loss, tensors):
    return torch.autograd.grad(loss, tensors, allow_unused=True)


# ---------------------------------------------------------------- SimSiam / BYOL
def test_simsiam_loss_matches_lightly_values_and_gradients():
    p1, p2, z1, z2 = _leaves((16, 32), (16, 32), (16, 32), (16, 32))
    ours = SimSiamLoss()(p1, p2, z1, z2)
    crit = lightly_loss.NegativeCosineSimilarity()
    ref = 0.5 * (crit(p1, z2.detach()) + crit(p2, z1.detach()))
    torch.testing.assert_close(ours, ref)
    g_ours, g_ref = _grads(ours, [p1, p2]), _grads(ref, [p1, p2])
    for a, b in zip(g_ours, g_ref):
        torch.testing.assert_close(a, b)
    # stop-gradient: nothing reaches the projections
    assert _grads(SimSiamLoss()(p1, p2, z1, z2), [z1, z2]) == (None, None)


def test_byol_loss_is_two_minus_two_cosine_against_lightly():
    p1, p2, z1, z2 = _leaves((8, 16), (8, 16), (8, 16), (8, 16), seed=1)
    ours = BYOLLoss()(p1, p2, z1, z2)
    crit = lightly_loss.NegativeCosineSimilarity()
    # ||p/|p| - z/|z|||^2 = 2 - 2 cos = 2 + 2 * NegativeCosineSimilarity, summed over both directions
    ref = (2 + 2 * crit(p1, z2.detach())) + (2 + 2 * crit(p2, z1.detach()))
    torch.testing.assert_close(ours, ref)
    for a, b in zip(_grads(ours, [p1, p2]), _grads(ref, [p1, p2])):
        torch.testing.assert_close(a, b)
    # the normalised squared distance written out
    direct = ((F.normalize(p1, dim=1) - F.normalize(z2, dim=1)) ** 2).sum(1).mean()
    torch.testing.assert_close(byol_loss(p1, z2), direct)


# ---------------------------------------------------------------- Barlow Twins
@pytest.mark.parametrize("lam", [5.1e-3, 0.02])
def test_barlow_twins_matches_lightly_values_and_gradients(lam):
    za, zb = _leaves((32, 24), (32, 24), seed=2)
    ours = barlow_twins_loss(za, zb, lam)
    ref = lightly_loss.BarlowTwinsLoss(lambda_param=lam)(za, zb)
    torch.testing.assert_close(ours, ref)
    for a, b in zip(_grads(ours, [za, zb]), _grads(ref, [za, zb])):
        torch.testing.assert_close(a, b)


def test_barlow_twins_formula_in_numpy():
    za, zb = _leaves((10, 6), (10, 6), seed=3)
    a, b = za.detach().numpy(), zb.detach().numpy()
    na = (a - a.mean(0)) / np.sqrt(a.var(0) + 1e-5)
    nb = (b - b.mean(0)) / np.sqrt(b.var(0) + 1e-5)
    c = na.T @ nb / a.shape[0]
    off = c - np.diag(np.diag(c))
    expected = ((1 - np.diag(c)) ** 2).sum() + 5.1e-3 * (off ** 2).sum()
    assert barlow_twins_loss(za, zb).item() == pytest.approx(expected, rel=1e-10)


# ---------------------------------------------------------------- MoCo v3
def _moco_reference(q, k, tau):
    """2τ · mean_i -log( exp(q̂_i·k̂_i/τ) / Σ_j exp(q̂_i·k̂_j/τ) ), written out."""
    qn = q / q.norm(dim=1, keepdim=True)
    kn = k.detach() / k.detach().norm(dim=1, keepdim=True)
    sim = qn @ kn.T / tau
    pos = torch.diagonal(sim)
    log_denominator = torch.log(torch.exp(sim).sum(dim=1))
    return 2 * tau * (log_denominator - pos).mean()


@pytest.mark.parametrize("tau", [0.2, 1.0])
def test_moco_v3_loss_matches_written_formula(tau):
    q1, q2, k1, k2 = _leaves((12, 8), (12, 8), (12, 8), (12, 8), seed=4)
    ours = MoCoV3Loss(temperature=tau)(q1, q2, k1, k2)
    ref = _moco_reference(q1, k2, tau) + _moco_reference(q2, k1, tau)
    torch.testing.assert_close(ours, ref)
    for a, b in zip(_grads(ours, [q1, q2]), _grads(ref, [q1, q2])):
        torch.testing.assert_close(a, b)
    assert _grads(moco_v3_loss(q1, k2, tau), [k2]) == (None,)  # keys come from the momentum encoder


def test_moco_v3_equals_lightly_ntxent_with_keys_as_negatives():
    # lightly's NTXent with a memory bank computes CE([q·k+, q·negatives]/τ); with the other keys
    # as the "bank" for each query the two agree after the 2τ scale (checked row by row).
    q, k = _leaves((6, 5), (6, 5), seed=5)
    tau = 0.2
    ours = moco_v3_loss(q, k, tau) / (2 * tau)
    qn, kn = F.normalize(q, dim=1), F.normalize(k.detach(), dim=1)
    rows = []
    for i in range(6):
        logits = torch.cat([(qn[i] @ kn[i]).view(1), qn[i] @ torch.cat([kn[:i], kn[i + 1:]]).T]) / tau
        rows.append(-torch.log_softmax(logits, 0)[0])
    torch.testing.assert_close(ours, torch.stack(rows).mean())


# ---------------------------------------------------------------- MAE
def test_patchify_matches_lightly():
    from lightly.models.utils import patchify as lightly_patchify

    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(patchify(x, 8), lightly_patchify(x, 8))


def test_mae_target_is_per_patch_normalised_pixels():
    x = torch.rand(2, 3, 16, 16, dtype=torch.float64)
    t = mae_target(x, 8).numpy()
    img = x.numpy()
    for b in range(2):
        for gi in range(2):
            for gj in range(2):
                patch = img[b, :, gi * 8:(gi + 1) * 8, gj * 8:(gj + 1) * 8].transpose(1, 2, 0).reshape(-1)
                expected = (patch - patch.mean()) / np.sqrt(patch.var(ddof=1) + 1e-6)
                np.testing.assert_allclose(t[b, gi * 2 + gj], expected, rtol=1e-10)


def test_mae_loss_on_masked_patches_only():
    pred, target = torch.randn(3, 10, 12, dtype=torch.float64), torch.randn(3, 10, 12, dtype=torch.float64)
    mask = (torch.rand(3, 10) < 0.75).double()
    p, t, m = pred.numpy(), target.numpy(), mask.numpy().astype(bool)
    expected = np.mean([((p[b, l] - t[b, l]) ** 2).mean() for b in range(3) for l in range(10) if m[b, l]])
    assert mae_loss(pred, target, mask).item() == pytest.approx(expected, rel=1e-10)
    # changing an unmasked patch's prediction changes nothing
    pred2 = pred.clone()
    pred2[~mask.bool()] += 5.0
    assert mae_loss(pred2, target, mask).item() == pytest.approx(expected, rel=1e-10)


def test_mae_masks_exactly_75_percent_and_encodes_only_visible_patches():
    torch.manual_seed(0)
    model = MAE("test_vit", image_size=64, decoder_dim=32, decoder_depth=1, decoder_heads=2)
    seen = []
    model.encoder.blocks[0].register_forward_hook(lambda m, i, o: seen.append(i[0].shape))
    images = torch.randn(3, 3, 64, 64)
    out = model.forward_with_outputs(images)
    num_patches = (64 // 16) ** 2
    assert out["mask"].shape == (3, num_patches)
    assert torch.all(out["mask"].sum(1) == 0.75 * num_patches)
    assert seen[0] == (3, model.encoder.num_prefix_tokens + num_patches // 4, model.encoder.embed_dim)
    assert len({tuple(m.nonzero().flatten().tolist()) for m in out["mask"]}) > 1  # per-sample masks
    ids = out["ids_masked"]
    assert ids.shape == (3, num_patches - num_patches // 4)
    for row, mask_row in zip(ids, out["mask"]):  # the predicted patches are exactly the masked ones
        assert sorted(row.tolist()) == mask_row.nonzero().flatten().tolist()
    full_target = mae_target(images, 16)
    torch.testing.assert_close(out["target"], full_target[torch.arange(3)[:, None], ids])
    # the loss is mae_loss over all patches with the prediction placed at the masked positions
    pred_full = torch.zeros_like(full_target)
    pred_full[torch.arange(3)[:, None], ids] = out["pred"]
    torch.testing.assert_close(out["loss"], mae_loss(pred_full, full_target, out["mask"]))


def test_mae_rejects_a_resnet():
    with pytest.raises(ValueError, match="VisionTransformer"):
        build_ssl_method("mae", "test_resnet")


# ---------------------------------------------------------------- schedules, EMA, LARS
def test_cosine_momentum_follows_byol_formula():
    for k, K in [(0, 100), (1, 100), (37, 100), (100, 100), (5, 7)]:
        expected = 1 - (1 - 0.996) * (math.cos(math.pi * k / K) + 1) / 2
        assert cosine_momentum(k, K, 0.996) == pytest.approx(expected, abs=1e-15)
    assert cosine_momentum(0, 10, 0.99) == pytest.approx(0.99)
    assert cosine_momentum(10, 10, 0.99) == pytest.approx(1.0)


def test_warmup_cosine_formula():
    base, total, warm = 0.4, 50, 10
    for s in range(total):
        if s < warm:
            expected = base * (s + 1) / warm
        else:
            expected = 0.5 * base * (1 + math.cos(math.pi * (s - warm) / (total - warm)))
        assert warmup_cosine(s, total, warm, base) == pytest.approx(expected, abs=1e-15)


def test_ema_update_is_the_convex_combination():
    model = build_ssl_method("byol", "test_resnet", proj_hidden_dim=16, proj_dim=8)
    with torch.no_grad():
        for p in model.encoder.parameters():
            p.add_(torch.randn_like(p))
    before = {k: v.clone() for k, v in model.target_encoder.named_parameters()}
    online = dict(model.encoder.named_parameters())
    m = model.update_momentum(3, 10)
    assert m == pytest.approx(1 - (1 - 0.996) * (math.cos(math.pi * 0.3) + 1) / 2)
    for k, v in model.target_encoder.named_parameters():
        torch.testing.assert_close(v, m * before[k] + (1 - m) * online[k])
        assert not v.requires_grad


def test_lars_matches_lightly_lars():
    from lightly.utils.lars import LARS as LightlyLARS

    torch.manual_seed(0)
    net_a = torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.BatchNorm1d(5), torch.nn.Linear(5, 3)).double()
    net_b = torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.BatchNorm1d(5), torch.nn.Linear(5, 3)).double()
    net_b.load_state_dict(net_a.state_dict())
    ours = LARS(lars_param_groups(net_a, 1e-4), lr=0.3, momentum=0.9, weight_decay=1e-4, trust_coefficient=0.02)
    groups_b = [{"params": [p for p in net_b.parameters() if p.ndim > 1], "weight_decay": 1e-4},
                {"params": [p for p in net_b.parameters() if p.ndim <= 1], "weight_decay": 0.0}]
    ref = LightlyLARS(groups_b, lr=0.3, momentum=0.9, weight_decay=1e-4, trust_coefficient=0.02)
    for step in range(4):
        x = torch.randn(8, 6, dtype=torch.float64)
        for net, opt in ((net_a, ours), (net_b, ref)):
            opt.zero_grad()
            net(x).pow(2).mean().backward()
            opt.step()
    for a, b in zip(net_a.parameters(), net_b.parameters()):
        torch.testing.assert_close(a, b)


# ---------------------------------------------------------------- cross-process statistics (gloo, 2 ranks)
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank: int, world: int, port: int, out_dir: str) -> None:
    import torch.distributed as dist

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(0)
    x_a, x_b = torch.randn(2 * 6, 5, generator=g, dtype=torch.float64), torch.randn(2 * 6, 5, generator=g, dtype=torch.float64)
    for name in ("barlow", "moco"):
        torch.manual_seed(1)
        net = torch.nn.Linear(5, 4).double()
        ddp = torch.nn.parallel.DistributedDataParallel(net)
        sl = slice(rank * 6, (rank + 1) * 6)
        za, zb = ddp(x_a[sl]), ddp(x_b[sl])
        if name == "barlow":
            loss = barlow_twins_loss(za, zb)
        else:
            loss = moco_v3_loss(za, zb, 0.2)
        loss.backward()
        torch.save({"loss": loss.detach(), "grad": net.weight.grad.clone()}, os.path.join(out_dir, f"{name}_{rank}.pt"))
    dist.destroy_process_group()


def test_gather_with_grad_gives_the_global_batch_statistics(tmp_path):
    import torch.multiprocessing as mp

    # fork: the children reuse the imported modules (spawn would re-import torch, timm, lightly)
    mp.start_processes(_ddp_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True, start_method="fork")
    g = torch.Generator().manual_seed(0)
    x_a, x_b = torch.randn(12, 5, generator=g, dtype=torch.float64), torch.randn(12, 5, generator=g, dtype=torch.float64)
    for name in ("barlow", "moco"):
        torch.manual_seed(1)
        net = torch.nn.Linear(5, 4).double()
        za, zb = net(x_a), net(x_b)
        if name == "barlow":  # single process on the concatenated batch
            loss = lightly_loss.BarlowTwinsLoss(lambda_param=5.1e-3)(za, zb)
        else:  # every query against every key of the global batch, mean over the global batch
            loss = _moco_reference(za, zb, 0.2)
        loss.backward()
        results = [torch.load(tmp_path / f"{name}_{r}.pt", weights_only=True) for r in range(2)]
        if name == "barlow":  # the same global loss on every rank
            for r in results:
                torch.testing.assert_close(r["loss"], loss.detach())
        else:  # per-rank mean over its queries; their average is the global mean
            torch.testing.assert_close((results[0]["loss"] + results[1]["loss"]) / 2, loss.detach())
        for r in results:  # DDP-averaged gradients equal the single-process gradient
            torch.testing.assert_close(r["grad"], net.weight.grad)
