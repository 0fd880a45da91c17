"""The extract stage: CLIP vectors of every post's image and of its detected regions, streamed into HDF5.

For each image id of the given CoNLL files (sorted): the whole image and its m region crops (boxes from the
detect stage's file) are decoded and preprocessed by DataLoader workers, encoded by the CLIP vision tower under
``torch.inference_mode`` in the main process, and written batch by batch into ``<out>.partial`` (memory bounded
by the batch). A progress file beside it records the rows done, so an interrupted run resumes where it stopped
when its settings are the same, and starts over otherwise. The finished file is renamed into place; identical
inputs give a byte-identical file.
"""
from __future__ import annotations

import json
import math
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np
import torch

from pipeline.core.errors import DghcError
from pipeline.features import store as layout
from pipeline.features.clip_encoder import UNTRAINED_NAME, ClipEncoder, load_clip
from pipeline.features.fingerprint import DTYPES, build_fingerprint
from pipeline.features.preprocess import aspect_box, as_preprocessor
from pipeline.artifacts.fingerprint import canonical_json, sha256_json
from pipeline.artifacts.partial import PartialOutput
from pipeline.data.images import STATUS_NAMES, ImageStatus, load_image

UNTRAINED_NOTE = ("UNTRAINED CLIP: the vision model has random weights (built from a config with a fixed seed), "
                  "so these vectors are a fixed random function of the pixels, not learned visual features")


@dataclass
class ExtractConfig:
    data: list[Path]  # CoNLL files: their image ids are the rows of the output
    images: Path | None = None  # folder of <id>.jpg; None: images/ beside each CoNLL file
    detections: Path = Path("cache/detections.h5")
    out: Path = Path("cache/features.h5")
    model: str = UNTRAINED_NAME
    output: str = "projected"  # pooled | projected
    dtype: str = "float16"  # float16 | float32 (stored)
    batch_size: int = 32  # images per batch (each with up to m crops)
    # DataLoader processes that decode and preprocess; 0: the main process, on a pool of threads between two
    # forwards; None: auto (see default_num_workers)
    num_workers: int | None = None
    crop_padding: float = 0.0  # context around each box, as a fraction of its width/height on each side
    min_crop_size: int = 2  # a clamped box narrower or lower than this many pixels leaves its slot empty
    max_aspect: float = 4.0  # longer images/crops are center-trimmed to this aspect ratio before resizing
    device: str = "auto"
    seed: int = 0  # of an untrained model
    force: bool = False  # recompute even when the output is up to date


@dataclass
class ExtractResult:
    path: Path
    images: int
    present: int
    missing: int
    unreadable: int
    regions: int  # region slots encoded
    empty_boxes: int  # detected boxes left out in this run because degenerate after clamping
    rows_resumed: int  # rows taken from an interrupted run
    dim: int
    m: int
    untrained: bool
    fingerprint: dict[str, Any] = field(default_factory=dict)
    up_to_date: bool = False  # the output already held these settings and images: nothing recomputed


# --------------------------------------------------------------------------------------------- crops


def crop_box(box: Sequence[float], width: int, height: int, padding: float = 0.0,
             min_size: int = 2) -> tuple[int, int, int, int] | None:
    """Integer pixel box to crop for a detected ``(x1, y1, x2, y2)``: padded, clamped to the image, or None.

    None when the box is not finite, empty, or narrower/lower than ``min_size`` once clamped.
    """
    x1, y1, x2, y2 = (float(v) for v in box)
    if not all(math.isfinite(v) for v in (x1, y1, x2, y2)) or x2 <= x1 or y2 <= y1:
        return None
    pad_x, pad_y = (x2 - x1) * padding, (y2 - y1) * padding
    left = max(0, math.floor(x1 - pad_x + 0.5))
    top = max(0, math.floor(y1 - pad_y + 0.5))
    right = min(width, math.floor(x2 + pad_x + 0.5))
    bottom = min(height, math.floor(y2 + pad_y + 0.5))
    if right - left < max(min_size, 1) or bottom - top < max(min_size, 1):
        return None
    return left, top, right, bottom


def limit_aspect(image, max_aspect: float):
    """Center-trim a very long PIL image to ``max_aspect`` (see ``preprocess.aspect_box``)."""
    box = aspect_box((0, 0, image.width, image.height), max_aspect)
    return image if box == (0, 0, image.width, image.height) else image.crop(box)


