"""WoRMS AphiaIDs shipped with the package, checked against the source CSV read independently
(``../shared/data/catami/finalized_output_with_aphia.csv``, plain ``csv`` reading)."""

from __future__ import annotations

import csv
import hashlib
from pathlib import Path

import pytest

from benthicnet_hf import Hierarchy
from benthicnet_hf.aphia import APHIA_FILE, aphia_id, aphia_table, heads_with_aphia_ids

SOURCE = Path(__file__).resolve().parents[2] / "shared" / "data" / "catami" / "finalized_output_with_aphia.csv"
needs_source = pytest.mark.skipif(not SOURCE.is_file(), reason=f"reference data {SOURCE} not present")


@pytest.fixture(scope="module")
def source_ids() -> dict[str, int]:
    with open(SOURCE, newline="", encoding="utf-8") as f:
        return {row["catami"].removeprefix("[BIOTA] > "): int(row["aphia_id"])
                for row in csv.DictReader(f) if row["aphia_id"].strip() and row["catami"].startswith("[BIOTA] > ")}


@needs_source
def test_every_shipped_id_is_the_source_id_of_that_node(source_ids) -> None:
    biota = Hierarchy.catami().head("biota")
    expected = {node: source_ids[node] for node in biota.nodes if node in source_ids}
    expected["Biota > Sea spiders"] = source_ids["Biota > Sea spider"]  # the one documented rename
    shipped = {node: i for (head, node), i in aphia_table().items()}
    assert {head for head, _ in aphia_table()} == {"biota"}
    assert shipped == expected
    assert len(shipped) == 238
    assert aphia_id("biota", "Biota > Sponges > Massive forms") == 558  # Porifera, as in the source
    assert aphia_id("biota", "Biota > Sea spiders") == 1358  # Pycnogonida


@needs_source
def test_provenance_header_names_the_source_file_and_its_hash() -> None:
    header = [line for line in APHIA_FILE.read_text(encoding="utf-8").splitlines() if line.startswith("#")]
    digest = hashlib.sha256(SOURCE.read_bytes()).hexdigest()
    assert any("finalized_output_with_aphia.csv" in line and digest in line for line in header)


def test_nodes_without_an_id_get_none_not_an_ancestor_id() -> None:
    assert aphia_id("biota", "Biota") is None
    assert aphia_id("biota", "Biota > Macroalgae") is None  # no id in the source: nothing inherited
    assert aphia_id("biota", None) is None and aphia_id("substrate", "Substrate") is None
    assert heads_with_aphia_ids(["substrate", "biota", "relief"]) == ["biota"]
