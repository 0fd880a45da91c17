"""Keeping library chatter out of the user's terminal where it says nothing useful."""
from __future__ import annotations

import contextlib
from typing import Iterator


@contextlib.contextmanager
def quiet_transformers() -> Iterator[None]:
    """Silence transformers' load reports and progress bars (e.g. a sentence-transformers checkpoint's
    pooler, or a full CLIP checkpoint's text weights, reported as unexpected: expected here)."""
    from transformers.utils import logging as hf_logging

    previous = hf_logging.get_verbosity()
    progress = hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(previous)
        if progress:
            hf_logging.enable_progress_bar()