class CropDataset(torch.utils.data.Dataset):
    """Item i: the preprocessed whole image of row ``rows[i]`` and its valid crops, with a slot mask.

    ``processor`` is the model's image processor (or a preprocessor made from it): the fast path of
    ``preprocess.make_preprocessor`` when it reproduces the processor. The image is decoded once; the crops are
    boxes into it, each trimmed to ``max_aspect``.
    """

    def __init__(self, rows: Sequence[int], paths: Sequence[Path | None], boxes: np.ndarray, valid: np.ndarray,
                 processor: Any, image_size: int, padding: float, min_size: int, max_aspect: float) -> None:
        self.rows = list(rows)
        self.paths = list(paths)
        self.boxes = boxes
        self.valid = valid
        self.preprocess = as_preprocessor(processor)
        self.image_size = image_size
        self.padding = padding
        self.min_size = min_size
        self.max_aspect = max_aspect

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict[str, Any]:
        row = self.rows[i]
        m = self.boxes.shape[1]
        slots = torch.zeros(1 + m, dtype=torch.bool)
        loaded = load_image(self.paths[i])
        empty_boxes = 0
        regions = []
        if loaded.status == ImageStatus.PRESENT:
            image = loaded.image
            regions.append(aspect_box((0, 0, image.width, image.height), self.max_aspect))
            slots[0] = True
            for slot in range(m):
                if not self.valid[i, slot]:
                    continue
                box = crop_box(self.boxes[i, slot], image.width, image.height, self.padding, self.min_size)
                if box is None:
                    empty_boxes += 1
                    continue
                regions.append(aspect_box(box, self.max_aspect))
                slots[1 + slot] = True
            pixels = self.preprocess(image, regions)
        else:
            pixels = torch.zeros(0, 3, self.image_size, self.image_size)
        width, height = loaded.size
        return {"row": row, "status": int(loaded.status), "size": (width, height), "pixels": pixels,
                "slots": slots, "empty_boxes": empty_boxes}


