"""Benchmark of the extract stage and of the feature store.

1. Images per second of the whole stage (decode, crop, preprocess, CLIP forward, HDF5 writes) against the raw
   model forward alone on the very same pixel batches, in the same run. Each image is encoded with 3 region
   crops. Two models: the offline default (untrained-clip-small) and an untrained model of ViT-B/32's size (the
   compute of openai/clip-vit-base-patch32, the paper's model). Configurations: the default (worker processes
   chosen by the device: none on the CPU, preprocessing on a thread pool between forwards), DataLoader worker
   processes, and the image processor's own path on PIL crops (how the stage preprocessed before the fast path).
2. Time to read the features of one training batch (16 ids) from a FeatureStore, in memory and from the open
   file, as a share of one real DGHC train step (``benchmarks/bench_model.py``'s ``make_variant`` and ``step``:
   full model, text vector = encoder, packaged MiniLM) on batches of 16 Twitter-2017 train posts whose visual
   features come from that FeatureStore.

Run from the repository root: ``.venv/bin/python -m benchmarks.bench_extract`` (``--quick`` for a smoke run).
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from dghc.pipeline.core.offline import offline_environment

REPO = Path(__file__).resolve().parents[1]
offline_environment(REPO)  # before transformers is imported

import numpy as np  # noqa: E402
import torch  # noqa: E402

SHARED_IMAGES = [REPO.parent / "shared" / "data" / name / "images" for name in ("twitter2015", "twitter2017")]


def vit_b32_config():
    """ViT-B/32's vision tower (the size of openai/clip-vit-base-patch32), to be built untrained."""
    from transformers import CLIPVisionConfig

    return CLIPVisionConfig(image_size=224, patch_size=32, hidden_size=768, intermediate_size=3072,
                            num_hidden_layers=12, num_attention_heads=12, projection_dim=512)


def make_inputs(root: Path, count: int) -> tuple[Path, Path, str]:
    """``count`` images (the real tweet images, repeated; synthetic ones when absent), a CoNLL file and a
    detections file with 3 boxes per image. Returns (conll, detections, where the images came from)."""
    from dghc.pipeline.data.images import load_image
    from tests.extract_fixtures import DetectionRow, make_image, write_conll, write_detections

    images = root / "images"
    images.mkdir(parents=True)
    sources = sorted(p for folder in SHARED_IMAGES if folder.is_dir() for p in folder.glob("*.jpg"))
    ids = [f"img{i:04d}" for i in range(count)]
    rows = {}
    for i, image_id in enumerate(ids):
        target = images / f"{image_id}.jpg"
        if sources:
            shutil.copyfile(sources[i % len(sources)], target)
        else:
            make_image(target, 640, 480, seed=i)
        width, height = load_image(target).size
        # Three regions of different sizes and places, as a detector would give.
        boxes = [(0.1 * width, 0.1 * height, 0.6 * width, 0.9 * height),
                 (0.5 * width, 0.2 * height, 0.95 * width, 0.6 * height),
                 (0.3 * width, 0.55 * height, 0.5 * width, 0.8 * height)]
        rows[image_id] = DetectionRow(0, (width, height), boxes)
    conll = write_conll(root / "posts.txt", ids)
    detections = root / "detections.h5"
    write_detections(detections, rows)
    origin = (f"the {len(sources)} real tweet images of ../shared/data, repeated" if sources
              else "synthetic 640x480 JPEGs")
    return conll, detections, origin


