"""The two-view methods forward each view separately (as the papers do); ``batched_views`` is the option.

References here are written by hand from the papers: they call the network on view 1, then on
view 2, and apply the paper's loss formula; they never go through the methods' ``forward``.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch.testing import assert_close

from benthicnet_hf.ssl import build_ssl_method
from benthicnet_hf.ssl.trainer import config_from_args, run_pretraining
from benthicnet_hf.ssl.views import forward_views

SMALL = {
    "simsiam": dict(proj_hidden_dim=32, proj_dim=32, pred_hidden_dim=8),
    "byol": dict(proj_hidden_dim=32, proj_dim=16),
    "barlow_twins": dict(proj_hidden_dim=32, proj_dim=32),
    "mocov3": dict(proj_hidden_dim=32, proj_dim=16, temperature=0.2),
}
ENCODER = "test_resnet"  # has BatchNorm layers (a ViT encoder has none: only the projectors would differ)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _views(batch: int = 6, size: int = 32, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    v1 = torch.randn(batch, 3, size, size, generator=g)
    v2 = 0.5 * torch.randn(batch, 3, size, size, generator=g) + 1.0  # other statistics than view 1
    return v1, v2


def _reference_loss(name: str, m: torch.nn.Module, v1: torch.Tensor, v2: torch.Tensor) -> torch.Tensor:
    """The paper's step: one network call per view, then the paper's loss formula."""
    if name == "simsiam":  # Chen & He, Algorithm 1
        z1, z2 = m.projector(m.encoder(v1)), m.projector(m.encoder(v2))
        p1, p2 = m.predictor(z1), m.predictor(z2)
        d = lambda p, z: -F.cosine_similarity(p, z.detach(), dim=1).mean()  # noqa: E731
        return 0.5 * d(p1, z2) + 0.5 * d(p2, z1)
    if name == "byol":  # Grill et al., eq. 2 symmetrised
        p1 = m.predictor(m.projector(m.encoder(v1)))
        p2 = m.predictor(m.projector(m.encoder(v2)))
        with torch.no_grad():
            t1 = m.target_projector(m.target_encoder(v1))
            t2 = m.target_projector(m.target_encoder(v2))
        mse = lambda p, z: (F.normalize(p, dim=1) - F.normalize(z, dim=1)).pow(2).sum(1).mean()  # noqa: E731
        return mse(p1, t2) + mse(p2, t1)
    if name == "barlow_twins":  # Zbontar et al., Algorithm 1
        za, zb = m.projector(m.encoder(v1)), m.projector(m.encoder(v2))
        n = za.shape[0]
        std = lambda z: (z - z.mean(0)) / torch.sqrt(z.var(0, unbiased=False) + 1e-5)  # noqa: E731
        c = std(za).T @ std(zb) / n
        off = c - torch.diag(torch.diagonal(c))
        return (torch.diagonal(c) - 1).pow(2).sum() + 5.1e-3 * off.pow(2).sum()
    if name == "mocov3":  # Chen, Xie & He, Algorithm 1
        q1 = m.predictor(m.projector(m.encoder(v1)))
        q2 = m.predictor(m.projector(m.encoder(v2)))
        with torch.no_grad():
            k1 = m.momentum_projector(m.momentum_encoder(v1))
            k2 = m.momentum_projector(m.momentum_encoder(v2))
        tau = 0.2

        def ctr(q, k):
            logits = F.normalize(q, dim=1) @ F.normalize(k, dim=1).T / tau
            return 2 * tau * F.cross_entropy(logits, torch.arange(q.shape[0]))

        return ctr(q1, k2) + ctr(q2, k1)
    raise AssertionError(name)


def _buffers(m: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in m.named_buffers()}


@pytest.mark.parametrize("name", sorted(SMALL))
def test_separate_views_equal_the_papers_two_forwards_and_differ_from_batched(name):
    torch.manual_seed(0)
    # float64: the two sides sum in another order (loss formula); gradients through a deep
    # network amplify float32 rounding beyond assert_close's float32 tolerance, not float64's
    model = build_ssl_method(name, ENCODER, image_size=32, **SMALL[name]).double().train()
    assert model.batched_views is False  # the default is the papers' form
    reference = copy.deepcopy(model)
    batched = copy.deepcopy(model)
    batched.batched_views = True
    v1, v2 = (v.double() for v in _views())

    loss = model(v1, v2)
    ref = _reference_loss(name, reference, v1, v2)
    assert_close(loss, ref)
    loss.backward()
    ref.backward()
    for (k, p), (_, q) in zip(model.named_parameters(), reference.named_parameters()):
        if p.requires_grad:
            assert_close(p.grad, q.grad, msg=k)
    # running statistics: two updates per BatchNorm layer, one per view, exactly as the reference
    after, ref_after = _buffers(model), _buffers(reference)
    assert after.keys() == ref_after.keys() and any("running_mean" in k for k in after)
    for k in after:
        assert_close(after[k], ref_after[k], msg=k)
    assert after["encoder.bn1.num_batches_tracked"].item() == 2

    loss_b = batched(v1, v2)
    assert not torch.allclose(loss_b, loss, rtol=1e-3, atol=1e-4), (loss_b, loss)
    bn_b = _buffers(batched)
    assert bn_b["encoder.bn1.num_batches_tracked"].item() == 1
    assert not torch.allclose(bn_b["encoder.bn1.running_mean"], after["encoder.bn1.running_mean"])


@pytest.mark.parametrize("batched", [False, True])
def test_first_batchnorm_running_statistics_follow_the_update_rule(batched):
    # independent of any network call: the running mean/var from BatchNorm's documented rule
    # x_hat <- (1 - m) x_hat + m x_t on the stem's input, per view (separate) or on both (batched)
    torch.manual_seed(0)
    model = build_ssl_method("barlow_twins", ENCODER, image_size=32, batched_views=batched,
                             **SMALL["barlow_twins"]).train()
    bn = model.encoder.conv1[1]
    seen = []
    bn.register_forward_pre_hook(lambda mod, inp: seen.append(inp[0].detach().clone()))
    mean0, var0 = bn.running_mean.clone(), bn.running_var.clone()
    model(*_views())
    assert len(seen) == (1 if batched else 2)
    mean, var, mom = mean0, var0, bn.momentum
    for x in seen:
        mean = (1 - mom) * mean + mom * x.mean(dim=(0, 2, 3))
        var = (1 - mom) * var + mom * x.var(dim=(0, 2, 3), unbiased=True)
    assert_close(bn.running_mean, mean)
    assert_close(bn.running_var, var)
    if not batched:
        assert seen[0].shape[0] == 6 and not torch.allclose(seen[0].mean(), seen[1].mean())


def test_forward_views_helper_and_single_view_refusal():
    net = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.BatchNorm1d(3)).train()
    a, b = torch.randn(5, 4), torch.randn(5, 4) + 2
    sep = forward_views(net, a, b)
    mu = net[0](a).mean(0)
    assert_close(sep[0], (net[0](a) - mu) / torch.sqrt(net[0](a).var(0, unbiased=False) + 1e-5)
                 * net[1].weight + net[1].bias)
    both = torch.cat([net[0](a), net[0](b)])
    expect = (both - both.mean(0)) / torch.sqrt(both.var(0, unbiased=False) + 1e-5) * net[1].weight + net[1].bias
    bat = forward_views(net, a, b, batched=True)
    assert_close(torch.cat(bat), expect)
    with pytest.raises(ValueError, match="one shape"):
        forward_views(net, a, b[:4])
    with pytest.raises(ValueError, match="batched_views does not apply"):
        build_ssl_method("mae", "test_vit", batched_views=True)
    assert not hasattr(build_ssl_method("mae", "test_vit", image_size=32, decoder_dim=8, decoder_depth=1,
                                        decoder_heads=2), "batched_views")


@pytest.mark.parametrize("flag", [[], ["--batched_views"]])
def test_the_flag_reaches_the_model(flag, tmp_path, monkeypatch):
    from accelerate.state import AcceleratorState

    import benthicnet_hf.ssl.trainer as trainer

    rng = np.random.default_rng(0)
    for i in range(4):
        Image.fromarray((rng.random((36, 36, 3)) * 255).astype(np.uint8)).save(tmp_path / f"{i}.png")
    built = []
    real = trainer.build_ssl_method
    monkeypatch.setattr(trainer, "build_ssl_method", lambda *a, **k: built.append(real(*a, **k)) or built[-1])
    kw = [f"--method_kwarg={k}={v}" for k, v in SMALL["barlow_twins"].items()]
    AcceleratorState._reset_state(reset_partial_state=True)
    try:
        run_pretraining(config_from_args([
            "--train_data", str(tmp_path), "--output_dir", str(tmp_path / "out"), "--method", "barlow_twins",
            "--encoder", ENCODER, "--image_size", "32", "--batch_size", "4", "--num_workers", "0",
            "--max_steps", "1", *kw, *flag]))
    finally:
        AcceleratorState._reset_state(reset_partial_state=True)
    assert [m.batched_views for m in built] == [bool(flag)]
