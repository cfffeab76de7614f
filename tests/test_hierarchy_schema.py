"""``Hierarchy.from_list`` refuses junk naming the head and field; the hierarchy fingerprint refuses
a config whose hierarchy is not the one its weights were saved with (config.json edited, fewer heads,
changed labels, ``config=``/``hierarchy=`` overrides), while configs saved before it still load."""

from __future__ import annotations

import copy
import json

import pytest
import torch

from benthicnet_hf.configuration_benthicnet import BenthicNetConfig
from benthicnet_hf.hierarchy import Taxonomy, Hierarchy, HierarchyError
from benthicnet_hf.modeling_benthicnet import BenthicNetForHierarchicalClassification

SIZE = 32


def small_list() -> list[dict]:
    tree = Taxonomy.from_paths("zeta", ["A", "A > B", "A > B > C", "A > D", "E", "E > F"])
    dag = Taxonomy("beta", ("r", "x", "y", "z"), ((), (0,), (0,), (1, 2)), kind="dag", sep="")
    return Hierarchy((tree, dag, Taxonomy.flat("alpha", ["red", "green", "blue"]))).to_list()


def edited(path: tuple, value) -> list[dict]:
    """``small_list()`` with ``items[i][field](...[j]) = value`` (``value=KeyError`` deletes)."""
    items = small_list()
    target = items
    for key in path[:-1]:
        target = target[key]
    if value is KeyError:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return items


@pytest.mark.parametrize("path, value, match", [
    ((0, "nodes"), "A > B", r"hierarchy head 0 \('zeta'\): field 'nodes' must be a list of strings, got 'A > B'"),
    ((1, "parents"), "0,1", r"head 1 \('beta'\): field 'parents' must be a list of 4 index lists.*'0,1'"),
    ((1, "parents", 3), [1.0, 2], r"head 1 \('beta'\): field 'parents', entry 3 \(node 'z'\).*\[1.0, 2\]"),
    ((1, "parents", 3), [True], r"head 1 \('beta'\): field 'parents', entry 3 .*integer node indices"),
    ((1, "parents", 1), 0, r"field 'parents', entry 1 \(node 'x'\): expected a list of integer"),
    ((2, "colour"), "red", r"head 2 \('alpha'\): unknown field\(s\) \['colour'\]"),
    ((0, "nodes", 2), "A >  > C", r"head 0 \('zeta'\): field 'nodes', entry 2: path 'A >  > C' has an empty "
                                  r"component"),
    ((0, "nodes", 1), "", r"field 'nodes', entry 1: expected a non-empty string, got ''"),
    ((0, "nodes", 1), 7, r"field 'nodes', entry 1: expected a non-empty string, got 7 \(int\)"),
    ((0, "exhaustive"), "false", r"head 0 \('zeta'\): field 'exhaustive' must be true or false, got 'false'"),
    ((0, "kind"), ["tree"], r"field 'kind' must be a string"),
    ((0, "sep"), None, r"field 'sep' must be a string"),
    ((0, "name"), 3, r"hierarchy head 0: field 'name' must be a non-empty string, got 3 \(int\)"),
    ((1, "nodes"), KeyError, r"head 1 \('beta'\): missing field\(s\) \['nodes'\]"),
])
def test_from_list_rejects_junk_naming_head_and_field(path, value, match):
    with pytest.raises(HierarchyError, match=match):
        Hierarchy.from_list(edited(path, value))


def test_from_list_rejects_non_dict_entries_and_json_without_heads():
    with pytest.raises(HierarchyError, match=r"hierarchy head 1: expected a dict"):
        Hierarchy.from_list([small_list()[0], ["beta"]])
    with pytest.raises(HierarchyError, match=r"expected \{\"heads\": \[...\]\}.*keys \['levels'\]"):
        Hierarchy.from_json(json.dumps({"levels": []}))


def test_valid_lists_still_load_and_round_trip():
    items = small_list()
    assert Hierarchy.from_list(items).to_list() == items
    del items[2]["parents"]  # optional
    assert Hierarchy.from_list(items).num_nodes == 13
    catami = Hierarchy.catami()
    assert Hierarchy.from_list(json.loads(json.dumps(catami.to_list()))) == catami


