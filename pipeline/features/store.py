"""The features HDF5 file: its layout, the writer of an extract run's work file (create, write rows, check,
summarise), and ``FeatureStore``, its reader.

Training reads cached CLIP vectors with ``FeatureStore(path).batch(image_ids)``.

A features file small enough (``memory_limit`` bytes, default 2 GiB) is loaded into memory once; a larger
one stays open and each batch is one sorted, de-duplicated fancy-index read. Never a file open per item.
Every reader also takes the folder of shards that ``--engine ray`` writes (``dghc.pipeline.artifacts.shards``).
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from ..artifacts.fingerprint import canonical_json, sha256_json
from ..artifacts.hdf5 import attribute_text
from ..artifacts.shards import store_bytes, store_file
from ..core.errors import DghcError
from ..data.images import STATUS_NAMES
from .fingerprint import require_match

DEFAULT_MEMORY_LIMIT = 2 * 1024**3
# Dataset names of the features.h5 contract.
IMAGE_IDS, STATUS = "image_ids", "status"
IMAGE_VECTORS, REGION_VECTORS = "image_vectors", "region_vectors"
IMAGE_MASK, REGION_MASK = "image_mask", "region_mask"
REQUIRED = (IMAGE_IDS, STATUS, IMAGE_VECTORS, REGION_VECTORS, IMAGE_MASK, REGION_MASK)
UNTRAINED_NOTE = ("UNTRAINED CLIP: the vision model has random weights (built from a config with a fixed seed), "
                  "so these vectors are a fixed random function of the pixels, not learned visual features")


def _checked_attributes(handle: Any) -> tuple[int, int, dict[str, Any], str]:
    """dim, m, fingerprint and its sha256 from a file's attributes, each of the right kind (or an exception)."""
    dim, m = int(handle.attrs["dim"]), int(handle.attrs["m"])
    if dim < 1 or m < 0:
        raise ValueError(f"dim {dim} and m {m} cannot be")
    fingerprint = json.loads(attribute_text(handle.attrs["fingerprint"]))
    if not isinstance(fingerprint, dict):
        raise ValueError("the fingerprint is not a JSON object")
    return dim, m, fingerprint, attribute_text(handle.attrs["fingerprint_sha256"])


def _check_shapes(handle: Any, n: int, m: int, dim: int) -> None:
    expected = {STATUS: (n,), IMAGE_VECTORS: (n, dim), REGION_VECTORS: (n, m, dim), IMAGE_MASK: (n,),
                REGION_MASK: (n, m)}
    for name, shape in expected.items():
        if tuple(handle[name].shape) != shape:
            raise ValueError(f"{name} has shape {tuple(handle[name].shape)}, not {shape}")


