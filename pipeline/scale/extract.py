"""``dghc extract --engine ray``: the extract stage as a Ray Data pipeline that writes a sharded features store.

    the local engine's batches  ->  decode + crop + resize  ->  cast, normalise, CLIP  ->  shard files + index.h5
       (rows, paths, boxes)          CPU tasks (GPU clusters);    actor pool of              written by the driver,
       ray.data.from_items           in the actors (CPU-only)     ``workers`` actors         in row order

The pieces are the local stage's: ``CropDataset`` decodes and makes the uint8 crops, ``ClipEncoder.encode``
finishes them on its device (``RegionPreprocessor.finish``) and encodes the valid slots of exactly the local
engine's batches (``dghc.pipeline.scale.batches``), the features file layout is ``dghc.pipeline.features.store``'s,
one file per shard (``dghc.pipeline.artifacts.shards``). From the decode tasks to the GPU actors the object store
carries uint8 crops, a quarter of the float32 pixels (with a preprocessor whose crops are not uint8, the image
processor's own, the actors decode). On a CPU-only cluster each actor decodes its own batches, as the local engine
alternates decoding and encoding on the same cores: decode tasks beside the actors would compete with them for the
cores. A rerun skips the shards a killed run finished with the same settings, batch size and workers' device type
included (the local engine's resume key: batches cut otherwise, or computed on another kind of device, give other
bits); Ray retries the batches of a worker that died.
"""
from __future__ import annotations

import functools
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..artifacts.fingerprint import canonical_json, sha256_json
from ..artifacts.hdf5 import attribute_text
from ..artifacts.lock import output_lock
from ..artifacts.shards import Shard, check_store_folder, plan_shards, unfinished_shards, write_index
from ..core.console import say
from ..core.errors import DghcError
from ..core.signals import stop_signals
from ..data.images import count_statuses
from ..features import store as layout
from ..features.config import ExtractConfig
from ..features.extract import (
    ExtractResult,
    check_detections_current,
    collect_images,
    extract_fingerprint,
    load_detection_rows,
    summarise,
)
from .batches import BatchActor, check_worker_identity, local_batches, run_batches
from .session import WorkerResources, import_ray, ray_cluster, worker_resources
from .shard_writer import ShardWriter

KIND = "features"  # the shard files: features-00000.h5, ...
# Each shard file's record of how its vectors were computed, beyond the fingerprint: {"batch_size", "device_type"}
# (the same for every shard of a finished store, so the index's copy of it holds for the whole store).
COMPUTED_WITH = "computed_with"


@dataclass(frozen=True)
class CropSettings:
    """What the decode step needs (sent to every task and actor)."""

    preprocessor: Any  # the encoder's RegionPreprocessor
    image_size: int
    m: int
    padding: float
    min_size: int
    max_aspect: float


@dataclass
class CropBatch:
    """One batch of the local engine: its rows, their image paths (absolute) and detected boxes."""

    rows: np.ndarray
    paths: list[Path | None]
    boxes: np.ndarray
    valid: np.ndarray


@dataclass
class DecodedBatch:
    """A batch decoded: per row its status, size, slot mask and empty boxes, and the valid slots' crops in
    row-major slot order (``CropDataset`` + ``collate_items``, as the local engine makes them)."""

    rows: np.ndarray
    status: np.ndarray
    size: np.ndarray
    slots: np.ndarray
    empty_boxes: np.ndarray
    pixels: np.ndarray  # (valid slots, 3, S, S) of the preprocessor's crop dtype: uint8 from decode tasks


def decode(batch: CropBatch, crops: CropSettings) -> DecodedBatch:
    """Decode a batch's images and make their crops (the local engine's code)."""
    from ..features.crops import CropDataset, collate_items

    dataset = CropDataset(batch.rows.tolist(), batch.paths, batch.boxes, batch.valid, crops.preprocessor,
                          crops.image_size, crops.padding, crops.min_size, crops.max_aspect)
    items = [dataset[i] for i in range(len(dataset))]
    collated = collate_items(items)
    return DecodedBatch(rows=batch.rows, status=collated["status"].numpy(), size=collated["sizes"].numpy(),
                        slots=collated["slots"].numpy(), pixels=collated["pixels"].numpy(),
                        empty_boxes=np.array([item["empty_boxes"] for item in items], dtype=np.int64))


def decodes_in_tasks(resources: WorkerResources, preprocessor: Any) -> bool:
    """Whether CPU tasks decode for the actors: on GPU clusters, when what they hand over is uint8 crops.
    Float32 pixels (4x the bytes; the image processor's path has no uint8 step) stay out of the object store:
    there the actors decode, as on CPU-only clusters."""
    import torch

    # uint8 crops, not the image files (7x a tweet JPEG's bytes): decoding and resizing an image and 3 crops take
    # about 6 ms of a core (BENCHMARKS.md), so a GPU actor decoding on its 1 core would get under 200 images/s,
    # well below the 625 an A100 encodes.
    return resources.decode_in_tasks and preprocessor.crop_dtype == torch.uint8


