"""Benchmark of the extract stage on Ray Data (``--engine ray``) against the local engine, and a cost model.

1. Images per second of ``dghc extract`` on this machine: the local engine (one process; torch's intra-op threads
   and a preprocessing thread pool on all cores) against ``--engine ray`` with 1 and 2 model workers on a local
   Ray cluster (each worker an actor on one core that decodes, crops, preprocesses and encodes its batches; the
   driver writes the shards). Two figures per run: end to end (the stage call, Ray's start and the actors'
   model loads included) and steady (images per second from the batch by which every worker has delivered
   once to the last batch).
   Each image is encoded whole plus 3 region crops; the images are the real tweet images of ../shared/data,
   repeated (synthetic 640x480 JPEGs where absent).
2. A cost model for 1M images (extract) on N GPUs, from the anchor the issue gives (clip-retrieval: about 2500
   ViT-B/32 images/s per A100, bound by CPU decoding and resizing) and this run's measured CPU cost of
   decoding + cropping + preprocessing one image and its 3 crops, and the bytes per image that cross Ray's object
   store from the decode tasks to the GPU actors (pickled real batches: uint8 crops now, float32 pixels before).

Run from the repository root: ``.venv/bin/python -m benchmarks.bench_scale`` (``--quick`` for a smoke run).
"""
from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from dghc.pipeline.core.offline import offline_environment

REPO = Path(__file__).resolve().parents[1]
offline_environment(REPO)  # before transformers is imported

from benchmarks.bench_extract import make_inputs, vit_b32_config  # noqa: E402

ANCHOR_GPU_INPUTS_PER_S = 2500  # clip-retrieval, ViT-B/32 on one A100 (the anchor)
CLIP_INPUTS_PER_IMAGE = 4  # the whole image and m = 3 region crops
SECTION = "extract on Ray Data"


def run_once(config, engine: str, workers: int) -> dict:
    """One stage run: end-to-end seconds and the steady rate between the first and the last written batch."""
    from dghc.pipeline.features.extract import extract_features
    from dghc.pipeline.scale.extract import extract_on_ray

    marks: list[tuple[float, int]] = []
    started = time.perf_counter()
    run = extract_on_ray if engine == "ray" else extract_features
    result = run(replace(config, engine=engine, workers=workers, force=True),
                 on_batch=lambda rows: marks.append((time.perf_counter(), rows)))
    total = time.perf_counter() - started
    # Rows arrive in order, so the first batches of the other workers arrive right after the first one (computed
    # meanwhile): the steady rate starts at the batch where every worker has delivered once.
    (t0, r0), (t1, r1) = marks[min(workers, len(marks)) - 1], marks[-1]
    steady = (r1 - r0) / (t1 - t0) if t1 > t0 else float("nan")
    return {"images": result.images, "seconds": total, "end_to_end": result.images / total, "steady": steady}


def decode_ms(conll: Path, detections: Path, model: str, count: int = 32) -> float:
    """Median ms to decode one image and make its uint8 crops (the image and 3 regions) on one thread: a decode
    task's work (the cast and normalisation are the actor's: ``object_store_bytes``)."""
    import torch

    from dghc.pipeline.features.clip_encoder import load_clip
    from dghc.pipeline.features.crops import CropDataset
    from dghc.pipeline.features.extract import collect_images, load_detection_rows

    torch.set_num_threads(1)
    encoder = load_clip(model, "projected", "cpu", 0)
    images = collect_images([conll], None)
    rows = load_detection_rows(detections, images.ids, [conll])
    dataset = CropDataset(range(count), images.paths[:count], rows.boxes[:count], rows.valid[:count],
                          encoder.preprocessor, encoder.image_size, 0.0, 2, 4.0)
    times = []
    for i in range(count):
        start = time.perf_counter()
        dataset[i]
        times.append((time.perf_counter() - start) * 1000)
    torch.set_num_threads(os.cpu_count() or 1)
    return statistics.median(times)


