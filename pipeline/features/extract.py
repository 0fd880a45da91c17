"""The extract stage: CLIP vectors of every post's image and of its detected regions, streamed into HDF5.

For each image id of the given CoNLL files (sorted): the whole image and its m region crops (boxes from the
detect stage's file) are decoded and preprocessed off the main thread (``crops``), encoded by the CLIP vision
tower under ``torch.inference_mode``, and written batch by batch into the work file ``<out>.partial`` (memory
bounded by the batch; ``dghc.pipeline.artifacts.partial``). An interrupted run resumes where it stopped when its
settings are the same, and starts over otherwise. The finished work file is renamed into place; identical inputs
give a byte-identical file.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from ..artifacts.atomic import writing
from ..artifacts.fingerprint import sha256_json
from ..artifacts.hdf5 import refuse_foreign_file
from ..artifacts.lock import output_lock
from ..artifacts.partial import PartialOutput
from ..artifacts.shards import refuse_folder
from ..core.console import say
from ..core.devices import announce_device
from ..core.errors import DghcError
from ..core.signals import StopRequest, stop_signals
from ..data.conll import read_conll, require_posts
from ..data.images import STATUS_NAMES, ImageStatus
from ..detection.store import load_detections
from . import store as layout
from .clip_encoder import ClipEncoder, load_clip
from .config import ExtractConfig
from .crops import CropDataset, default_num_workers, make_loader
from .fingerprint import build_fingerprint


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


# --------------------------------------------------------------------------------------------- inputs


@dataclass
class ImageRows:
    ids: list[str]
    paths: list[Path | None]


def collect_images(data: Sequence[Path], images: Path | None) -> ImageRows:
    """Sorted distinct image ids of the CoNLL files, each with the image path of its first post."""
    paths: dict[str, Path | None] = {}
    for path in data:
        posts, _ = read_conll(path, images, invalid_bio="keep", type_map=None)
        require_posts(posts, path, "extract")
        for post in posts:
            paths.setdefault(post.post_id, post.image_path)
    if not paths:
        raise DghcError("extract: give the CoNLL files whose images to encode")
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


def extract_fingerprint(config: ExtractConfig, encoder: ClipEncoder, detections: DetectionRows) -> dict[str, Any]:
    """What the vectors depend on (the file's ``fingerprint``; equal fingerprints, equal vectors)."""
    return build_fingerprint(encoder.identity(), dtype=config.dtype, crop_padding=config.crop_padding,
                             min_crop_size=config.min_crop_size, max_aspect=config.max_aspect, m=detections.m,
                             detections_fingerprint_sha256=detections.fingerprint_sha256)


def summarise(path: Path, **fields: Any) -> ExtractResult:
    """The result of a finished run from its output (a file or a sharded folder)."""
    status, regions, dim, m = layout.read_summary(path)
    return ExtractResult(path=path, images=len(status), present=int((status == ImageStatus.PRESENT).sum()),
                         missing=int((status == ImageStatus.MISSING).sum()),
                         unreadable=int((status == ImageStatus.UNREADABLE).sum()), regions=regions, dim=dim, m=m,
                         **fields)


# --------------------------------------------------------------------------------------------- the stage


def extract_features(config: ExtractConfig, *, encoder: ClipEncoder | None = None,
                     on_batch: Callable[[int], None] | None = None) -> ExtractResult:
    """Run the extract stage in this process (``--engine ray``: ``scale.extract``); ``on_batch(rows_done)`` is
    called after each batch is safely written.

    One run per output (a second one is refused at once); SIGINT/SIGTERM stop it after the batch being written.
    """
    if config.engine != "local":  # the choice of engine is dghc.pipeline.api's
        raise DghcError(f"extract: this function runs the local engine; engine={config.engine!r} runs through "
                        f"dghc.pipeline.api.extract")
    out = Path(config.out)
    refuse_folder(out)
    refuse_foreign_file(out, "features file", ("fingerprint_sha256", "dim"))
    with stop_signals("extract") as stop, output_lock(out, note=say):
        return _extract(config, out, encoder, on_batch, stop)


def _extract(config: ExtractConfig, out: Path, encoder: ClipEncoder | None, on_batch: Callable[[int], None] | None,
             stop: StopRequest) -> ExtractResult:
    from tqdm import tqdm

    images = collect_images(config.inputs, config.images)
    detections = load_detection_rows(config.detections, images.ids, config.inputs)
    if encoder is None:
        encoder = load_clip(config.model, config.output, config.device, config.seed)
        announce_device("extract", encoder.device, config.device)
    m, dim, n = detections.m, encoder.dim, len(images.ids)
    fingerprint = extract_fingerprint(config, encoder, detections)
    fingerprint_sha = sha256_json(fingerprint)
    # Batches are the unit of work: a resumed run must cut the same batches on the same kind of device to
    # compute bit-identical vectors.
    resume_key = {"fingerprint_sha256": fingerprint_sha, "ids_sha256": sha256_json(images.ids),
                  "batch_size": config.batch_size, "device_type": encoder.device.type}
    if not config.force and layout.is_up_to_date(out, fingerprint_sha, images.ids):
        return summarise(out, rows_resumed=0, empty_boxes=0, untrained=encoder.untrained, fingerprint=fingerprint,
                          up_to_date=True)
    partial = PartialOutput(out, resume_key)
    start, note = partial.resume_point(lambda path, rows: layout.check_work_file(path, fingerprint_sha, n, rows),
                                       restart=not config.no_restart)
    if note:
        say(f"extract: {note}")
    kept = f"the finished rows are kept in {partial.path}: rerun the same command to resume"
    if start == 0:
        with writing(partial.path, "nothing was kept"):
            out.parent.mkdir(parents=True, exist_ok=True)
            layout.create_features_file(partial.path, images.ids, m, dim, config.dtype, fingerprint)
            partial.mark_done(0)
    counts = {"empty_boxes": 0}
    dataset = CropDataset(range(start, n), images.paths[start:], detections.boxes[start:], detections.valid[start:],
                          encoder.preprocessor, encoder.image_size, config.crop_padding, config.min_crop_size,
                          config.max_aspect)
    num_workers = default_num_workers(encoder.device) if config.num_workers is None else config.num_workers
    loader = make_loader(dataset, config.batch_size, num_workers, pin_memory=encoder.device.type == "cuda")
    np_dtype = np.dtype(config.dtype)
    rows_done = start
    with layout.open_work_file(partial.path) as handle, \
            tqdm(total=n, initial=start, unit="img", desc="extract", file=sys.stderr, disable=not config.progress) as bar:
        for batch in loader:
            first, last = batch["rows"][0], batch["rows"][-1] + 1
            assert first == rows_done and last - first == len(batch["rows"]), "batches must be contiguous"
            check_detections_current(np.asarray(batch["rows"]), batch["status"].numpy(), batch["sizes"].numpy(),
                                     detections, images.ids, config.detections)
            vectors = torch.zeros(len(batch["rows"]), 1 + m, dim)
            vectors[batch["slots"]] = encoder.encode(batch["pixels"])
            stored = vectors.numpy().astype(np_dtype)
            if not np.isfinite(stored).all():
                raise DghcError(f"CLIP vectors overflow {config.dtype} (values up to "
                                f"{vectors.abs().max().item():.3g}); use --dtype float32")
            with writing(partial.path, f"{rows_done} of {n} finished rows are kept there: rerun the same command "
                                       "to resume"):
                layout.write_rows(handle, first, batch["status"].numpy(), stored, batch["slots"].numpy())
                partial.mark_done(last)
            rows_done = last
            counts["empty_boxes"] += batch["empty_boxes"]
            bar.update(last - first)
            if on_batch is not None:
                on_batch(rows_done)
            stop.check(f"{rows_done} of {n} images are done; {kept}")
    if not partial.path.is_file():
        raise DghcError(f"extract: the work file {partial.path} vanished during the run (deleted by someone else?); "
                        "rerun the same command to start over")
    with writing(out, f"the previous {out.name}, if any, is untouched; {kept}"):
        partial.publish()
    return summarise(out, rows_resumed=start, empty_boxes=counts["empty_boxes"], untrained=encoder.untrained,
                      fingerprint=fingerprint)


def check_detections_current(rows: np.ndarray, status: np.ndarray, sizes: np.ndarray, detections: DetectionRows,
                             ids: Sequence[str], path: Path) -> None:
    """Boxes are in the pixels of the image detect saw: refuse images that changed since (status or size)."""
    stale = (status != detections.status[rows]) | (sizes != detections.sizes[rows]).any(axis=1)
    if stale.any():
        i = int(np.flatnonzero(stale)[0])
        row = rows[i]
        raise DghcError(
            f"image {ids[row]!r} changed since {path} was made: detect saw it "
            f"{STATUS_NAMES[detections.status[row]]} at {tuple(int(v) for v in detections.sizes[row])} pixels, "
            f"now it is {STATUS_NAMES[status[i]]} at {tuple(int(v) for v in sizes[i])}; rerun `dghc detect`")

