"""WoRMS AphiaIDs of CATAMI nodes, so that predictions join with biodiversity databases.

The table ships as ``schemes/catami_aphia.csv`` (``head,node,aphia_id``; ``#`` lines are its
provenance): derived by ``dataset_scripts/make_aphia_map.py`` from the CATAMI path list with WoRMS ids
(``finalized_output_with_aphia.csv``). 238 of the 272 biota nodes have an id; several CATAMI
morphotypes share their taxon's id (``Biota > Ascidians > Stalked`` is Ascidiacea, 1839). A node
without a row has no id: none is inherited from an ancestor, since a parent taxon is a different
record for a biodiversity database.
"""

from __future__ import annotations

import csv
import functools
from pathlib import Path

APHIA_FILE = Path(__file__).resolve().parent / "schemes" / "catami_aphia.csv"


@functools.lru_cache(maxsize=1)
def aphia_table() -> dict[tuple[str, str], int]:
    """``(head, node key) → AphiaID`` for every node of the shipped table."""
    with open(APHIA_FILE, newline="", encoding="utf-8") as f:
        rows = csv.DictReader(line for line in f if not line.startswith("#"))
        return {(r["head"], r["node"]): int(r["aphia_id"]) for r in rows}


def aphia_id(head: str, node: str | None) -> int | None:
    """The AphiaID of ``node`` (a node key such as ``"Biota > Sponges"``) of ``head``, else None."""
    return None if node is None else aphia_table().get((head, node))


def heads_with_aphia_ids(head_names: list[str] | tuple[str, ...]) -> list[str]:
    """The heads among ``head_names`` for which the table holds at least one id."""
    known = {head for head, _ in aphia_table()}
    return [h for h in head_names if h in known]