def object_store_bytes(conll: Path, detections: Path, model: str, batch_size: int = 16) -> dict[str, float]:
    """Mean bytes per image of what a decode task hands a GPU actor (the pickled ``DecodedBatch``: uint8 crops),
    of the same batches with float32 pixels (what it handed before), of the JPEG files, and ms per image of the
    cast + normalisation now done in the actor (one thread)."""
    import pickle

    import numpy as np
    import torch

    from dghc.pipeline.features.clip_encoder import load_clip
    from dghc.pipeline.features.extract import collect_images, load_detection_rows
    from dghc.pipeline.scale.extract import CropBatch, CropSettings, decode

    torch.set_num_threads(1)
    encoder = load_clip(model, "projected", "cpu", 0)
    images = collect_images([conll], None)
    rows = load_detection_rows(detections, images.ids, [conll])
    crops = CropSettings(encoder.preprocessor, encoder.image_size, rows.m, 0.0, 2, 4.0)
    sizes = {"uint8": 0, "float32": 0, "jpeg": sum(path.stat().st_size for path in images.paths), "finish_s": 0.0}
    for start in range(0, len(images.ids), batch_size):
        stop = min(start + batch_size, len(images.ids))
        batch = decode(CropBatch(np.arange(start, stop), [path.resolve() for path in images.paths[start:stop]],
                                 rows.boxes[start:stop], rows.valid[start:stop]), crops)
        sizes["uint8"] += len(pickle.dumps(batch))
        began = time.perf_counter()
        pixels = encoder.preprocessor.finish(torch.from_numpy(batch.pixels)).numpy()
        sizes["finish_s"] += time.perf_counter() - began
        batch.pixels = pixels
        sizes["float32"] += len(pickle.dumps(batch))
    torch.set_num_threads(os.cpu_count() or 1)
    count = len(images.ids)
    return {"uint8": sizes["uint8"] / count, "float32": sizes["float32"] / count, "jpeg": sizes["jpeg"] / count,
            "finish_ms": sizes["finish_s"] * 1000 / count, "images": count}


def load_average() -> str:
    return f"{os.getloadavg()[0]:.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run: few images, one repeat")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    from dghc.pipeline.features.config import ExtractConfig
    from dghc.pipeline.features.extract import extract_features

    repeats = 1 if args.quick else args.repeats
    loads = [load_average()]
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp:
        root = Path(tmp)
        models = [("untrained-clip-small (default; 4 layers, 256 wide)", "untrained-clip-small", 64 if args.quick else 768)]
        vit = root / "vit-b32"
        if not args.quick:
            from tests.extract_fixtures import save_tiny_clip

            save_tiny_clip(vit, config=vit_b32_config())
            models.append(("untrained ViT-B/32 size (openai/clip-vit-base-patch32's compute)", str(vit), 160))
        for label, model, count in models:
            inputs = root / f"inputs-{count}"
            conll, detections, origin = make_inputs(inputs, count)
            config = ExtractConfig(files=[conll], detections=detections, out=root / "out", model=model,
                                   batch_size=16, device="cpu", progress=False, shard_size=64)
            # warm the page cache and the model files once (not timed)
            extract_features(replace(config, out=root / "warm.h5"))
            runs: dict[str, list[dict]] = {}
            plans = [("local", 1, root / "local.h5"), ("ray", 1, root / "ray1"), ("ray", 2, root / "ray2")]
            for _ in range(repeats):  # interleaved: a change of the machine's load hits every configuration
                for engine, workers, out in plans:
                    name = "local" if engine == "local" else f"ray, {workers} worker{'s' if workers > 1 else ''}"
                    runs.setdefault(name, []).append(run_once(replace(config, out=out), engine, workers))
            loads.append(load_average())
            results.append({"label": label, "count": count, "origin": origin, "runs": runs,
                            "decode_ms": decode_ms(conll, detections, model),
                            "bytes": object_store_bytes(conll, detections, model)})
    loads.append(load_average())
    body = render(results, loads, repeats)
    if args.quick:
        body = ("A smoke run (`--quick`): too few images, on a shared machine, for its rates to mean much; the "
                "object store's bytes per image are exact.\n\n" + body)
    from benchmarks.report import kept_previous_run, last_run, update_section

    if args.quick:  # a smoke run keeps the last full run's figures below its own
        last = last_run(SECTION)
        kept = (kept_previous_run(SECTION) if "--quick" in last.partition("\n")[0]
                else "### Previous run\n\n" + last.replace("\n### ", "\n#### "))
        body += "\n\n" + kept
    update_section(SECTION, body, command="python -m benchmarks.bench_scale" + (" --quick" if args.quick else ""))


