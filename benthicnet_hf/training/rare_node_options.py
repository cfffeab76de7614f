"""Rare-node options of fine-tuning: LP-ROS oversampling (``--lpros``) and node imbalance weights
(``--node_weights imbalance``), both from :mod:`benthicnet_hf.rare_nodes`.

LP-ROS under accelerate: the sampler's order is keyed by ``(seed, epoch)`` where the epoch is read
from the loop's :class:`~.components.EpochCounter` when iteration starts, never streamed from a
generator or from how often the sampler was iterated. So every process computes the same order,
and accelerate's ``BatchSamplerShard`` (which it wraps around any batch sampler on N processes)
hands process ``i`` the batches ``i, i + N, …`` of it: each index of the epoch's oversampled
multiset once over all processes (the last round padded from the start, as for any sampler). A
resumed run (``skip_first_batches``) rebuilds the same order and skips the batches already done.
"""

from __future__ import annotations

from typing import Any, Iterator

import numpy as np
from torch.utils.data import Sampler

from ..hierarchy import Hierarchy

#: ``--node_weights`` choices.
NODE_WEIGHT_MODES = ("imbalance",)


class EpochKeyedLPROSSampler(Sampler[int]):
    """:class:`benthicnet_hf.rare_nodes.LPROSSampler` whose shuffle is chosen by ``counter.epoch``.

    Args:
        targets: ``(rows, N)`` 0/1 training targets.
        mask: ``(rows, N)`` 1 = known.
        percentage: LP-ROS size increase ``P`` in percent.
        seed: seed of the clone draw and the shuffles.
        counter: any object with an ``epoch`` attribute (the loop's ``EpochCounter``).
    """

    def __init__(self, targets: np.ndarray, mask: np.ndarray, percentage: float, seed: int, counter: Any) -> None:
        from ..rare_nodes import LPROSSampler

        self.lpros = LPROSSampler(targets, mask, percentage=percentage, seed=seed)
        self.counter = counter

    @property
    def num_clones(self) -> int:
        return len(self.lpros.clones)

    def __len__(self) -> int:
        return len(self.lpros)

    def __iter__(self) -> Iterator[int]:
        # LPROSSampler advances its own epoch on every __iter__: pin it to the loop's epoch instead
        self.lpros.set_epoch(int(self.counter.epoch))
        return iter(self.lpros)


def node_imbalance_weights(hierarchy: Hierarchy, targets: np.ndarray, mask: np.ndarray) -> list[float]:
    """``(N,)`` node weights for ``config.node_weights``: ``rare_nodes.imbalance_weights`` of the
    training targets/mask (computed once, before training)."""
    from ..rare_nodes import imbalance_weights

    return [float(w) for w in imbalance_weights(hierarchy, targets, mask).tolist()]
