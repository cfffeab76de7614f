"""``datasets``' progress bars on a terminal only: in a log file a bar is hundreds of carriage-return updates."""

from __future__ import annotations

import contextlib
import sys
from typing import Iterator

__all__ = ["bars_on_a_terminal_only"]


@contextlib.contextmanager
def bars_on_a_terminal_only() -> Iterator[None]:
    """Within: ``datasets`` draws its bars ("Generating train split", "Creating parquet", ...) only
    when stderr is a terminal; the caller's setting is restored on the way out."""
    from datasets.utils import logging as ds_logging

    was_on = ds_logging.is_progress_bar_enabled()
    if was_on and not sys.stderr.isatty():
        ds_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_on:
            ds_logging.enable_progress_bar()
