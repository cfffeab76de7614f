"""Output types (ETHEC variants + C-HMCNN): coherence, normalisation, losses against formulas."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import precision_recall_fscore_support

from benthicnet_hf.output_types import OUTPUT_TYPES, OutputTypeCriterion, SinglePathError, build_output_type
from benthicnet_hf.hierarchy import Taxonomy, Hierarchy
from benthicnet_hf.losses import HierarchicalLoss

# A > A1 > {A1a, A1b};  A > A2;  B > B1   (two roots, leaves at depths 2 and 3)
TREE = Taxonomy.from_paths("t", ["A > A1 > A1a", "A > A1 > A1b", "A > A2", "B > B1"])
COLOUR = Taxonomy.flat("colour", ["red", "green", "blue"])
HIER = Hierarchy((TREE, COLOUR))
K = {k: i for i, k in enumerate(TREE.nodes)}
PARENT = np.array([ps[0] if ps else -1 for ps in TREE.parents])
DEPTH = np.asarray(TREE.depth)


def path(key: str) -> list[int]:
    parts = key.split(" > ")
    return [K[" > ".join(parts[: i + 1])] for i in range(len(parts))]


def np_softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max())
    return e / e.sum()


def encode(rows: list[str | None]) -> tuple[torch.Tensor, torch.Tensor]:
    """Targets/mask for the tree head (exhaustive; labels cut short mask their descendants)."""
    t = np.zeros((len(rows), len(TREE.nodes)), np.float32)
    m = np.ones_like(t)
    for r, key in enumerate(rows):
        if key is None:
            m[r] = 0
            continue
        t[r, path(key)] = 1
        for d in TREE.descendants[K[key]] - {K[key]}:
            m[r, d] = 0
    return torch.tensor(t), torch.tensor(m)


@pytest.fixture
def logits() -> torch.Tensor:
    return torch.randn(6, len(TREE.nodes), generator=torch.Generator().manual_seed(0), dtype=torch.float64)


@pytest.mark.parametrize("output_type", list(OUTPUT_TYPES))
def test_probabilities_are_coherent(output_type: str, logits: torch.Tensor) -> None:
    p = build_output_type(output_type, TREE).probabilities(logits).numpy()
    assert p.shape == logits.shape and (p >= 0).all() and (p <= 1 + 1e-12).all()
    child = PARENT >= 0
    assert (p[:, child] <= p[:, PARENT[child]] + 1e-12).all()


def test_hsoftmax_is_product_of_sibling_softmaxes(logits: torch.Tensor) -> None:
    p = build_output_type("hsoftmax", TREE).probabilities(logits).numpy()
    x = logits.numpy()
    for b in range(x.shape[0]):
        cond = np.zeros(len(TREE.nodes))
        for par in set(PARENT.tolist()):
            sib = np.flatnonzero(PARENT == par)
            cond[sib] = np_softmax(x[b, sib])
        for node in range(len(TREE.nodes)):
            expected = np.prod([cond[a] for a in TREE.ancestors[node]])
            assert p[b, node] == pytest.approx(expected, rel=1e-10)
    roots = PARENT < 0
    np.testing.assert_allclose(p[:, roots].sum(1), 1.0, rtol=1e-10)
    for node, kids in enumerate(TREE.children):
        if kids:
            np.testing.assert_allclose(p[:, list(kids)].sum(1), p[:, node], rtol=1e-10)


def test_marginalisation_sums_leaves(logits: torch.Tensor) -> None:
    p = build_output_type("marginalisation", TREE).probabilities(logits).numpy()
    leaves = np.array([not c for c in TREE.children])
    x = logits.numpy()
    for b in range(x.shape[0]):
        leaf_p = np.zeros(len(TREE.nodes))
        leaf_p[leaves] = np_softmax(x[b, leaves])
        for node in range(len(TREE.nodes)):
            assert p[b, node] == pytest.approx(leaf_p[sorted(TREE.descendants[node])].sum(), rel=1e-10)
    np.testing.assert_allclose(p[:, PARENT < 0].sum(1), 1.0, rtol=1e-10)
    for node, kids in enumerate(TREE.children):
        if kids:
            np.testing.assert_allclose(p[:, list(kids)].sum(1), p[:, node], rtol=1e-10)


def test_per_level_scales_each_sibling_group_under_its_parent(logits: torch.Tensor) -> None:
    logits = logits * 3  # confident logits: children above their parent happen
    p = build_output_type("per_level", TREE).probabilities(logits).numpy()
    x = logits.numpy()
    scaled = 0
    for b in range(x.shape[0]):
        q = np.zeros(len(TREE.nodes))
        for d in set(DEPTH.tolist()):
            q[DEPTH == d] = np_softmax(x[b, DEPTH == d])
        expected = np.zeros(len(TREE.nodes))
        for node in sorted(range(len(TREE.nodes)), key=lambda j: DEPTH[j]):  # parents first
            if PARENT[node] < 0:
                expected[node] = q[node]
                continue
            best = max(q[k] for k in np.flatnonzero(PARENT == PARENT[node]))
            expected[node] = q[node] * min(1.0, expected[PARENT[node]] / best)
            scaled += best > expected[PARENT[node]]
            if best <= expected[PARENT[node]]:  # nothing above the parent: min of q along the path
                assert expected[node] == pytest.approx(min(q[a] for a in TREE.ancestors[node]), rel=1e-10)
        np.testing.assert_allclose(p[b], expected, rtol=1e-10)
    assert scaled > 0  # the scaled branch ran


def test_per_level_greedy_follows_the_level_softmax_without_ties() -> None:
    from benthicnet_hf.hierarchy import Hierarchy
    from benthicnet_hf.output_types.single_path import SinglePathIndex

    head = Hierarchy.catami().subset(("substrate",)).heads[0]
    idx = SinglePathIndex(head, "decode")
    x = torch.randn(3000, len(head.nodes), generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    h = build_output_type("per_level", head)
    # within a sibling group q orders like the logits; min along the path flipped ~4 % of these rows
    assert torch.equal(idx.greedy_path(h.probabilities(x)), idx.greedy_path(x))
    assert not torch.equal(idx.greedy_path(idx.min_over_ancestors(h.level_log_probs(x).exp())), idx.greedy_path(x))


ROWS = ["A > A1 > A1b", "A > A1", "B > B1", None, "A > A2", "A"]


def test_level_losses_match_formulas(logits: torch.Tensor) -> None:
    t, m = encode(ROWS)
    x = logits.numpy()
    for output_type in ("per_level", "marginalisation", "hsoftmax"):  # masked: tests/test_masked_per_level.py
        h = build_output_type(output_type, TREE)
        got = h.loss(logits, t.double(), m.double()).numpy()
        probs = h.probabilities(logits).numpy()
        for b, key in enumerate(ROWS):
            if key is None:
                assert got[b] == 0
                continue
            nodes = path(key)
            if output_type == "per_level":
                expected = -sum(np.log(np_softmax(x[b, DEPTH == DEPTH[n]])[np.flatnonzero(DEPTH == DEPTH[n]).tolist().index(n)])
                                for n in nodes)
            elif output_type == "marginalisation":
                expected = -sum(np.log(probs[b, n]) for n in nodes)
            else:  # hsoftmax: -log P(deepest labelled node)
                expected = -np.log(probs[b, nodes[-1]])
            assert got[b] == pytest.approx(expected, rel=1e-9), (output_type, key)
        np.testing.assert_array_equal(h.labelled(t, m).numpy(), [k is not None for k in ROWS])


def test_single_path_errors_name_head_and_row() -> None:
    t, m = encode(["A > A2", "A > A1"])
    t[1, K["A > A2"]] = 1  # two labels at depth 2
    with pytest.raises(SinglePathError, match=r"head 't', row 1: 2 labels at depth 2"):
        build_output_type("hsoftmax", TREE).loss(torch.zeros(2, len(TREE.nodes)), t, m)
    dag = Taxonomy.from_edges("go", [("r", "a"), ("r", "b"), ("a", "c"), ("b", "c")])
    with pytest.raises(SinglePathError, match="head 'go' is a DAG"):
        build_output_type("per_level", dag)
    with pytest.raises(ValueError, match="unknown output_type"):
        build_output_type("softmax", TREE)


def test_criterion_reduction_and_flat_heads() -> None:
    t_tree, m_tree = encode(ROWS)
    colour_t = torch.tensor([[1, 0, 1], [0, 0, 0], [0, 1, 0], [0, 0, 0], [1, 0, 0], [0, 0, 0]], dtype=torch.float64)
    colour_m = torch.tensor([[1, 1, 1], [0, 0, 0], [1, 1, 1], [0, 0, 0], [1, 1, 0], [0, 0, 0]], dtype=torch.float64)
    t = torch.cat([t_tree.double(), colour_t], 1)
    m = torch.cat([m_tree.double(), colour_m], 1)
    x = torch.randn(6, HIER.num_nodes, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    crit = OutputTypeCriterion(HIER, "hsoftmax")
    out = crit(x, t, m)
    tree_loss = build_output_type("hsoftmax", TREE).loss(x[:, :7], t[:, :7], m[:, :7])
    labelled = torch.tensor([k is not None for k in ROWS])
    tree_mean = tree_loss[labelled].mean()
    c = x[:, 7:]
    bce = -(colour_t * torch.log(torch.sigmoid(c)) + (1 - colour_t) * torch.log(1 - torch.sigmoid(c)))
    col_rows = colour_m.sum(1) > 0
    col_mean = ((bce * colour_m).sum(1)[col_rows] / colour_m.sum(1)[col_rows]).mean()
    assert float(out.loss) == pytest.approx(float((tree_mean + col_mean) / 2), rel=1e-10)
    np.testing.assert_allclose(crit.probabilities(x)[:, 7:].numpy(), torch.sigmoid(c).numpy())
    # the per-head "mcm" type reproduces HierarchicalLoss
    ref = HierarchicalLoss(HIER)(x, t, m).loss
    assert float(OutputTypeCriterion(HIER, "mcm")(x, t, m).loss) == pytest.approx(float(ref), rel=1e-10)


@pytest.mark.parametrize("output_type", list(OUTPUT_TYPES))
def test_short_training_reduces_loss(output_type: str) -> None:
    torch.manual_seed(0)
    keys = ["A > A1 > A1a", "A > A1 > A1b", "A > A2", "B > B1", "A > A1"]
    rows = [keys[i % len(keys)] for i in range(40)]
    t, m = encode(rows)
    t = torch.cat([t, torch.zeros(40, 3)], 1)
    m = torch.cat([m, torch.ones(40, 3)], 1)
    feats = torch.randn(40, 8) + 2.0 * torch.nn.functional.one_hot(torch.arange(40) % 5, 8).float()
    model = torch.nn.Linear(8, HIER.num_nodes)
    crit = OutputTypeCriterion(HIER, output_type)
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    losses = []
    for _ in range(30):
        loss = crit(model(feats), t, m).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.5 * losses[0]


def test_level_scores_match_sklearn() -> None:
    from benthicnet_hf.metrics import level_scores

    rng = np.random.default_rng(0)
    targets = rng.random((30, len(TREE.nodes))) < 0.4
    pred = rng.random((30, len(TREE.nodes))) < 0.5
    mask = np.ones_like(targets)
    got = level_scores(pred, targets, mask, DEPTH)
    for d in (1, 2, 3):
        cols = DEPTH == d
        for avg in ("micro", "macro"):
            p, r, f, _ = precision_recall_fscore_support(targets[:, cols], pred[:, cols], average=avg, zero_division=0)
            assert got[f"level{d}/precision_{avg}"] == pytest.approx(p)
            assert got[f"level{d}/recall_{avg}"] == pytest.approx(r)
            assert got[f"level{d}/f1_{avg}"] == pytest.approx(f)


@pytest.mark.parametrize("output_type", ["hsoftmax", "marginalisation", "flat_baseline"])
def test_model_config_head_type_round_trip(output_type: str, tmp_path) -> None:
    from benthicnet_hf.configuration_benthicnet import BenthicNetConfig
    from benthicnet_hf.modeling_benthicnet import BenthicNetForHierarchicalClassification

    cfg = BenthicNetConfig(encoder_name="test_resnet", hierarchy=HIER.to_list(), head_hidden_dim=0,
                           output_type=output_type, image_size=32)
    model = BenthicNetForHierarchicalClassification(cfg).eval()
    x = torch.randn(2, 3, 32, 32)
    t_tree, m_tree = encode(["A > A1 > A1b", "B"])
    t = torch.cat([t_tree, torch.tensor([[1.0, 0, 0], [0, 0, 0]])], 1)
    m = torch.cat([m_tree, torch.tensor([[1.0, 1, 1], [0, 0, 0]])], 1)
    out = model(x, labels=t, label_mask=m)
    expected = OutputTypeCriterion(HIER, output_type)(out.logits.float(), t, m).loss
    assert float(out.loss.detach()) == pytest.approx(float(expected.detach()), rel=1e-6)
    torch.testing.assert_close(out.probabilities.detach(), OutputTypeCriterion(HIER, output_type).probabilities(out.logits.detach()))
    model.save_pretrained(tmp_path)
    again = BenthicNetForHierarchicalClassification.from_pretrained(tmp_path).eval()
    assert again.config.output_type == output_type
    torch.testing.assert_close(again(x).probabilities, out.probabilities)


# ----------------------------------------------- "mcm": one implementation, one bit weighting
def _mcm_batch(seed: int = 2) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """float64 logits, targets, mask (a missing taxonomy row included) and (N,) node weights of HIER."""
    t_tree, m_tree = encode(ROWS)
    g = torch.Generator().manual_seed(seed)
    colour_t = (torch.rand(len(ROWS), 3, generator=g) < 0.5).double()
    colour_m = torch.tensor([[1, 1, 1], [0, 0, 0], [1, 0, 1], [1, 1, 1], [0, 0, 0], [1, 1, 0]], dtype=torch.float64)
    t = torch.cat([t_tree.double(), colour_t], 1)
    m = torch.cat([m_tree.double(), colour_m], 1)
    x = torch.randn(len(ROWS), HIER.num_nodes, dtype=torch.float64, generator=g)
    w = torch.rand(HIER.num_nodes, dtype=torch.float64, generator=g) + 0.25
    return x, t, m, w


@pytest.mark.parametrize("apply_to", ["negative", "positive", "all"])
def test_mcm_criterion_is_hierarchical_loss_with_bit_weights(apply_to: str) -> None:
    from benthicnet_hf.constraint import MaxConstraint
    from benthicnet_hf.losses import MCMCriterion, bit_weights, known_targets

    x, t, m, w = _mcm_batch()
    ref = HierarchicalLoss(HIER)(x, t, m, bit_weights(w, known_targets(t, m), apply_to))
    for crit in (OutputTypeCriterion(HIER, "mcm", apply_to), MCMCriterion(HIER, apply_to)):
        out = crit(x, t, m, w)
        assert torch.equal(out.loss, ref.loss) and torch.equal(out.per_head, ref.per_head)
        assert torch.equal(crit.probabilities(x), MaxConstraint(HIER)(x).sigmoid())
    # the weights do matter, and each mode differently
    assert float(ref.loss) != pytest.approx(float(HierarchicalLoss(HIER)(x, t, m).loss), rel=1e-6)


@pytest.mark.parametrize("apply_to", ["negative", "positive", "all"])
def test_per_taxonomy_mcm_output_type_equals_hierarchical_loss(apply_to: str) -> None:
    """MCMOutputType per taxonomy + the sample/head reduction = HierarchicalLoss over the hierarchy,
    node weights on the same bits (float64, 1e-10)."""
    from benthicnet_hf.losses import bit_weights, known_targets, masked_head_reduction
    from benthicnet_hf.output_types import FlatSigmoidOutputType, MCMOutputType

    x, t, m, w = _mcm_batch()
    handlers = [build_output_type("mcm", h, apply_to) for h in HIER.heads]
    assert [type(h) for h in handlers] == [MCMOutputType, FlatSigmoidOutputType]
    slices = [HIER.head_slice(i) for i in range(len(HIER.heads))]
    per_sample = torch.stack([h.loss(x[:, s], t[:, s], m[:, s], w[s]) for h, s in zip(handlers, slices)], 1)
    known = torch.stack([h.labelled(t[:, s], m[:, s]) for h, s in zip(handlers, slices)], 1)
    got = masked_head_reduction(per_sample, known, torch.arange(2), 2)
    ref = HierarchicalLoss(HIER)(x, t, m, bit_weights(w, known_targets(t, m), apply_to))
    torch.testing.assert_close(got.per_head, ref.per_head, rtol=1e-10, atol=0)
    assert float(got.loss) == pytest.approx(float(ref.loss), rel=1e-10)
    probs = torch.cat([h.probabilities(x[:, s]) for h, s in zip(handlers, slices)], 1)
    assert torch.equal(probs, OutputTypeCriterion(HIER, "mcm").probabilities(x))


def test_flat_taxonomies_weight_bits_like_mcm_under_every_output_type() -> None:
    x, t, m, w = _mcm_batch()
    colour = HIER.head_slice(1)
    flat_w = torch.where(t[:, colour] > 0.5, torch.ones_like(w[colour]), w[colour])  # "negative"
    bce = torch.nn.functional.binary_cross_entropy_with_logits(x[:, colour], t[:, colour], reduction="none")
    mc = m[:, colour]
    expected = (bce * flat_w * mc).sum(1) / mc.sum(1).clamp_min(1)
    for output_type in OUTPUT_TYPES:
        got = build_output_type(output_type, COLOUR).loss(x[:, colour], t[:, colour], mc, w[colour])
        torch.testing.assert_close(got, expected, rtol=1e-12, atol=0)


@pytest.mark.parametrize("apply_to", ["negative", "all"])
def test_model_loss_is_the_output_type_criterion(apply_to: str) -> None:
    """The model's "mcm" loss with node weights is OutputTypeCriterion(hierarchy, "mcm") exactly."""
    from benthicnet_hf.configuration_benthicnet import BenthicNetConfig
    from benthicnet_hf.losses import MCMCriterion
    from benthicnet_hf.modeling_benthicnet import BenthicNetForHierarchicalClassification

    _, t, m, w = _mcm_batch()
    cfg = BenthicNetConfig(encoder_name="test_resnet", hierarchy=HIER.to_list(), head_hidden_dim=0, image_size=32,
                           node_weights=w.tolist(), node_weights_apply_to=apply_to)
    model = BenthicNetForHierarchicalClassification(cfg).eval()
    assert isinstance(model.criterion, MCMCriterion) and model.constraint is model.criterion.constraint
    with torch.no_grad():
        out = model(torch.randn(len(ROWS), 3, 32, 32), labels=t.float(), label_mask=m.float())
        crit = OutputTypeCriterion(HIER, "mcm", apply_to)
        expected = crit(out.logits.float(), t.float(), m.float(), model.node_weights)
    assert torch.equal(out.loss, expected.loss)
    assert torch.equal(out.probabilities, crit.probabilities(out.logits))
    ethec = BenthicNetForHierarchicalClassification(BenthicNetConfig(
        encoder_name="test_resnet", hierarchy=HIER.to_list(), head_hidden_dim=0, image_size=32, output_type="hsoftmax"))
    assert ethec.constraint is None and isinstance(ethec.criterion, OutputTypeCriterion)


