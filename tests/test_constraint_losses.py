"""Max-constraint and masked MCLoss against the dense formulas of the C-HMCNN paper."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from benthicnet_hf import Taxonomy, Hierarchy
from benthicnet_hf.data.arff import taxonomy_from_arff
from benthicnet_hf.constraint import MaxConstraint, dense_max_constraint, max_constraint
from benthicnet_hf.losses import HierarchicalLoss, mcloss_logits

from conftest import shared_file


@pytest.fixture(scope="module")
def catami() -> Hierarchy:
    return Hierarchy.catami()


@pytest.fixture(scope="module")
def go() -> Hierarchy:
    return Hierarchy((taxonomy_from_arff(shared_file("hmc", "cellcycle_GO.train.arff.gz")),))


def consistent_targets(h: Hierarchy, b: int, seed: int) -> torch.Tensor:
    """Random labels closed under ancestors (what the label encoder produces)."""
    g = torch.Generator().manual_seed(seed)
    leaves = torch.rand(b, h.num_nodes, generator=g) < 0.05
    r = torch.as_tensor(h.dense_ancestor_matrix(), dtype=torch.float64)
    return ((leaves.double() @ r.T) > 0).double()


def prob_space_mcloss(x: torch.Tensor, y: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    """C-HMCNN (paper and its main.py) written densely in probability space, per bit."""
    p = torch.sigmoid(x)
    h = (1 - y) * dense_max_constraint(p, r) + y * dense_max_constraint(y * p, r)
    return F.binary_cross_entropy(h, y, reduction="none")


@pytest.mark.parametrize("which", ["catami", "go"])
def test_max_constraint_equals_dense_formula_value_and_gradient(which, request):
    h = request.getfixturevalue(which)
    b = 4 if which == "go" else 16
    torch.manual_seed(0)
    x = torch.rand(b, h.num_nodes, dtype=torch.float64, requires_grad=True)
    r = torch.as_tensor(h.dense_ancestor_matrix())
    ours = MaxConstraint(h)(x)
    ref = dense_max_constraint(x, r)
    assert torch.allclose(ours, ref, atol=1e-12)
    w = torch.randn_like(ours)
    (g1,) = torch.autograd.grad((ours * w).sum(), x)
    (g2,) = torch.autograd.grad((ref * w).sum(), x)
    assert torch.allclose(g1, g2, atol=1e-6)


def test_outputs_are_coherent_and_keep_dtype(catami):
    torch.manual_seed(1)
    for dtype in (torch.float32, torch.bfloat16):
        x = torch.randn(8, catami.num_nodes, dtype=dtype)
        out = MaxConstraint(catami)(x)
        assert out.dtype == dtype
        parents = torch.as_tensor(catami.parent_index)
        child = parents >= 0
        assert (out[:, child] <= out[:, parents[child]]).all()
        assert (out >= x).all()


def test_mcloss_equals_probability_space_formula(go):
    torch.manual_seed(2)
    y = consistent_targets(go, 4, seed=0)
    x = (3 * torch.randn(4, go.num_nodes, dtype=torch.float64)).requires_grad_()
    r = torch.as_tensor(go.dense_ancestor_matrix())
    pairs = torch.as_tensor(go.ancestor_pairs)
    ours = F.binary_cross_entropy_with_logits(mcloss_logits(x, y, pairs), y, reduction="none")
    ref = prob_space_mcloss(x, y, r)
    assert torch.allclose(ours, ref, atol=1e-6)
    w = torch.rand_like(ours)
    (g1,) = torch.autograd.grad((ours * w).sum(), x)
    (g2,) = torch.autograd.grad((ref * w).sum(), x)
    assert torch.allclose(g1, g2, atol=1e-6)


def test_logit_space_zero_is_not_neutral():
    """A positive node whose only positive child has a negative logit: the paper's MCM(y·p) is
    driven by that child; multiplying logits by y (the BenthicNet code) would let the negative
    sibling's zero win the max."""
    head = Taxonomy.from_paths("h", ["A", "A > B", "A > C"])
    h = Hierarchy((head,))
    x = torch.tensor([[-3.0, -2.0, 4.0]], dtype=torch.float64)  # A, B (positive), C (negative)
    y = torch.tensor([[1.0, 1.0, 0.0]], dtype=torch.float64)
    h_logit = mcloss_logits(x, y, torch.as_tensor(h.ancestor_pairs))
    assert h_logit[0, 0].item() == pytest.approx(-2.0)  # max over A and B only
    wrong = max_constraint(x * y, torch.as_tensor(h.ancestor_pairs))
    assert wrong[0, 0].item() == 0.0


