"""Per-level label ids for the contrastive losses, from the encoder's targets and mask.

For one tree head, the label of a sample at depth d is the global index of its known positive node
at depth d (-1 = unknown: missing head, label cut short, or a path ending above d). Rows with two
positives at one depth (e.g. biota listing two organisms) either raise or, with
``on_multi="unknown"``, leave that depth unknown, so the sample is neither positive nor negative
there.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..output_types.single_path import SinglePathIndex
from ..hierarchy import Hierarchy


class LevelLabeller:
    """``(batch, N)`` targets/mask → ``(batch, L)`` global node ids per depth of one tree head.

    Example::

        labeller = LevelLabeller(Hierarchy.catami(), "substrate")
        ids = labeller(labels, label_mask)      # (batch, 4), -1 = unknown
    """

    def __init__(self, hierarchy: Hierarchy, head: str, on_multi: str = "unknown") -> None:
        h = hierarchy.head(head)
        if h.kind == "flat":
            raise ValueError(f"head {head!r} is flat: hierarchical contrastive losses need a tree head")
        self.index = SinglePathIndex(h, "hierarchical contrastive")
        self.slice = hierarchy.head_slice(head)
        self.on_multi = on_multi
        self.num_levels = self.index.L

    def __call__(self, targets: Tensor, mask: Tensor) -> Tensor:
        local = self.index.level_labels(targets[:, self.slice], mask[:, self.slice], self.on_multi)
        return torch.where(local >= 0, local + self.slice.start, local)
