"""Unknown bits (mask 0) never move the loss: any value there, NaN included, gives bit-identical
loss and gradients, for every loss the model can train with."""

from __future__ import annotations

import pytest
import torch

from benthicnet_hf import Hierarchy, LabelEncoder
from benthicnet_hf.output_types import OutputTypeCriterion
from benthicnet_hf.losses import HierarchicalLoss
from benthicnet_hf.rare_nodes.focal import RareNodeLoss

LABELS = {
    "substrate": ["Substrate > Unconsolidated (soft)", "Substrate > Consolidated (hard)", None,
                  "Substrate > Unconsolidated (soft) > Sand / mud (<2mm)"],
    "relief": ["Flat", None, "High", "Flat"],
    "biota": [None, "Biota > Sponges", "Biota > Sponges; Biota > Fishes", None],
}


@pytest.fixture(scope="module")
def batch() -> tuple[Hierarchy, torch.Tensor, torch.Tensor]:
    h = Hierarchy.catami()
    labels = {k: v for k, v in LABELS.items() if k in h.head_names}
    enc = LabelEncoder(h).encode(labels)
    targets = torch.as_tensor(enc.targets, dtype=torch.float32)
    mask = torch.as_tensor(enc.mask, dtype=torch.float32)
    assert 0 < mask.mean() < 1  # realistic: missing depth and missing heads leave unknown bits
    return h, targets, mask


def _poisoned(targets: torch.Tensor, mask: torch.Tensor, how: str) -> torch.Tensor:
    g = torch.Generator().manual_seed(3)
    junk = {"ones": torch.ones_like(targets), "random": torch.randint(0, 2, targets.shape, generator=g).float(),
            "nan": torch.full_like(targets, float("nan"))}[how]
    return torch.where(mask > 0.5, targets, junk)


def _loss_and_grad(criterion, logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor):
    x = logits.clone().requires_grad_(True)
    out = criterion(x, targets, mask)
    loss = out.loss if hasattr(out, "loss") else out[0]
    (grad,) = torch.autograd.grad(loss, x)
    return loss.detach(), grad


CRITERIA = {
    "mcloss": lambda h: HierarchicalLoss(h),
    "rare_node_focal": lambda h: RareNodeLoss(h, torch.rand(h.num_nodes) + 0.5, focal_mode="bma"),
    "mcm_head_type": lambda h: OutputTypeCriterion(h, "mcm"),
}


@pytest.mark.parametrize("how", ["ones", "random", "nan"])
@pytest.mark.parametrize("name", sorted(CRITERIA))
def test_unknown_bits_leave_loss_and_gradient_bit_identical(batch, name, how):
    h, targets, mask = batch
    criterion = CRITERIA[name](h)
    logits = torch.randn(targets.shape, generator=torch.Generator().manual_seed(0))
    ref_loss, ref_grad = _loss_and_grad(criterion, logits, targets, mask)
    loss, grad = _loss_and_grad(criterion, logits, _poisoned(targets, mask, how), mask)
    assert torch.isfinite(ref_loss)
    assert torch.equal(loss, ref_loss)
    assert torch.equal(grad, ref_grad)
    # and the gradient on unknown bits is exactly zero
    assert torch.equal(grad[mask == 0], torch.zeros_like(grad[mask == 0]))


def test_unknown_bits_do_not_move_the_model_loss(batch):
    from benthicnet_hf import BenthicNetConfig, BenthicNetForHierarchicalClassification

    h, targets, mask = batch
    torch.manual_seed(0)
    cfg = BenthicNetConfig(encoder_name="test_resnet", hierarchy=h.to_list(), image_size=32,
                           node_weights=(torch.rand(h.num_nodes) + 0.5).tolist())
    model = BenthicNetForHierarchicalClassification(cfg).eval()
    pixels = torch.randn(targets.shape[0], 3, 32, 32)
    ref = model(pixels, labels=targets, label_mask=mask).loss
    got = model(pixels, labels=_poisoned(targets, mask, "nan"), label_mask=mask).loss
    assert torch.isfinite(ref) and torch.equal(got, ref)
