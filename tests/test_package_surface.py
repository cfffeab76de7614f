"""The top-level package's surface (lazy names visible to ``dir()`` and IDEs) and the module paths
that moved in 0.2 (deprecated aliases kept for one release)."""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

import benthicnet_hf

INIT = Path(benthicnet_hf.__file__)


def test_dir_lists_every_lazy_name_and_each_resolves() -> None:
    names = dir(benthicnet_hf)
    assert set(benthicnet_hf._LAZY) <= set(benthicnet_hf.__all__) <= set(names)
    assert {"Taxonomy", "Hierarchy", "__version__", *benthicnet_hf._LAZY} <= set(names)
    for name in benthicnet_hf.__all__:
        assert getattr(benthicnet_hf, name) is not None, name


def test_type_checking_block_imports_every_lazy_name_from_its_module() -> None:
    tree = ast.parse(INIT.read_text())
    seen: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and getattr(node.test, "id", "") == "TYPE_CHECKING":
            for imp in node.body:
                assert isinstance(imp, ast.ImportFrom) and imp.level == 1
                seen.update({a.name: imp.module for a in imp.names})
    assert seen == benthicnet_hf._LAZY


def test_import_does_not_load_torch() -> None:
    code = "import sys, benthicnet_hf; dir(benthicnet_hf); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def _fresh_import(name: str):
    for key in [k for k in sys.modules if k == name or k.startswith(name + ".")]:
        del sys.modules[key]
    return importlib.import_module(name)


def test_hmc_path_is_a_deprecated_alias_of_experiments_hmc() -> None:
    from benthicnet_hf.experiments import hmc as new
    from benthicnet_hf.experiments.hmc import train as new_train

    with pytest.warns(FutureWarning, match="benthicnet_hf.experiments.hmc"):
        old = _fresh_import("benthicnet_hf.hmc")
    assert old.load_hmc is new.load_hmc and old.__all__ == new.__all__
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the alias warns once, on first import
        from benthicnet_hf.hmc.train import train_and_evaluate
        from benthicnet_hf.hmc import arff
    assert train_and_evaluate is new_train.train_and_evaluate
    assert arff.find_splits is new.find_splits


def test_arff_hierarchy_path_is_a_deprecated_alias_of_data_arff() -> None:
    from benthicnet_hf.data import arff

    with pytest.warns(FutureWarning, match="benthicnet_hf.data.arff"):
        old = _fresh_import("benthicnet_hf.arff_hierarchy")
    assert old.taxonomy_from_arff is arff.taxonomy_from_arff
    assert old.taxonomy_from_declaration("01,01/02").nodes == ("root", "01", "01/02")
