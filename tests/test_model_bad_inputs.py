"""Non-finite logits and wrong pixel dtypes: clear errors, a NaN-safe max-constraint, fp16 skips.

References: numpy's ``max`` (which propagates NaN) over the dense ancestor matrix; a GradScaler step
that must leave the weights unchanged and halve its scale.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from benthicnet_hf.configuration_benthicnet import BenthicNetConfig
from benthicnet_hf.constraint import NonFiniteLogitsError, max_constraint
from benthicnet_hf.hierarchy import Taxonomy, Hierarchy
from benthicnet_hf.modeling_benthicnet import BenthicNetForHierarchicalClassification

SIZE = 32


def small_hierarchy() -> Hierarchy:
    tree = Taxonomy.from_paths("zeta", ["A", "A > B", "A > B > C", "A > D", "E", "E > F"])
    dag = Taxonomy("beta", ("r", "x", "y", "z"), ((), (0,), (0,), (1, 2)), kind="dag", sep="")
    return Hierarchy((tree, dag, Taxonomy.flat("alpha", ["red", "green", "blue"])))


def make_model() -> BenthicNetForHierarchicalClassification:
    torch.manual_seed(0)
    config = BenthicNetConfig(encoder_name="test_resnet", hierarchy=small_hierarchy().to_list(),
                              head_hidden_dim=8, image_size=SIZE)
    return BenthicNetForHierarchicalClassification(config).eval()


def numpy_max_constraint(hier: Hierarchy, x: np.ndarray) -> np.ndarray:
    """``out[b, i] = max_j R[i, j] x[b, j]`` with numpy's NaN-propagating max (the formula)."""
    r = hier.dense_ancestor_matrix()
    return np.where(r[None], x[:, None, :], -np.inf).max(axis=-1)


@pytest.mark.parametrize("hier", [small_hierarchy(), Hierarchy.catami()], ids=["small", "catami"])
def test_max_constraint_propagates_nan_instead_of_crashing(hier):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(6, hier.num_nodes)).astype(np.float32)
    x[1, rng.integers(hier.num_nodes)] = np.nan
    x[2, rng.choice(hier.num_nodes, 3, replace=False)] = np.nan
    x[3, rng.integers(hier.num_nodes)] = -np.inf
    x[4, :] = np.nan
    pairs = torch.as_tensor(hier.ancestor_pairs)
    out = max_constraint(torch.from_numpy(x), pairs).numpy()
    np.testing.assert_array_equal(out, numpy_max_constraint(hier, x))
    assert np.isnan(out[4]).all() and np.isfinite(out[[0, 5]]).all()


def test_nan_pixel_names_row_and_count():
    model = make_model()
    x = torch.randn(3, 3, SIZE, SIZE)
    x[1, 0, 5, 5] = float("nan")  # eval-mode BatchNorm: only row 1 is poisoned
    with pytest.raises(NonFiniteLogitsError, match=r"non-finite logits: 13 of 39 values \(13 NaN.*rows \[1\]"):
        model(pixel_values=x)


def test_nan_weight_names_the_node_and_is_a_floating_point_error():
    model = make_model()
    label = model.config.id2label[7]  # beta: x (head 1, local node 1)
    with torch.no_grad():
        model.heads.heads[1].fc2.weight[1, 0] = float("nan")
    with pytest.raises(FloatingPointError) as info:
        model(pixel_values=torch.randn(2, 3, SIZE, SIZE))
    assert isinstance(info.value, NonFiniteLogitsError)
    assert info.value.nodes == [label] and info.value.rows == [0, 1] and info.value.count == 2
    assert label in str(info.value)


def fp16_step(model, scaler: torch.amp.GradScaler) -> torch.Tensor:
    """One fp16-autocast training step with a gradient scaler; returns the logits."""
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    labels = torch.randint(0, 2, (4, model.config.num_labels)).float()
    with torch.autocast("cpu", dtype=torch.float16):
        out = model(pixel_values=torch.randn(4, 3, SIZE, SIZE), labels=labels)  # no error here
    scaler.scale(out.loss).backward()
    scaler.step(opt)
    scaler.update()
    return out.logits


def test_nan_logits_under_fp16_autocast_let_the_scaler_skip_the_step():
    model = make_model().train()
    with torch.no_grad():
        model.heads.heads[0].fc2.bias[2] = float("nan")
    before = [p.detach().clone() for p in model.parameters()]
    scaler = torch.amp.GradScaler("cpu", init_scale=1024.0)
    logits = fp16_step(model, scaler)
    assert torch.isnan(logits[:, 2]).all()
    assert scaler.get_scale() == 512.0  # non-finite gradients: step skipped, scale lowered
    for a, b in zip(before, model.parameters()):
        torch.testing.assert_close(a, b.detach(), rtol=0, atol=0, equal_nan=True)


def test_inf_logits_under_fp16_autocast_do_not_crash():
    model = make_model().train()
    with torch.no_grad():  # an fp16 overflow: this node's logit becomes +inf
        model.heads.heads[0].fc2.bias[2] = 1e30
    scaler = torch.amp.GradScaler("cpu", init_scale=1024.0)
    logits = fp16_step(model, scaler)
    assert torch.isposinf(logits[:, 2]).all()
    # the gradient of BCE at an infinite logit is finite (sigmoid − y): the step is taken, and it
    # leaves every weight finite
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_same_inf_logits_without_autocast_raise():
    model = make_model()
    with torch.no_grad():
        model.heads.heads[0].fc2.bias[2] = float("inf")
    with pytest.raises(NonFiniteLogitsError, match=r"0 NaN, 2 ±inf.*'zeta: A > B > C'"):
        model(pixel_values=torch.randn(2, 3, SIZE, SIZE))


def test_uint8_pixels_say_the_processor_was_skipped():
    model = make_model()
    with pytest.raises(ValueError, match="torch.uint8.*image processor was skipped"):
        model(pixel_values=torch.randint(0, 255, (2, 3, SIZE, SIZE), dtype=torch.uint8))
    with pytest.raises(ValueError, match="floating-point.*torch.int64"):
        model(pixel_values=torch.zeros(2, 3, SIZE, SIZE, dtype=torch.long))


def test_float64_pixels_are_cast_to_the_weights_dtype():
    model = make_model()
    x = torch.randn(2, 3, SIZE, SIZE, dtype=torch.float64)
    with torch.no_grad():
        got = model(pixel_values=x).probabilities
        want = model(pixel_values=x.float()).probabilities
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, want, rtol=0, atol=0)