class FeatureStore:
    """Vectors and masks of the images of a features file, by image id.

    ``batch(ids)`` gives ``vectors`` float32 (B, 1+m, dim) and ``mask`` bool (B, 1+m): slot 0 is the whole image,
    slots 1..m its regions; an id the file does not hold gives zeros and mask False.
    """

    def __init__(self, path: str | Path, in_memory: bool | None = None,
                 memory_limit: int = DEFAULT_MEMORY_LIMIT) -> None:
        import h5py

        self.path = store_file(path)
        if not self.path.is_file():
            raise DghcError(f"{self.path}: features file not found (run `dghc extract` first)")
        try:
            handle = h5py.File(self.path, "r")
        except OSError as err:
            raise DghcError(f"{self.path}: not a readable HDF5 file ({err}); rerun `dghc extract`") from None
        missing = [name for name in REQUIRED if name not in handle]
        if missing or "fingerprint" not in handle.attrs:
            handle.close()
            what = ", ".join(missing) if missing else "the fingerprint attribute"
            raise DghcError(f"{self.path}: not a dghc features file (lacks {what}); rerun `dghc extract`")
        try:
            self.dim, self.m, self.fingerprint, self.fingerprint_sha256 = _checked_attributes(handle)
            self.image_ids: list[str] = handle[IMAGE_IDS].asstr()[()].tolist()
            _check_shapes(handle, len(self.image_ids), self.m, self.dim)
        except (KeyError, ValueError, TypeError, UnicodeDecodeError, OSError) as err:
            handle.close()
            raise DghcError(f"{self.path}: a damaged features file ({type(err).__name__}: {str(err)[:150]}); "
                            "rerun `dghc extract`") from None
        self.index: dict[str, int] = {image_id: row for row, image_id in enumerate(self.image_ids)}
        self.status = handle[STATUS][()]
        if in_memory is None:
            in_memory = store_bytes(path) <= memory_limit
        self.in_memory = bool(in_memory)
        self._handle = None
        self._pid = os.getpid()
        if self.in_memory:
            # One (N + 1, 1 + m, dim) array in the stored dtype; the extra last row is the zero row of unknown ids.
            n = len(self.image_ids)
            vectors = np.zeros((n + 1, 1 + self.m, self.dim), dtype=handle[IMAGE_VECTORS].dtype)
            vectors[:n, 0] = handle[IMAGE_VECTORS][()]
            vectors[:n, 1:] = handle[REGION_VECTORS][()]
            mask = np.zeros((n + 1, 1 + self.m), dtype=bool)
            mask[:n, 0] = handle[IMAGE_MASK][()]
            mask[:n, 1:] = handle[REGION_MASK][()]
            self._vectors, self._mask = vectors, mask
            handle.close()
        else:
            self._handle = handle

    def __len__(self) -> int:
        return len(self.image_ids)

    def __contains__(self, image_id: object) -> bool:
        return image_id in self.index

    @property
    def untrained(self) -> bool:
        return bool(self.fingerprint.get("untrained"))

    def require(self, expected: Mapping[str, Any]) -> None:
        """Raise ``FingerprintMismatch`` naming each key of ``expected`` whose value the file does not match."""
        require_match(expected, self.fingerprint, self.path)

    def batch(self, image_ids: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """``(vectors float32 (B, 1+m, dim), mask bool (B, 1+m))`` in the order of ``image_ids``."""
        if self.in_memory:
            # numpy, single-threaded: a 16-row gather must not wake (and wait for) torch's thread pool.
            absent = len(self.image_ids)
            rows = np.fromiter((self.index.get(image_id, absent) for image_id in image_ids), dtype=np.int64,
                               count=len(image_ids))
            vectors = self._vectors.take(rows, axis=0).astype(np.float32)
            return torch.from_numpy(vectors), torch.from_numpy(self._mask.take(rows, axis=0))
        return self._read_from_file(image_ids)

    def _read_from_file(self, image_ids: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        handle = self._file()
        size = len(image_ids)
        vectors = np.zeros((size, 1 + self.m, self.dim), dtype=np.float32)
        mask = np.zeros((size, 1 + self.m), dtype=bool)
        rows = np.array([self.index.get(image_id, -1) for image_id in image_ids], dtype=np.int64)
        known = rows >= 0
        if known.any():
            # h5py wants increasing, unique indices: read those once, then spread them back to the batch order.
            unique, inverse = np.unique(rows[known], return_inverse=True)
            vectors[known, 0] = handle[IMAGE_VECTORS][unique][inverse]
            vectors[known, 1:] = handle[REGION_VECTORS][unique][inverse]
            mask[known, 0] = handle[IMAGE_MASK][unique][inverse]
            mask[known, 1:] = handle[REGION_MASK][unique][inverse]
        return torch.from_numpy(vectors), torch.from_numpy(mask)

    def _file(self):
        # An HDF5 handle must not cross a fork (DataLoader workers): reopen in a new process.
        import h5py

        if self._handle is None or self._pid != os.getpid():
            self._handle = h5py.File(self.path, "r")
            self._pid = os.getpid()
        return self._handle

    def close(self) -> None:
        if self._handle is not None and self._pid == os.getpid():
            self._handle.close()
        self._handle = None

    def __enter__(self) -> "FeatureStore":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_handle"] = None  # reopened on first use in the other process
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)


# ------------------------------------------------------------------------------------------------ writing


def _dataset_plist():
    """Contiguous storage allocated when the file is made: later writes change data only, never the layout,
    which keeps a resumed file byte-identical to one written in a single run."""
    import h5py

    plist = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
    plist.set_alloc_time(h5py.h5d.ALLOC_TIME_EARLY)
    return plist


def create_features_file(path: Path, ids: Sequence[str], m: int, dim: int, dtype: str,
                   fingerprint: dict[str, Any]) -> None:
    """The work file of an extract run: every dataset allocated at full size, the attributes written."""
    import h5py
    import transformers

    n = len(ids)
    with h5py.File(path, "w") as handle:
        handle.create_dataset(IMAGE_IDS, data=np.array(ids, dtype=object),
                              dtype=h5py.string_dtype("utf-8"), track_times=False)
        specs = [(STATUS, (n,), np.uint8), (IMAGE_VECTORS, (n, dim), dtype),
                 (REGION_VECTORS, (n, m, dim), dtype), (IMAGE_MASK, (n,), bool),
                 (REGION_MASK, (n, m), bool)]
        for name, shape, kind in specs:
            handle.create_dataset(name, shape=shape, dtype=kind, dcpl=_dataset_plist(), track_times=False)
        handle[STATUS].attrs["names"] = np.array(STATUS_NAMES, dtype=object).astype(h5py.string_dtype("utf-8"))
        handle.attrs["dim"] = np.int64(dim)
        handle.attrs["m"] = np.int64(m)
        handle.attrs["fingerprint"] = canonical_json(fingerprint)
        handle.attrs["fingerprint_sha256"] = sha256_json(fingerprint)
        handle.attrs["untrained"] = bool(fingerprint["untrained"])
        if fingerprint["untrained"]:
            handle.attrs["note"] = UNTRAINED_NOTE
        handle.attrs["software"] = json.dumps({"torch": torch.__version__, "transformers": transformers.__version__,
                                               "h5py": h5py.__version__}, sort_keys=True)


def open_work_file(path: Path) -> Any:
    """The work file, open for writing rows (an h5py File: use it in a ``with``)."""
    import h5py

    return h5py.File(path, "r+")


def write_rows(handle: Any, first: int, status: np.ndarray, vectors: np.ndarray, slots: np.ndarray) -> None:
    """Write complete rows from ``first`` on into an open work file and flush them to disk. ``vectors``: (rows,
    1 + m, dim) as stored, the whole image first; ``slots``: (rows, 1 + m), which of them exist."""
    last = first + len(status)
    handle[STATUS][first:last] = status
    handle[IMAGE_VECTORS][first:last] = vectors[:, 0]
    handle[REGION_VECTORS][first:last] = vectors[:, 1:]
    handle[IMAGE_MASK][first:last] = slots[:, 0]
    handle[REGION_MASK][first:last] = slots[:, 1:]
    handle.flush()


def check_work_file(path: Path, fingerprint_sha256: str, rows: int, rows_done: int) -> None:
    """Raise when the work file is not one of these settings (or does not open: a crash may cut it)."""
    import h5py

    with h5py.File(path, "r") as handle:
        if handle.attrs["fingerprint_sha256"] != fingerprint_sha256 or len(handle[STATUS]) != rows \
                or rows_done > rows:
            raise ValueError("another file")


def is_up_to_date(path: Path, fingerprint_sha256: str, ids: Sequence[str]) -> bool:
    """Whether ``path`` is a finished features file of these settings and these image ids, in this order."""
    import h5py

    try:
        path = store_file(path)
        if not path.is_file():
            return False
        with h5py.File(path, "r") as handle:
            return (handle.attrs.get("fingerprint_sha256") == fingerprint_sha256
                    and handle[IMAGE_IDS].asstr()[()].tolist() == list(ids))
    except (OSError, KeyError, DghcError):
        return False


def read_summary(path: Path) -> tuple[np.ndarray, int, int, int]:
    """A finished file's status per image, its number of regions, dim and m (for the stage's summary)."""
    import h5py

    with h5py.File(store_file(path), "r") as handle:
        return handle[STATUS][()], int(handle[REGION_MASK][()].sum()), int(handle.attrs["dim"]), int(handle.attrs["m"])
