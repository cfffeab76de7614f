"""Rare-node weighting, uncertainties, focal loss, ensembles and LP-ROS against hand-computed values
and brute-force references (Xu et al. 2026, arXiv 2602.08986; Charte et al. 2015)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from benthicnet_hf.hierarchy import Taxonomy, Hierarchy
from benthicnet_hf.losses import HierarchicalLoss
from benthicnet_hf.rare_nodes import (
    EnsembleMLP,
    LPROSSampler,
    MCDropoutEnsemble,
    RareNodeLoss,
    StackedLinear,
    aleatoric_entropy,
    bit_weights,
    bma_uncertainty,
    ensemble_predict,
    ensemble_uncertainty,
    epistemic_js,
    focal_factor,
    gated_margin_uncertainty,
    imbalance_weights,
    label_set_bags,
    lpros_clone_counts,
    node_frequencies,
    predictive_entropy,
    schedule_fraction,
)

# A > B > D, A > C (a tree) plus a flat head {x, y}
TREE = Taxonomy(name="t", nodes=("A", "A>B", "A>C", "A>B>D"), parents=((), (0,), (0,), (1,)), sep=">")
FLAT = Taxonomy.flat("f", ["x", "y"])
H = Hierarchy((TREE, FLAT))
Y = np.array(
    [  # A B C D | x y
        [1, 1, 0, 1, 1, 0],
        [1, 1, 0, 0, 1, 0],
        [1, 0, 1, 0, 1, 1],
        [1, 0, 0, 0, 1, 0],
    ]
)


def h2(p: float) -> float:
    return -sum(q * math.log2(q) for q in (p, 1 - p) if q > 0)


# ------------------------------------------------------------------ weights
def test_frequencies_closed_under_descendants_by_hand():
    f, n = node_frequencies(H, Y)
    # counts c = [4, 2, 1, 1 | 4, 1]; f_A = 4+2+1+1, f_B = 2+1 (B and D), leaves and flat = own counts
    assert f.tolist() == [8, 3, 1, 1, 4, 1]
    assert n.tolist() == [4] * 6
    # brute force: f = R @ c with the dense ancestor matrix
    assert np.array_equal(H.dense_ancestor_matrix().astype(int) @ Y.sum(0), f)


def test_imbalance_weights_by_hand():
    w = imbalance_weights(H, torch.tensor(Y)).numpy()
    # tree: n=4, C=4, raw = 4/(4f) = [1/8, 1/3, 1, 1]; rescaled 0.25 + 1 * (raw - 1/8) / (7/8)
    expected_tree = [0.25, 0.25 + (1 / 3 - 1 / 8) / (7 / 8), 1.25, 1.25]
    # flat: x always on (f = n -> raw 1), y: raw = 4/(2*1) = 2; min 1, max 2 -> [0.25, 0.25 + 2]
    expected_flat = [0.25, 2.25]
    np.testing.assert_allclose(w, expected_tree + expected_flat, rtol=1e-6)


def test_imbalance_weights_respect_mask_and_binary_mode():
    mask = np.ones_like(Y)
    mask[3, :4] = 0  # row 3 knows nothing about the tree head: it is not a tree sample
    mask[0, 3] = 0  # row 0's D bit is unknown: its positive does not count
    f, n = node_frequencies(H, Y, mask)
    # counts c = [3, 2, 1, 0]: f_A = 6, f_B = 2, f_C = 1, f_D = 0; n_tree = 3
    assert f[:4].tolist() == [6, 2, 1, 0]
    assert n.tolist() == [3, 3, 3, 3, 4, 4]
    w = imbalance_weights(H, Y, mask, omega=0.1, mode="binary").numpy()[:4]
    raw = np.array([3 / (2 * 6), 3 / (2 * 2), 3 / (2 * 1), 1.0])  # f_D = 0 -> raw 1
    np.testing.assert_allclose(w, 0.1 + raw.max() * (raw - raw.min()) / (raw.max() - raw.min()), rtol=1e-6)


def test_bit_weights_modes():
    w = torch.tensor([2.0, 3.0])
    y = torch.tensor([[1, 0], [0, 1]])
    assert bit_weights(w, y, "positive").tolist() == [[2.0, 1.0], [1.0, 3.0]]
    assert bit_weights(w, y, "negative").tolist() == [[1.0, 3.0], [2.0, 1.0]]
    assert bit_weights(w, y, "all").tolist() == [[2.0, 3.0], [2.0, 3.0]]
    with pytest.raises(ValueError, match="apply_to"):
        bit_weights(w, y, "both")


# -------------------------------------------------------------- uncertainty
P2 = torch.tensor([[[0.9, 0.5, 0.2]], [[0.7, 0.5, 0.6]]], dtype=torch.float64)  # (K=2, B=1, N=3)


def test_uncertainties_by_hand():
    assert bma_uncertainty(P2)[0].tolist() == pytest.approx([0.4, 1.0, 0.8])
    assert predictive_entropy(P2)[0].tolist() == pytest.approx([h2(0.8), 1.0, h2(0.4)])
    assert predictive_entropy(P2)[0, 0].item() == pytest.approx(0.7219280949)
    alea = [(h2(0.9) + h2(0.7)) / 2, 1.0, (h2(0.2) + h2(0.6)) / 2]
    assert aleatoric_entropy(P2)[0].tolist() == pytest.approx(alea)
    # for two members JS = H(mean) - mean H
    assert epistemic_js(P2)[0].tolist() == pytest.approx([h2(0.8) - alea[0], 0.0, h2(0.4) - alea[2]], abs=1e-9)
    s1, s3 = math.sqrt(0.02), math.sqrt(0.08)  # sample std (ddof 1) of (0.9, 0.7) and (0.2, 0.6)
    gmu = [1 - (1 - math.exp(-0.6 / (2 * s1 + 1e-10))) * 0.6, 1.0, 1 - (1 - math.exp(-0.2 / (2 * s3 + 1e-10))) * 0.2]
    assert gated_margin_uncertainty(P2)[0].tolist() == pytest.approx(gmu)
    assert gmu[0] == pytest.approx(0.47193, abs=1e-4)


def test_epistemic_js_matches_brute_force_pairs():
    g = torch.Generator().manual_seed(0)
    p = torch.rand(4, 3, 5, generator=g, dtype=torch.float64)
    ref = np.zeros((3, 5))
    for b in range(3):
        for j in range(5):
            tot = 0.0
            for k in range(4):
                for l in range(4):
                    if k != l:
                        a, c = p[k, b, j].item(), p[l, b, j].item()
                        tot += h2((a + c) / 2) - (h2(a) + h2(c)) / 2
            ref[b, j] = tot / 12
    np.testing.assert_allclose(epistemic_js(p).numpy(), ref, atol=1e-10)
    assert (ensemble_uncertainty(p, "js") >= 0).all() and (ensemble_uncertainty(p, "js") <= 1).all()


def test_uncertainty_edge_cases_and_aliases():
    one = torch.tensor([[[0.3, 1.0, 0.0]]])
    assert epistemic_js(one).tolist() == [[0.0, 0.0, 0.0]]
    # K = 1: GMU's gate is 1, so GMU equals bBMA
    assert torch.allclose(gated_margin_uncertainty(one), bma_uncertainty(one))
    assert torch.equal(ensemble_uncertainty(P2, "mean"), ensemble_uncertainty(P2, "bma"))
    assert torch.equal(ensemble_uncertainty(P2, "pcs"), ensemble_uncertainty(P2, "gmu"))
    with pytest.raises(ValueError, match="unknown uncertainty mode"):
        ensemble_uncertainty(P2, "bald")
    with pytest.raises(ValueError, match="members, batch"):
        ensemble_uncertainty(P2[0], "bma")


# ------------------------------------------------------------ focal / loss
def test_focal_factor_and_schedulers():
    assert focal_factor(torch.tensor(0.5), k=2, focal_min=0.25).item() == pytest.approx(0.5)
    assert focal_factor(torch.tensor(0.0), k=3, focal_min=0.1).item() == pytest.approx(0.1)
    assert schedule_fraction(2, "lin", period=5) == pytest.approx(0.5)
    assert schedule_fraction(2, "exp", period=5, k=3) == pytest.approx(0.125)
    assert schedule_fraction(7, "linear", period=5) == pytest.approx(0.5)  # restarts each period
    assert [schedule_fraction(t, "alt", 5) for t in range(4)] == [0.0, 1.0, 0.0, 1.0]
    assert schedule_fraction(9, "none", 5) == 0.0
    with pytest.raises(ValueError, match="unknown scheduler"):
        schedule_fraction(0, "cosine", 5)


def _reference_loss(logits, y, m, bitw):
    """Dense C-HMCNN MCLoss in probability space, weighted, three-level masked mean, mean over members."""
    r = torch.as_tensor(H.dense_ancestor_matrix(), dtype=torch.float64)
    heads = H.head_of_node
    member_losses = []
    for k in range(logits.shape[0]):
        p = logits[k].double().sigmoid()
        yd = y.double()
        mcm = lambda x: (r.unsqueeze(0) * x.unsqueeze(1)).amax(-1)  # noqa: E731
        h = (1 - yd) * mcm(p) + yd * mcm(yd * p)
        bce = -(yd * torch.log(h) + (1 - yd) * torch.log(1 - h)) * bitw[k]
        per_head = []
        for hd in range(2):
            cols = np.flatnonzero(heads == hd)
            vals = [
                (bce[b, cols] * m[b, cols]).sum() / m[b, cols].sum() for b in range(y.shape[0]) if m[b, cols].sum() > 0
            ]
            if vals:
                per_head.append(torch.stack(vals).mean())
        member_losses.append(torch.stack(per_head).mean())
    return torch.stack(member_losses).mean()


def test_rare_node_loss_matches_dense_reference():
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(3, 4, 6, generator=g, dtype=torch.float64)
    y, mask = torch.tensor(Y), torch.ones(4, 6)
    mask[1, 2:4] = 0
    w = imbalance_weights(H, Y)
    crit = RareNodeLoss(H, w, focal_mode="bma", focal_k=2, focal_min=0.25, apply_to="positive")
    out = crit(logits, y, mask)
    u = 1 - (2 * logits.sigmoid().mean(0) - 1).abs()
    bitw = torch.where(y.bool(), w.double(), torch.ones(6, dtype=torch.float64)) * (0.25 + u**2)
    ref = _reference_loss(logits, y, mask, bitw.expand(3, -1, -1))
    assert out.loss.item() == pytest.approx(ref.item(), rel=1e-9)
    assert torch.allclose(out.uncertainty, u)
    # no weights, no focal term, one member: exactly the plain masked MCLoss
    plain = RareNodeLoss(H)(logits[0], y, mask).loss
    assert plain.item() == pytest.approx(HierarchicalLoss(H)(logits[0], y, mask).loss.item(), rel=1e-12)
    # mixed loss with lambda = 0 is the plain loss averaged over members
    mixed = RareNodeLoss(H, w, focal_mode="gmu", mixed_lambda=0.0)(logits, y, mask).loss
    plain_k = torch.stack([HierarchicalLoss(H)(logits[k], y, mask).loss for k in range(3)]).mean()
    assert mixed.item() == pytest.approx(plain_k.item(), rel=1e-12)


def test_rare_node_loss_scheduler_reaches_omega_and_grads_flow():
    logits = torch.randn(2, 4, 6, dtype=torch.float64, requires_grad=True)
    y, mask = torch.tensor(Y), torch.ones(4, 6)
    w = imbalance_weights(H, Y)
    crit = RareNodeLoss(H, w, scheduler="lin", period=5, omega=0.25)
    assert torch.allclose(crit.current_node_weights(0), w)
    assert torch.allclose(crit.current_node_weights(4), torch.full((6,), 0.25))
    const = RareNodeLoss(H, torch.full((6,), 0.25), apply_to="all")(logits, y, mask).loss
    # at the end of the linear ramp every node weight has reached omega
    end = RareNodeLoss(H, w, scheduler="lin", period=5, apply_to="all")(logits, y, mask, step=4).loss
    assert end.item() == pytest.approx(const.item(), rel=1e-12)
    end.backward()
    assert logits.grad is not None and torch.isfinite(logits.grad).all()
    with pytest.raises(ValueError, match="pass node_weights"):
        RareNodeLoss(H, scheduler="lin", period=5)
    with pytest.raises(ValueError, match="node_weights must have shape"):
        RareNodeLoss(H, torch.ones(5))


# ----------------------------------------------------------------- ensembles
def test_stacked_linear_equals_independent_layers():
    layer = StackedLinear(5, 3, num_members=4)
    x = torch.randn(7, 5)
    out = layer(x)
    assert out.shape == (4, 7, 3)
    for k in range(4):
        assert torch.allclose(out[k], torch.nn.functional.linear(x, layer.weight[k], layer.bias[k]), atol=1e-6)
    assert not torch.allclose(layer.weight[0], layer.weight[1])  # independent draws


def test_mc_dropout_and_ensemble_predict_coherence():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(5, 16), torch.nn.ReLU(), torch.nn.Dropout(0.5), torch.nn.Linear(16, 6))
    mc = MCDropoutEnsemble(net, num_samples=8).eval()
    x = torch.randn(3, 5)
    logits = mc(x)
    assert logits.shape == (8, 3, 6)
    assert not torch.allclose(logits[0], logits[1])  # dropout stays active in eval
    assert not net[2].training  # and the layer's own mode is restored
    pairs = torch.as_tensor(H.ancestor_pairs)
    pred = ensemble_predict(logits, pairs, uncertainty="gmu")
    assert pred.probs.shape == pred.uncertainty.shape == (3, 6)
    r = torch.as_tensor(H.dense_ancestor_matrix())
    dense = (r.unsqueeze(0) * logits.reshape(24, 6).sigmoid().unsqueeze(1)).amax(-1).view(8, 3, 6)
    assert torch.allclose(pred.probs, dense.mean(0), atol=1e-6)
    par, child = np.nonzero(H.dense_ancestor_matrix())
    assert (pred.probs[:, par] >= pred.probs[:, child] - 1e-7).all()  # the mean stays coherent
    ens = EnsembleMLP(5, 8, 6, num_members=3, num_layers=3, dropout=0.1)
    assert ens(x).shape == (3, 3, 6)


# --------------------------------------------------------------------- LP-ROS
def test_lpros_clone_counts_by_hand():
    # sizes 10, 5, 3, 1, 1: |D| = 20, meanSize = 4, minority = {3, 1, 1}; P = 25 -> 5 clones, meanInc 5/3
    # largest first: size 3 takes min(1, 5/3) = 1, its 2/3 leftover -> 2 each for the two singletons
    assert lpros_clone_counts(np.array([10, 5, 3, 1, 1]), 20, 25).tolist() == [0, 0, 1, 2, 2]
    # target capped by meanSize - |bag|: one bag of 1 under mean 5.5 gets at most 4.5 -> 4
    assert lpros_clone_counts(np.array([10, 1]), 11, 100).tolist() == [0, 4]


def test_lpros_sampler_respects_masks_and_is_deterministic():
    y = np.array([[1, 0, 1]] * 6 + [[1, 1, 0], [1, 1, 0], [1, 0, 0], [0, 0, 0]])
    m = np.ones_like(y)
    m[7, 2] = 0  # row 7 has the same positives as row 6 but an unknown bit: a different label set
    m[8, 1:] = 0  # row 8's unknown bits hold whatever: only known bits count
    m[9] = 0  # row 9 knows nothing: no label set, never cloned
    bags = label_set_bags(y, m)
    assert bags[9] == -1 and bags[6] != bags[7] and len(set(bags[:6].tolist())) == 1
    y2 = y.copy()
    y2[8, 1:] = 1  # changing unknown bits does not change the label set
    assert np.array_equal(label_set_bags(y2, m), bags)
    s = LPROSSampler(y, m, percentage=40, seed=3)
    clones = s.clones
    # 4 label sets of sizes 6, 1, 1, 1: mean 2.25, each minority bag gets min(1.25, 4/3) -> 1 clone
    assert sorted(clones.tolist()) == [6, 7, 8] and 9 not in clones
    epoch = list(s)
    assert len(s) == len(epoch) == 13 and sorted(epoch) == sorted(list(range(10)) + [6, 7, 8])
    assert list(LPROSSampler(y, m, percentage=40, seed=3)) == epoch  # same seed, same order
    assert list(s) != epoch  # the next epoch reshuffles
    loader = torch.utils.data.DataLoader(torch.arange(10), batch_size=4, sampler=LPROSSampler(y, m, 40, seed=3))
    assert sorted(torch.cat(list(loader)).tolist()) == sorted(epoch)
