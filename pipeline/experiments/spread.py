"""Mean and standard deviation over seeds; a single run has no spread to report."""
from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Sequence


@dataclass(frozen=True)
class Spread:
    mean: float
    std: float | None  # sample standard deviation; None (shown "n/a") for a single run
    runs: int

    def format(self, scale: float = 100.0, digits: int = 2) -> str:
        std = "n/a" if self.std is None else f"{scale * self.std:.{digits}f}"
        return f"{scale * self.mean:.{digits}f} ± {std}"


def spread(values: Sequence[float]) -> Spread:
    if not values:
        raise ValueError("no values")
    return Spread(statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else None, len(values))
