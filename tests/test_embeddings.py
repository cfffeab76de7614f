"""Label-only embeddings against written-out formulas, numpy, closed forms and sklearn."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import geoopt
import numpy as np
import pytest
import torch
from sklearn.metrics import f1_score, precision_score, recall_score

from benthicnet_hf.embeddings import (
    EdgeSplit,
    LabelEmbedding,
    best_f1_threshold,
    closure_matrix,
    default_config,
    edge_metrics,
    euclidean_cone_angle,
    euclidean_cone_energy,
    euclidean_half_aperture,
    evaluate_edges,
    hyperbolic_cone_angle,
    hyperbolic_cone_energy,
    hyperbolic_half_aperture,
    hyperbolic_inner_radius,
    order_energy,
    sample_negatives,
    split_edges,
    train_label_embedding,
)
from benthicnet_hf.taxonomy import Taxonomy

K = 0.1
ROOT = Path(__file__).resolve().parents[1]


def t(*rows: list[float]) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float64)


# ---------------------------------------------------------------- order embeddings


def test_order_energy_matches_numpy() -> None:
    rng = np.random.default_rng(0)
    u, v = rng.normal(size=(50, 7)), rng.normal(size=(50, 7))
    expected = np.sum(np.maximum(0.0, u - v) ** 2, axis=1)
    got = order_energy(torch.from_numpy(u), torch.from_numpy(v)).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-12)
    # v dominating u coordinatewise is an exact entailment
    assert order_energy(t([0.0, 1.0]), t([0.5, 2.0])).item() == 0.0
    assert order_energy(t([1.0, 1.0]), t([0.0, 3.0])).item() == pytest.approx(1.0)


# ---------------------------------------------------------------- Euclidean cones


def test_euclidean_cone_on_hand_made_points() -> None:
    # apex u = (1, 0): half-aperture arcsin(K / 1); the cone axis points away from the origin
    u = t([1.0, 0.0])
    assert euclidean_half_aperture(u, K).item() == pytest.approx(math.asin(0.1))
    # straight outward: angle 0, inside the cone
    assert euclidean_cone_angle(u, t([3.0, 0.0])).item() == pytest.approx(0.0, abs=2e-3)
    assert euclidean_cone_energy(u, t([3.0, 0.0]), K).item() == 0.0
    # perpendicular: angle π/2, energy π/2 - arcsin(0.1)
    assert euclidean_cone_angle(u, t([1.0, 2.0])).item() == pytest.approx(math.pi / 2)
    assert euclidean_cone_energy(u, t([1.0, 2.0]), K).item() == pytest.approx(math.pi / 2 - math.asin(0.1))
    # back towards the origin: angle π
    assert euclidean_cone_angle(u, t([0.5, 0.0])).item() == pytest.approx(math.pi, abs=2e-3)
    # 45° off the axis: outside a narrow cone, inside a wide one
    v = t([2.0, 1.0])
    assert euclidean_cone_angle(u, v).item() == pytest.approx(math.pi / 4)
    assert euclidean_cone_energy(u, v, K).item() == pytest.approx(math.pi / 4 - math.asin(0.1))
    assert euclidean_cone_energy(t([0.8, 0.0]), t([1.8, 1.0]), 0.75).item() == 0.0  # asin(0.75/0.8) > π/4


def test_euclidean_cone_angle_matches_law_of_cosines() -> None:
    rng = np.random.default_rng(1)
    u, v = rng.normal(size=(40, 5)), rng.normal(size=(40, 5))
    # the angle at u between the ray origin→u (extended) and u→v: cos = <u, v-u> / (|u||v-u|)
    cos = np.sum(u * (v - u), 1) / (np.linalg.norm(u, axis=1) * np.linalg.norm(v - u, axis=1))
    got = euclidean_cone_angle(torch.from_numpy(u), torch.from_numpy(v)).numpy()
    np.testing.assert_allclose(got, np.arccos(cos), atol=2e-3)


# ---------------------------------------------------------------- hyperbolic cones


def _xi_reference(x: np.ndarray, y: np.ndarray) -> float:
    """Ganea et al. eq. 28, written out for one pair."""
    nx, ny, dot = x @ x, y @ y, x @ y
    num = dot * (1 + nx) - nx * (1 + ny)
    den = math.sqrt(nx) * np.linalg.norm(x - y) * math.sqrt(1 + nx * ny - 2 * dot)
    return math.acos(num / den)


def test_hyperbolic_cone_on_hand_made_points() -> None:
    u = t([0.5, 0.0])
    assert hyperbolic_half_aperture(u, K).item() == pytest.approx(math.asin(0.1 * 0.75 / 0.5))
    # a geodesic through the origin is a diameter: points further out on it lie on the cone axis
    assert hyperbolic_cone_angle(u, t([0.9, 0.0])).item() == pytest.approx(0.0, abs=2e-3)
    assert hyperbolic_cone_energy(u, t([0.9, 0.0]), K).item() == 0.0
    # ... and points towards the origin are opposite the axis
    assert hyperbolic_cone_angle(u, t([0.1, 0.0])).item() == pytest.approx(math.pi, abs=2e-3)
    rng = np.random.default_rng(2)
    for _ in range(20):
        x, y = rng.uniform(-0.6, 0.6, 3), rng.uniform(-0.6, 0.6, 3)
        got = hyperbolic_cone_energy(torch.from_numpy(x)[None], torch.from_numpy(y)[None], K).item()
        psi = math.asin(min(1.0, K * (1 - x @ x) / math.sqrt(x @ x)))
        assert got == pytest.approx(max(0.0, _xi_reference(x, y) - psi), abs=1e-6)


def test_hyperbolic_inner_radius_is_where_aperture_reaches_right_angle() -> None:
    r = hyperbolic_inner_radius(K)
    assert K * (1 - r * r) / r == pytest.approx(1.0)
    assert hyperbolic_half_aperture(t([r + 1e-9, 0.0]), K).item() == pytest.approx(math.pi / 2, abs=2e-3)


def test_poincare_distance_matches_closed_form() -> None:
    ball = LabelEmbedding(4, default_config("hyperbolic_cones", dim=3)).manifold
    rng = np.random.default_rng(3)
    u = rng.uniform(-0.5, 0.5, (30, 3))
    v = rng.uniform(-0.5, 0.5, (30, 3))
    closed = np.arccosh(1 + 2 * np.sum((u - v) ** 2, 1)
                        / ((1 - np.sum(u ** 2, 1)) * (1 - np.sum(v ** 2, 1))))
    got = ball.dist(torch.from_numpy(u), torch.from_numpy(v)).numpy()
    np.testing.assert_allclose(got, closed, rtol=1e-6)


def test_riemannian_update_keeps_points_inside_the_ball() -> None:
    emb = LabelEmbedding(50, default_config("hyperbolic_cones", dim=2, init_scale=0.85))
    assert isinstance(emb.weight, geoopt.ManifoldParameter)
    opt = geoopt.optim.RiemannianAdam(emb.parameters(), lr=0.5)
    for _ in range(20):  # a huge step pushing every point outward
        loss = -emb.weight.norm(dim=1).sum() * 100
        opt.zero_grad()
        loss.backward()
        opt.step()
        emb.project_()
        norms = emb.weight.detach().norm(dim=1)
        assert bool((norms < 1.0).all()) and bool((norms >= emb.min_norm - 1e-6).all())
    assert float(norms.max()) > 0.9  # it did move outward


# ---------------------------------------------------------------- edges and metrics


def _tiny() -> Taxonomy:
    return Taxonomy.from_paths("tiny", ["a > b > d", "a > b > e", "a > c > f", "a > c > g", "h > i"])


def test_closure_and_negatives_against_brute_force() -> None:
    tax = _tiny()
    closure = closure_matrix(tax)
    idx = tax.index
    expected = {(idx[a], idx[d]) for d in tax.nodes for a in tax.nodes
                if d.startswith(a + " > ")}
    assert set(map(tuple, np.argwhere(closure).tolist())) == expected
    pos = torch.tensor(sorted(expected))
    pairs, valid = sample_negatives(pos, torch.from_numpy(closure), 6, torch.Generator().manual_seed(0))
    assert pairs.shape == (6 * len(pos), 2)
    brute = [p[0] != p[1] and (p[0], p[1]) not in expected for p in pairs.tolist()]
    assert valid.tolist() == brute
    # the first half keeps u, the second keeps v
    kept = pairs.view(len(pos), 6, 2)
    assert bool((kept[:, :3, 0] == pos[:, None, 0]).all()) and bool((kept[:, 3:, 1] == pos[:, None, 1]).all())


def test_edge_metrics_match_sklearn() -> None:
    rng = np.random.default_rng(4)
    pos, neg = rng.normal(0.0, 1.0, 60), rng.normal(1.5, 1.0, 900)
    y = np.r_[np.ones(60), np.zeros(900)]
    for thr in (-0.5, 0.3, 1.0, best_f1_threshold(pos, neg)):
        pred = np.r_[pos, neg] <= thr
        m = edge_metrics(pos, neg, thr)
        assert m.f1 == pytest.approx(f1_score(y, pred))
        assert m.precision == pytest.approx(precision_score(y, pred, zero_division=0))
        assert m.tpr == pytest.approx(recall_score(y, pred))
        assert m.tnr == pytest.approx(recall_score(1 - y, ~pred))


def test_best_threshold_is_the_brute_force_optimum() -> None:
    rng = np.random.default_rng(5)
    pos, neg = np.round(rng.normal(0, 1, 40), 1), np.round(rng.normal(1, 1, 400), 1)  # with ties
    y = np.r_[np.ones(40), np.zeros(400)]
    brute = max(f1_score(y, np.r_[pos, neg] <= c) for c in np.unique(np.r_[pos, neg]))
    assert edge_metrics(pos, neg, best_f1_threshold(pos, neg)).f1 == pytest.approx(brute)


@pytest.mark.parametrize("model", ["order_embeddings", "euclidean_cones", "hyperbolic_cones"])
def test_random_embeddings_score_near_the_prior(model: str) -> None:
    # untrained embeddings: F1 at the best threshold is about what "every pair is an edge" gets
    tax = Taxonomy.from_paths("t", [f"r{i} > g{j} > s{k}" for i in range(4) for j in range(4) for k in range(4)])
    split = split_edges(tax, val_fraction=0.2, seed=0)
    emb = LabelEmbedding(len(tax.nodes), default_config(model, dim=8, init_scale=1.0),
                         generator=torch.Generator().manual_seed(0))
    result = evaluate_edges(emb, split)
    prior = split.closure.mean() / (1 - 1 / len(tax.nodes))  # share of positive ordered pairs
    all_positive_f1 = 2 * prior / (1 + prior)
    assert result["best_threshold"]["f1"] < all_positive_f1 + 0.06
    assert result["all"]["f1"] < all_positive_f1 + 0.06


def test_split_keeps_basic_edges_in_train_and_holds_out_the_rest() -> None:
    tax = Taxonomy.from_paths("t", [f"r{i} > g{j} > s{k}" for i in range(3) for j in range(3) for k in range(3)])
    split = split_edges(tax, val_fraction=0.2, test_fraction=0.2, seed=0)
    train, val, test = (set(map(tuple, a.tolist())) for a in (split.train, split.val, split.test))
    basic = {(p, c) for c, ps in enumerate(tax.parents) for p in ps}
    assert basic <= train and not (train & val) and not (train & test) and not (val & test)
    assert len(train | val | test) == int(split.closure.sum())
    assert len(val) == len(test) == int(0.2 * (split.closure.sum() - len(basic)))


@pytest.mark.parametrize("model", ["order_embeddings", "euclidean_cones", "hyperbolic_cones"])
def test_tiny_hierarchy_is_learned(model: str) -> None:
    torch.manual_seed(0)
    tax = Taxonomy.from_paths("t", [f"r{i} > g{j} > s{k}" for i in range(2) for j in range(3) for k in range(3)])
    split = split_edges(tax, val_fraction=0.0, test_fraction=0.0, seed=0)
    split = EdgeSplit(tax, split.closure, split.train, split.train, split.train)  # reconstruction
    trained = train_label_embedding(split, default_config(model, dim=5, epochs=150, batch_size=16, seed=0))
    result = evaluate_edges(trained.embedding, split)
    assert result["all"]["f1"] >= 0.95, result


ETHEC = ROOT.parent / "shared" / "data" / "ethec" / "ethec_hierarchy.json"


@pytest.mark.skipif(not ETHEC.exists(), reason="../shared/data/ethec is absent (the shared reference data)")
def test_benchmark_quick_run_prints_the_table_keys(capsys: pytest.CaptureFixture[str]) -> None:
    spec = importlib.util.spec_from_file_location("embeddings_benchmark", ROOT / "benchmarks" / "embeddings.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    summary = bench.main(["--quick", "--models", "hyperbolic_cones"])
    last = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert last == json.loads(json.dumps(summary))
    assert last["edges"] == 1974 and last["labels"] == 723  # the transitive closure of ETHEC
    assert 0.0 <= last["hyperbolic_cones_d2_f1"] <= 1.0 and last["hyperbolic_cones_d2_published_f1"] == 0.2296
