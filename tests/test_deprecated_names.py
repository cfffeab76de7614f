"""The 0.1 names keep working for one release, with a warning that names the new one."""

from __future__ import annotations

import pytest

import benthicnet_hf
from benthicnet_hf.configuration_benthicnet import BenthicNetConfig
from benthicnet_hf.training.args import parse_args


def test_head_is_a_deprecated_alias_of_taxonomy() -> None:
    with pytest.warns(DeprecationWarning, match="renamed Taxonomy"):
        from benthicnet_hf.hierarchy import Head
    assert Head is benthicnet_hf.Taxonomy
    with pytest.warns(DeprecationWarning, match="renamed Taxonomy"):
        assert benthicnet_hf.Head is benthicnet_hf.Taxonomy
    assert Head.flat("colour", ["red"]).nodes == ("red",)


def test_config_reads_the_old_head_type_key() -> None:
    with pytest.warns(FutureWarning, match="renamed output_type"):
        config = BenthicNetConfig(encoder_name="test_resnet", head_type="hsoftmax")
    assert config.output_type == "hsoftmax"
    assert "head_type" not in config.to_dict()
    with pytest.raises(ValueError, match="keep output_type only"):
        BenthicNetConfig(encoder_name="test_resnet", output_type="per_level", head_type="hsoftmax")


def test_cli_accepts_the_old_head_type_flag(tmp_path) -> None:
    new = parse_args(["--dataset_dir", str(tmp_path), "--output_dir", str(tmp_path / "o"), "--output_type", "hsoftmax"])
    old = parse_args(["--dataset_dir", str(tmp_path), "--output_dir", str(tmp_path / "o"), "--head_type", "hsoftmax"])
    assert new.output_type == old.output_type == "hsoftmax"