def test_output_type_names_have_one_home() -> None:
    from benthicnet_hf.configuration_benthicnet import OUTPUT_TYPE_NAMES, BenthicNetConfig
    from benthicnet_hf.output_types.registry import check_registry

    assert tuple(OUTPUT_TYPES) == OUTPUT_TYPE_NAMES
    assert all(cls.name == name for name, cls in OUTPUT_TYPES.items())
    check_registry(OUTPUT_TYPE_NAMES, OUTPUT_TYPES)
    with pytest.raises(RuntimeError, match="register every output type in both"):
        check_registry(OUTPUT_TYPE_NAMES + ("softmax",), OUTPUT_TYPES)
    with pytest.raises(RuntimeError, match="differs from"):
        check_registry(OUTPUT_TYPE_NAMES[:-1], OUTPUT_TYPES)
    for name in OUTPUT_TYPE_NAMES:  # every name the config accepts builds a criterion
        assert BenthicNetConfig(encoder_name="test_resnet", hierarchy=HIER.to_list(), output_type=name).output_type == name
        OutputTypeCriterion(HIER, name)
    with pytest.raises(ValueError, match="output_type must be one of"):
        BenthicNetConfig(encoder_name="test_resnet", output_type="softmax")


@pytest.mark.parametrize("output_type,ensemble_size,autocast", [
    ("mcm", 1, False), ("mcm", 1, True), ("mcm", 2, True), ("hsoftmax", 1, True)])
