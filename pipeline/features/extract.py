"""The extract stage: CLIP vectors of every post's image and of its detected regions, streamed into HDF5.

For each image id of the given CoNLL files (sorted): the whole image and its m region crops (boxes from the
detect stage's file) are decoded and preprocessed by DataLoader workers, encoded by the CLIP vision tower under
``torch.inference_mode`` in the main process, and written batch by batch into ``<out>.partial`` (memory bounded
by the batch). A progress file beside it records the rows done, so an interrupted run resumes where it stopped
when its settings are the same, and starts over otherwise. The finished file is renamed into place; identical
inputs give a byte-identical file.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from pipeline.errors import DghcError
from pipeline.features import store as layout
from pipeline.features.clip_encoder import UNTRAINED_NAME, ClipEncoder, load_clip
from pipeline.features.fingerprint import DTYPES, build_fingerprint, canonical_json, fingerprint_sha256
from pipeline.files import write_text_atomically
from pipeline.images import STATUS_NAMES, ImageStatus, load_image

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
    num_workers: int = 2  # DataLoader processes decoding and preprocessing; 0: in the main process
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
    """Center-trim a very long image to ``max_aspect``: resizing its short side to 224 would otherwise blow up
    the long side (a 2x1200 crop becomes 224x134400); the center crop that follows keeps only the middle anyway."""
    width, height = image.size
    if width > height * max_aspect:
        keep = math.ceil(height * max_aspect)
        left = (width - keep) // 2
        return image.crop((left, 0, left + keep, height))
    if height > width * max_aspect:
        keep = math.ceil(width * max_aspect)
        top = (height - keep) // 2
        return image.crop((0, top, width, top + keep))
    return image


class CropDataset(torch.utils.data.Dataset):
    """Item i: the preprocessed whole image of row ``rows[i]`` and its valid crops, with a slot mask."""

    def __init__(self, rows: Sequence[int], paths: Sequence[Path | None], boxes: np.ndarray, valid: np.ndarray,
                 processor: Any, image_size: int, padding: float, min_size: int, max_aspect: float) -> None:
        self.rows = list(rows)
        self.paths = list(paths)
        self.boxes = boxes
        self.valid = valid
        self.processor = processor
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
        pictures = []
        if loaded.status == ImageStatus.PRESENT:
            image = loaded.image
            pictures.append(limit_aspect(image, self.max_aspect))
            slots[0] = True
            for slot in range(m):
                if not self.valid[i, slot]:
                    continue
                box = crop_box(self.boxes[i, slot], image.width, image.height, self.padding, self.min_size)
                if box is None:
                    empty_boxes += 1
                    continue
                pictures.append(limit_aspect(image.crop(box), self.max_aspect))
                slots[1 + slot] = True
        if pictures:
            pixels = self.processor(images=pictures, return_tensors="pt")["pixel_values"]
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
            "pixels": torch.cat([item["pixels"] for item in items]),
            "slots": torch.stack([item["slots"] for item in items]),
            "empty_boxes": sum(item["empty_boxes"] for item in items)}


def make_loader(dataset: CropDataset, batch_size: int, num_workers: int, pin_memory: bool = False):
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
    from pipeline.conll import read_conll

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
        handle.attrs["fingerprint_sha256"] = fingerprint_sha256(fingerprint)
        handle.attrs["untrained"] = bool(fingerprint["untrained"])
        if fingerprint["untrained"]:
            handle.attrs["note"] = UNTRAINED_NOTE
        handle.attrs["software"] = json.dumps({"torch": torch.__version__, "transformers": transformers.__version__,
                                               "h5py": h5py.__version__}, sort_keys=True)


def _progress_path(partial: Path) -> Path:
    return partial.with_name(partial.name + ".progress.json")


def _resume_point(partial: Path, key: dict[str, Any]) -> int:
    """Rows already done by an interrupted run with the same settings, or 0 (and the stale files removed)."""
    import h5py

    progress_file = _progress_path(partial)
    if not partial.exists():
        progress_file.unlink(missing_ok=True)
        return 0
    rows_done, matched = 0, False
    try:
        progress = json.loads(progress_file.read_text())
        if {k: progress.get(k) for k in key} == key:
            with h5py.File(partial, "r") as handle:  # a file that does not open is started over
                if handle.attrs["fingerprint_sha256"] == key["fingerprint_sha256"]:
                    rows_done, matched = int(progress["rows_done"]), True
    except (OSError, ValueError, KeyError, TypeError):
        rows_done = 0
    if rows_done > 0:
        print(f"extract: resuming {partial} after {rows_done} rows done", file=sys.stderr)
    else:
        if not matched:
            print(f"extract: {partial} was made with other settings (or is unreadable): starting over",
                  file=sys.stderr)
        partial.unlink(missing_ok=True)
        progress_file.unlink(missing_ok=True)
    return rows_done


# --------------------------------------------------------------------------------------------- the stage


def extract_features(config: ExtractConfig, *, encoder: ClipEncoder | None = None, progress: bool = True,
                     on_batch: Callable[[int], None] | None = None) -> ExtractResult:
    """Run the extract stage; ``on_batch(rows_done)`` is called after each batch is safely written."""
    import h5py
    from tqdm import tqdm

    if config.dtype not in DTYPES:
        raise DghcError(f"unknown dtype {config.dtype!r} (use one of: {', '.join(DTYPES)})")
    if config.batch_size < 1 or config.num_workers < 0:
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
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(out.name + ".partial")
    # Batches are the unit of work: a resumed run must cut the same batches on the same kind of device to
    # compute bit-identical vectors.
    resume_key = {"fingerprint_sha256": fingerprint_sha256(fingerprint),
                  "ids_sha256": hashlib.sha256("\n".join(images.ids).encode("utf-8")).hexdigest(),
                  "batch_size": config.batch_size, "device_type": encoder.device.type}
    if not config.force and _is_up_to_date(out, resume_key["fingerprint_sha256"], images.ids):
        return _summarise(out, rows_resumed=0, empty_boxes=0, untrained=encoder.untrained, fingerprint=fingerprint,
                          up_to_date=True)
    start = _resume_point(partial, resume_key)
    if start == 0:
        _create_output(partial, images.ids, m, dim, config.dtype, fingerprint)
        _write_progress(partial, resume_key, 0)
    counts = {"empty_boxes": 0}
    dataset = CropDataset(range(start, n), images.paths[start:], detections.boxes[start:], detections.valid[start:],
                          encoder.processor, encoder.image_size, config.crop_padding, config.min_crop_size,
                          config.max_aspect)
    loader = make_loader(dataset, config.batch_size, config.num_workers, pin_memory=encoder.device.type == "cuda")
    np_dtype = np.dtype(config.dtype)
    with h5py.File(partial, "r+") as handle, \
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
            _write_progress(partial, resume_key, rows_done)
            counts["empty_boxes"] += batch["empty_boxes"]
            bar.update(last - first)
            if on_batch is not None:
                on_batch(rows_done)
    os.replace(partial, out)
    _progress_path(partial).unlink(missing_ok=True)
    return _summarise(out, rows_resumed=start, empty_boxes=counts["empty_boxes"], untrained=encoder.untrained,
                      fingerprint=fingerprint)


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


def _write_progress(partial: Path, key: dict[str, Any], rows_done: int) -> None:
    write_text_atomically(_progress_path(partial), json.dumps({**key, "rows_done": rows_done}, sort_keys=True))


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
