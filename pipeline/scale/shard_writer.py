"""Writing the rows a Ray pipeline returns, in row order, into one file per shard (``dghc.pipeline.artifacts.shards``)."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np

from ..artifacts.atomic import atomic_path
from ..artifacts.shards import Shard
from ..core.errors import DghcError


class ShardWriter:
    """Collects batches (numpy columns, with a ``row`` column) and writes each shard once all its rows are in.

    ``write(path, shard, rows)`` writes a shard's rows (the columns without ``row``) to a temporary path that is renamed
    to the shard's file when it returns: a killed run leaves finished shards and no half-written one.
    """

    def __init__(self, folder: Path, shards: list[Shard], write: Callable[[Path, Shard, dict[str, np.ndarray]], None],
                 stage: str) -> None:
        self.folder, self.shards, self.write, self.stage = folder, list(shards), write, stage
        # The batches not written yet, in the order they came: concatenated once, when the next shard is complete
        # (a concatenation per batch would copy a shard of B batches B^2 / 2 times over).
        self.pending: list[dict[str, np.ndarray]] = []
        self.pending_inside = 0  # how many pending rows belong to the next shard (rows before its stop)
        self.rows_received = 0
        self.shards_written = 0

    def add(self, batch: dict[str, np.ndarray]) -> None:
        self.rows_received += len(batch["row"])
        self.pending.append(batch)
        if self.shards_written < len(self.shards):
            self.pending_inside += int((batch["row"] < self.shards[self.shards_written].stop).sum())
        while self.shards_written < len(self.shards) and self._write_next():
            self.shards_written += 1

    def finish(self) -> None:
        extra = sum(len(batch["row"]) for batch in self.pending)
        if self.shards_written != len(self.shards) or extra:
            raise DghcError(f"{self.stage}: Ray returned {self.rows_received} rows, not the rows of the unfinished "
                            "shards; rerun the same command to resume")

    def _write_next(self) -> bool:
        """Write the next shard if all its rows are pending; whether it was written."""
        shard = self.shards[self.shards_written]
        if self.pending_inside < shard.stop - shard.start:
            return False
        pending = self.pending[0] if len(self.pending) == 1 else \
            {key: np.concatenate([batch[key] for batch in self.pending]) for key in self.pending[0]}
        inside = pending["row"] < shard.stop
        if not np.array_equal(pending["row"][inside], np.arange(shard.start, shard.stop)):
            raise DghcError(f"{self.stage}: Ray returned the rows of {shard.file} out of order or twice; rerun the "
                            "same command")
        with atomic_path(self.folder / shard.file) as tmp:
            self.write(tmp, shard, {key: value[inside] for key, value in pending.items() if key != "row"})
        rest = {key: value[~inside] for key, value in pending.items()}
        self.pending = [rest] if len(rest["row"]) else []
        following = self.shards[self.shards_written + 1].stop if self.shards_written + 1 < len(self.shards) else None
        self.pending_inside = 0 if following is None else int((rest["row"] < following).sum())
        return True
