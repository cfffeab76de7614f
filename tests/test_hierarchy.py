"""Hierarchy construction, index structures and errors, against networkx and the real files."""

from __future__ import annotations

import json

import networkx as nx
import numpy as np
import pytest

from benthicnet_hf import Taxonomy, Hierarchy, HierarchyError
from benthicnet_hf.data.arff import taxonomy_from_arff, taxonomy_from_declaration
from benthicnet_hf.catami import CATAMI_COLOURS, CATAMI_HEADS, hierarchy_from_catami_csv, hierarchy_from_paths

from conftest import shared_file


def to_networkx(head: Taxonomy) -> nx.DiGraph:
    g = nx.DiGraph()
    g.add_nodes_from(range(len(head.nodes)))
    g.add_edges_from((p, i) for i, ps in enumerate(head.parents) for p in ps)
    return g


def check_against_networkx(h: Hierarchy) -> None:
    """Ancestor pairs, CSR descendants, depth, leaves and levels equal networkx's answers."""
    pairs = set(map(tuple, h.ancestor_pairs.T.tolist()))
    dense = h.dense_ancestor_matrix()
    for hi, head in enumerate(h.heads):
        g = to_networkx(head)
        off = int(h.offsets[hi])
        for i in range(len(head.nodes)):
            anc = {a + off for a in nx.ancestors(g, i)} | {i + off}
            assert {a for a in anc if (a, i + off) in pairs} == anc
            desc = {d + off for d in nx.descendants(g, i)} | {i + off}
            assert set(h.descendants(i + off).tolist()) == desc
            assert set(np.flatnonzero(dense[i + off]).tolist()) == desc
            assert set(h.ancestors_padded[i + off][h.ancestors_padded[i + off] >= 0].tolist()) == anc
            longest = max((len(p) for r in anc for p in nx.all_simple_paths(g, r - off, i)), default=1) \
                if head.kind == "tree" else None
            if longest is not None:
                assert h.depth[i + off] == longest
            assert h.is_leaf[i + off] == (g.out_degree(i) == 0)
    assert len(pairs) == h.ancestor_pairs.shape[1]
    assert sum(len(lv) for lv in h.levels) == h.num_nodes


# ------------------------------------------------------------------ CATAMI file
def test_catami_file_duplicates_are_an_error_naming_them(catami_csv):
    with pytest.raises(HierarchyError, match=r"Anthropogenic > Cable.*lines 1 and 303"):
        hierarchy_from_catami_csv(catami_csv)


def test_catami_file_node_counts_and_reference_order(catami_csv):
    h = hierarchy_from_catami_csv(catami_csv, duplicates="merge", heads=CATAMI_HEADS)
    assert {hd.name: len(hd.nodes) for hd in h.heads} == {"biota": 272, "substrate": 23, "relief": 7, "bedforms": 8}
    ref = json.loads(shared_file("catami", "reference_index_to_node.json").read_text())
    for name, mapping in ref.items():
        assert list(h.head(name).nodes) == [mapping[str(i)] for i in range(len(mapping))]


def test_shipped_catami_scheme_equals_the_file(catami_csv):
    built = hierarchy_from_catami_csv(catami_csv, duplicates="merge", heads=CATAMI_HEADS, colours=CATAMI_COLOURS)
    assert built == Hierarchy.catami()
    assert hash(built) == hash(Hierarchy.catami())
    assert Hierarchy.catami().head("colour").kind == "flat"
    assert len(Hierarchy.catami().head("colour").nodes) == 14


def test_catami_quirks():
    h = Hierarchy.catami()
    biota, bedforms, substrate = h.head("biota"), h.head("bedforms"), h.head("substrate")
    # implied intermediate nodes exist and are parents of their children
    for head, implied, child in [
        (bedforms, "Bedforms > 3D", "Bedforms > 3D > Ripples (<10cm height)"),
        (biota, "Biota > Fishes > Elasmobranchs", None),
        (substrate, "Anthropogenic", "Anthropogenic > Tile"),
    ]:
        assert implied in head.index
        if child:
            assert head.parents[head.index[child]] == (head.index[implied],)
    # same leaf name under different parents: different nodes
    a, b = bedforms.index["Bedforms > 2D > Ripples (<10cm height)"], bedforms.index["Bedforms > 3D > Ripples (<10cm height)"]
    assert a != b and bedforms.name_of(a) == bedforms.name_of(b) == "Ripples (<10cm height)"
    # several roots per head
    relief_roots = [k for i, k in enumerate(h.head("relief").nodes) if not h.head("relief").parents[i]]
    assert relief_roots == ["Flat", "High", "Low / moderate"]
    assert {"Substrate", "Unclear", "Water column", "Anthropogenic"} <= {
        k for i, k in enumerate(substrate.nodes) if not substrate.parents[i]}
    # punctuation kept whole
    assert "Substrate > Unconsolidated (soft) > Sand / mud (<2mm)" in substrate.index
    assert any("&" in k for k in biota.nodes)


def test_catami_index_structures_match_networkx():
    check_against_networkx(Hierarchy.catami())


