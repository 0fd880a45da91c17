"""Building random weights the same way every time, without disturbing the caller's random numbers."""
from __future__ import annotations

import contextlib
from typing import Iterator


@contextlib.contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Run the block with torch's CPU generator seeded by ``seed``; the caller's random state is restored after it
    (a model built here does not shift the shuffling or dropout of whatever runs next)."""
    import torch  # when a model is built, not when this module is imported (`dghc --help` stays light)

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield
