"""Progress bars of the Hugging Face libraries, switched off where they would only clutter a log.

``datasets`` and ``transformers`` expose the same switch (``utils.logging``'s
``is_progress_bar_enabled`` / ``disable_progress_bar`` / ``enable_progress_bar``); in a log file a
bar is hundreds of carriage-return updates.
"""

from __future__ import annotations

import contextlib
import sys
from typing import Any, Iterator

__all__ = ["bars_off", "bars_on_a_terminal_only"]


@contextlib.contextmanager
def bars_off(library_logging: Any, off: bool = True) -> Iterator[None]:
    """Within: ``library_logging`` (``datasets.utils.logging`` or ``transformers.utils.logging``) draws
    no progress bar when ``off``; the caller's setting is restored on the way out."""
    was_on = library_logging.is_progress_bar_enabled()
    if was_on and off:
        library_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_on:
            library_logging.enable_progress_bar()


@contextlib.contextmanager
def bars_on_a_terminal_only() -> Iterator[None]:
    """Within: ``datasets`` draws its bars ("Generating train split", "Creating parquet", ...) only
    when stderr is a terminal."""
    from datasets.utils import logging as ds_logging

    with bars_off(ds_logging, off=not sys.stderr.isatty()):
        yield
