"""Valid ARFF files the HMC reader used to reject: ``%`` inside names and quoted values, repeated
paths/edges in a ``hierarchical`` declaration, and the ``trainvalid`` split namings."""

from __future__ import annotations

import gzip

import numpy as np
import pytest

from benthicnet_hf.data.arff import taxonomy_from_declaration
from benthicnet_hf.experiments.hmc.arff import dataset_prefixes, find_splits, load_hmc, read_arff

TREE_ARFF = """% a comment line
   % an indented comment line
@RELATION 'toy%set'
@ATTRIBUTE 'growth%rate' numeric
@ATTRIBUTE medium {'50% glucose','rich, buffered',poor}
@ATTRIBUTE class hierarchical {decl}
@DATA
% comment between rows
1.5,'50% glucose',01/01
?,'rich, buffered',01@02
-2,poor,02
"""


def write(path, text: str) -> None:
    if path.name.endswith(".gz"):
        with gzip.open(path, "wt", encoding="utf-8") as f:
            f.write(text)
    else:
        path.write_text(text, encoding="utf-8")


def tree_file(path, decl: str = "01,01/01,02") -> None:
    write(path, TREE_ARFF.replace("{decl}", decl))


def test_percent_inside_names_and_quoted_values_is_data(tmp_path):
    tree_file(tmp_path / "toy.arff")
    table, hier = read_arff(tmp_path / "toy.arff")
    assert [a.name for a in table.attributes] == ["growth%rate", "medium"]
    assert table.attributes[1].values == ("50% glucose", "rich, buffered", "poor")
    want = np.array([[1.5, 1, 0, 0], [np.nan, 0, 1, 0], [-2, 0, 0, 1]])
    np.testing.assert_array_equal(table.features, want)
    assert hier.heads[0].nodes == ("root", "01", "01/01", "02")
    # rows: 01/01 (+01, root); 01 and 02 (+root); 02 (+root)
    np.testing.assert_array_equal(table.targets, [[1, 1, 1, 0], [1, 1, 0, 1], [1, 0, 0, 1]])


def test_repeated_paths_and_edges_in_a_declaration_are_deduplicated_in_order(tmp_path):
    tree_file(tmp_path / "rep.arff", decl="01,01/01,01,02,01/01,02")
    table, hier = read_arff(tmp_path / "rep.arff")
    assert hier.heads[0].nodes == ("root", "01", "01/01", "02")
    assert table.targets.shape == (3, 4)
    dag = taxonomy_from_declaration("root/GO1,GO1/GO2,root/GO1,GO1/GO3,GO1/GO2", name="go")
    assert dag.nodes == ("root", "GO1", "GO2", "GO3")
    assert dag.parents == ((), (0,), (1,), (1,))


@pytest.mark.parametrize("train_name, test_name", [
    ("X_trainvalid.arff", "X_test.arff"),
    ("X.trainvalid.arff.gz", "X.test.arff.gz"),
    ("X_TrainValid.arff", "X_Test.arff"),
    ("X_TRAIN.arff.gz", "X_TEST.arff"),
])
def test_split_namings_are_all_read(tmp_path, train_name, test_name):
    tree_file(tmp_path / train_name)
    tree_file(tmp_path / test_name)
    write(tmp_path / "README.txt", "not a split")
    assert find_splits(tmp_path / "X") == {"train": tmp_path / train_name, "test": tmp_path / test_name}
    assert dataset_prefixes(tmp_path) == ["X"]
    data = load_hmc(tmp_path / "X")
    assert data.valid is None and data.train.targets.shape == (3, 4) and data.test.targets.shape == (3, 4)


def test_train_and_valid_win_over_trainvalid_and_ambiguity_is_an_error(tmp_path):
    for name in ("D.train.arff", "D.valid.arff", "D.test.arff", "D.trainvalid.arff"):
        tree_file(tmp_path / name)
    assert find_splits(tmp_path / "D") == {s: tmp_path / f"D.{s}.arff" for s in ("train", "valid", "test")}
    for name in ("E_trainvalid.arff", "E_valid.arff", "E_test.arff"):
        tree_file(tmp_path / name)
    with pytest.raises(FileNotFoundError, match=r"E_valid\.arff: a valid split beside E_trainvalid\.arff"):
        find_splits(tmp_path / "E")
    for name in ("F.train.arff", "F_train.arff.gz", "F.test.arff"):
        tree_file(tmp_path / name)
    with pytest.raises(FileNotFoundError, match=r"ambiguous split files for .*F: train: \['F.train.arff', "
                                                r"'F_train.arff.gz'\]"):
        find_splits(tmp_path / "F")
    tree_file(tmp_path / "G_trainvalid.arff")
    with pytest.raises(FileNotFoundError, match=r"no test split for .*G.*found \['G_trainvalid.arff'\]"):
        find_splits(tmp_path / "G")
    assert dataset_prefixes(tmp_path) == ["D", "E", "F"]