class EncodeActor(BatchActor):
    """A Ray actor holding the CLIP vision tower: a batch in, its rows' (1 + m, dim) float32 vectors out."""

    def __init__(self, model: str, output: str, device: str, seed: int, threads: int,
                 crops: CropSettings | None, expected: dict[str, Any] | None = None) -> None:
        import torch

        from ..features.clip_encoder import load_clip

        torch.set_num_threads(max(1, threads))
        self.encoder = load_clip(model, output, device, seed)
        if expected is not None:  # before any vector is computed: shards carry the driver's fingerprint
            check_same_encoder(expected, worker_identity(self.encoder.identity()))
        self.crops = crops  # set: decode here (a CPU-only cluster)

    def process(self, batch: CropBatch | DecodedBatch) -> dict[str, np.ndarray]:
        import torch

        if isinstance(batch, CropBatch):
            batch = decode(batch, self.crops)
        slots = torch.from_numpy(batch.slots)
        vectors = torch.zeros(*slots.shape, self.encoder.dim)
        # as the local engine: valid slots in row-major order, uint8 crops finished on the actor's device
        vectors[slots] = self.encoder.encode(torch.from_numpy(batch.pixels))
        return {"row": batch.rows, "status": batch.status, "size": batch.size, "slots": batch.slots,
                "vectors": vectors.numpy(), "empty_boxes": batch.empty_boxes}


def worker_identity(encoder_identity: dict[str, Any]) -> dict[str, Any]:
    """What a worker must share with the driver: the CLIP model's identity (weights sha256, preprocessing...) and
    the dghc version (the code that computes the vectors). Not the model's name: a folder reaches the workers as an
    absolute path, the fingerprint keeps the driver's."""
    from ... import __version__

    return {"encoder": {key: value for key, value in encoder_identity.items() if key != "model"},
            "dghc": __version__}


def check_same_encoder(expected: dict[str, Any], loaded: dict[str, Any]) -> None:
    """Refuse a worker whose CLIP model or dghc differs from the driver's (``check_worker_identity``)."""

    def describe(loaded: dict[str, Any], expected: dict[str, Any]) -> str:
        ours, theirs = loaded["encoder"], expected["encoder"]
        if ours.get("weights_sha256") != theirs.get("weights_sha256"):
            return (f"loaded CLIP weights sha256 {str(ours.get('weights_sha256'))[:12]}… but the driver's are "
                    f"{str(theirs.get('weights_sha256'))[:12]}…")
        keys = sorted(key for key in {*ours, *theirs} if ours.get(key) != theirs.get(key))
        return "loaded " + "; ".join(f"CLIP {key} {ours.get(key)!r} but the driver's is {theirs.get(key)!r}"
                                     for key in keys)

    check_worker_identity("extract", expected, loaded, describe, "CLIP model, weights")


def extract_on_ray(config: ExtractConfig, *, on_batch: Callable[[int], None] | None = None) -> ExtractResult:
    """Run the extract stage on Ray; ``out`` is a folder of shards plus ``index.h5`` (see the module's docstring)."""
    from tqdm import tqdm

    from ..features.clip_encoder import load_clip

    import_ray()  # first: no work before saying that Ray is missing
    out = Path(config.out)
    check_store_folder(out, KIND)
    with stop_signals("extract") as stop, output_lock(out, note=say):
        images = collect_images(config.inputs, config.images)
        detections = load_detection_rows(config.detections, images.ids, config.inputs)
        # The driver loads the model on its CPU for what identifies it (the fingerprint) and its preprocessing.
        encoder = load_clip(config.model, config.output, "cpu", config.seed)
        fingerprint = extract_fingerprint(config, encoder, detections)
        fingerprint_sha = sha256_json(fingerprint)
        n, m, dim = len(images.ids), detections.m, encoder.dim
        if not config.force and layout.is_up_to_date(out, fingerprint_sha, images.ids):
            return summarise(out, rows_resumed=0, empty_boxes=0, untrained=encoder.untrained,
                             fingerprint=fingerprint, up_to_date=True)
        out.mkdir(parents=True, exist_ok=True)
        shards = plan_shards(n, config.shard_size, config.batch_size, KIND)
        crops = CropSettings(encoder.preprocessor, encoder.image_size, m, config.crop_padding, config.min_crop_size,
                             config.max_aspect)
        empty_boxes = 0
        # The cluster first: which shards are finished depends on the device type its workers get (--device auto).
        with ray_cluster("extract", config.address, config.workers) as cluster:
            resources = worker_resources(config.device, cluster)
            computed_with = {"batch_size": config.batch_size, "device_type": resources.device}

            def is_finished(path: Path, shard: Shard) -> bool:
                return shard_is_finished(path, shard, images.ids, fingerprint_sha, computed_with)

            todo, resumed = unfinished_shards(out, shards, is_finished, force=config.force, stage="extract",
                                              unit="images", note=say)
            if todo:
                with tqdm(total=n, initial=resumed, unit="img", desc="extract", file=sys.stderr,
                          disable=not config.progress) as bar:
                    batches = _run(config, crops, todo, images.paths, detections, resources,
                                   worker_identity(encoder.identity()))
                    writer = ShardWriter(out, todo, shard_file_writer(images.ids, m, dim, config.dtype, fingerprint,
                                                                      computed_with), "extract")
                    for batch in batches:
                        check_detections_current(batch["row"], batch["status"], batch["size"], detections,
                                                 images.ids, config.detections)
                        empty_boxes += int(batch["empty_boxes"].sum())
                        writer.add(batch)
                        bar.update(len(batch["row"]))
                        if on_batch is not None:
                            on_batch(resumed + writer.rows_received)
                        stop.check(f"{writer.shards_written} shards are written in {out}: rerun the same command "
                                   "to resume")
                    writer.finish()
        write_index(out, shards, [count_statuses(layout.read_summary(out / shard.file)[0]) for shard in shards],
                    text_datasets=(layout.IMAGE_IDS,))
        return summarise(out, rows_resumed=resumed, empty_boxes=empty_boxes, untrained=encoder.untrained,
                         fingerprint=fingerprint)


