"""Masked per-level (ETHEC): loss against a plain loop over samples and levels (the authors'
``MaskedCELoss`` written out), decoding against a brute-force search over root-to-leaf paths, no tie
flips, and random logits scoring at the label prior."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from sklearn.metrics import average_precision_score

from benthicnet_hf.hierarchy import Hierarchy, Taxonomy
from benthicnet_hf.output_types import build_output_type
from benthicnet_hf.output_types.single_path import SinglePathIndex

# A > {A1 > {A1a, A1b, A1c}, A2};  B > {B1, B2 > B2a};  C   (three roots, leaves at depths 1-3)
TREE = Taxonomy.from_paths("t", ["A > A1 > A1a", "A > A1 > A1b", "A > A1 > A1c", "A > A2", "B > B1",
                                 "B > B2 > B2a", "C"])
K = {k: i for i, k in enumerate(TREE.nodes)}
N = len(TREE.nodes)
PARENT = np.array([ps[0] if ps else -1 for ps in TREE.parents])
DEPTH = np.asarray(TREE.depth)


def logsumexp(v: np.ndarray) -> float:
    return float(v.max() + np.log(np.exp(v - v.max()).sum()))


def children(node: int) -> list[int]:
    """Children of ``node`` in node order; the roots for ``node = -1``."""
    return [k for k in range(N) if PARENT[k] == node]


def greedy_reference(x: np.ndarray) -> list[int]:
    """The study's decoding, one sample: arg-max root, then the arg-max child of each pick."""
    picks, kids = [], children(-1)
    while kids:
        picks.append(kids[int(np.argmax(x[kids]))])
        kids = children(picks[-1])
    return picks


def loss_reference(x: np.ndarray, labels: dict[int, int]) -> float:
    """The authors' masked cross-entropy for one sample (``labels``: depth → labelled node): over the
    children of the true parent while the greedy picks above match the truth, else over the depth."""
    greedy = greedy_reference(x)
    total = 0.0
    for d, node in sorted(labels.items()):
        truth_above = sorted(TREE.ancestors[node] - {node}, key=lambda a: DEPTH[a])
        correct_so_far = all(len(greedy) >= DEPTH[a] and greedy[DEPTH[a] - 1] == a for a in truth_above)
        group = children(PARENT[node]) if correct_so_far else list(np.flatnonzero(DEPTH == d))
        total -= x[node] - logsumexp(x[group])
    return total


def encode(rows: list[str | None]) -> tuple[torch.Tensor, torch.Tensor]:
    t = np.zeros((len(rows), N), np.float64)
    m = np.ones_like(t)
    for r, key in enumerate(rows):
        if key is None:
            m[r] = 0
            continue
        t[r, sorted(TREE.ancestors[K[key]])] = 1
        m[r, sorted(TREE.descendants[K[key]] - {K[key]})] = 0  # a label cut short: deeper levels unknown
    return torch.tensor(t), torch.tensor(m)


def known_labels(t: np.ndarray, m: np.ndarray) -> dict[int, int]:
    return {int(DEPTH[j]): j for j in range(N) if t[j] > 0.5 and m[j] > 0.5}


ROWS = ["A > A1 > A1b", "A > A1 > A1c", "A > A1", "A", "B > B2 > B2a", "B > B1", "C", None, "A > A2", "B > B2"] * 4


def test_masked_loss_equals_loop_over_samples_and_levels() -> None:
    g = torch.Generator().manual_seed(0)
    t, m = encode(ROWS)
    m[3, K["A"]] = 0          # depth-1 bit unknown, depth 2 known: the true parent is still A
    t[3, K["A > A1"]] = 1
    m[3, K["A > A1"]] = 1
    for scale in (0.5, 3.0):  # few and many greedy mistakes: both branches of the loss run
        x = torch.randn(len(ROWS), N, generator=g, dtype=torch.float64) * scale
        x[:5, K["A"]] += 4.0   # rows whose greedy path is right at depth 1
        h = build_output_type("masked_per_level", TREE)
        w = torch.rand(N, generator=g, dtype=torch.float64) + 0.5
        got, got_w = h.loss(x, t, m).numpy(), h.loss(x, t, m, node_weights=w).numpy()
        for b in range(len(ROWS)):
            labels = known_labels(t[b].numpy(), m[b].numpy())
            assert got[b] == pytest.approx(loss_reference(x[b].numpy(), labels), rel=1e-10), b
            weighted = sum(w[n].item() * loss_reference(x[b].numpy(), {d: n}) for d, n in labels.items())
            assert got_w[b] == pytest.approx(weighted, rel=1e-10), b
    assert not h.labelled(t, m)[7] and h.labelled(t, m).sum() == len(ROWS) - 4