# -------------------------------------------------------------------- ARFF
@pytest.mark.parametrize(
    "name, nodes, roots",
    [("cellcycle_FUN.train.arff.gz", 500, 1), ("eisen_FUN.train.arff.gz", 462, 1),
     ("cellcycle_GO.train.arff.gz", 4126, 1), ("Diatoms_train.arff.gz", 399, 1), ("ImCLEF07A_Train.arff.gz", 97, 1)],
)
def test_arff_node_counts(name, nodes, roots):
    head = taxonomy_from_arff(shared_file("hmc", name))
    assert len(head.nodes) == nodes
    assert sum(1 for p in head.parents if not p) == roots
    non_root = nodes - 4 if "GO" in name else nodes - 1  # the reference excludes root (+ 3 GO roots)
    assert non_root == {"cellcycle_FUN.train.arff.gz": 499, "eisen_FUN.train.arff.gz": 461,
                        "cellcycle_GO.train.arff.gz": 4122, "Diatoms_train.arff.gz": 398,
                        "ImCLEF07A_Train.arff.gz": 96}[name]


def test_go_dag_against_networkx():
    head = taxonomy_from_arff(shared_file("hmc", "cellcycle_GO.train.arff.gz"))
    assert head.kind == "dag"
    assert sum(len(p) > 1 for p in head.parents) == 1477
    h = Hierarchy((head,))
    g = to_networkx(head)
    pairs = h.ancestor_pairs
    got = {}
    for a, d in pairs.T.tolist():
        got.setdefault(d, set()).add(a)
    sample = np.random.default_rng(0).choice(len(head.nodes), 300, replace=False)
    for i in sample:
        assert got[int(i)] == nx.ancestors(g, int(i)) | {int(i)}
    # a child is always deeper than each of its parents
    for i, ps in enumerate(head.parents):
        assert all(head.depth[i] > head.depth[p] for p in ps)
    assert pairs.shape[1] == sum(len(nx.ancestors(g, i)) + 1 for i in g.nodes)


def test_arff_tree_declaration_implied_prefixes():
    head = taxonomy_from_declaration("000/00,000,19/02")
    assert head.nodes == ("root", "000", "000/00", "19", "19/02")
    assert head.parents[head.index["19/02"]] == (head.index["19"],)


# ------------------------------------------------------------------ errors
def test_cycle_is_an_error_naming_the_nodes():
    with pytest.raises(HierarchyError, match=r"cycle.*'b'.*'c'|cycle.*'c'.*'b'"):
        Taxonomy("h", ("a", "b", "c"), ((), (2,), (1,)), kind="dag")
    with pytest.raises(HierarchyError, match="cycle"):
        Taxonomy.from_edges("h", [("x", "y"), ("y", "z"), ("z", "x")])


def test_other_errors_name_the_offenders():
    with pytest.raises(HierarchyError, match="'h' is empty"):
        Taxonomy("h", ())
    with pytest.raises(HierarchyError, match=r"duplicate path.*'A > B'"):
        Taxonomy.from_paths("h", ["A > B", "A", "A > B"])
    with pytest.raises(HierarchyError, match=r"duplicate node.*'x'"):
        Taxonomy("h", ("x", "x"))
    with pytest.raises(HierarchyError, match=r"is a tree but node 'c'"):
        Taxonomy("h", ("a", "b", "c"), ((), (), (0, 1)), kind="tree")
    with pytest.raises(HierarchyError, match=r"node 'a' has invalid parent"):
        Taxonomy("h", ("a",), ((5,),))
    with pytest.raises(HierarchyError, match=r"duplicate head name"):
        Hierarchy((Taxonomy.flat("c", ["x"]), Taxonomy.flat("c", ["y"])))
    with pytest.raises(HierarchyError, match=r"head\(s\) \['relief'\] have no paths"):
        hierarchy_from_paths(["[BIOTA] > Biota"], heads=["biota", "relief"])
    with pytest.raises(HierarchyError, match=r"duplicate edge"):
        Taxonomy.from_edges("g", [("a", "b"), ("a", "b")])


# ----------------------------------------------------------- serialisation
def test_list_round_trip_survives_sorted_keys():
    h = Hierarchy.catami().with_exhaustive(biota=False)
    text = json.dumps({"hierarchy": h.to_list()}, sort_keys=True)  # what transformers writes
    back = Hierarchy.from_list(json.loads(text)["hierarchy"])
    assert back == h and hash(back) == hash(h)
    assert back.labels == h.labels
    assert back != Hierarchy.catami()  # exhaustive flag is part of equality
    assert Hierarchy.from_json(h.to_json()) == h


def test_global_layout():
    h = Hierarchy.catami()
    assert h.num_nodes == 324
    assert h.labels[h.index("substrate", "Substrate")] == "substrate: Substrate"
    s = h.head_slice("relief")
    assert h.labels[s][0].startswith("relief: ") and (h.head_of_node[s] == 2).all()
    assert "biota" in h.summary() and "324" in h.summary()