def brute_force_reduction(per_bit, mask, h: Hierarchy) -> torch.Tensor:
    heads = []
    for i in range(len(h.heads)):
        s = h.head_slice(i)
        samples = [per_bit[b, s][mask[b, s] > 0].mean() for b in range(per_bit.shape[0]) if mask[b, s].sum() > 0]
        if samples:
            heads.append(torch.stack(samples).mean())
    return torch.stack(heads).mean()


def test_three_level_masking_equals_brute_force(catami):
    torch.manual_seed(3)
    b = 12
    x = torch.randn(b, catami.num_nodes, dtype=torch.float64, requires_grad=True)
    y = consistent_targets(catami, b, seed=1)
    mask = (torch.rand(b, catami.num_nodes) < 0.7).double()
    mask[:5, catami.head_slice("biota")] = 0  # samples without a biota label
    mask[:, catami.head_slice("relief")] = 0  # a head with no labelled sample in the batch
    crit = HierarchicalLoss(catami)
    out = crit(x, y, mask)
    r = torch.as_tensor(catami.dense_ancestor_matrix())
    known_y = y * mask  # the paper's formula on known bits: unknown targets are not targets
    ref = brute_force_reduction(prob_space_mcloss(x, known_y, r), mask, catami)
    assert torch.allclose(out.loss, ref, atol=1e-9)
    assert out.head_has_data.tolist() == [True, True, False, True, True]
    (g1,) = torch.autograd.grad(out.loss, x)
    (g2,) = torch.autograd.grad(ref, x)
    assert torch.allclose(g1, g2, atol=1e-9)
    # weights multiply bits before the means
    wts = torch.rand(catami.num_nodes, dtype=torch.float64)
    ref_w = brute_force_reduction(prob_space_mcloss(x, known_y, r) * wts, mask, catami)
    assert torch.allclose(crit(x, y, mask, weights=wts).loss, ref_w, atol=1e-9)


def test_flat_head_is_masked_bce(catami):
    s = catami.head_slice("colour")
    x = torch.randn(3, catami.num_nodes, dtype=torch.float64)
    y = torch.zeros_like(x)
    y[:, s.start] = 1
    mask = torch.zeros_like(x)
    mask[:, s] = 1
    out = HierarchicalLoss(catami)(x, y, mask)
    assert torch.allclose(out.loss, F.binary_cross_entropy_with_logits(x[:, s], y[:, s]))


def test_no_known_bit_gives_zero_differentiable_loss(catami):
    x = torch.randn(2, catami.num_nodes, requires_grad=True)
    out = HierarchicalLoss(catami)(x, torch.zeros_like(x), torch.zeros_like(x))
    out.loss.backward()
    assert out.loss.item() == 0.0 and torch.all(x.grad == 0)


def test_shape_errors_name_the_argument(catami):
    crit = HierarchicalLoss(catami)
    x = torch.randn(2, catami.num_nodes)
    with pytest.raises(ValueError, match=r"label_mask must have shape \(batch, 324\)"):
        crit(x, torch.zeros_like(x), torch.zeros(2, 10))
    with pytest.raises(ValueError, match="expected scores of shape"):
        max_constraint(torch.randn(2, 5), torch.as_tensor(catami.ancestor_pairs), catami.num_nodes)


def test_node_weight_bits_have_one_home():
    """bit_weights lives in losses (the model's loss needs it as remote code); the rare-node and
    config names are the same objects."""
    from benthicnet_hf import configuration_benthicnet
    from benthicnet_hf.losses import NODE_WEIGHT_BITS, bit_weights
    from benthicnet_hf.rare_nodes import weights

    assert weights.bit_weights is bit_weights
    assert weights.APPLY_TO is NODE_WEIGHT_BITS is configuration_benthicnet.NODE_WEIGHT_BITS
    w = torch.tensor([2.0, 3.0])
    y = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    # already per-bit weights pass through "all" unchanged (the ensemble test feeds them so)
    assert torch.equal(bit_weights(bit_weights(w, y, "all"), y, "all"), bit_weights(w, y, "all"))
    assert bit_weights(w, y, "negative").tolist() == [[1.0, 3.0], [2.0, 1.0]]
