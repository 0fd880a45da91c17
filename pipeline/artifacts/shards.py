"""A sharded HDF5 store: a folder of shard files plus ``index.h5``, read as one file by the usual readers.

``dghc detect|extract --engine ray`` write one shard file per ``shard_size`` rows (rows in the order of the
sorted image ids), each a complete file of the stage's format, renamed into place when written. When every shard
is there, ``index.h5`` is written: its numeric datasets are HDF5 virtual datasets that concatenate the shards'
(no copy), its text datasets (image ids, reasons) are copied, and its attributes are the shards' plus the list
of shards. The stage readers open a store through ``store_file``: a folder means its index, after checking
that every shard it names is there (a virtual dataset reads a missing source as fill values, silently).
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from ..core.errors import DghcError
from .atomic import atomic_path

INDEX = "index.h5"
SHARDS_ATTRIBUTE = "shards"  # JSON list of {"file", "rows", "counts"} in row order


@dataclass(frozen=True)
class Shard:
    """Rows ``start:stop`` of the stage's rows (sorted image ids, or input posts), written to ``file``."""

    number: int
    start: int
    stop: int
    kind: str  # what the stage writes, the files' prefix: detections, features, predictions
    suffix: str = ".h5"  # the format of the shard files: .h5 (detect, extract), .parquet (predict)

    @property
    def file(self) -> str:
        return f"{self.kind}-{self.number:05d}{self.suffix}"


