"""ECE/Brier against written-out formulas and sklearn; temperature fitting against scipy; the model's use of T."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.optimize import minimize_scalar
from sklearn.metrics import brier_score_loss

from benthicnet_hf.configuration_benthicnet import BenthicNetConfig
from benthicnet_hf.hierarchy import Hierarchy, Taxonomy
from benthicnet_hf.metrics.calibration import (brier_score, calibration_metrics, expected_calibration_error,
                                               reliability_bins)
from benthicnet_hf.modeling_benthicnet import BenthicNetForHierarchicalClassification, build_criterion
from benthicnet_hf.training.calibrate import fit_head_temperatures


def ece_written_out(p: np.ndarray, y: np.ndarray, bins: int) -> float:
    """Guo et al.'s ECE over 1-D arrays, one bin at a time: [lo, hi), the last bin closed."""
    total = 0.0
    for b in range(bins):
        lo, hi = b / bins, (b + 1) / bins
        inside = (p >= lo) & ((p < hi) if b < bins - 1 else (p <= hi))
        if inside.any():
            total += inside.sum() / len(p) * abs(y[inside].mean() - p[inside].mean())
    return total


def masked_split(seed: int, rows: int = 200, nodes: int = 12):
    rng = np.random.default_rng(seed)
    p = rng.random((rows, nodes)).astype(np.float32)
    p[0, 0], p[1, 1] = 1.0, 0.0  # both ends of the range
    y = (rng.random((rows, nodes)) < p ** 1.5).astype(np.uint8)  # miscalibrated on purpose
    mask = (rng.random((rows, nodes)) < 0.7).astype(np.uint8)
    mask[0, 0] = mask[1, 1] = 1
    return p, y, mask


@pytest.mark.parametrize("bins", [1, 10, 15])
def test_ece_and_brier_match_the_formula_and_sklearn_over_known_bits(bins: int) -> None:
    p, y, mask = masked_split(bins)
    k = mask.astype(bool)
    pk = p[k].astype(np.float64)
    assert expected_calibration_error(p, y, mask, bins) == pytest.approx(ece_written_out(pk, y[k], bins), abs=1e-9)
    assert brier_score(p, y, mask) == pytest.approx(brier_score_loss(y[k], pk), abs=1e-9)
    r = reliability_bins(p, y, mask, bins)
    assert r["count"].sum() == k.sum()


def test_random_scores_land_on_the_prior_level_figures() -> None:
    rng = np.random.default_rng(0)
    rows, nodes, prior, bins = 4000, 10, 0.2, 10
    y = (rng.random((rows, nodes)) < prior).astype(np.uint8)
    mask = np.ones_like(y)
    # the label prior as a constant score: perfectly calibrated, Brier π(1 − π)
    const = np.full(y.shape, prior, dtype=np.float32)
    assert expected_calibration_error(const, y, mask, bins) == pytest.approx(abs(y.mean() - prior), abs=1e-6)
    assert brier_score(const, y, mask) == pytest.approx(prior * (1 - prior), abs=0.01)
    # uniform random scores: Brier 1/3 whatever π; ECE = mean over bins of |π − bin centre|
    uniform = rng.random(y.shape).astype(np.float32)
    centres = (np.arange(bins) + 0.5) / bins
    assert brier_score(uniform, y, mask) == pytest.approx(1 / 3, abs=0.01)
    assert expected_calibration_error(uniform, y, mask, bins) == pytest.approx(np.abs(prior - centres).mean(), abs=0.02)


def test_calibration_metrics_per_head_and_nan_without_known_bits() -> None:
    hier = Hierarchy((Taxonomy("a", ("x", "y"), ((), ()), kind="flat", sep=""),
                      Taxonomy("b", ("u", "v", "w"), ((), (0,), (0,)), sep="")))
    p, y, mask = masked_split(3, nodes=5)
    mask[:, 2:] = 0  # head b unknown everywhere
    got = calibration_metrics(p, y, mask, hier)
    k = mask[:, :2].astype(bool)
    assert got["a/brier"] == pytest.approx(brier_score_loss(y[:, :2][k], p[:, :2][k]))
    assert np.isnan(got["b/ece"]) and np.isnan(got["b/brier"])
    assert got["overall/ece"] == pytest.approx(got["a/ece"])


def tree() -> Hierarchy:
    t = Taxonomy("t", ("r", "a", "b", "c", "d"), ((), (0,), (0,), (1,), (1,)), sep="")
    f = Taxonomy("f", ("x", "y", "z"), ((), (), ()), kind="flat", sep="")
    return Hierarchy((t, f))