def bench_stage(root: Path, model: str, count: int, batch_size: int, configs: list[str], repeats: int) -> list[dict]:
    """Best-of-``repeats`` images/s of the stage (per configuration) and of the raw forward on the same batches.

    Configurations: ``default`` (``num_workers=None``), ``workers=N`` (N DataLoader processes) and
    ``processor, workers=2`` (the image processor itself on PIL crops, in 2 worker processes: the stage before
    the fast preprocessing path).
    """
    from dataclasses import replace as replace_fields

    from dghc.pipeline.features.clip_encoder import load_clip
    from dghc.pipeline.features.config import ExtractConfig
    from dghc.pipeline.features.crops import CropDataset, default_num_workers, make_loader
    from dghc.pipeline.features.extract import collect_images, extract_features, load_detection_rows
    from dghc.pipeline.features.preprocess import ProcessorPreprocessor

    work = root / f"stage-{Path(model).name}"
    conll, detections, origin = make_inputs(work, count)
    encoder = load_clip(model, "projected", "cpu")
    processor_encoder = replace_fields(encoder)  # the same model; its preprocessor is the processor's own path
    processor_encoder.__dict__["preprocessor"] = ProcessorPreprocessor(encoder.processor)
    config = ExtractConfig(data=[conll], detections=detections, out=work / "features.h5", model=model,
                           batch_size=batch_size, device="cpu", force=True, progress=False)
    # The very batches the stage encodes, preprocessed beforehand (not timed) for the raw forward.
    rows = collect_images(config.data, None)
    found = load_detection_rows(detections, rows.ids, config.data)
    per_image = {}
    for name, preprocessor in (("fast", encoder.preprocessor), ("processor", processor_encoder.preprocessor)):
        dataset = CropDataset(range(len(rows.ids)), rows.paths, found.boxes, found.valid, preprocessor,
                              encoder.image_size, 0.0, 2, 4.0)
        start = time.perf_counter()  # one thread: what decoding and preprocessing cost per image
        batches = [batch["pixels"] for batch in make_loader(dataset, batch_size, 0, threads=1)]
        per_image[name] = (time.perf_counter() - start) / count
    crops = sum(int(b.shape[0]) for b in batches)
    encoder.encode(batches[0])  # warm up

    def settings(name: str) -> tuple[ExtractConfig, object]:
        if name == "default":
            return replace(config, num_workers=None), encoder
        if name.startswith("processor"):
            return replace(config, num_workers=int(name.rsplit("=", 1)[1])), processor_encoder
        return replace(config, num_workers=int(name.split("=")[1])), encoder

    stage_times: dict[str, list[float]] = {name: [] for name in configs}
    raw_times: list[float] = []
    for _ in range(repeats):
        start = time.perf_counter()
        for pixels in batches:
            encoder.encode(pixels)
        raw_times.append(time.perf_counter() - start)
        for name in configs:
            stage_config, stage_encoder = settings(name)
            start = time.perf_counter()
            result = extract_features(stage_config, encoder=stage_encoder)
            stage_times[name].append(time.perf_counter() - start)
            assert result.images == count and result.regions == 3 * count
    raw = count / min(raw_times)
    default_workers = default_num_workers(encoder.device)
    return [{"model": model, "images": count, "crops": crops, "config": name,
             "workers": default_workers if name == "default" else int(name.rsplit("=", 1)[1]),
             "stage": count / min(stage_times[name]), "raw": raw, "ratio": count / min(stage_times[name]) / raw,
             "origin": origin, "per_image": per_image, "threads": torch.get_num_threads(),
             "all": [count / t for t in stage_times[name]], "raw_all": [count / t for t in raw_times]}
            for name in configs]


def write_features_file(path: Path, ids: list[str], m: int, dim: int) -> None:
    """A features file of the contract's layout with random vectors, one row per id (sorted)."""
    import h5py

    rng = np.random.default_rng(0)
    ids = sorted(ids)
    count = len(ids)
    with h5py.File(path, "w") as handle:
        handle.create_dataset("image_ids", data=np.array(ids, dtype=object), dtype=h5py.string_dtype("utf-8"))
        handle.create_dataset("status", data=np.zeros(count, np.uint8))
        handle.create_dataset("image_vectors", data=rng.normal(size=(count, dim)).astype(np.float16))
        handle.create_dataset("region_vectors", data=rng.normal(size=(count, m, dim)).astype(np.float16))
        handle.create_dataset("image_mask", data=np.ones(count, bool))
        handle.create_dataset("region_mask", data=rng.random((count, m)) < 0.8)
        handle.attrs["dim"], handle.attrs["m"] = dim, m
        handle.attrs["fingerprint"], handle.attrs["fingerprint_sha256"] = "{}", "0" * 64


