"""LP-ROS: label-powerset random oversampling (Charte, Rivera, del Jesus & Herrera, "Addressing
imbalance in multilabel classification: Measures and random resampling algorithms",
Neurocomputing 163 (2015), Algorithm 1), as a ``torch.utils.data.Sampler``.

Algorithm (``P`` = ``percentage``):

1. group samples into bags by label set; ``meanSize`` = mean bag size;
2. minority bags: ``|bag| < meanSize``; ``samplesToClone = ⌊|D| · P / 100⌋``;
   ``meanInc = samplesToClone / #minority bags``;
3. visit minority bags from largest to smallest; bag ``i`` gets
   ``r_i = min(meanSize − |bag_i|, meanInc_i)`` clones drawn at random from itself, and the unused
   ``meanInc_i − r_i`` is shared equally among the bags still to visit.

The clone counts are rounded down (``⌊r_i⌋``); the clones are drawn once (LP-ROS is preprocessing)
and every epoch yields each original index once plus the clones, shuffled.

Masks: a sample's label set is built from its **known** bits only — the pair (which bits are known,
which known bits are positive). Samples with no known bit have no label set: they are kept once
and never cloned. (The rare-node paper's own resampler is a hierarchical variant; this is LP-ROS
itself, as the paper names it.)

Under accelerate, :class:`EpochKeyedLPROSSampler` (the fine-tuning loop's ``--lpros``) keys the
order by ``(seed, epoch)`` where the epoch is read from the loop's ``EpochCounter`` when iteration
starts, never streamed from a generator or from how often the sampler was iterated. So every
process computes the same order, and accelerate's ``BatchSamplerShard`` (which it wraps around any
batch sampler on N processes) hands process ``i`` the batches ``i, i + N, …`` of it: each index of
the epoch's oversampled multiset once over all processes (the last round padded from the start, as
for any sampler). A resumed run (``skip_first_batches``) rebuilds the same order and skips the
batches already done.
"""

from __future__ import annotations

from typing import Any, Iterator

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Sampler


def label_set_bags(targets: Tensor | np.ndarray, mask: Tensor | np.ndarray | None = None) -> np.ndarray:
    """Label-set id of each row (``-1`` for rows without any known bit).

    Args:
        targets: ``(rows, N)`` 0/1.
        mask: ``(rows, N)`` 1 = known; None = all known.

    Returns:
        ``(rows,)`` int64 bag ids ``0..L−1`` (ordered by first appearance is not guaranteed).
    """
    y = np.asarray(targets.cpu() if isinstance(targets, Tensor) else targets) > 0.5
    m = np.ones_like(y) if mask is None else np.asarray(mask.cpu() if isinstance(mask, Tensor) else mask) > 0.5
    if y.ndim != 2 or m.shape != y.shape:
        raise ValueError(f"targets and mask must both have shape (rows, N); got {y.shape} and {m.shape}")
    # a known positive, a known negative and an unknown bit are three different states
    key = np.concatenate([np.packbits(m, axis=1), np.packbits(y & m, axis=1)], axis=1)
    _, inverse = np.unique(key, axis=0, return_inverse=True)
    inverse = inverse.reshape(-1).astype(np.int64)
    has_label = m.any(1)
    ids = np.full(y.shape[0], -1, dtype=np.int64)
    # renumber the labelled bags densely
    _, ids[has_label] = np.unique(inverse[has_label], return_inverse=True)
    return ids