def collate_items(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack a batch: pixels of all valid slots in row-major slot order, which ``slots[mask]`` follows too."""
    return {"rows": [item["row"] for item in items],
            "status": torch.tensor([item["status"] for item in items], dtype=torch.uint8),
            "sizes": torch.tensor([item["size"] for item in items], dtype=torch.int64),
            "pixels": _concatenate(item["pixels"] for item in items),
            "slots": torch.stack([item["slots"] for item in items]),
            "empty_boxes": sum(item["empty_boxes"] for item in items)}


def _concatenate(parts: Iterable[torch.Tensor]) -> torch.Tensor:
    """``torch.cat``; in a DataLoader worker straight into shared memory, as torch's default collate does: the
    batch (2.4 MB of float32 pixels per image) is then not copied once more on its way to the main process."""
    parts = list(parts)
    if torch.utils.data.get_worker_info() is None:
        return torch.cat(parts)
    first = parts[0]
    storage = first._typed_storage()._new_shared(sum(part.numel() for part in parts), device=first.device)
    out = first.new(storage).resize_(sum(part.shape[0] for part in parts), *first.shape[1:])
    return torch.cat(parts, out=out)


def default_num_workers(device: torch.device) -> int:
    """DataLoader processes for ``num_workers=None``: 0 on the CPU, up to 4 with a GPU.

    On the CPU the forward and the preprocessing need the same cores. Worker processes beside a forward that
    runs on torch's intra-op threads oversubscribe them: each parallel op of the forward waits for its slowest
    thread, the one sharing its core with a worker, so the forward slows down about as much as the workers
    gain. Alternating instead -- preprocess a batch on a pool of as many threads as torch uses (PIL decoding and
    torch ops release the GIL; each pool thread runs torch on 1 thread), then run its forward on all of them --
    keeps every core busy in both phases, with no process start and no copy of the pixels between processes.
    On 2 cores (benchmarks/bench_extract.py) it gave the most images/s: 44 against 43 with 2 workers and 39
    with 1 on a quiet machine, and under other jobs' load the loader alone took 8.5-14 ms an image against
    14-17 ms with 2 workers. With a GPU the forward leaves the CPU free, so worker processes overlap with it.
    """
    if device.type == "cpu":
        return 0
    return max(1, min(4, (os.cpu_count() or 1) - 1))


class ThreadedBatches:
    """The batches of ``make_loader(..., num_workers=0)``: made in the calling process, each batch's items on a
    pool of ``threads`` threads (in order: the same items as a DataLoader gives)."""

    def __init__(self, dataset: CropDataset, batch_size: int, threads: int, pin_memory: bool = False) -> None:
        self.dataset, self.batch_size, self.threads, self.pin_memory = dataset, batch_size, max(1, threads), pin_memory

    def __len__(self) -> int:
        return math.ceil(len(self.dataset) / self.batch_size)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        from concurrent.futures import ThreadPoolExecutor

        # Each preprocessing thread runs torch ops on 1 intra-op thread, as a DataLoader worker does: the pool
        # already spreads the work over the cores, and nested intra-op threads oversubscribe them (on a loaded
        # machine a parallel op then waits a whole scheduler slice for a descheduled thread: 8x slower measured).
        # torch.set_num_threads is per thread for OpenMP but also sets process-wide values (the default of new
        # threads, MKL's), so the caller's count is set again after the pool's threads started.
        threads = torch.get_num_threads()
        with ThreadPoolExecutor(max_workers=self.threads, thread_name_prefix="extract-preprocess",
                                initializer=torch.set_num_threads, initargs=(1,)) as pool:
            for start in range(0, len(self.dataset), self.batch_size):
                indices = range(start, min(start + self.batch_size, len(self.dataset)))
                items = list(pool.map(self.dataset.__getitem__, indices))
                torch.set_num_threads(threads)
                batch = collate_items(items)
                if self.pin_memory:
                    batch["pixels"] = batch["pixels"].pin_memory()
                yield batch


def make_loader(dataset: CropDataset, batch_size: int, num_workers: int, pin_memory: bool = False,
                threads: int | None = None):
    """Batches of ``dataset`` in order: from ``num_workers`` DataLoader processes, or, with 0, made in this
    process on ``threads`` threads (default: torch's intra-op thread count; see ``default_num_workers``)."""
    if num_workers == 0:
        return ThreadedBatches(dataset, batch_size, threads if threads is not None else torch.get_num_threads(),
                               pin_memory)
    return torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers,
                                       collate_fn=collate_items, pin_memory=pin_memory,
                                       persistent_workers=False)


# --------------------------------------------------------------------------------------------- inputs


@dataclass
class ImageRows:
    ids: list[str]
    paths: list[Path | None]


def collect_images(data: Sequence[Path], images: Path | None) -> ImageRows:
    """Sorted distinct image ids of the CoNLL files, each with the image path of its first post."""
    from pipeline.data.conll import read_conll

    if not data:
        raise DghcError("no CoNLL files given (pass them as arguments or with --data)")
    paths: dict[str, Path | None] = {}
    for path in data:
        posts, _ = read_conll(path, images, invalid_bio="keep", type_map=None)
        for post in posts:
            paths.setdefault(post.post_id, post.image_path)
    if not paths:
        raise DghcError(f"no posts in {', '.join(str(p) for p in data)}")
    ids = sorted(paths)
    return ImageRows(ids, [paths[i] for i in ids])


@dataclass
class DetectionRows:
    """The detections of the rows we extract, aligned with ``ImageRows.ids``."""

    fingerprint_sha256: str
    m: int
    status: np.ndarray  # (n,) uint8
    sizes: np.ndarray  # (n, 2) width, height
    boxes: np.ndarray  # (n, m, 4)
    valid: np.ndarray  # (n, m)


def load_detection_rows(path: Path, ids: Sequence[str], data: Sequence[Path]) -> DetectionRows:
    """Read the detect stage's file and pick the rows of ``ids``; refuse a file that lacks some of them."""
    from pipeline.detection.store import load_detections

    detections = load_detections(path)
    absent = [image_id for image_id in ids if image_id not in detections.index]
    if absent:
        files = " ".join(str(p) for p in data)
        shown = ", ".join(absent[:5]) + (", ..." if len(absent) > 5 else "")
        raise DghcError(f"{path} has no detections for {len(absent)} of the {len(ids)} images of {files} "
                        f"(e.g. {shown}); rerun detect on these files: `dghc detect {files}`")
    rows = np.array([detections.index[image_id] for image_id in ids], dtype=np.int64)
    return DetectionRows(fingerprint_sha256=detections.fingerprint_sha256, m=int(detections.m),
                         status=detections.status[rows].astype(np.uint8),
                         sizes=detections.image_size[rows].astype(np.int64),
                         boxes=detections.boxes[rows].astype(np.float32), valid=detections.valid[rows].astype(bool))


# --------------------------------------------------------------------------------------------- output file


def _dataset_plist():
    """Contiguous storage allocated when the file is made: later writes change data only, never the layout,
    which keeps a resumed file byte-identical to one written in a single run."""
    import h5py

    plist = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
    plist.set_alloc_time(h5py.h5d.ALLOC_TIME_EARLY)
    return plist


def _create_output(path: Path, ids: Sequence[str], m: int, dim: int, dtype: str,
                   fingerprint: dict[str, Any]) -> None:
    import h5py
    import transformers

    n = len(ids)
    with h5py.File(path, "w") as handle:
        handle.create_dataset(layout.IMAGE_IDS, data=np.array(ids, dtype=object),
                              dtype=h5py.string_dtype("utf-8"), track_times=False)
        specs = [(layout.STATUS, (n,), np.uint8), (layout.IMAGE_VECTORS, (n, dim), dtype),
                 (layout.REGION_VECTORS, (n, m, dim), dtype), (layout.IMAGE_MASK, (n,), bool),
                 (layout.REGION_MASK, (n, m), bool)]
        for name, shape, kind in specs:
            handle.create_dataset(name, shape=shape, dtype=kind, dcpl=_dataset_plist(), track_times=False)
        handle[layout.STATUS].attrs["names"] = np.array(STATUS_NAMES, dtype=object).astype(h5py.string_dtype("utf-8"))
        handle.attrs["dim"] = np.int64(dim)
        handle.attrs["m"] = np.int64(m)
        handle.attrs["fingerprint"] = canonical_json(fingerprint)
        handle.attrs["fingerprint_sha256"] = sha256_json(fingerprint)
        handle.attrs["untrained"] = bool(fingerprint["untrained"])
        if fingerprint["untrained"]:
            handle.attrs["note"] = UNTRAINED_NOTE
        handle.attrs["software"] = json.dumps({"torch": torch.__version__, "transformers": transformers.__version__,
                                               "h5py": h5py.__version__}, sort_keys=True)


# --------------------------------------------------------------------------------------------- the stage


def extract_features(config: ExtractConfig, *, encoder: ClipEncoder | None = None, progress: bool = True,
                     on_batch: Callable[[int], None] | None = None) -> ExtractResult:
    """Run the extract stage; ``on_batch(rows_done)`` is called after each batch is safely written."""
    import h5py
    from tqdm import tqdm

    if config.dtype not in DTYPES:
        raise DghcError(f"unknown dtype {config.dtype!r} (use one of: {', '.join(DTYPES)})")
    if config.batch_size < 1 or (config.num_workers is not None and config.num_workers < 0):
        raise DghcError("batch size must be at least 1 and num workers at least 0")
    if config.crop_padding < 0 or config.min_crop_size < 1 or config.max_aspect < 1:
        raise DghcError("crop padding must be >= 0, min crop size >= 1 and max aspect >= 1")
    images = collect_images(config.data, config.images)
    detections = load_detection_rows(config.detections, images.ids, config.data)
    if encoder is None:
        encoder = load_clip(config.model, config.output, config.device, config.seed)
    m, dim, n = detections.m, encoder.dim, len(images.ids)
    fingerprint = build_fingerprint(encoder.identity(), dtype=config.dtype, crop_padding=config.crop_padding,
                                    min_crop_size=config.min_crop_size, max_aspect=config.max_aspect, m=m,
                                    detections_fingerprint_sha256=detections.fingerprint_sha256)
    out = Path(config.out)
    fingerprint_sha = sha256_json(fingerprint)
    # Batches are the unit of work: a resumed run must cut the same batches on the same kind of device to
    # compute bit-identical vectors.
    resume_key = {"fingerprint_sha256": fingerprint_sha, "ids_sha256": sha256_json(images.ids),
                  "batch_size": config.batch_size, "device_type": encoder.device.type}
    if not config.force and _is_up_to_date(out, fingerprint_sha, images.ids):
        return _summarise(out, rows_resumed=0, empty_boxes=0, untrained=encoder.untrained, fingerprint=fingerprint,
                          up_to_date=True)
    partial = PartialOutput(out, resume_key)
    start, note = partial.resume_point(lambda path, rows: _check_work_file(path, fingerprint_sha, n, rows))
    if note:
        print(f"extract: {note}", file=sys.stderr)
    if start == 0:
        out.parent.mkdir(parents=True, exist_ok=True)
        _create_output(partial.path, images.ids, m, dim, config.dtype, fingerprint)
        partial.mark_done(0)
    counts = {"empty_boxes": 0}
    dataset = CropDataset(range(start, n), images.paths[start:], detections.boxes[start:], detections.valid[start:],
                          encoder.preprocessor, encoder.image_size, config.crop_padding, config.min_crop_size,
                          config.max_aspect)
    num_workers = default_num_workers(encoder.device) if config.num_workers is None else config.num_workers
    loader = make_loader(dataset, config.batch_size, num_workers, pin_memory=encoder.device.type == "cuda")
    np_dtype = np.dtype(config.dtype)
    with h5py.File(partial.path, "r+") as handle, \
            tqdm(total=n, initial=start, unit="img", desc="extract", file=sys.stderr, disable=not progress) as bar:
        rows_done = start
        for batch in loader:
            first, last = batch["rows"][0], batch["rows"][-1] + 1
            assert first == rows_done and last - first == len(batch["rows"]), "batches must be contiguous"
            _check_detections_current(batch, detections, images.ids, config.detections)
            vectors = torch.zeros(len(batch["rows"]), 1 + m, dim)
            vectors[batch["slots"]] = encoder.encode(batch["pixels"])
            stored = vectors.numpy().astype(np_dtype)
            if not np.isfinite(stored).all():
                raise DghcError(f"CLIP vectors overflow {config.dtype} (values up to "
                                f"{vectors.abs().max().item():.3g}); use --dtype float32")
            handle[layout.STATUS][first:last] = batch["status"].numpy()
            handle[layout.IMAGE_VECTORS][first:last] = stored[:, 0]
            handle[layout.REGION_VECTORS][first:last] = stored[:, 1:]
            handle[layout.IMAGE_MASK][first:last] = batch["slots"][:, 0].numpy()
            handle[layout.REGION_MASK][first:last] = batch["slots"][:, 1:].numpy()
            handle.flush()
            rows_done = last
            partial.mark_done(rows_done)
            counts["empty_boxes"] += batch["empty_boxes"]
            bar.update(last - first)
            if on_batch is not None:
                on_batch(rows_done)
    partial.publish()
    return _summarise(out, rows_resumed=start, empty_boxes=counts["empty_boxes"], untrained=encoder.untrained,
                      fingerprint=fingerprint)


def _check_work_file(path: Path, fingerprint_sha: str, rows: int, rows_done: int) -> None:
    """Raise when the work file is not one of these settings (or does not open: a crash may cut it)."""
    import h5py

    with h5py.File(path, "r") as handle:
        if handle.attrs["fingerprint_sha256"] != fingerprint_sha or len(handle[layout.STATUS]) != rows \
                or rows_done > rows:
            raise ValueError("another file")


def _is_up_to_date(out: Path, sha256: str, ids: Sequence[str]) -> bool:
    import h5py

    if not out.is_file():
        return False
    try:
        with h5py.File(out, "r") as handle:
            return (handle.attrs.get("fingerprint_sha256") == sha256
                    and handle[layout.IMAGE_IDS].asstr()[()].tolist() == list(ids))
    except (OSError, KeyError):
        return False


def _summarise(path: Path, **fields: Any) -> ExtractResult:
    import h5py

    with h5py.File(path, "r") as handle:
        status = handle[layout.STATUS][()]
        regions = int(handle[layout.REGION_MASK][()].sum())
        dim, m = int(handle.attrs["dim"]), int(handle.attrs["m"])
    return ExtractResult(path=path, images=len(status), present=int((status == ImageStatus.PRESENT).sum()),
                         missing=int((status == ImageStatus.MISSING).sum()),
                         unreadable=int((status == ImageStatus.UNREADABLE).sum()), regions=regions, dim=dim, m=m,
                         **fields)


def _check_detections_current(batch: dict[str, Any], detections: DetectionRows, ids: Sequence[str],
                              path: Path) -> None:
    """Boxes are in the pixels of the image detect saw: refuse images that changed since (status or size)."""
    rows = np.asarray(batch["rows"])
    status = batch["status"].numpy()
    sizes = batch["sizes"].numpy()
    stale = (status != detections.status[rows]) | (sizes != detections.sizes[rows]).any(axis=1)
    if stale.any():
        i = int(np.flatnonzero(stale)[0])
        row = rows[i]
        raise DghcError(
            f"image {ids[row]!r} changed since {path} was made: detect saw it "
            f"{STATUS_NAMES[detections.status[row]]} at {tuple(int(v) for v in detections.sizes[row])} pixels, "
            f"now it is {STATUS_NAMES[status[i]]} at {tuple(int(v) for v in sizes[i])}; rerun `dghc detect`")