def scipy_temperature(z: np.ndarray, y: np.ndarray, mask: np.ndarray, hier: Hierarchy, head: int) -> float:
    """Independent: MCM by the dense subtree matrix (p = sigmoid(max over the subtree of z / T)),
    masked mean BCE, minimised over log T by scipy."""
    s = hier.head_slice(head)
    sub = hier.dense_ancestor_matrix()[s, s]  # sub[i, j]: j in the subtree of i
    zmax = np.where(sub[None], z[:, None, s], -np.inf).max(-1)
    k = mask[:, s].astype(bool)

    def nll(log_t: float) -> float:
        p = np.clip(1 / (1 + np.exp(-zmax / np.exp(log_t))), 1e-7, 1 - 1e-7)
        yy = y[:, s]
        return float(-(yy * np.log(p) + (1 - yy) * np.log(1 - p))[k].mean())

    return float(np.exp(minimize_scalar(nll, bounds=(-4, 4), method="bounded", options={"xatol": 1e-9}).x))


def test_fitted_temperatures_match_scipy_and_recover_the_true_temperature() -> None:
    hier = tree()
    rng = np.random.default_rng(1)
    z = rng.normal(0, 3, (3000, hier.num_nodes))
    crit = build_criterion(hier, "mcm")
    true = np.array([2.5] * 5 + [0.6] * 3)
    p = crit.probabilities(torch.tensor(z / true)).numpy()
    y = (rng.random(p.shape) < p).astype(np.uint8)
    mask = (rng.random(p.shape) < 0.8).astype(np.uint8)
    got = fit_head_temperatures(crit.probabilities, torch.tensor(z), y, mask, hier)
    for h, name in enumerate(hier.head_names):
        assert got[name] == pytest.approx(scipy_temperature(z, y, mask, hier, h), rel=1e-4)
    assert got["t"] == pytest.approx(2.5, rel=0.1) and got["f"] == pytest.approx(0.6, rel=0.1)
    mask[:, 5:] = 0  # no known bit: the head keeps T = 1
    assert fit_head_temperatures(crit.probabilities, torch.tensor(z), y, mask, hier)["f"] == 1.0


def test_model_divides_logits_by_the_head_temperature_and_stays_coherent(tmp_path) -> None:
    hier = tree()
    torch.manual_seed(0)
    config = BenthicNetConfig(encoder_name="test_resnet", hierarchy=hier.to_list(), head_hidden_dim=0, image_size=32)
    model = BenthicNetForHierarchicalClassification(config).eval()
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        raw = model(pixel_values=x).logits
        model.config.head_temperatures = {"t": 3.0, "f": 0.5}
        out = model(pixel_values=x)
    t = torch.tensor([3.0] * 5 + [0.5] * 3)
    torch.testing.assert_close(out.logits, raw / t)
    # independent: sigmoid of the subtree max of the scaled logits
    sub = torch.as_tensor(hier.dense_ancestor_matrix())
    want = torch.where(sub[None], (raw / t)[:, None, :], torch.tensor(-torch.inf)).amax(-1).sigmoid()
    torch.testing.assert_close(out.probabilities, want)
    anc = torch.as_tensor(hier.dense_ancestor_matrix())
    parent_ge_child = out.probabilities[:, :, None] >= out.probabilities[:, None, :] - 1e-7
    assert bool(parent_ge_child[:, anc].all())

    model.save_pretrained(tmp_path)
    assert (tmp_path / "calibration.py").is_file()  # travels as remote code with the config and model
    again = BenthicNetForHierarchicalClassification.from_pretrained(tmp_path).eval()
    assert again.config.head_temperatures == {"t": 3.0, "f": 0.5}
    with torch.no_grad():
        torch.testing.assert_close(again(pixel_values=x).probabilities, out.probabilities)


def test_config_refuses_bad_temperatures() -> None:
    hier = tree()
    for bad, match in (({"t": 1.0}, "every head"), ({"t": 1.0, "f": 0.0}, r"head_temperatures\['f'\]"),
                       ({"t": float("nan"), "f": 1.0}, r"head_temperatures\['t'\]")):
        with pytest.raises(ValueError, match=match):
            BenthicNetConfig(encoder_name="test_resnet", hierarchy=hier.to_list(), head_temperatures=bad)


def test_uninformative_logits_stop_at_the_temperature_bound() -> None:
    from benthicnet_hf.training.calibrate import MAX_TEMPERATURE

    hier = tree()
    rng = np.random.default_rng(2)
    z = torch.tensor(rng.normal(0, 4, (400, hier.num_nodes)))
    y = (rng.random((400, hier.num_nodes)) < 0.5).astype(np.uint8)  # independent of z: the NLL wants T → ∞
    got = fit_head_temperatures(build_criterion(hier, "mcm").probabilities, z, y, np.ones_like(y), hier)
    assert all(10 < t <= MAX_TEMPERATURE for t in got.values())