def lpros_clone_counts(bag_sizes: np.ndarray, num_samples: int, percentage: float) -> np.ndarray:
    """Clones per bag from Algorithm 1 (see the module docstring).

    Args:
        bag_sizes: ``(L,)`` samples per label set.
        num_samples: ``|D|``.
        percentage: ``P``, the size increase in percent.

    Returns:
        ``(L,)`` int64 clone counts (0 for majority bags).
    """
    sizes = np.asarray(bag_sizes, dtype=np.float64)
    counts = np.zeros(len(sizes), dtype=np.int64)
    if len(sizes) == 0:
        return counts
    mean_size = sizes.mean()
    minority = np.flatnonzero(sizes < mean_size)
    if len(minority) == 0:
        return counts
    to_clone = np.floor(num_samples * percentage / 100.0)
    inc = np.full(len(minority), to_clone / len(minority))
    order = minority[np.argsort(-sizes[minority], kind="stable")]  # largest to smallest
    for pos, bag in enumerate(order):  # sequential by definition: leftovers flow to later bags
        r = min(mean_size - sizes[bag], inc[pos])
        counts[bag] = int(np.floor(r + 1e-9))
        rest = len(order) - pos - 1
        if rest:
            inc[pos + 1:] += (inc[pos] - r) / rest
    return counts


class LPROSSampler(Sampler[int]):
    """Sampler yielding each index once plus LP-ROS clones of minority label sets, shuffled.

    Args:
        targets: ``(rows, N)`` 0/1 training targets.
        mask: ``(rows, N)`` 1 = known; None = all known.
        percentage: ``P``, dataset size increase in percent (Charte et al. use 10–25).
        seed: seed of the clone draw and of the per-epoch shuffles (deterministic).

    Example::

        sampler = LPROSSampler(train_labels, train_mask, percentage=10, seed=0)
        loader = DataLoader(train_set, batch_size=4, sampler=sampler)
    """

    def __init__(
        self, targets: Tensor | np.ndarray, mask: Tensor | np.ndarray | None = None, percentage: float = 10.0,
        seed: int = 0,
    ) -> None:
        if percentage < 0:
            raise ValueError(f"percentage must be >= 0, got {percentage}")
        self.bags = label_set_bags(targets, mask)
        n = len(self.bags)
        labelled = self.bags >= 0
        sizes = np.bincount(self.bags[labelled], minlength=int(self.bags.max()) + 1 if labelled.any() else 0)
        self.clone_counts = lpros_clone_counts(sizes, n, percentage)
        rng = np.random.default_rng(seed)
        # members of each bag, grouped: order rows by bag id, bag b's rows are at starts[b]:starts[b]+sizes[b]
        order = np.argsort(np.where(labelled, self.bags, -1), kind="stable")[np.count_nonzero(~labelled):]
        starts = np.concatenate([[0], np.cumsum(sizes)[:-1]]) if len(sizes) else np.zeros(0, np.int64)
        bag_of_clone = np.repeat(np.arange(len(sizes)), self.clone_counts)
        pick = (rng.random(len(bag_of_clone)) * sizes[bag_of_clone]).astype(np.int64)
        self.clones = order[starts[bag_of_clone] + pick] if len(bag_of_clone) else np.zeros(0, np.int64)
        self.num_rows, self.seed, self.epoch = n, seed, 0

    def __len__(self) -> int:
        return self.num_rows + len(self.clones)

    def set_epoch(self, epoch: int) -> None:
        """Choose the shuffle of ``epoch`` (as ``DistributedSampler``)."""
        self.epoch = epoch

    def indices(self) -> np.ndarray:
        """The (unshuffled) index multiset: ``arange(rows)`` followed by the clones."""
        return np.concatenate([np.arange(self.num_rows, dtype=np.int64), self.clones])

    def __iter__(self) -> Iterator[int]:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        self.epoch += 1
        idx = self.indices()
        perm = torch.randperm(len(idx), generator=g).numpy()
        return iter(idx[perm].tolist())


class EpochKeyedLPROSSampler(Sampler[int]):
    """:class:`LPROSSampler` whose shuffle is chosen by ``counter.epoch`` (fine-tuning's ``--lpros``).

    Args:
        targets: ``(rows, N)`` 0/1 training targets.
        mask: ``(rows, N)`` 1 = known.
        percentage: LP-ROS size increase ``P`` in percent.
        seed: seed of the clone draw and the shuffles.
        counter: any object with an ``epoch`` attribute (the loop's ``EpochCounter``).
    """

    def __init__(self, targets: np.ndarray, mask: np.ndarray, percentage: float, seed: int, counter: Any) -> None:
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
