"""Paired significance of rare-node variants against plain MCLoss (``experiments.hmc.significance``) and
the loss grammar of ``benchmarks/hmc.py`` (every uncertainty mode, focal alone, schedulers, mixed).

References: the Wilcoxon signed-rank statistic and its exact two-sided p-value by brute force over
all ``2^n`` sign patterns (the test's definition), scipy on inputs with ties; per-node AP / F1
against a loop over nodes with sklearn; the rare-node losses against :class:`RareNodeLoss` built
by hand."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.stats import rankdata, wilcoxon
from sklearn.metrics import average_precision_score, f1_score

from benthicnet_hf.experiments.hmc import build_criterion
from benthicnet_hf.experiments.hmc.rare import RARE_LOSSES, parse_rare_loss
from benthicnet_hf.experiments.hmc.significance import paired_wilcoxon, per_node_scores, significance_against
from benthicnet_hf.hierarchy import Hierarchy, Taxonomy
from benthicnet_hf.rare_nodes import MODES, RareNodeLoss, imbalance_weights

ROOT = Path(__file__).resolve().parents[1]


def brute_force_wilcoxon(d: np.ndarray) -> tuple[float, float]:
    """``min(W+, W−)`` and the exact two-sided p-value: the share of the ``2^n`` equally likely sign
    patterns (null hypothesis) whose ``min(W+, W−)`` is at most the observed one (no ties, no zeros)."""
    d = d[d != 0]
    ranks = rankdata(np.abs(d))
    w_plus = ranks[d > 0].sum()
    observed = min(w_plus, ranks.sum() - w_plus)
    total = ranks.sum()
    hits = 0
    for signs in itertools.product((0, 1), repeat=len(d)):
        wp = ranks[np.array(signs, dtype=bool)].sum()
        hits += min(wp, total - wp) <= observed + 1e-12
    return float(observed), hits / 2 ** len(d)


# --------------------------------------------------------------------------------- the statistic
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_wilcoxon_statistic_and_exact_p_value_by_brute_force(seed: int) -> None:
    rng = np.random.default_rng(seed)
    baseline = rng.random((2, 5))
    variant = baseline + rng.normal(0.1 * seed, 0.2, (2, 5))  # 10 distinct non-zero differences
    got = paired_wilcoxon(variant, baseline)
    stat, p = brute_force_wilcoxon((variant - baseline).ravel())
    assert got["statistic"] == stat
    assert got["p_value"] == pytest.approx(p, rel=1e-9)
    assert got["pairs"] == got["nonzero"] == 10 and got["wins"] + got["losses"] == 10


def test_wilcoxon_with_zeros_and_ties_matches_scipy_and_counts_by_hand() -> None:
    # binary fractions: sums and differences are exact, so the ties below are real ties
    baseline = np.array([[4, 2, 7, 3, 2, 6], [1, 5, 6, 2, 4, 4]]) / 8
    diff = np.array([[1, -1, 0, 2, 3, 1], [0, -2, 1, 4, 5, -3]]) / 16
    got = paired_wilcoxon(baseline + diff, baseline)
    d = diff.ravel()
    ref = wilcoxon(d, zero_method="wilcox", alternative="two-sided")
    assert got["statistic"] == pytest.approx(ref.statistic) and got["p_value"] == pytest.approx(ref.pvalue)
    # by hand: zeros dropped, average ranks for ties; scipy's statistic is the smaller rank sum
    nz = d[d != 0]
    ranks = rankdata(np.abs(nz))
    assert got["statistic"] == pytest.approx(min(ranks[nz > 0].sum(), ranks[nz < 0].sum()))
    assert (got["pairs"], got["nonzero"], got["wins"], got["losses"]) == (12, 10, 7, 3)
    assert got["mean_diff"] == pytest.approx(diff.mean())


def test_pairing_is_by_seed_and_node() -> None:
    """Units are (seed, node): the same permutation of both sides changes nothing, a shift of one side
    against the other does, and a constant improvement on every unit is found with the smallest
    exact p-value of its sample size."""
    rng = np.random.default_rng(5)
    baseline = rng.random((3, 4))
    variant = baseline + rng.normal(0.05, 0.1, (3, 4))
    got = paired_wilcoxon(variant, baseline)
    perm = rng.permutation(12)
    same = paired_wilcoxon(variant.ravel()[perm].reshape(3, 4), baseline.ravel()[perm].reshape(3, 4))
    assert (same["statistic"], same["p_value"]) == (got["statistic"], got["p_value"])
    shifted = paired_wilcoxon(np.roll(variant, 1, axis=1), baseline)
    assert shifted["statistic"] != got["statistic"]
    better = paired_wilcoxon(baseline + np.linspace(0.01, 0.12, 12).reshape(3, 4), baseline)
    assert better["wins"] == 12 and better["statistic"] == 0 and better["p_value"] == pytest.approx(2 / 2 ** 12)
    with pytest.raises(ValueError, match="pair the same"):
        paired_wilcoxon(variant[:2], baseline)
    assert paired_wilcoxon(baseline, baseline)["p_value"] is None  # nothing differs: no test


def test_significance_against_pairs_seed_by_seed_and_checks_nodes() -> None:
    seeds_b = [{"nodes": np.arange(4), "ap": np.full(4, 0.5), "f1": np.full(4, 0.2)} for _ in range(2)]
    seeds_v = [{"nodes": np.arange(4), "ap": np.array([0.6, 0.7, 0.55, 0.52]) + s, "f1": np.full(4, 0.2)}
               for s in (0.0, 0.1)]
    out = significance_against(seeds_v, seeds_b)
    assert out["ap"]["wins"] == 8 and out["f1"]["nonzero"] == 0 and out["f1"]["p_value"] is None
    seeds_v[1]["nodes"] = np.array([0, 1, 2, 5])
    with pytest.raises(ValueError, match="seed 1"):
        significance_against(seeds_v, seeds_b)


# ------------------------------------------------------------------------------ per-node scores
def test_per_node_scores_match_sklearn_node_by_node_and_random_scores_land_on_the_prior() -> None:
    rng = np.random.default_rng(0)
    y = (rng.random((4000, 6)) < np.array([0.5, 0.3, 0.1, 0.05, 0.0, 0.2])).astype(int)
    p = rng.random(y.shape)
    to_eval = np.array([False, True, True, True, True, True])
    got = per_node_scores(y, p, to_eval, threshold=0.5)
    assert got["nodes"].tolist() == [1, 2, 3, 5]  # the root and the node without positives are left out
    for i, j in enumerate(got["nodes"]):
        assert got["ap"][i] == pytest.approx(average_precision_score(y[:, j], p[:, j]))
        assert got["f1"][i] == pytest.approx(f1_score(y[:, j], p[:, j] >= 0.5, zero_division=0))
    # random scores: AP ≈ the node's prevalence
    np.testing.assert_allclose(got["ap"], y[:, got["nodes"]].mean(0), atol=0.03)


# --------------------------------------------------------------------------------- loss grammar
def small_hierarchy() -> Hierarchy:
    return Hierarchy((Taxonomy.from_paths("t", ["A", "A > B", "A > B > C", "A > D", "E", "E > F"]),))


def test_every_uncertainty_mode_focal_alone_schedulers_and_mixed_are_losses() -> None:
    assert {f"focal-{m}" for m in MODES} | {f"weighted+focal-{m}" for m in MODES} <= set(RARE_LOSSES)
    spec = parse_rare_loss("weighted+focal-gmu+sched-exp+mixed")
    assert (spec.weighted, spec.focal_mode, spec.scheduler, spec.mixed) == (True, "gmu", "exp", True)
    for bad, match in [("focal", "part 'focal'"), ("focal-bma+weighted", "part 'weighted'"),
                       ("focal-bma+sched-lin", "needs weighted"), ("weighted+mixed+mixed", "part 'mixed'"),
                       ("sched-lin", "part 'sched-lin'|needs weighted")]:
        with pytest.raises(ValueError, match=match):
            parse_rare_loss(bad)

    h = small_hierarchy()
    rng = np.random.default_rng(1)
    y = torch.as_tensor(rng.random((8, h.num_nodes)) < 0.4, dtype=torch.float32)
    to_eval = ~h.is_root
    mask = torch.as_tensor(np.tile(to_eval, (8, 1)), dtype=torch.float32)
    members = torch.randn(3, 8, h.num_nodes)
    w = imbalance_weights(h, y, mask)
    cases = {
        "focal-aleatoric": RareNodeLoss(h, None, focal_mode="aleatoric"),
        "weighted+sched-lin": RareNodeLoss(h, w, scheduler="lin", period=10),
        "weighted+focal-bma+mixed": RareNodeLoss(h, w, focal_mode="bma", mixed_lambda=0.3),
    }
    options = {"weighted+sched-lin": {"period": 10}, "weighted+focal-bma+mixed": {"mixed_lambda": 0.3}}
    for kind, ref in cases.items():
        crit = build_criterion(h, to_eval, kind, fit_targets=y, **options.get(kind, {}))
        for step in (0, 7):
            torch.testing.assert_close(crit(members, y, step), ref(members, y, mask, step=step).loss)
    # the mixed loss really mixes: λ · weighted + (1 − λ) · plain, written out
    weighted = RareNodeLoss(h, w, focal_mode="bma")(members, y, mask).loss
    plain = RareNodeLoss(h, None)(members, y, mask).loss
    torch.testing.assert_close(cases["weighted+focal-bma+mixed"](members, y, mask).loss, 0.3 * weighted + 0.7 * plain)
    with pytest.raises(ValueError, match="period >= 2"):
        build_criterion(h, to_eval, "weighted+sched-lin", fit_targets=y)


# ------------------------------------------------------------------------------------- the CLI
@pytest.mark.slow
def test_cli_reports_a_wilcoxon_test_of_each_variant_against_mcloss(tmp_path: Path) -> None:
    from test_hmc_rare import _toy  # the same toy ARFF dataset as the rare-node CLI tests

    out = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "hmc.py"), str(_toy(tmp_path)), "--hidden", "8", "--epochs", "2",
         "--lr", "1e-2", "--seeds", "2", "--loss", "mcloss", "focal-epistemic", "weighted+sched-alt+mixed",
         "--members", "2"],
        capture_output=True, text=True, timeout=300, check=True,
    )
    rows = json.loads(out.stdout.strip().splitlines()[-1])["results"]
    assert [r["loss"] for r in rows] == ["mcloss", "focal-epistemic", "weighted+sched-alt+mixed"]
    assert "wilcoxon_vs_mcloss" not in rows[0]
    for r in rows[1:]:
        for stat in ("ap", "f1"):
            t = r["wilcoxon_vs_mcloss"][stat]
            assert t["pairs"] == 2 * 4  # 2 seeds × the 4 non-root nodes with a test positive
            assert t["p_value"] is None or 0 < t["p_value"] <= 1
    assert "vs mcloss, per-node AP over 8 (seed, node) pairs" in out.stdout
    bad = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "hmc.py"), str(tmp_path / "toy"), "--loss",
                          "focal-bma+sched-lin"], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "needs weighted" in bad.stderr
