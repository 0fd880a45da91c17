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
        self.pending: dict[str, np.ndarray] | None = None
        self.rows_received = 0
        self.shards_written = 0

    def add(self, batch: dict[str, np.ndarray]) -> None:
        self.rows_received += len(batch["row"])
        self.pending = batch if self.pending is None else \
            {key: np.concatenate([self.pending[key], batch[key]]) for key in self.pending}
        while self.shards_written < len(self.shards) and self._write_next():
            self.shards_written += 1

    def finish(self) -> None:
        extra = 0 if self.pending is None else len(self.pending["row"])
        if self.shards_written != len(self.shards) or extra:
            raise DghcError(f"{self.stage}: Ray returned {self.rows_received} rows, not the rows of the unfinished "
                            "shards; rerun the same command to resume")

    def _write_next(self) -> bool:
        """Write the next shard if all its rows are pending; whether it was written."""
        shard = self.shards[self.shards_written]
        rows = self.pending["row"] if self.pending is not None else np.zeros(0, dtype=np.int64)
        inside = rows < shard.stop
        if inside.sum() < shard.stop - shard.start:
            return False
        if not np.array_equal(rows[inside], np.arange(shard.start, shard.stop)):
            raise DghcError(f"{self.stage}: Ray returned the rows of {shard.file} out of order or twice; rerun the "
                            "same command")
        with atomic_path(self.folder / shard.file) as tmp:
            self.write(tmp, shard, {key: value[inside] for key, value in self.pending.items() if key != "row"})
        self.pending = {key: value[~inside] for key, value in self.pending.items()}
        return True