# ---------------------------------------------------------------- fingerprint
def test_fingerprint_is_sha256_of_the_canonical_form_and_ignores_labelling_policy():
    import hashlib

    hier = Hierarchy.from_list(small_list())
    fp = hier.fingerprint()
    beta = hier.heads[1]
    body = json.dumps([beta.kind, list(beta.nodes), [list(p) for p in beta.parents]], sort_keys=True,
                      separators=(",", ":"))
    assert fp["heads"]["beta"] == hashlib.sha256(body.encode()).hexdigest()
    assert list(fp["heads"]) == ["zeta", "beta", "alpha"]
    assert hier.with_exhaustive(beta=False).fingerprint() == fp
    renamed = edited((0, "nodes", 5), "E > G")
    assert Hierarchy.from_list(renamed).fingerprint()["all"] != fp["all"]


def make_saved(tmp_path):
    torch.manual_seed(0)
    config = BenthicNetConfig(encoder_name="test_resnet", hierarchy=small_list(), head_hidden_dim=8, image_size=SIZE)
    BenthicNetForHierarchicalClassification(config).save_pretrained(tmp_path)
    return json.loads((tmp_path / "config.json").read_text())


def write_config(tmp_path, data: dict) -> None:
    (tmp_path / "config.json").write_text(json.dumps(data, indent=1, sort_keys=True))


def test_saved_config_carries_the_fingerprint_and_loads(tmp_path):
    saved = make_saved(tmp_path)
    assert saved["hierarchy_fingerprint"] == Hierarchy.from_list(small_list()).fingerprint()
    model = BenthicNetForHierarchicalClassification.from_pretrained(tmp_path)
    assert model.config.get_hierarchy() == Hierarchy.from_list(small_list())


def test_edited_config_json_with_fewer_heads_is_refused(tmp_path):
    saved = make_saved(tmp_path)
    data = copy.deepcopy(saved)
    data["hierarchy"] = data["hierarchy"][:2]  # alpha dropped (id2label left as saved, or removed too)
    data.pop("id2label"), data.pop("label2id")
    write_config(tmp_path, data)
    with pytest.raises(ValueError, match=r"not the one the weights were saved with \(head\(s\) \['alpha'\] missing\)"):
        BenthicNetForHierarchicalClassification.from_pretrained(tmp_path)


def test_edited_config_json_with_renamed_labels_is_refused(tmp_path):
    saved = make_saved(tmp_path)
    data = copy.deepcopy(saved)
    data["hierarchy"][2]["nodes"] = ["red", "blue", "green"]  # same shapes, swapped meaning
    data.pop("id2label"), data.pop("label2id")
    write_config(tmp_path, data)
    with pytest.raises(ValueError, match=r"head\(s\) \['alpha'\] changed"):
        BenthicNetForHierarchicalClassification.from_pretrained(tmp_path)


def test_fewer_heads_given_as_config_object_is_refused(tmp_path):
    make_saved(tmp_path)
    fewer = BenthicNetConfig(encoder_name="test_resnet", hierarchy=small_list()[:2], head_hidden_dim=8)
    # same shapes for the heads kept: transformers alone only warns about the unexpected head 2 weights
    with pytest.raises(ValueError, match=r"checkpoint has 1 more head\(s\) than the config's 2"):
        BenthicNetForHierarchicalClassification.from_pretrained(tmp_path, config=fewer)


def test_relabelled_config_object_of_same_shapes_is_refused(tmp_path):
    make_saved(tmp_path)
    items = small_list()
    items[0]["nodes"][5] = "E > G"
    other = BenthicNetConfig(encoder_name="test_resnet", hierarchy=items, head_hidden_dim=8)
    with pytest.raises(ValueError, match=r"is not the one .* was saved with \(head\(s\) \['zeta'\] changed"):
        BenthicNetForHierarchicalClassification.from_pretrained(tmp_path, config=other)


def test_old_config_without_fingerprint_still_loads(tmp_path):
    saved = make_saved(tmp_path)
    data = copy.deepcopy(saved)
    del data["hierarchy_fingerprint"]
    write_config(tmp_path, data)
    model = BenthicNetForHierarchicalClassification.from_pretrained(tmp_path)
    assert model.config.num_labels == 13
    model.save_pretrained(tmp_path / "again")  # saving again records the fingerprint
    assert "hierarchy_fingerprint" in json.loads((tmp_path / "again" / "config.json").read_text())
