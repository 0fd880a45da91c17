"""The detect stage: CoNLL files in, the top m regions of each post's image out (see ``store`` for the file).

Images are processed in fixed batches of ids sorted by name. After each batch the rows are written to
``<out>.partial`` and marked done; an interrupted run, rerun with the same settings and inputs, resumes after
the last finished batch. The final file is written from the complete arrays and renamed into place.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np

from ..artifacts.atomic import writing
from ..artifacts.file_hashes import sha256_files
from ..artifacts.fingerprint import differences, sha256_json
from ..artifacts.hdf5 import refuse_foreign_file
from ..artifacts.lock import output_lock
from ..artifacts.partial import PartialOutput
from ..artifacts.shards import refuse_folder
from ..core.console import say
from ..core.devices import announce_device, resolve_device
from ..core.errors import DghcError
from ..core.signals import StopRequest, stop_signals
from ..data.conll import check_image_id, read_conll, require_posts
from ..data.images import STATUS_NAMES, ImageStatus, load_image
from .config import DetectConfig
from .detectors import (
    GROUNDING,
    PredictSettings,
    SourceUnavailable,
    TextEncoder,
)
from .merge import SourceBoxes, merge_top_m
from .opencv_detector import COCO_SSD, OpenCVSSDDetector
from .phrases import post_phrases
from .sources import LoadedSources, load_sources
from .store import (
    check_work_file,
    create_work_file,
    empty_arrays,
    iter_batches,
    load_detections,
    read_arrays,
    read_fingerprint,
    read_fingerprint_sha256,
    write_detections,
    write_rows,
)

if TYPE_CHECKING:
    import torch


@dataclass
class ImageItem:
    image_id: str
    path: Path
    phrases: list[str]


@dataclass
class DetectSummary:
    out: Path
    total: int
    counts: dict[str, int]
    regions: dict[str, int]  # kept regions per source
    sources_run: dict[str, Any]
    problems: list[tuple[str, str, str]] = field(default_factory=list)  # (id, status, reason), not present
    resumed_from: int = 0
    up_to_date: bool = False

    def format(self, limit: int = 10) -> str:
        counts = ", ".join(f"{self.counts.get(name, 0)} {name}" for name in STATUS_NAMES)
        lines = [f"detect: {self.total} images: {counts}" + (" (up to date, nothing recomputed)" if self.up_to_date else "")]
        lines.append("  regions kept: " + (", ".join(f"{n} from {s}" for s, n in sorted(self.regions.items())) or "none"))
        for role, info in sorted(self.sources_run.items()):
            if info.get("ran"):
                lines.append(f"  {role}: ran with {info.get('weights')}")
            else:
                lines.append(f"  {role}: off ({info.get('reason')})")
        unreadable = [p for p in self.problems if p[1] == ImageStatus.UNREADABLE.label]
        for image_id, status, reason in unreadable[:limit]:
            lines.append(f"  {status}: {image_id}: {reason}")
        if len(unreadable) > limit:
            lines.append(f"  ... and {len(unreadable) - limit} more unreadable")
        lines.append(f"  written: {self.out}")
        return "\n".join(lines)


def collect_items(conll_files: Sequence[Path], images_dir: Path | None, max_phrases: int) -> list[ImageItem]:
    """One item per distinct image id, sorted by id. The id is checked so that no path leaves the images folder."""
    by_id: dict[str, ImageItem] = {}
    for conll in conll_files:
        posts, _ = read_conll(conll, images_dir, invalid_bio="keep", type_map=None)
        require_posts(posts, conll, "detect")
        for post in posts:
            problem = check_image_id(post.post_id)
            if problem:  # read_conll refuses these already; kept here so no other caller can slip one through
                raise DghcError(f"{conll}:{post.line}: {problem}")
            phrases = post_phrases(post.tokens, max_phrases)
            item = by_id.get(post.post_id)
            if item is None:
                by_id[post.post_id] = ImageItem(post.post_id, post.image_path, phrases)  # read_conll's path
            else:  # the same image in several files: one row, phrases of all its posts
                item.phrases = list(dict.fromkeys(item.phrases + phrases))[:max_phrases]
    return [by_id[key] for key in sorted(by_id)]


def detector_device(device: str) -> torch.device:
    """The device the detectors run on: ``auto`` is the GPU when there is one, else the CPU; a device this machine
    lacks is refused in one line before any work starts. Resolved here and handed on as a ``torch.device``:
    ultralytics' own select_device, given a string, rewrites CUDA_VISIBLE_DEVICES in 8.3.x (cuda:1 then runs on
    the wrong GPU or fails), while a torch.device passes through it untouched in every version."""
    try:
        return resolve_device(device)
    except DghcError as err:
        raise DghcError(f"detect: {err}") from None


def build_fingerprint(config: DetectConfig, items: Sequence[ImageItem], loaded: LoadedSources) -> dict[str, Any]:
    """What the output depends on: weights, thresholds, m, and every image's bytes (and prompts if used). An
    image's sha256 is None when there is no readable file (its status says why); unchanged files' hashes come from
    the hash cache (``artifacts.file_hashes``), all are hashed again under ``--force``."""
    # A stat cache is safe enough: same size, mtime, ctime and inode means same bytes (as make/rsync/git assume).
    hashes = sha256_files([item.path for item in items], refresh=config.force)
    images = [[item.image_id, hashes[item.path]] for item in items]
    grounding_ran = loaded.report.get(GROUNDING, {}).get("ran", False)

    def source(role: str) -> dict[str, Any] | None:
        info = loaded.report.get(role, {})
        if not info.get("ran"):
            return None
        return {key: info.get(key) for key in ("weights", "sha256", "untrained", "text_encoder") if key in info}

    fingerprint = {
        "stage": "detect",
        "format_version": 1,
        "detector": source("detector"),
        "grounding": source(GROUNDING),
        "conf": config.conf,
        "iou": config.iou,
        "m": config.m,
        "imgsz": config.imgsz,
        "batch_size": config.batch_size,  # CPU kernels round differently per batch size
        "images_sha256": sha256_json(images),
        "phrases_sha256": None,
    }
    if grounding_ran:
        fingerprint["max_phrases"] = config.max_phrases
        fingerprint["phrases_sha256"] = sha256_json([[i.image_id, i.phrases] for i in items])
    return fingerprint


def detect_batch(items: Sequence[ImageItem], sources: Sequence[Any], m: int, iou: float) -> dict[str, np.ndarray]:
    """Rows of the output for a batch of images: load, detect with each source, merge, keep the top m."""
    rows = empty_arrays([item.image_id for item in items], m)
    loaded = [load_image(item.path) for item in items]
    present = [i for i, image in enumerate(loaded) if image.status == ImageStatus.PRESENT]
    for i, image in enumerate(loaded):
        rows["status"][i] = int(image.status)
        rows["reason"][i] = image.reason
        rows["image_size"][i] = image.size
    images = [loaded[i].image for i in present]
    phrases = [items[i].phrases for i in present]
    per_source: list[list[SourceBoxes]] = [source.detect(images, phrases) for source in sources]
    for k, i in enumerate(present):
        top = merge_top_m([found[k] for found in per_source], m, iou, image_size=loaded[i].size)
        rows["boxes"][i] = top.boxes
        rows["scores"][i] = top.scores
        rows["valid"][i] = top.valid
        rows["class_names"][i] = top.class_names
        rows["sources"][i] = top.sources
    for image in loaded:
        if image.image is not None:
            image.image.close()
    return rows


def run_detect(config: DetectConfig, *, loaded: LoadedSources | None = None,
               text_encoder: TextEncoder | None = None, log: Callable[[str], None] = say,
               on_batch_done: Callable[[int, int], None] | None = None) -> DetectSummary:
    """Run the stage in this process (``--engine ray``: ``scale.detect``). ``loaded`` gives ready sources (tests,
    benchmarks); else they are loaded from the config.

    One run per output (a second one is refused at once); SIGINT/SIGTERM stop it after the batch being written.
    ``on_batch_done(rows_done, total)`` is called after each batch is safely written (tests use it to simulate a
    crash). Raises DghcError when no source can run, or under ``strict`` when an image is not present.
    """
    if config.engine != "local":  # the choice of engine is dghc.pipeline.api's
        raise DghcError(f"detect: this function runs the local engine; engine={config.engine!r} runs through "
                        f"dghc.pipeline.api.detect")
    config.check_inputs()
    out = config.out_file
    refuse_folder(out)
    refuse_foreign_file(out, "detections file", ("fingerprint_sha256", "sources_run"))
    with stop_signals("detect") as stop, output_lock(out, note=log):
        return _run_detect(config, out, loaded, text_encoder, log, on_batch_done, stop)


def _run_detect(config: DetectConfig, out: Path, loaded: LoadedSources | None, text_encoder: TextEncoder | None,
                log: Callable[[str], None], on_batch_done: Callable[[int, int], None] | None,
                stop: StopRequest) -> DetectSummary:
    import h5py
    from tqdm import tqdm

    items = collect_items(config.files, config.images, config.max_phrases)
    if loaded is None:
        device = detector_device(config.device)
        announce_device("detect", device, config.device)
        settings = PredictSettings(imgsz=config.imgsz, conf=config.conf, iou=config.iou, device=device)
        loaded = load_sources(config.detector, config.grounding, settings, text_encoder=text_encoder)
        if any(isinstance(source, OpenCVSSDDetector) for source in loaded.sources) and device.type != "cpu":
            log(f"detect: {COCO_SSD} runs on the CPU all the same (OpenCV's DNN module)")
    if not loaded.sources:
        reasons = "; ".join(f"{role}: {info.get('reason')}" for role, info in sorted(loaded.report.items()))
        raise DghcError(f"detect: no detection source can run ({reasons})")

    fingerprint = build_fingerprint(config, items, loaded)
    fingerprint_sha = sha256_json(fingerprint)
    if not config.force and out.is_file() and read_fingerprint_sha256(out) == fingerprint_sha:
        existing = load_detections(out)
        summary = summarise_detections(out, existing.status, existing.reason, existing.image_ids, existing.sources,
                           existing.valid, loaded.report)
        summary.up_to_date = True
        check_strict(config, summary)
        return summary
    if out.is_file() and config.force:
        log(f"detect: {out} is recomputed (--force)")
    elif out.is_file():  # another run's file: say what differs before replacing it
        changed = [line.split(":")[0] for line in differences(fingerprint, read_fingerprint(out) or {})]
        log(f"detect: {out} was made from other inputs or settings ({', '.join(changed) or 'not recorded'}): it is "
            "rebuilt")

    ids = [item.image_id for item in items]
    # The rows depend on the settings and images (the fingerprint) and on the ids: together, the resume key.
    partial = PartialOutput(out, {"fingerprint_sha256": fingerprint_sha, "ids_sha256": sha256_json(ids)})
    start, note = partial.resume_point(lambda path, rows: check_work_file(path, ids, config.m, rows),
                                       restart=not config.no_restart)
    if note:
        log(f"detect: {note}")
    kept = f"the finished images are kept in {partial.path}: rerun the same command to resume"
    rows_done = start
    with writing(partial.path, f"{start} finished images are kept there" if start else "nothing was kept"):
        if start == 0:
            out.parent.mkdir(parents=True, exist_ok=True)
            create_work_file(partial.path, ids, config.m)
            partial.mark_done(0)
    with h5py.File(partial.path, "r+") as handle, \
            tqdm(total=len(items), initial=start, unit="img", desc="detect", file=sys.stderr,
                 disable=not config.progress, dynamic_ncols=True) as bar:
        for begin, end in iter_batches(len(items), config.batch_size, start):
            try:
                rows = detect_batch(items[begin:end], loaded.sources, config.m, config.iou)
            except SourceUnavailable as err:  # e.g. a text encoder that fails on first use
                raise DghcError(f"detect: a source failed: {err}. Fix it or leave the source out "
                                "(--grounding none); a rerun resumes after the finished images") from None
            with writing(partial.path, f"{rows_done} of {len(items)} finished images are kept there: rerun "
                                       "the same command to resume"):
                write_rows(handle, begin, rows)
                partial.mark_done(end)
            rows_done = end
            bar.update(end - begin)
            if on_batch_done is not None:
                on_batch_done(rows_done, len(items))
            stop.check(f"{rows_done} of {len(items)} images are done; {kept}")
        arrays = read_arrays(handle)
    summary = summarise_detections(out, arrays["status"], arrays["reason"], arrays["image_ids"], arrays["sources"],
                       arrays["valid"], loaded.report)
    summary.resumed_from = start
    check_strict(config, summary)  # under --strict the output is not published; the work file stays
    with writing(out, f"the previous {out.name}, if any, is untouched; {kept}"):
        write_detections(out, arrays, config.m, fingerprint, loaded.report)
    partial.discard()
    return summary


def summarise_detections(out: Path, status: np.ndarray, reason: Sequence[str], image_ids: Sequence[str], sources: np.ndarray,
             valid: np.ndarray, report: dict[str, Any]) -> DetectSummary:
    counts = {name: 0 for name in STATUS_NAMES}
    problems = []
    for image_id, code, why in zip(image_ids, np.asarray(status).tolist(), reason):
        counts[STATUS_NAMES[code]] += 1
        if code != ImageStatus.PRESENT:
            problems.append((str(image_id), STATUS_NAMES[code], str(why)))
    regions: dict[str, int] = {}
    for name, is_valid in zip(np.asarray(sources).reshape(-1).tolist(), np.asarray(valid).reshape(-1).tolist()):
        if is_valid:
            regions[str(name)] = regions.get(str(name), 0) + 1
    return DetectSummary(out=out, total=len(image_ids), counts=counts, regions=regions, sources_run=report,
                         problems=problems)


def check_strict(config: DetectConfig, summary: DetectSummary) -> None:
    if not config.strict or not summary.problems:
        return
    shown = "; ".join(f"{i}: {s} ({r})" for i, s, r in summary.problems[:5])
    more = f"; and {len(summary.problems) - 5} more" if len(summary.problems) > 5 else ""
    counts = ", ".join(f"{summary.counts[n]} {n}" for n in STATUS_NAMES)
    raise DghcError(f"detect --strict: {len(summary.problems)} of {summary.total} images are not present "
                    f"({counts}): {shown}{more}. Fix or remove them, or run without --strict")
