"""``label_matrices`` reads a split's targets/mask straight from Arrow: equal to the row-by-row
``label_arrays`` reading, with selections and shuffles honoured, and a clear error for rows of the
wrong width."""

from __future__ import annotations

import datasets
import numpy as np
import pytest

from benthicnet_hf import Hierarchy
from benthicnet_hf.data.transforms import label_arrays
from benthicnet_hf.data.label_matrices import label_matrices

HIERARCHY = Hierarchy.catami().subset(["substrate", "relief", "colour"])


def _dataset(rows: int, fixed: bool, width: dict[str, int] | None = None) -> datasets.Dataset:
    rng = np.random.default_rng(0)
    cols, feats = {}, {}
    for head in HIERARCHY.heads:
        n = (width or {}).get(head.name, len(head.nodes))
        for kind in ("target", "mask"):
            cols[f"{head.name}_{kind}"] = (rng.random((rows, n)) < 0.3).astype(np.uint8)
            feats[f"{head.name}_{kind}"] = datasets.List(datasets.Value("uint8"), length=n if fixed else -1)
    cols["image"] = [f"img_{i}.png" for i in range(rows)]
    feats["image"] = datasets.Value("string")
    return datasets.Dataset.from_dict(cols, features=datasets.Features(feats))


@pytest.mark.parametrize("fixed", [True, False])
def test_equals_the_row_by_row_reading_after_shuffle_and_select(fixed: bool) -> None:
    ds = _dataset(300, fixed).shuffle(seed=3).select(range(7, 290, 4))
    y, m = label_matrices(ds, HIERARCHY)
    ref_y, ref_m = label_arrays(ds[:], HIERARCHY)  # plain Python lists, row by row
    assert y.dtype == np.uint8 and y.shape == (len(ds), HIERARCHY.num_nodes)
    np.testing.assert_array_equal(y, ref_y)
    np.testing.assert_array_equal(m, ref_m)


def test_rows_of_the_wrong_width_are_named() -> None:
    ds = _dataset(10, fixed=False, width={"relief": 5})
    with pytest.raises(ValueError, match=r"column 'relief_target': 50 values for 10 rows, expected 7 per row"):
        label_matrices(ds, HIERARCHY)
