"""The step iteration of the pre-training loops: epochs of a re-creatable loader, resumable mid-epoch.

Self-supervised and labelled contrastive pre-training both train for a number of optimizer steps
over epochs of a loader whose order is a function of ``(seed, epoch)`` (and, for a stream, of the
items skipped). :func:`resumable_batches` yields the batches from the position in a
:class:`~benthicnet_hf.training.checkpointing.TrainingState` on, so a resumed run sees exactly the
batches the uninterrupted run saw.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, Iterator

from .checkpointing import TrainingState

__all__ = ["resumable_batches"]


def resumable_batches(state: TrainingState, total_steps: int, loader_for: Callable[[int, int], Iterable[Any]],
                      empty_message: Callable[[int], str]) -> Iterator[Any]:
    """Yield batches until ``state.completed_steps`` reaches ``total_steps``.

    ``loader_for(epoch, batches_done)`` returns that epoch's batches from batch ``batches_done``
    on. After each yield the caller takes its step and increments ``state.completed_steps`` and
    ``state.batches_done`` (and may save a checkpoint); an exhausted loader starts the next epoch.

    Raises:
        ValueError: an epoch yields no batch at all (message: ``empty_message(epoch)``), instead of
            looping forever.
    """
    while state.completed_steps < total_steps:
        before = state.completed_steps
        for batch in loader_for(state.epoch, state.batches_done):
            yield batch
            if state.completed_steps >= total_steps:
                return
        if state.completed_steps == before and state.batches_done == 0:
            raise ValueError(empty_message(state.epoch))
        state.epoch, state.batches_done = state.epoch + 1, 0