def test_training_forward_shares_one_max_constraint_without_changing_values(
        output_type: str, ensemble_size: int, autocast: bool) -> None:
    """With labels the model takes probabilities and loss from one MCM of the float32 logits; both must
    equal what the separate calls give: probabilities of a forward without labels (bf16 under
    autocast) and the criterion's loss on the float32 logits, exactly."""
    from benthicnet_hf.configuration_benthicnet import BenthicNetConfig
    from benthicnet_hf.modeling_benthicnet import BenthicNetForHierarchicalClassification

    torch.manual_seed(0)
    _, t, m, _ = _mcm_batch()
    cfg = BenthicNetConfig(encoder_name="test_resnet", hierarchy=HIER.to_list(), head_hidden_dim=0, image_size=32,
                           output_type=output_type, ensemble_size=ensemble_size)
    model = BenthicNetForHierarchicalClassification(cfg).eval()
    x = torch.randn(len(ROWS), 3, 32, 32)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        with_labels = model(x, labels=t.float(), label_mask=m.float())
        without = model(x)
        flat = model.member_logits(model.backbone.forward_head(
            model.backbone.forward_features(x), pre_logits=True)).reshape(-1, HIER.num_nodes)
    assert with_labels.probabilities.dtype == without.probabilities.dtype
    assert torch.equal(with_labels.probabilities, without.probabilities)
    if ensemble_size > 1:
        assert torch.equal(with_labels.member_probabilities, without.member_probabilities)
    crit = OutputTypeCriterion(HIER, output_type)
    reps = ensemble_size
    expected = crit(flat.float(), t.float().repeat(reps, 1), m.float().repeat(reps, 1))
    assert torch.equal(with_labels.loss, expected.loss)