def plan_shards(rows: int, shard_size: int, batch_size: int, kind: str, suffix: str = ".h5") -> list[Shard]:
    """Consecutive shards covering ``rows`` rows, each ``shard_size`` rows rounded up to whole batches of
    ``batch_size`` (the last one shorter): a shard then holds whole batches of the local engine's."""
    if shard_size < 1 or batch_size < 1:
        raise ValueError("shard_size and batch_size must be at least 1")
    size = -(-shard_size // batch_size) * batch_size
    return [Shard(number, start, min(start + size, rows), kind, suffix)
            for number, start in enumerate(range(0, rows, size))]


def check_store_folder(folder: Path, kind: str, index: str = INDEX) -> None:
    """A sharded output is a folder of its own: refuse a path that is a file, is named like one, or holds other
    files (a rerun deletes the shard files it does not plan; another stage's shards are someone's data)."""
    if folder.suffix in (".h5", ".hdf5", ".jsonl", ".json", ".parquet") or folder.is_file():
        raise DghcError(f"--engine ray writes a folder of shards plus {index}, and {folder} is "
                        f"{'a file' if folder.is_file() else 'named like a file'}: give a folder, e.g. "
                        f"--out {folder.with_suffix('')}")
    if folder.is_dir():
        foreign = [item.name for item in folder.iterdir()
                   if not (item.name == index or item.name.startswith((f"{kind}-", f".{kind}-", f".{index}.")))]
        if foreign:
            raise DghcError(f"{folder} holds files that are not {kind} shards ({', '.join(sorted(foreign)[:3])}): "
                            f"give an empty or new folder for the sharded {kind}")


def refuse_folder(out: Path) -> None:
    """The local engine writes one file: refuse an ``--out`` that is a folder (a sharded store) before any work."""
    if out.is_dir():
        raise DghcError(f"--out {out} is a folder (the sharded output of --engine ray?): the local engine writes one "
                        "file; give a file name, or add --engine ray")


def store_file(path: str | Path) -> Path:
    """The HDF5 file to open for ``path``: the path itself, or a sharded folder's index once its shards are checked."""
    import h5py

    path = Path(path)
    if path.is_file() and path.name == INDEX:  # the index named directly: its shards are checked all the same
        path = path.parent
    if not path.is_dir():
        return path
    index = path / INDEX
    if not index.is_file():
        shards = sorted(path.glob("*-[0-9][0-9][0-9][0-9][0-9].h5"))
        raise DghcError(f"{path}: a sharded store without its {INDEX} ({len(shards)} shard files): the run that "
                        "writes it has not finished; rerun the same command to resume it")
    try:
        with h5py.File(index, "r") as handle:
            listed = json.loads(handle.attrs[SHARDS_ATTRIBUTE])
    except (OSError, KeyError, ValueError, TypeError) as err:
        raise DghcError(f"{index}: not a readable shard index ({type(err).__name__}); delete {path} and rerun the "
                        "command that wrote it") from None
    missing = [entry["file"] for entry in listed if not (path / entry["file"]).is_file()]
    if missing:
        raise DghcError(f"{path}: {len(missing)} of its {len(listed)} shards are missing ({', '.join(missing[:3])}"
                        f"{', ...' if len(missing) > 3 else ''}); rerun the command that wrote it to recompute them")
    return index


def store_bytes(path: str | Path) -> int:
    """Bytes on disk of a store: the file, or a sharded folder's files together."""
    path = Path(path)
    if path.is_dir():
        return sum(item.stat().st_size for item in path.iterdir() if item.is_file())
    return path.stat().st_size


def shard_summaries(path: str | Path) -> list[dict[str, Any]]:
    """The index's list of shards (file, rows, counts per status); empty for a single file."""
    import h5py

    path = Path(path)
    if not path.is_dir():
        return []
    with h5py.File(store_file(path), "r") as handle:
        return json.loads(handle.attrs[SHARDS_ATTRIBUTE])


def finished_shards(folder: Path, shards: Sequence[Shard], is_finished: Callable[[Path, Shard], bool],
                    index: str = INDEX) -> set[int]:
    """Numbers of the shards already written by an earlier run with the same settings (``is_finished`` checks a
    file); shard files that are not part of this plan, and leftover temporary files, are deleted."""
    planned = {shard.file for shard in shards}
    kind = shards[0].kind
    # Only files this module names are touched: the stage's shards, their temporary files and the index (a stale
    # one would describe the old shards).
    for item in [*folder.glob(f"{kind}-*"), *folder.glob(f".{kind}-*.tmp"), *folder.glob(f".{index}.*.tmp"),
                 folder / index]:
        if item.is_file() and item.name not in planned:
            item.unlink()
    done = set()
    for shard in shards:
        path = folder / shard.file
        if path.is_file():
            try:
                ok = is_finished(path, shard)
            except (OSError, KeyError, ValueError, TypeError, DghcError):  # a damaged shard: recomputed
                ok = False
            if ok:
                done.add(shard.number)
            else:
                path.unlink()
    return done


def unfinished_shards(folder: Path, shards: Sequence[Shard], is_finished: Callable[[Path, Shard], bool], *,
                      force: bool, stage: str, unit: str, note: Callable[[str], None],
                      index: str = INDEX) -> tuple[list[Shard], int]:
    """The shards to compute (all of them with ``force``) and how many rows the finished ones hold; says what was
    skipped in one line (``finished_shards`` deletes what this plan does not keep)."""
    done = finished_shards(folder, shards, (lambda *_: False) if force else is_finished, index=index)
    resumed = sum(shard.stop - shard.start for shard in shards if shard.number in done)
    if done:
        note(f"{stage}: {len(done)} of {len(shards)} shards were finished by an earlier run ({resumed} {unit}): "
             "skipped")
    return [shard for shard in shards if shard.number not in done], resumed


def write_index(folder: Path, shards: Sequence[Shard], counts: Sequence[dict[str, int]],
                text_datasets: Sequence[str]) -> Path:
    """Write ``folder/index.h5`` over the finished shard files, atomically (see the module's docstring).

    Every dataset is concatenated along its first axis, in shard order; ``text_datasets`` are copied, the others
    virtual. Root attributes are the first shard's; dataset attributes are copied too.
    """
    import h5py

    files = [folder / shard.file for shard in shards]
    entries = [{"file": shard.file, "rows": shard.stop - shard.start, "counts": dict(count)}
               for shard, count in zip(shards, counts)]
    with h5py.File(files[0], "r") as first:
        names = list(first.keys())
        attributes = {key: first.attrs[key] for key in first.attrs}
        kinds = {name: (first[name].dtype, first[name].shape[1:], dict(first[name].attrs)) for name in names}
    rows = sum(entry["rows"] for entry in entries)
    index = folder / INDEX
    with atomic_path(index) as tmp, h5py.File(tmp, "w") as handle:
        for name in names:
            dtype, tail, dataset_attributes = kinds[name]
            if name in text_datasets:
                parts = []
                for path in files:
                    with h5py.File(path, "r") as shard_file:
                        parts.append(shard_file[name].asstr()[()])
                dataset = handle.create_dataset(name, data=np.concatenate(parts).astype(object), dtype=dtype,
                                                track_times=False)
            else:
                layout = h5py.VirtualLayout(shape=(rows, *tail), dtype=dtype)
                for path, shard, entry in zip(files, shards, entries):
                    # A path relative to the index: HDF5 looks for it beside the index, so the folder can move.
                    layout[shard.start:shard.stop] = h5py.VirtualSource(os.path.relpath(path, folder), name,
                                                                        shape=(entry["rows"], *tail), dtype=dtype)
                dataset = handle.create_virtual_dataset(name, layout)
            for key, value in dataset_attributes.items():
                dataset.attrs[key] = value
        for key, value in attributes.items():
            handle.attrs[key] = value
        handle.attrs[SHARDS_ATTRIBUTE] = json.dumps(entries)
    return index
