"""Main-process-only work that can fail without leaving the other processes waiting at a barrier.

Saving ``best/``, ``final/`` and the report, or cleaning the output folder, runs on the main process
while the others wait. If the main process raised there, the others would wait forever at the next
barrier (or die later with an unrelated collective error). :func:`run_on_main` ends the wait with
the outcome instead: the main process re-raises its own exception, every other process raises
:class:`MainProcessError` naming the step and the cause, so all ranks exit.
"""

from __future__ import annotations

from typing import Any, Callable, TypeVar

T = TypeVar("T")


class MainProcessError(RuntimeError):
    """Raised on the non-main processes when the main process failed in a main-only step."""


def run_on_main(accelerator: Any, what: str, fn: Callable[[], T]) -> T | None:
    """Call ``fn()`` on the main process and share whether it succeeded with every process.

    Acts as a barrier. Returns ``fn()``'s value on the main process, None on the others.

    Raises:
        Exception: ``fn``'s own exception, on the main process.
        MainProcessError: on the other processes when ``fn`` failed on the main one.
    """
    if accelerator.num_processes == 1:
        return fn()
    from accelerate.utils import broadcast_object_list

    result, error, outcome = None, None, [None]
    if accelerator.is_main_process:
        try:
            result = fn()
        except BaseException as err:  # noqa: BLE001 - every failure must reach the other ranks
            error = err
            outcome[0] = f"{type(err).__name__}: {err}"
    broadcast_object_list(outcome, from_process=0)
    if error is not None:
        raise error
    if outcome[0] is not None:
        raise MainProcessError(f"the main process failed while {what} ({outcome[0]}); "
                               f"process {accelerator.process_index} stops too")
    return result