def render(results: list[dict], loads: list[str], repeats: int) -> str:
    lines = ["### Local engine against --engine ray on this machine (goal: Ray with 2 workers >= 1.6x the local "
             "engine, extract)", "",
             f"Each image is encoded whole plus 3 region crops; images: {results[0]['origin']}. Local = one process "
             "(torch's intra-op threads on all cores, a thread pool preprocessing each batch between forwards). "
             "Ray = a local Ray cluster started by the stage, 1 or 2 model actors (one core each: decode, crop, "
             "preprocess, encode), the driver writing shards of 64 images. End to end = images / seconds of the "
             "stage call (Ray's start and the actors' model loads included); steady = images / seconds from the "
             "batch by which every worker has delivered once to the last batch. "
             f"Best of {repeats} interleaved runs, batch 16, device cpu. "
             f"Load average (1 min) at the start, after each model and at the end: {', '.join(loads)}.", "",
             "| model | images | configuration | end to end img/s | steady img/s | x local (end to end) | "
             "x local (steady) | all runs, end to end (img/s) |", "|---|---|---|---|---|---|---|---|"]
    for result in results:
        every = {name: ", ".join(f"{run['end_to_end']:.1f}" for run in runs) for name, runs in result["runs"].items()}
        best = {name: max(runs, key=lambda run: run["end_to_end"]) for name, runs in result["runs"].items()}
        best_steady = {name: max(run["steady"] for run in runs) for name, runs in result["runs"].items()}
        local, local_steady = best["local"]["end_to_end"], best_steady["local"]
        for name, runs in result["runs"].items():
            lines.append(f"| {result['label']} | {result['count']} | {name} | {best[name]['end_to_end']:.1f} | "
                         f"{best_steady[name]:.1f} | {best[name]['end_to_end'] / local:.2f} | "
                         f"{best_steady[name] / local_steady:.2f} | "
                         f"{every[name]} |")
    lines += ["", "### Cost model: 1M images through extract on N GPUs", "",
              f"Anchor (given, not measured here): clip-retrieval encodes about {ANCHOR_GPU_INPUTS_PER_S} ViT-B/32 "
              "inputs/s on one A100, bound by CPU decoding and resizing. dghc encodes "
              f"{CLIP_INPUTS_PER_IMAGE} inputs per image (the image and 3 crops), so one A100 takes at most "
              f"{ANCHOR_GPU_INPUTS_PER_S // CLIP_INPUTS_PER_IMAGE} images/s. Measured here: decoding one image and "
              "cropping and resizing it and its crops to uint8 on one core takes "
              + "; ".join(f"{r['decode_ms']:.1f} ms ({r['label'].split(' (')[0]})" for r in results)
              + ". On a GPU cluster the stage runs decoding as CPU tasks feeding one actor per GPU, so each GPU "
              "needs that many cores to stay busy.", "",
              "| GPUs (A100) | cores per GPU to keep it fed | images/s (GPU bound) | 1M images |",
              "|---|---|---|---|"]
    per_gpu = ANCHOR_GPU_INPUTS_PER_S / CLIP_INPUTS_PER_IMAGE
    cores = per_gpu * results[-1]["decode_ms"] / 1000
    for gpus in (1, 2, 4, 8, 16):
        rate = per_gpu * gpus
        lines.append(f"| {gpus} | {cores:.0f} | {rate:.0f} | {1e6 / rate / 60:.1f} min |")
    core_rate = 1000 / results[-1]["decode_ms"]
    lines += ["", f"With fewer cores than that per GPU the CPU bounds it: images/s = cores x {core_rate:.0f} (one "
              "core's decode rate above). Ray's start and the actors' model loads (the gap between the end-to-end "
              "and steady figures above) are paid once per run, not per image."]
    sent = results[-1]["bytes"]
    lines += ["", "What crosses Ray's object store from the decode tasks to each GPU actor, per image (the image and "
              f"3 crops): measured by pickling the decoded batches of 16 of this run's {sent['images']} images as "
              "the tasks do, against the JPEG files. The actors now cast and normalise the uint8 crops on their "
              f"device ({sent['finish_ms']:.2f} ms an image on one core here), with the same bits.", "",
              f"| per image | bytes | x JPEG | MB/s per A100 at {per_gpu:.0f} images/s |", "|---|---|---|---|"]
    for name, key in (("JPEG file (decoding in the actor)", "jpeg"), ("uint8 crops (now)", "uint8"),
                      ("float32 pixels (before)", "float32")):
        lines.append(f"| {name} | {sent[key] / 1e3:.0f} KB | {sent[key] / sent['jpeg']:.1f} | "
                     f"{sent[key] * per_gpu / 1e6:.0f} |")
    lines += ["", "uint8 crops rather than the files: decoding in a GPU actor (1 core) would bound it at the one "
              f"core's {core_rate:.0f} images/s above."]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
