"""Where a stage's messages go: one line each on stderr (stdout stays for results, e.g. predict's JSONL)."""
from __future__ import annotations

import logging
import sys


def say(message: str) -> None:
    """Print one message for the user on stderr, at once (a progress bar may be drawing there too)."""
    print(message, file=sys.stderr, flush=True)


def setup_logging(level: int = logging.INFO) -> None:
    """Show the pipeline's log records (warnings, and at INFO the progress of training) as `LEVEL message`."""
    logging.basicConfig(level=level, format="%(levelname)s %(message)s")


def points(fraction: float) -> str:
    """A score as the paper and every human-facing output of dghc show it: percentage points, two decimals
    (0.84962 -> "84.96"). JSON files keep seqeval's fractions."""
    return f"{100 * fraction:.2f}"
