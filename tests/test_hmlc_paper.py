"""G-HMLC / A-HMLC (Ott et al., arXiv 2510.00837) against independent references.

- the batched EM of the per-vector mixture against ``sklearn.mixture.GaussianMixture`` started from
  the same point; the hard masks against sklearn's fit of each vector, components ordered by mean;
- the A-HMLC soft masks against ``σ(W_h z + b_h)`` written out level by level;
- the whole method's loss (encoder → projector → masks → per-level HiMulConE) against a loop over
  anchors and positives of Zhang et al.'s equations on the masked features;
- the linear-evaluation protocol against separable features (perfect) and random ones (the prior).
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from benthicnet_hf.contrastive import build_contrastive_method
from benthicnet_hf.contrastive.feature_masks import AttentionFeatureMasks, vector_gmm_masks
from benthicnet_hf.contrastive.linear_eval import linear_eval_per_level
from benthicnet_hf.contrastive.mixture import fit_row_mixtures, quantile_init
from benthicnet_hf.hierarchy import Hierarchy, Taxonomy


def sklearn_row_fit(row: np.ndarray, k: int, iters: int):
    """sklearn's GaussianMixture on one row's entries, started where ``fit_row_mixtures`` starts."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.mixture import GaussianMixture

    w0, m0, v0 = (t[0].numpy() for t in quantile_init(torch.from_numpy(row[None]), k))
    gm = GaussianMixture(k, covariance_type="diag", max_iter=iters, tol=0.0, reg_covar=1e-6,
                         weights_init=w0, means_init=m0[:, None], precisions_init=1.0 / v0[:, None])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # tol=0: it always runs all iterations
        gm.fit(row[:, None])
    return gm


def sklearn_masks(z: np.ndarray, k: int, iters: int = 20) -> np.ndarray:
    """``(rows, D)`` → ``(rows, k, D)``: level h = the h-th highest-mean component's entries."""
    out = np.zeros((len(z), k, z.shape[1]), dtype=bool)
    for r, row in enumerate(z):
        gm = sklearn_row_fit(row, k, iters)
        comp = gm.predict(row[:, None])
        for level, c in enumerate(np.argsort(-gm.means_[:, 0])):
            out[r, level] = comp == c
    return out


@pytest.mark.parametrize("k", [2, 3])
def test_row_mixtures_match_sklearn(k: int) -> None:
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(0, 1, (4, 40)), rng.normal(3, 0.5, (4, 24))], 1)  # (4, 64)
    resp, weights, means, var = fit_row_mixtures(torch.from_numpy(x), k, iters=15)
    assert resp.shape == (4, 64, k)
    torch.testing.assert_close(resp.sum(-1), torch.ones(4, 64, dtype=torch.float64))
    for r in range(4):
        gm = sklearn_row_fit(x[r], k, 15)
        np.testing.assert_allclose(resp[r].numpy(), gm.predict_proba(x[r][:, None]), atol=1e-6)
        np.testing.assert_allclose(means[r].numpy(), gm.means_[:, 0], atol=1e-7)
        np.testing.assert_allclose(var[r].numpy(), gm.covariances_[:, 0], rtol=1e-6)
        np.testing.assert_allclose(weights[r].numpy(), gm.weights_, atol=1e-9)


def test_vector_masks_match_sklearn_and_partition_the_entries() -> None:
    z = F.normalize(torch.randn(6, 2, 32, dtype=torch.float64, generator=torch.Generator().manual_seed(1)), dim=-1)
    masks = vector_gmm_masks(z, 3)
    assert masks.shape == (6, 2, 3, 32)
    assert (masks.sum(2) == 1).all()  # every entry belongs to exactly one level
    np.testing.assert_array_equal(masks.reshape(12, 3, 32).numpy(), sklearn_masks(z.reshape(12, 32).numpy(), 3))


def test_vector_masks_give_the_highest_values_to_the_coarsest_level() -> None:
    z = torch.tensor([[5.0, 0.1, -4.0, 5.2, -4.1, 0.0, 4.9, -3.9, 0.2]])
    masks = vector_gmm_masks(z, 3)[0]
    assert masks.tolist() == [[v > 2 for v in z[0]], [abs(v) < 1 for v in z[0]], [v < -2 for v in z[0]]]
    with pytest.raises(ValueError, match="cannot fit 3 components to rows of 2 values"):
        fit_row_mixtures(torch.randn(4, 2), 3)


def test_attention_masks_are_one_sigmoid_head_per_level() -> None:
    torch.manual_seed(0)
    att = AttentionFeatureMasks(dim=5, num_levels=3)
    z = torch.randn(4, 2, 5)
    gates = att.soft_masks(z)
    w, b = att.gates.weight, att.gates.bias
    for h in range(3):
        expected = torch.sigmoid(z @ w[h * 5:(h + 1) * 5].T + b[h * 5:(h + 1) * 5])
        torch.testing.assert_close(gates[:, :, h], expected)
    assert ((gates > 0) & (gates < 1)).all()
    out = att(z)
    torch.testing.assert_close(out.norm(dim=-1), torch.ones(4, 2, 3))
    # level 0's output depends on level 0's head only
    out[:, :, 0].sum().backward()
    assert w.grad[5:].abs().max() == 0 and w.grad[:5].abs().max() > 0