def bench_store_and_step(root: Path, rows: int, batch: int, reads: int, steps: int) -> dict:
    """Feature reads of ``batch`` ids against the real DGHC train step on Twitter-2017 posts read from the store.

    The store holds one row per Twitter-2017 train post (plus filler rows up to ``rows``), of bench_model's
    vision size; the step is bench_model's ``step`` on the full model (text vector = encoder).
    """
    from benchmarks.bench_model import DATA, VISION_DIM, make_variant, step
    from dghc.pipeline.data.conll import read_conll
    from dghc.pipeline.data.tags import bioes_label_set, entity_types
    from dghc.pipeline.features.store import FeatureStore
    from dghc.pipeline.model.batching import collate, make_examples

    posts, _ = read_conll(DATA)
    post_ids = sorted({post.post_id for post in posts})
    ids = post_ids + [f"filler-{i:06d}" for i in range(max(0, rows - len(post_ids)))]
    path = root / "store.h5"
    write_features_file(path, ids, 3, VISION_DIM)
    results: dict = {"count": len(ids), "posts": len(post_ids), "dim": VISION_DIM, "batch": batch,
                     "bytes": path.stat().st_size}
    rng = np.random.default_rng(1)
    for in_memory in (True, False):
        store = FeatureStore(path, in_memory=in_memory)
        samples = []
        for _ in range(reads):
            chosen = [post_ids[i] for i in rng.choice(len(post_ids), size=batch, replace=False)]
            start = time.perf_counter()
            store.batch(chosen)
            samples.append(time.perf_counter() - start)
        store.close()
        results["memory" if in_memory else "file"] = statistics.median(samples)
    start = time.perf_counter()
    FeatureStore(path, in_memory=True).close()
    results["load"] = time.perf_counter() - start

    labels = bioes_label_set(entity_types([p.labels for p in posts]))
    tagger, tokenizer, optimizer, scheduler = make_variant(labels, text_vector="encoder")
    label_to_id = {label: i for i, label in enumerate(labels)}
    order = rng.permutation(len(posts))[: batch * (steps + 1)]
    examples = make_examples([posts[i] for i in order], tokenizer, 128, label_to_id)
    with FeatureStore(path) as store:
        batches = [collate(examples[i:i + batch], tokenizer.pad_token_id, store)
                   for i in range(0, len(examples), batch)]
    assert all(b.visual is not None and b.visual.shape[1:] == (4, VISION_DIM) for b in batches)
    step(tagger, optimizer, scheduler, batches[0])  # warm-up
    times = []
    for one in batches[1:]:
        start = time.perf_counter()
        step(tagger, optimizer, scheduler, one)
        times.append(time.perf_counter() - start)
    results["step"], results["step_min"], results["steps"] = statistics.median(times), min(times), len(times)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=128, help="images for the default model")
    parser.add_argument("--base-images", type=int, default=16, help="images for the ViT-B/32-sized model (0: skip)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--configs", nargs="+", default=["default", "workers=1", "workers=2", "processor, workers=2"],
                        help="stage configurations to time with the default model")
    parser.add_argument("--base-configs", nargs="+", default=["default", "workers=2"],
                        help="stage configurations to time with the ViT-B/32-sized model")
    parser.add_argument("--repeats", type=int, default=5, help="interleaved runs (the best counts)")
    parser.add_argument("--store-rows", type=int, default=4000, help="rows of the feature-store file")
    parser.add_argument("--steps", type=int, default=8, help="timed DGHC train steps")
    parser.add_argument("--quick", action="store_true", help="a smoke run with small sizes (no report written)")
    parser.add_argument("--print-only", action="store_true", help="print the section instead of writing it")
    args = parser.parse_args()
    if args.quick:
        args.images, args.base_images, args.repeats, args.store_rows, args.steps = 32, 0, 1, 200, 2

    from benchmarks.report import update_section
    from dghc.pipeline.features.config import UNTRAINED_NAME
    from tests.extract_fixtures import save_tiny_clip

    loads = [os.getloadavg()[0]]
    root = Path(tempfile.mkdtemp(prefix="bench_extract_"))
    try:
        stages = bench_stage(root, UNTRAINED_NAME, args.images, args.batch_size, args.configs, args.repeats)
        loads.append(os.getloadavg()[0])
        if args.base_images:
            folder = save_tiny_clip(root / "vit-b32-untrained", config=vit_b32_config(), weights=False)
            stages += bench_stage(root, str(folder), args.base_images, args.batch_size, args.base_configs,
                                  max(1, args.repeats - 2))
            loads.append(os.getloadavg()[0])
        store = bench_store_and_step(root, args.store_rows, 16, 300, args.steps)
        loads.append(os.getloadavg()[0])
    finally:
        shutil.rmtree(root, ignore_errors=True)

    names = {UNTRAINED_NAME: f"{UNTRAINED_NAME} (default; 4 layers, 256 wide)"}
    described = {"default": "default ({workers} worker processes: a pool of {threads} threads preprocesses each "
                            "batch between two forwards)",
                 "processor, workers=2": "image processor on PIL crops, 2 workers (the preprocessing path and "
                                         "default of the stage before this change)"}
    small = stages[0]
    lines = [
        "### Stage throughput against the raw CLIP forward (goal: ratio >= 0.90)",
        "",
        f"Each image is encoded whole plus 3 region crops (4 CLIP inputs); images: {small['origin']}. "
        f"Stage = `extract_features` end to end (CoNLL and detections read, decode + crop + preprocess, forward "
        f"under `torch.inference_mode`, HDF5 writes), model already loaded; raw = `ClipEncoder.encode` alone on "
        f"the same preprocessed batches (batch {args.batch_size} images, torch's {small['threads']} intra-op "
        f"threads). Best of {args.repeats} interleaved runs ({max(1, args.repeats - 2)} for ViT-B/32), device "
        f"cpu. This 2-core machine is shared with other jobs: figures move by 20 % and more between runs.",
        "",
        "Load average of the machine (1 min) at the start, after each part and at the end (the benchmark itself "
        "keeps about 2 threads busy): " + ", ".join(f"{load:.1f}" for load in loads) + ".",
        "",
        "| model | images | CLIP inputs | configuration | stage img/s | raw forward img/s | ratio | all stage runs "
        "(img/s) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for s in stages:
        name = names.get(s["model"], "untrained ViT-B/32 size (openai/clip-vit-base-patch32's compute)")
        config = described.get(s["config"], s["config"].replace("=", " = ") + " DataLoader processes")
        config = config.format(workers=s["workers"], threads=s["threads"])
        runs = ", ".join(f"{x:.1f}" for x in s["all"])
        lines.append(f"| {name} | {s['images']} | {s['crops']} | {config} | {s['stage']:.1f} | {s['raw']:.1f} | "
                     f"{s['ratio']:.2f} | {runs} |")
    raw_runs = {names.get(s["model"], "ViT-B/32 size"): ", ".join(f"{x:.1f}" for x in s["raw_all"]) for s in stages}
    lines += ["", "All raw forward runs (img/s): " + "; ".join(f"{k}: {v}" for k, v in raw_runs.items()) + "."]
    lines += [
        "",
        "Decoding + cropping + preprocessing one image and its 3 crops, one thread (the CPU work the stage adds "
        "to the forward): " + "; ".join(
            f"{names.get(s['model'], 'ViT-B/32 size')}: fast path {s['per_image']['fast'] * 1e3:.1f} ms, "
            f"image processor on PIL crops {s['per_image']['processor'] * 1e3:.1f} ms"
            for s in stages if s["config"] == stages[0]["config"] or s is stages[0]) + ".",
    ]
    share_memory, share_file = store["memory"] / store["step"], store["file"] / store["step"]
    lines += [
        "",
        "### Feature reads per training batch (goal: <= 3% of a train step)",
        "",
        f"File: {store['count']} images x (1 + 3) x {store['dim']} float16 ({store['bytes'] / 2**20:.1f} MiB): "
        f"one row per Twitter-2017 train post ({store['posts']}) plus filler rows; median of 300 reads of "
        f"{store['batch']} random post ids. Loading it into memory once took {store['load'] * 1e3:.0f} ms.",
        "",
        f"Train step: the real DGHC step of `benchmarks/bench_model.py` (`make_variant(labels, "
        f"text_vector=\"encoder\")`, `step`: full model, packaged MiniLM encoder, AdamW, gradient clipping) on "
        f"batches of {store['batch']} Twitter-2017 train posts whose visual features were read from this "
        f"FeatureStore; median of {store['steps']} steps after a warm-up (fastest {store['step_min'] * 1e3:.0f} ms).",
        "",
        "| FeatureStore mode | read of 16 ids | DGHC train step | share of the step |",
        "|---|---|---|---|",
        f"| in memory (default below 2 GiB) | {store['memory'] * 1e6:.0f} us | {store['step'] * 1e3:.0f} ms | "
        f"{share_memory:.3%} |",
        f"| open file (one sorted fancy-index read) | {store['file'] * 1e6:.0f} us | {store['step'] * 1e3:.0f} ms | "
        f"{share_file:.3%} |",
    ]
    body = "\n".join(lines)
    if args.quick or args.print_only:
        print(body)
    else:
        update_section("extract", body, "python -m benchmarks.bench_extract")


if __name__ == "__main__":
    main()
