"""Partial labels → targets and masks, on the real CATAMI scheme, against hand-worked examples and
an independent brute-force encoder written with networkx."""

from __future__ import annotations

import networkx as nx
import numpy as np
import pytest

from benthicnet_hf import Hierarchy, LabelEncoder, UnknownLabelError, decode


@pytest.fixture(scope="module")
def h() -> Hierarchy:
    return Hierarchy.catami()


def bits(h: Hierarchy, head: str, row: np.ndarray) -> dict[str, int]:
    s = h.head_slice(head)
    return dict(zip(h.head(head).nodes, row[s].tolist()))


def test_docstring_example_missing_depth_on_exhaustive_head(h):
    enc = LabelEncoder(h).encode({"substrate": ["Substrate > Unconsolidated (soft)"]})
    t, m = bits(h, "substrate", enc.targets[0]), bits(h, "substrate", enc.mask[0])
    assert t["Substrate"] == 1 and m["Substrate"] == 1
    assert t["Substrate > Unconsolidated (soft)"] == 1 and m["Substrate > Unconsolidated (soft)"] == 1
    assert t["Substrate > Consolidated (hard) > Boulders"] == 0 and m["Substrate > Consolidated (hard) > Boulders"] == 1
    below = [k for k in t if k.startswith("Substrate > Unconsolidated (soft) > ")]
    assert len(below) == 12 and all(m[k] == 0 and t[k] == 0 for k in below)
    assert m["Water column"] == 1 and t["Water column"] == 0
    assert sum(t.values()) == 2 and sum(m.values()) == 23 - 12
    # other heads have no annotation at all: fully masked
    assert enc.mask[0, h.head_slice("biota")].sum() == 0 and enc.targets[0, h.head_slice("relief")].sum() == 0


def test_leaf_label_on_exhaustive_head_masks_nothing(h):
    enc = LabelEncoder(h).encode({"relief": ["High > Wall"]})
    t, m = bits(h, "relief", enc.targets[0]), bits(h, "relief", enc.mask[0])
    assert all(m.values())
    assert {k for k, v in t.items() if v} == {"High", "High > Wall"}


def test_every_catami_head_is_exhaustive_by_default(h):
    """The BenthicNet authors' semantics: all known except below a cut label and missing heads."""
    assert {hd.name: hd.exhaustive for hd in h.heads} == {
        "biota": True, "substrate": True, "relief": True, "bedforms": True, "colour": True}
    from benthicnet_hf.catami import CATAMI_EXHAUSTIVE
    assert all(CATAMI_EXHAUSTIVE.values())
    enc = LabelEncoder(h).encode({"biota": ["Biota > Sponges"]})
    m = bits(h, "biota", enc.mask[0])
    below = [k for k in m if k.startswith("Biota > Sponges > ")]
    assert below and all(m[k] == 0 for k in below)
    assert sum(m.values()) == len(m) - len(below)  # every other biota node is a known bit
    assert m["Biota > Fishes"] == 1 and bits(h, "biota", enc.targets[0])["Biota > Fishes"] == 0


def test_non_exhaustive_head_and_several_labels(h):
    cell = "Biota > Sponges > Cup-likes; [BIOTA] > Biota > Fishes"
    enc = LabelEncoder(h, exhaustive={"biota": False}).encode(
        {"biota": [cell, ["Biota > Sponges > Cup-likes", "Biota > Fishes"]]})
    t, m = bits(h, "biota", enc.targets[0]), bits(h, "biota", enc.mask[0])
    pos = {"Biota", "Biota > Sponges", "Biota > Sponges > Cup-likes", "Biota > Fishes"}
    assert {k for k, v in t.items() if v} == pos
    assert {k for k, v in m.items() if v} == pos  # non-exhaustive: only the positives are known
    np.testing.assert_array_equal(enc.targets[0], enc.targets[1])
    # the opt-out for one source only; the other source keeps the exhaustive default
    enc2 = LabelEncoder(h, source_exhaustive={"partial_survey": {"biota": False}}).encode(
        {"biota": [cell, cell]}, sources=["partial_survey", "full_survey"])
    np.testing.assert_array_equal(enc2.mask[0], enc.mask[0])
    m2 = bits(h, "biota", enc2.mask[1])
    assert m2["Biota > Cnidaria"] == 1 and m2["Anthropogenic"] == 1
    assert all(v == 0 for k, v in m2.items() if k.startswith("Biota > Fishes > "))
    assert m2["Biota > Sponges > Cup-likes"] == 1 and m2["Biota > Sponges > Crusts"] == 1
    assert all(v == 0 for k, v in m2.items() if k.startswith("Biota > Sponges > Cup-likes > "))


