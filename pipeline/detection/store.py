"""The detections HDF5 file: layout, writer (with a resumable partial file) and reader.

Layout (N images sorted by id, m regions each):

| dataset     | shape     | dtype        | meaning |
|-------------|-----------|--------------|---------|
| image_ids   | (N,)      | vlen utf-8   | post/image id, sorted |
| status      | (N,)      | uint8        | ImageStatus code; attribute ``names`` = STATUS_NAMES |
| reason      | (N,)      | vlen utf-8   | why missing or unreadable, "" when present |
| image_size  | (N, 2)    | int32        | width, height in pixels; (0, 0) when not present |
| boxes       | (N, m, 4) | float32      | x1, y1, x2, y2 in pixels; 0 in empty slots |
| scores      | (N, m)    | float32      | detector confidence; 0 in empty slots |
| valid       | (N, m)    | bool         | the slot holds a real region |
| class_names | (N, m)    | vlen utf-8   | class name or prompt phrase; "" in empty slots |
| sources     | (N, m)    | vlen utf-8   | "detector" or "grounding"; "" in empty slots |

Root attributes: ``m``, ``format_version``, ``fingerprint`` (JSON), ``fingerprint_sha256``, ``sources_run`` (JSON).

The final file is written in one go from complete arrays (``dghc.pipeline.artifacts.atomic``), with no timestamps,
so identical content gives identical bytes whether or not the run was interrupted and resumed. While the stage
runs, rows go into a work file (``dghc.pipeline.artifacts.partial``) laid out the same way. Every reader also takes
the folder of shards that ``--engine ray`` writes (``dghc.pipeline.artifacts.shards``).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from ..artifacts.atomic import atomic_path
from ..artifacts.fingerprint import canonical_json, sha256_json
from ..artifacts.hdf5 import attribute_text
from ..artifacts.shards import store_file
from ..core.errors import DghcError
from ..data.images import STATUS_NAMES, ImageStatus

FORMAT_VERSION = 1
ARRAY_NAMES = ("image_ids", "status", "reason", "image_size", "boxes", "scores", "valid", "class_names", "sources")
STRING_ARRAYS = frozenset({"image_ids", "reason", "class_names", "sources"})


@dataclass
class Region:
    """One kept region, as a reader sees it."""

    slot: int
    source: str
    class_name: str
    score: float
    box: tuple[float, float, float, float]


@dataclass
class Detections:
    """The arrays of a detections file plus its attributes; ``index`` maps an image id to its row."""

    image_ids: list[str]
    status: np.ndarray  # (N,) uint8
    reason: list[str]
    image_size: np.ndarray  # (N, 2) int32
    boxes: np.ndarray  # (N, m, 4) float32
    scores: np.ndarray  # (N, m) float32
    valid: np.ndarray  # (N, m) bool
    class_names: np.ndarray  # (N, m) object (str)
    sources: np.ndarray  # (N, m) object (str)
    m: int
    fingerprint: dict[str, Any] = field(default_factory=dict)
    fingerprint_sha256: str = ""
    sources_run: dict[str, Any] = field(default_factory=dict)
    index: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.index:
            self.index = {image_id: row for row, image_id in enumerate(self.image_ids)}

    def __len__(self) -> int:
        return len(self.image_ids)

    def status_of(self, image_id: str) -> ImageStatus:
        return ImageStatus(int(self.status[self.index[image_id]]))

    def regions(self, image_id: str) -> list[Region]:
        row = self.index[image_id]
        return [Region(slot, str(self.sources[row, slot]), str(self.class_names[row, slot]),
                       float(self.scores[row, slot]), tuple(float(v) for v in self.boxes[row, slot]))
                for slot in range(self.m) if self.valid[row, slot]]


def empty_arrays(image_ids: Sequence[str], m: int) -> dict[str, np.ndarray]:
    n = len(image_ids)
    return {
        "image_ids": np.array(list(image_ids), dtype=object).reshape(n),
        "status": np.full((n,), int(ImageStatus.MISSING), np.uint8),
        "reason": np.array([""] * n, dtype=object).reshape(n),
        "image_size": np.zeros((n, 2), np.int32),
        "boxes": np.zeros((n, m, 4), np.float32),
        "scores": np.zeros((n, m), np.float32),
        "valid": np.zeros((n, m), bool),
        "class_names": np.array([""] * (n * m), dtype=object).reshape(n, m),
        "sources": np.array([""] * (n * m), dtype=object).reshape(n, m),
    }


def _string_dtype() -> Any:
    import h5py

    return h5py.string_dtype("utf-8")


def _create(handle: Any, name: str, array: np.ndarray) -> None:
    dtype = _string_dtype() if name in STRING_ARRAYS else array.dtype
    dataset = handle.create_dataset(name, shape=array.shape, dtype=dtype, track_times=False)
    if array.size:
        dataset[...] = array
    if name == "status":
        dataset.attrs["names"] = np.array(STATUS_NAMES, dtype=object).astype(_string_dtype())


def write_detections(path: str | Path, arrays: dict[str, np.ndarray], m: int, fingerprint: dict[str, Any],
                     sources_run: dict[str, Any]) -> None:
    """Write the final file atomically (temporary file in the same folder, then rename)."""
    import h5py

    with atomic_path(path) as tmp, h5py.File(tmp, "w") as handle:
        for name in ARRAY_NAMES:
            _create(handle, name, arrays[name])
        handle.attrs["format_version"] = np.int64(FORMAT_VERSION)
        handle.attrs["m"] = np.int64(m)
        handle.attrs["fingerprint"] = canonical_json(fingerprint)
        handle.attrs["fingerprint_sha256"] = sha256_json(fingerprint)
        handle.attrs["sources_run"] = canonical_json(sources_run)


def _read_strings(dataset: Any) -> np.ndarray:
    return np.asarray(dataset.asstr()[()], dtype=object)


def read_fingerprint_sha256(path: str | Path) -> str | None:
    """The fingerprint hash of an existing file, or None when it is absent or unreadable."""
    import h5py

    try:
        with h5py.File(store_file(path), "r") as handle:
            value = handle.attrs.get("fingerprint_sha256")
            return value.decode() if isinstance(value, bytes) else (str(value) if value is not None else None)
    except (OSError, KeyError, DghcError):
        return None


def read_fingerprint(path: str | Path | None) -> dict[str, Any] | None:
    """The settings fingerprint of a detections file (None when there is no such file)."""
    import h5py

    if not path or not Path(path).exists():
        return None
    try:
        with h5py.File(store_file(path), "r") as handle:
            raw = handle.attrs.get("fingerprint")
            fingerprint = json.loads(attribute_text(raw)) if raw is not None else None
        if fingerprint is not None and not isinstance(fingerprint, dict):
            raise ValueError("it is not a JSON object")
        return fingerprint
    except (OSError, ValueError, TypeError) as err:  # UnicodeDecodeError is a ValueError
        raise DghcError(f"{path}: cannot read its fingerprint ({err}); rerun `dghc detect`") from None


def load_detections(path: str | Path) -> Detections:
    """Read a detections file; a missing, corrupt or foreign file is a DghcError naming the file and the fix."""
    import h5py

    path = Path(path)
    if not path.exists():
        raise DghcError(f"{path}: detections file not found (run `dghc detect` first)")
    try:
        with h5py.File(store_file(path), "r") as handle:
            missing = [name for name in ARRAY_NAMES if name not in handle]
            if missing or "fingerprint" not in handle.attrs:
                raise DghcError(f"{path}: not a detections file (missing {', '.join(missing) or 'attributes'}); "
                                "rerun `dghc detect`")
            arrays = read_arrays(handle)
            attrs = {key: handle.attrs[key] for key in handle.attrs}
    except (OSError, ValueError, TypeError) as err:  # unreadable bytes, or datasets of another kind than text
        raise DghcError(f"{path}: cannot read the detections file ({type(err).__name__}: {str(err)[:150]}); delete it "
                        "and rerun `dghc detect`") from None

    try:
        return _detections_from(arrays, attrs)
    except (KeyError, ValueError, TypeError, UnicodeDecodeError) as err:
        raise DghcError(f"{path}: a damaged detections file ({type(err).__name__}: {str(err)[:150]}); rerun "
                        "`dghc detect`") from None


def _detections_from(arrays: dict[str, np.ndarray], attrs: dict[str, Any]) -> Detections:
    """The arrays and attributes of a file, each checked for its kind and shape (or an exception)."""
    m = int(attrs["m"])
    n = len(arrays["image_ids"])
    shapes = {"status": (n,), "reason": (n,), "image_size": (n, 2), "boxes": (n, m, 4), "scores": (n, m),
              "valid": (n, m), "class_names": (n, m), "sources": (n, m)}
    for name, shape in shapes.items():
        if tuple(arrays[name].shape) != shape:
            raise ValueError(f"{name} has shape {tuple(arrays[name].shape)}, not {shape}")
    fingerprint = json.loads(attribute_text(attrs["fingerprint"]))
    sources_run = json.loads(attribute_text(attrs.get("sources_run", "{}")))
    if not isinstance(fingerprint, dict) or not isinstance(sources_run, dict):
        raise ValueError("the fingerprint and sources_run must be JSON objects")
    return Detections(
        image_ids=[str(v) for v in arrays["image_ids"].tolist()],
        status=arrays["status"].astype(np.uint8),
        reason=[str(v) for v in arrays["reason"].tolist()],
        image_size=arrays["image_size"].astype(np.int32),
        boxes=arrays["boxes"].astype(np.float32),
        scores=arrays["scores"].astype(np.float32),
        valid=arrays["valid"].astype(bool),
        class_names=arrays["class_names"],
        sources=arrays["sources"],
        m=m,
        fingerprint=fingerprint,
        fingerprint_sha256=attribute_text(attrs["fingerprint_sha256"]),
        sources_run=sources_run,
    )


def create_work_file(path: Path, image_ids: Sequence[str], m: int) -> None:
    """The work file of a run (see ``dghc.pipeline.artifacts.partial``): every dataset at full size, empty rows."""
    import h5py

    with h5py.File(path, "w") as handle:
        for name, array in empty_arrays(image_ids, m).items():
            _create(handle, name, array)


def check_work_file(path: Path, image_ids: Sequence[str], m: int, rows_done: int) -> None:
    """Raise when the work file does not hold ``rows_done`` complete rows for these ids (a crash may cut it)."""
    import h5py

    with h5py.File(path, "r") as handle:
        if handle["boxes"].shape[:2] != (len(image_ids), m) or rows_done > len(image_ids):
            raise ValueError("shape differs")
        for name in ARRAY_NAMES:  # a file cut short by a crash fails here, not at the end
            handle[name][()]


def write_rows(handle: Any, start: int, rows: dict[str, np.ndarray]) -> None:
    """Write complete rows from ``start`` on into an open work file and flush them to disk."""
    count = len(rows["status"])
    for name, array in rows.items():
        if name != "image_ids":  # written at creation
            handle[name][start:start + count] = array
    handle.flush()


def read_arrays(handle: Any) -> dict[str, np.ndarray]:
    return {name: (_read_strings(handle[name]) if name in STRING_ARRAYS else handle[name][()])
            for name in ARRAY_NAMES}


def iter_batches(total: int, batch_size: int, start: int = 0) -> Iterator[tuple[int, int]]:
    """(start, end) row ranges of fixed batches; resuming starts at a batch boundary, so batches repeat exactly."""
    first = (start // batch_size) * batch_size
    for begin in range(first, total, batch_size):
        yield max(begin, start), min(begin + batch_size, total)