def _run(config: ExtractConfig, crops: CropSettings, todo: list[Shard], paths: list[Path | None],
         detections: Any, resources: WorkerResources, expected: dict[str, Any]) -> Any:
    """The local engine's batches of the unfinished shards through Ray; yields rows in row order."""
    # Paths as the driver sees them: a worker on another node does not share its working directory.
    payloads = [CropBatch(np.arange(batch.start, batch.stop), [_absolute(paths[row]) for row in batch],
                          detections.boxes[batch.start:batch.stop], detections.valid[batch.start:batch.stop])
                for batch in local_batches(todo, config.batch_size)]
    model = config.model if not Path(config.model).exists() else str(Path(config.model).resolve())
    in_tasks = decodes_in_tasks(resources, crops.preprocessor)
    actor = {"model": model, "output": config.output, "device": resources.device, "seed": config.seed,
             "threads": int(resources.num_cpus), "crops": None if in_tasks else crops, "expected": expected}
    prepare = functools.partial(decode, crops=crops) if in_tasks else None
    return run_batches(payloads, EncodeActor, actor, resources, config.workers,
                       blocks=max(4 * config.workers, len(todo)), prepare=prepare)


def _absolute(path: Path | None) -> Path | None:
    return path.resolve() if path is not None else None


def shard_is_finished(path: Path, shard: Shard, ids: list[str], fingerprint_sha256: str,
                      computed_with: dict[str, Any]) -> bool:
    """Whether ``path`` is ``shard``'s features file as this run would write it: the same fingerprint and image ids,
    computed with the same batch size on the same device type (``computed_with``: the workers', not the driver's)."""
    import h5py

    if not layout.is_up_to_date(path, fingerprint_sha256, ids[shard.start:shard.stop]):
        return False
    with h5py.File(path, "r") as handle:
        recorded = handle.attrs.get(COMPUTED_WITH)
    # A shard without the record (written before it was kept) is recomputed: how it was computed is unknown.
    return recorded is not None and json.loads(attribute_text(recorded)) == computed_with


def shard_file_writer(ids: list[str], m: int, dim: int, dtype: str, fingerprint: dict[str, Any],
                      computed_with: dict[str, Any]) -> Callable[[Path, Shard, dict[str, np.ndarray]], None]:
    """What writes a shard's rows as a features file (``dghc.pipeline.features.store``'s layout), recording
    ``computed_with`` (batch size, device type) for ``shard_is_finished``."""
    stored_dtype = np.dtype(dtype)

    def write(path: Path, shard: Shard, rows: dict[str, np.ndarray]) -> None:
        stored = rows["vectors"].astype(stored_dtype)
        if not np.isfinite(stored).all():
            raise DghcError(f"CLIP vectors overflow {dtype} (values up to {np.abs(rows['vectors']).max():.3g}); use "
                            "--dtype float32")
        layout.create_features_file(path, ids[shard.start:shard.stop], m, dim, dtype, fingerprint)
        with layout.open_work_file(path) as handle:
            handle.attrs[COMPUTED_WITH] = canonical_json(computed_with)
            layout.write_rows(handle, 0, rows["status"], stored, rows["slots"])

    return write
