"""ShardWriter, the driver's side of every Ray stage: rows in, one file per shard out (no Ray needed)."""
from __future__ import annotations

import numpy as np
import pytest

import dghc.pipeline.scale.shard_writer as shard_writer
from dghc.pipeline.artifacts.shards import Shard
from dghc.pipeline.core.errors import DghcError
from dghc.pipeline.scale.shard_writer import ShardWriter


def collecting_writer(folder, shards):
    written = []
    writer = ShardWriter(folder, shards, lambda path, shard, rows: written.append((shard.number, rows)), "extract")
    return writer, written


def batch(rows: range) -> dict[str, np.ndarray]:
    row = np.arange(rows.start, rows.stop)
    return {"row": row, "value": np.stack([row * 10, row * 10 + 1], axis=1).astype(np.float32)}


def test_a_shard_of_many_batches_is_concatenated_once(tmp_path, monkeypatch):
    """A shard of B one-row batches copies each row once or so, not the B^2 / 2 rows of a concatenation per batch."""
    copied = []

    class CountingNumpy:  # numpy as the writer's module sees it, its concatenations counted
        def __getattr__(self, name):
            return getattr(np, name)

        def concatenate(self, arrays, *args, **kwargs):
            out = np.concatenate(arrays, *args, **kwargs)
            copied.append(len(out))
            return out

    monkeypatch.setattr(shard_writer, "np", CountingNumpy())
    rows = 400
    writer, written = collecting_writer(tmp_path, [Shard(0, 0, rows, "features")])
    for row in range(rows):
        writer.add(batch(range(row, row + 1)))
    writer.finish()
    monkeypatch.undo()
    print(f"{rows} rows in {rows} batches: {sum(copied)} rows copied by {len(copied)} concatenations "
          f"(bound {3 * rows})")
    assert sum(copied) <= 3 * rows, f"{sum(copied)} rows copied to build a shard of {rows} rows"
    assert [number for number, _ in written] == [0]
    assert set(written[0][1]) == {"value"}  # the row column is the writer's, not the file's
    assert np.array_equal(written[0][1]["value"], batch(range(rows))["value"])


def test_a_batch_spanning_shards_is_split_and_each_shard_written_once_complete(tmp_path):
    shards = [Shard(0, 0, 4, "features"), Shard(1, 4, 8, "features"), Shard(2, 8, 10, "features")]
    writer, written = collecting_writer(tmp_path, shards)
    writer.add(batch(range(0, 3)))
    assert written == [] and writer.shards_written == 0  # row 3 is missing
    writer.add(batch(range(3, 9)))  # ends shard 0, all of shard 1, the first row of shard 2
    print("written after rows 0-8:", [(number, rows["value"][:, 0].tolist()) for number, rows in written])
    assert [number for number, _ in written] == [0, 1] and writer.shards_written == 2
    assert np.array_equal(written[0][1]["value"], batch(range(0, 4))["value"])
    assert np.array_equal(written[1][1]["value"], batch(range(4, 8))["value"])
    writer.add(batch(range(9, 10)))
    writer.finish()
    assert [number for number, _ in written] == [0, 1, 2] and (tmp_path / "features-00002.h5").is_file()
    assert np.array_equal(written[2][1]["value"], batch(range(8, 10))["value"])
    assert writer.rows_received == 10


def test_rows_out_of_order_twice_or_missing_are_refused(tmp_path):
    shards = [Shard(0, 0, 4, "features"), Shard(1, 4, 6, "features")]
    writer, _ = collecting_writer(tmp_path, shards)
    writer.add(batch(range(0, 2)))
    with pytest.raises(DghcError, match="out of order or twice"):
        writer.add({key: value[::-1] for key, value in batch(range(2, 4)).items()})
    writer, written = collecting_writer(tmp_path, shards)
    writer.add(batch(range(0, 4)))
    writer.add(batch(range(4, 5)))
    with pytest.raises(DghcError, match="Ray returned 5 rows, not the rows of the unfinished shards"):
        writer.finish()  # shard 1 lacks row 5
    writer, written = collecting_writer(tmp_path, shards)
    writer.add(batch(range(0, 7)))  # a row beyond the last shard
    with pytest.raises(DghcError, match="Ray returned 7 rows"):
        writer.finish()
    assert [number for number, _ in written] == [0, 1]