def test_masked_loss_differs_from_plain_per_level_and_trains_the_conditionals() -> None:
    t, m = encode(["A > A1 > A1b"])
    x = torch.zeros(1, N, dtype=torch.float64, requires_grad=True)
    with torch.no_grad():
        x[0, K["A"]] = 5.0
        x[0, K["A > A1"]] = 5.0
        x[0, K["B > B2"]] = 9.0  # a strong other-branch node at depth 2: outside the mask
    loss = build_output_type("masked_per_level", TREE).loss(x, t, m)
    plain = build_output_type("per_level", TREE).loss(x, t, m)
    assert float(loss.detach()) < float(plain.detach())
    loss.sum().backward()
    assert x.grad[0, K["B > B2"]] == 0  # masked out: only the children of the true parent compete


def all_paths() -> list[list[int]]:
    leaves = [j for j in range(N) if not TREE.children[j]]
    return [sorted(TREE.ancestors[leaf], key=lambda a: DEPTH[a]) for leaf in leaves]


def test_probabilities_are_products_of_conditionals_and_decode_like_a_path_search() -> None:
    x = torch.randn(300, N, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    h = build_output_type("masked_per_level", TREE)
    p = h.probabilities(x).numpy()
    decoded = SinglePathIndex(TREE, "decode").greedy_path(torch.as_tensor(p)).numpy()
    paths = all_paths()
    for b in range(len(x)):
        xb = x[b].numpy()
        cond = {j: np.exp(xb[j] - logsumexp(xb[children(PARENT[j])])) for j in range(N)}
        for j in range(N):
            assert p[b, j] == pytest.approx(np.prod([cond[a] for a in TREE.ancestors[j]]), rel=1e-10)
        # brute force: the path whose conditionals are largest level by level (lexicographic order)
        best = max(paths, key=lambda path: [cond[a] for a in path] + [np.inf] * (3 - len(path)))
        expected = np.zeros(N, bool)
        expected[best] = True
        np.testing.assert_array_equal(decoded[b], expected)
        assert best == greedy_reference(xb)
    kids = PARENT >= 0
    assert (p[:, kids] <= p[:, PARENT[kids]] + 1e-12).all()
    for node in range(N):  # children sum to their parent, the roots to 1
        if TREE.children[node]:
            np.testing.assert_allclose(p[:, sorted(TREE.children[node])].sum(1), p[:, node], rtol=1e-10)
    np.testing.assert_allclose(p[:, PARENT < 0].sum(1), 1.0, rtol=1e-10)


def test_no_ties_flip_greedy_picks_on_a_real_tree() -> None:
    head = Hierarchy.catami().subset(("substrate",)).heads[0]
    idx = SinglePathIndex(head, "decode")
    x = torch.randn(3000, len(head.nodes), generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    p = build_output_type("masked_per_level", head).probabilities(x)
    # the study's decoding reads the logits among the children of the chosen parent
    assert torch.equal(idx.greedy_path(p), idx.greedy_path(x))
    chosen = idx.greedy_path(p)
    siblings = (idx.parent.unsqueeze(0) == idx.parent.unsqueeze(1)) & ~torch.eye(len(head.nodes), dtype=torch.bool)
    best_other = p.unsqueeze(1).masked_fill(~siblings, -1.0).amax(-1)  # (batch, n): best sibling of each node
    assert (p > best_other)[chosen].all()  # every pick strictly beats its siblings: no tie decided it


def test_random_logits_score_at_the_label_prior() -> None:
    rng = np.random.default_rng(3)
    leaves = [j for j in range(N) if not TREE.children[j]]
    freq = rng.dirichlet(np.ones(len(leaves)) * 2)
    rows = [TREE.nodes[leaves[i]] for i in rng.choice(len(leaves), size=6000, p=freq)]
    t, m = encode(rows)
    x = torch.randn(len(rows), N, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    p = build_output_type("masked_per_level", TREE).probabilities(x).numpy()
    y = t.numpy() > 0.5
    for j in range(N):  # AP of an uninformative score = the node's prevalence
        assert average_precision_score(y[:, j], p[:, j]) == pytest.approx(y[:, j].mean(), abs=0.03)
    pred = SinglePathIndex(TREE, "decode").greedy_path(torch.as_tensor(p)).numpy()
    for d in (1, 2):  # accuracy at a depth = chance: sum over nodes of P(predicted) · P(true)
        cols = np.flatnonzero(DEPTH == d)
        rows_d = y[:, cols].any(1)
        acc = (pred[rows_d][:, cols] & y[rows_d][:, cols]).any(1).mean()
        chance = float((pred[rows_d][:, cols].mean(0) * y[rows_d][:, cols].mean(0)).sum())
        assert acc == pytest.approx(chance, abs=0.03)


def test_paths_enumerated_cover_every_leaf() -> None:
    # guards the brute-force reference itself: every leaf path once, each a chain of parents
    paths = all_paths()
    assert len(paths) == sum(1 for c in TREE.children if not c)
    for path in paths:
        assert all(PARENT[b] == a for a, b in itertools.pairwise([-1, *path]))
