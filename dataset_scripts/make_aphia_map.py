"""Derive the shipped CATAMI biota node → WoRMS AphiaID table (``benthicnet_hf/schemes/catami_aphia.csv``).

Source: ``finalized_output_with_aphia.csv`` (an older 331-path CATAMI list with an ``aphia_id`` column,
kept in the project's shared reference data as ``../shared/data/catami/``). Only paths that are nodes of
the shipped CATAMI hierarchy (:meth:`benthicnet_hf.Hierarchy.catami`) and carry an id are kept; the
source's ``Biota > Sea spider`` is the shipped node ``Biota > Sea spiders`` (renamed, same taxon,
Pycnogonida). Paths of the source that are not shipped nodes are listed on stderr, never guessed.

    python dataset_scripts/make_aphia_map.py ../shared/data/catami/finalized_output_with_aphia.csv
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import sys
from pathlib import Path

from benthicnet_hf import Hierarchy
from benthicnet_hf.catami import split_head

#: Source path → shipped node, where the shipped scheme renamed a node (same taxon).
RENAMED = {"Biota > Sea spider": "Biota > Sea spiders"}
OUT = Path(__file__).resolve().parents[1] / "benthicnet_hf" / "schemes" / "catami_aphia.csv"


def derive(source: Path) -> tuple[list[tuple[str, str, int]], list[str]]:
    """``(head, node, aphia_id)`` rows in the shipped node order, and the source paths left out."""
    hierarchy = Hierarchy.catami()
    found: dict[tuple[str, str], int] = {}
    left_out = []
    with open(source, newline="", encoding="utf-8-sig") as f:
        for row in csv.DictReader(f):
            aphia = (row.get("aphia_id") or "").strip()
            if not aphia:
                continue
            head, path = split_head(row["catami"])
            path = RENAMED.get(path, path)
            if head not in hierarchy.head_names or path not in hierarchy.head(head).index:
                left_out.append(row["catami"])
                continue
            found[(head, path)] = int(aphia)
    rows = [(t.name, node, found[(t.name, node)]) for t in hierarchy.heads for node in t.nodes
            if (t.name, node) in found]
    return rows, left_out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("source", type=Path, help="finalized_output_with_aphia.csv")
    p.add_argument("--out", type=Path, default=OUT)
    a = p.parse_args(argv)
    rows, left_out = derive(a.source)
    digest = hashlib.sha256(a.source.read_bytes()).hexdigest()
    with open(a.out, "w", newline="", encoding="utf-8") as f:
        f.write("# WoRMS AphiaIDs (https://www.marinespecies.org) of CATAMI nodes, for <head>_aphia_id in predictions.\n"
                f"# Derived by dataset_scripts/make_aphia_map.py from {a.source.name} (sha256 {digest}),\n"
                "# the CATAMI path list with WoRMS ids kept in the project's reference data (shared/data/catami/).\n"
                "# Kept: paths that are nodes of Hierarchy.catami() and carry an id; 'Biota > Sea spider' is the\n"
                "# shipped node 'Biota > Sea spiders'. A node without a row has no id (none is inherited).\n")
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["head", "node", "aphia_id"])
        w.writerows(rows)
    print(f"wrote {len(rows)} node ids to {a.out}; {len(left_out)} source paths with an id are not shipped nodes: "
          f"{left_out}", file=sys.stderr)


if __name__ == "__main__":
    main()