def brute_force_himulcone(feats: np.ndarray, labels: np.ndarray, tau: float) -> float:
    """Zhang et al. Eqs. 3-7 with λ = 2^(1/k) on level-specific features ``(B, V, L, D)``."""
    b, v, n_levels = feats.shape[:3]
    n = b * v
    running = [-math.inf] * n
    total = 0.0
    for col in reversed(range(n_levels)):
        vec = [feats[a % b, a // b, col] for a in range(n)]
        lab = [labels[a % b, col] for a in range(n)]
        per_anchor, new_running = [], list(running)
        for i in range(n):
            others = [a for a in range(n) if a != i]
            pos = [p for p in others if lab[p] == lab[i]]
            log_den = math.log(sum(math.exp(vec[i] @ vec[a] / tau) for a in others))
            pair = [max(-(vec[i] @ vec[p] / tau - log_den), running[i]) for p in pos]
            per_anchor.append(sum(pair) / len(pair))
            new_running[i] = max(running[i], max(pair))
        running = new_running
        total += 2 ** (1 / (n_levels - col)) * sum(per_anchor) / n
    return total / n_levels


class TinyEncoder(torch.nn.Module):
    num_features = 12

    def __init__(self) -> None:
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 4 * 4, 12))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


@pytest.mark.parametrize("method", ["g_hmlc", "a_hmlc"])
def test_method_loss_equals_masked_per_level_loop(method: str) -> None:
    torch.manual_seed(0)
    tree = Taxonomy.from_paths("t", ["A > A1", "A > A2", "B > B1"])
    hier = Hierarchy((tree,))
    leaves = ["A > A1", "A > A2", "B > B1", "A > A1", "B > B1", "A > A2"]
    targets = torch.zeros(6, hier.num_nodes, dtype=torch.float64)
    for r, leaf in enumerate(leaves):
        targets[r, tree.index[leaf]] = targets[r, tree.index[leaf.split(" > ")[0]]] = 1
    model = build_contrastive_method(method, TinyEncoder(), hier, proj_hidden_dim=16, proj_dim=10,
                                     temperature=0.5).double()
    v1, v2 = torch.randn(6, 3, 4, 4, dtype=torch.float64), torch.randn(6, 3, 4, 4, dtype=torch.float64)
    loss = model(v1, v2, targets, torch.ones_like(targets))
    with torch.no_grad():
        z = torch.stack(model.embed(torch.cat([v1, v2])).chunk(2), 1).numpy()  # (6, 2, 10)
        if method == "g_hmlc":
            masks = sklearn_masks(z.reshape(12, 10), 2).reshape(6, 2, 2, 10).astype(np.float64)
        else:
            w, b = (t.numpy() for t in (model.feature_masks["t"].gates.weight, model.feature_masks["t"].gates.bias))
            masks = np.stack([1 / (1 + np.exp(-(z @ w[h * 10:(h + 1) * 10].T + b[h * 10:(h + 1) * 10])))
                              for h in range(2)], 2)
    masked = z[:, :, None] * masks
    masked = masked / np.maximum(np.linalg.norm(masked, axis=-1, keepdims=True), 1e-12)
    labels = np.array([[tree.index[leaf.split(" > ")[0]], tree.index[leaf]] for leaf in leaves])
    assert float(loss.detach()) == pytest.approx(brute_force_himulcone(masked, labels, 0.5), rel=1e-9)
    loss.backward()
    grads = [p.grad for p in model.encoder.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads) and any(g.abs().sum() > 0 for g in grads)


def test_linear_eval_is_perfect_on_separable_features_and_near_the_prior_on_noise() -> None:
    rng = np.random.default_rng(0)
    coarse = rng.integers(0, 2, 400)
    fine = coarse * 3 + rng.integers(0, 3, 400)
    levels = np.stack([coarse, fine], 1)
    levels[::10, 1] = -1  # unknown fine label: left out of that level only
    x = np.eye(6)[fine] * 5 + rng.normal(0, 0.1, (400, 6))
    scores = linear_eval_per_level(x[:300], levels[:300], x[300:], levels[300:])
    assert [s["accuracy"] for s in scores] == [1.0, 1.0] and [s["macro_f1"] for s in scores] == [1.0, 1.0]
    assert [s["num_train"] for s in scores] == [300, 270] and [s["num_test"] for s in scores] == [100, 90]
    # random features, imbalanced labels (80/20): the probe lands near the label prior
    y = (rng.random(2000) < 0.2).astype(int)[:, None]
    noise = rng.normal(size=(2000, 8))
    s = linear_eval_per_level(noise[:1500], y[:1500], noise[1500:], y[1500:], c=0.01)[0]
    assert s["prior_accuracy"] == pytest.approx(float(np.mean(y[1500:] == np.bincount(y[:1500, 0]).argmax())))
    assert abs(s["accuracy"] - s["prior_accuracy"]) < 0.03
    with pytest.raises(ValueError, match="features and level ids disagree on rows"):
        linear_eval_per_level(noise[:10], y[:9], noise[:5], y[:5])