@pytest.mark.parametrize("cell", [None, "", float("nan"), [], "  "])
def test_missing_head_masks_the_whole_head(h, cell):
    enc = LabelEncoder(h).encode({"substrate": [cell], "colour": ["Red"]})
    assert enc.mask[0, h.head_slice("substrate")].sum() == 0
    c = bits(h, "colour", enc.targets[0]), bits(h, "colour", enc.mask[0])
    assert c[0]["Red"] == 1 and sum(c[0].values()) == 1 and all(c[1].values())  # flat, exhaustive


def brute_force(h: Hierarchy, head: str, labels: list[str], exhaustive: bool) -> tuple[np.ndarray, np.ndarray]:
    """Independent reference: networkx ancestors/descendants, written from the semantics."""
    hd = h.head(head)
    g = nx.DiGraph()
    g.add_nodes_from(hd.nodes)
    g.add_edges_from((hd.nodes[p], k) for k, ps in zip(hd.nodes, hd.parents) for p in ps)
    t = {k: 0 for k in hd.nodes}
    m = {k: 0 for k in hd.nodes}
    if labels:
        pos = set(labels) | set().union(*(nx.ancestors(g, lab) for lab in labels))
        for k in pos:
            t[k] = 1
        if exhaustive:
            unknown = set()
            for k in pos:
                if not any(c in pos for c in g.successors(k)):
                    unknown |= nx.descendants(g, k)
            m = {k: int(k not in unknown) for k in hd.nodes}
        else:
            m = dict(t)
    return np.array(list(t.values())), np.array(list(m.values()))


def test_batch_encoding_matches_brute_force(h):
    rng = np.random.default_rng(0)
    cols, expected = {}, {}
    for head in ["biota", "substrate", "relief", "bedforms"]:
        nodes = h.head(head).nodes
        cells = []
        for _ in range(60):
            k = rng.integers(0, 3)
            cells.append([nodes[i] for i in rng.choice(len(nodes), k, replace=False)])
        cols[head] = cells
        expected[head] = [brute_force(h, head, c, h.head(head).exhaustive) for c in cells]
    enc = LabelEncoder(h).encode(cols)
    for head, rows in expected.items():
        s = h.head_slice(head)
        for r, (t, m) in enumerate(rows):
            np.testing.assert_array_equal(enc.targets[r, s], t, err_msg=f"{head} row {r}")
            np.testing.assert_array_equal(enc.mask[r, s], m, err_msg=f"{head} row {r}")


def test_unknown_label_error_names_row_column_label_and_suggests(h):
    enc = LabelEncoder(h)
    with pytest.raises(UnknownLabelError, match=r"column 'catami_substrate' \(head 'substrate'\): unknown label "
                       r"'Substrate > Unconsolidated \(soft\) > Sand' in 1 row\(s\): 2; closest known"):
        enc.encode({"substrate": ["Substrate", "Substrate > Unconsolidated (soft) > Sand"]},
                   column_names={"substrate": "catami_substrate"})
    with pytest.raises(UnknownLabelError, match=r"\[RELIEF\] > Flat"):
        enc.encode({"substrate": ["[RELIEF] > Flat"]})  # a label of another head