# ----------------------------------------------- "flat_baseline": the study's hierarchy-agnostic row
def test_flat_baseline_loss_is_weighted_multilabel_soft_margin() -> None:
    x = torch.randn(6, len(TREE.nodes), generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    t, _ = encode(["A > A1 > A1b", "A > A1 > A1a", "B > B1", "A > A2", "A > A1 > A1b", "B > B1"])
    t = t.double()
    w = torch.rand(len(TREE.nodes), generator=torch.Generator().manual_seed(6), dtype=torch.float64) + 0.2
    h = build_output_type("flat_baseline", TREE)
    # fully known rows: the authors' loss, torch.nn.MultiLabelSoftMarginLoss with per-class weight
    ref = torch.nn.MultiLabelSoftMarginLoss(weight=w, reduction="none")(x, t)
    torch.testing.assert_close(h.loss(x, t, torch.ones_like(t), node_weights=w), ref)
    # partial rows: mean over the known bits only, of the formula written out
    m = (torch.rand(t.shape, generator=torch.Generator().manual_seed(7)) < 0.6).double()
    m[0] = 0
    p = 1 / (1 + np.exp(-x.numpy()))
    bce = -(t.numpy() * np.log(p) + (1 - t.numpy()) * np.log(1 - p)) * w.numpy()
    expected = [(bce[b] * m[b].numpy()).sum() / max(m[b].sum().item(), 1) for b in range(6)]
    np.testing.assert_allclose(h.loss(x, t, m, node_weights=w).numpy(), expected, rtol=1e-10)
    assert h.labelled(t, m).tolist() == [False] + [bool(r.any()) for r in m[1:]]


def test_flat_baseline_is_coherent_only_at_decoding(logits: torch.Tensor) -> None:
    h = build_output_type("flat_baseline", TREE)
    raw = h.raw_probabilities(logits).numpy()
    np.testing.assert_allclose(raw, torch.sigmoid(logits).numpy())
    child = PARENT >= 0
    assert (raw[:, child] > raw[:, PARENT[child]]).any()  # the training-time scores are not coherent
    p = h.probabilities(logits).numpy()
    for node in range(len(TREE.nodes)):  # decoding: max of the sigmoids over the node's subtree
        np.testing.assert_allclose(p[:, node], raw[:, sorted(TREE.descendants[node])].max(1), rtol=1e-12)


def test_inverse_frequency_weights_and_random_scores_at_the_prior() -> None:
    from sklearn.metrics import average_precision_score

    from benthicnet_hf.output_types import inverse_frequency_weights

    rng = np.random.default_rng(8)
    keys = ["A > A1 > A1a", "A > A1 > A1b", "A > A2", "B > B1"]
    t, m = encode([keys[i] for i in rng.choice(4, size=4000, p=[0.5, 0.3, 0.15, 0.05])])
    m[:100, K["B"]] = 0
    counts = ((t.numpy() > 0.5) & (m.numpy() > 0.5)).sum(0)
    inv = 1.0 / counts
    np.testing.assert_allclose(inverse_frequency_weights(t, m).numpy(), inv / inv.mean(), rtol=1e-6)
    assert torch.isfinite(inverse_frequency_weights(torch.zeros(3, 4))).all()
    with pytest.raises(ValueError, match="mask shape"):
        inverse_frequency_weights(t, m[:, :3])
    x = torch.randn(t.shape, generator=torch.Generator().manual_seed(9), dtype=torch.float64)
    p = build_output_type("flat_baseline", TREE).probabilities(x).numpy()
    y = t.numpy() > 0.5
    for j in range(len(TREE.nodes)):  # uninformative scores: AP = prevalence
        assert average_precision_score(y[:, j], p[:, j]) == pytest.approx(y[:, j].mean(), abs=0.03)