def test_all_unknown_labels_reported_at_once_with_one_based_rows(h):
    sand = "Substrate > Unconsolidated (soft) > Sand"
    cols = {"substrate": ["Substrate", sand, "Substrate", sand, sand],
            "biota": ["Biota > Sponges > Glowing", "", "Biota > Fishes", "", "Biota > Sponges > Glowing; Blob"]}
    with pytest.raises(UnknownLabelError) as info:
        LabelEncoder(h).encode(cols, column_names={"substrate": "sub", "biota": "bio"})
    msg = str(info.value)
    assert msg.startswith("3 unknown label(s) in 4 row(s) (rows are 1-based data rows, header not counted")
    # grouped per label, with the count and the 1-based rows (positions 1, 3, 4 → rows 2, 4, 5)
    assert f"column 'sub' (head 'substrate'): unknown label '{sand}' in 3 row(s): 2, 4, 5" in msg
    assert "column 'bio' (head 'biota'): unknown label 'Biota > Sponges > Glowing' in 2 row(s): 1, 5" in msg
    assert "unknown label 'Blob' in 1 row(s): 5" in msg
    assert "closest known: ['Substrate > Unconsolidated (soft)'" in msg
    assert sorted(info.value.unknown) == sorted([
        (1, "substrate", "sub", sand), (3, "substrate", "sub", sand), (4, "substrate", "sub", sand),
        (0, "biota", "bio", "Biota > Sponges > Glowing"), (4, "biota", "bio", "Biota > Sponges > Glowing"),
        (4, "biota", "bio", "Blob")])


def test_unknown_label_policies_are_reported(h):
    cells = ["Substrate > Unconsolidated (soft) > Sand", "Substrate", "Substrate > Unconsolidated (soft) > Sand"]
    enc = LabelEncoder(h, on_unknown="ancestor").encode({"substrate": cells})
    assert [r for r, *_ in enc.report["ancestor"]] == [0, 2]
    assert enc.report["ancestor"][0][3] == "Substrate > Unconsolidated (soft)"
    t = bits(h, "substrate", enc.targets[0])
    assert t["Substrate > Unconsolidated (soft)"] == 1
    enc = LabelEncoder(h, on_unknown="mask").encode({"substrate": cells})
    assert [r for r, *_ in enc.report["mask"]] == [0, 2]
    assert enc.mask[0].sum() == 0 and enc.mask[1].sum() > 0


def test_bad_arguments(h):
    with pytest.raises(ValueError, match="on_unknown"):
        LabelEncoder(h, on_unknown="drop")
    with pytest.raises(KeyError, match="colours"):
        LabelEncoder(h).encode({"colours": ["Red"]})
    with pytest.raises(ValueError, match="different lengths"):
        LabelEncoder(h).encode({"colour": ["Red"], "relief": ["Flat", "High"]})


def test_decode_returns_deepest_paths(h):
    enc = LabelEncoder(h).encode({
        "substrate": ["Substrate > Consolidated (hard) > Rock"], "biota": ["Biota > Sponges; Biota > Fishes"],
        "colour": ["Red|Blue"]})
    out = decode(h, enc.targets)[0]
    assert out["substrate"] == ["Substrate > Consolidated (hard) > Rock"]
    assert sorted(out["biota"]) == ["Biota > Fishes", "Biota > Sponges"]
    assert sorted(out["colour"]) == ["Blue", "Red"] and out["relief"] == []
    probs = np.zeros(h.num_nodes)
    probs[h.index("substrate", "Substrate")] = 0.9
    probs[h.index("substrate", "Substrate > Consolidated (hard)")] = 0.6
    probs[h.index("substrate", "Substrate > Consolidated (hard) > Rock")] = 0.3
    assert decode(h, probs, threshold=0.5)[0]["substrate"] == ["Substrate > Consolidated (hard)"]
