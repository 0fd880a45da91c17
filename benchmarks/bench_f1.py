"""F1 on the real benchmarks' valid splits with the packaged MiniLM: text only and the full model, over seeds.

Nearly every image of the benchmarks is absent here (15 per set are shipped in ../shared/data), so the full model
sees an image for very few posts: this measures the text path, the fusion's robustness (a rare image must not
hurt) and the training options, not what the image adds (the demo set's learning test shows that).

    python benchmarks/bench_f1.py [--data twitter2017 twitter2015] [--seeds 1 2] [--epochs 8]
                                  [--variants text full] [--set prefix_norm=free ...] [--durant]

``--durant`` also tags "Kevin Durant signs with the Golden State Warriors # NBA" without an image and with each
of four real photos of the set (the failure of issue 11: a present image wiped out the text's entities).
Each data set's section of BENCHMARKS.md keeps the previous run's table beside the new one.
"""
from __future__ import annotations

import argparse
import os
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("YOLO_OFFLINE", "1")
os.environ.setdefault("YOLO_CONFIG_DIR", str(Path(__file__).resolve().parents[1] / ".yolo"))

import yaml  # noqa: E402

from benchmarks.report import BENCHMARKS_MD, update_section  # noqa: E402
from pipeline.data.conll import Post, read_conll  # noqa: E402
from pipeline.data.tags import OTHER_AS_MISC  # noqa: E402
from pipeline.detection.config import DetectConfig  # noqa: E402
from pipeline.detection.run import run_detect  # noqa: E402
from pipeline.features.config import ExtractConfig  # noqa: E402
from pipeline.features.extract import extract_features  # noqa: E402
from pipeline.features.store import FeatureStore  # noqa: E402
from pipeline.training.checkpoint import load_checkpoint  # noqa: E402
from pipeline.training.config import TrainConfig  # noqa: E402
from pipeline.training.evaluation import evaluate  # noqa: E402
from pipeline.training.inference import predict  # noqa: E402
from pipeline.training.trainer import train  # noqa: E402

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
REPO = Path(__file__).resolve().parents[1]
NAMES = {"twitter2017": "Twitter-2017", "twitter2015": "Twitter-2015"}
VARIANTS = {"text": ("text only (BERT-CRF)", {"use_image": False}), "full": ("full DGHC", {})}
DURANT = "Kevin Durant signs with the Golden State Warriors # NBA".split()


def params_train() -> dict:
    """params.yaml's train section: the defaults this benchmark measures (files and device left out)."""
    section = yaml.safe_load((REPO / "params.yaml").read_text())["train"]
    return {key: value for key, value in section.items()
            if key not in ("train_file", "dev_file", "features_file", "detections_file", "output_dir", "log_file",
                           "metrics_file", "state_dir", "progress")}


def parse_set(items: list[str]) -> dict:
    return {key: yaml.safe_load(value) for key, _, value in (item.partition("=") for item in items)}


def previous_table(section: str) -> str:
    """The table and command of the section's last run, to print beside the new figures."""
    if not BENCHMARKS_MD.exists():
        return ""
    match = re.search(rf"<!-- bench:{re.escape(section)} -->(.*?)<!-- /bench:{re.escape(section)} -->",
                      BENCHMARKS_MD.read_text(), re.S)
    if not match:
        return ""
    body = match.group(1).split("### Previous run")[0]  # the last run only, not the one before it
    command = re.search(r"Command: `([^`]*)`", body)
    stamp = re.search(r"Measured ([^\n]*?) on", body)
    rows = [line for line in body.splitlines() if line.startswith("|")]
    if not rows:
        return ""
    return (f"### Previous run\n\n`{command.group(1) if command else '?'}` ({stamp.group(1) if stamp else '?'}):\n\n"
            + "\n".join(rows))


def durant_rows(model_dir: Path, features: FeatureStore, image_ids: list[str]) -> list[str]:
    checkpoint = load_checkpoint(model_dir)
    posts = [Post(f"no-image-{image_ids[0]}", DURANT, ["O"] * len(DURANT))]
    posts += [Post(image_id, DURANT, ["O"] * len(DURANT)) for image_id in image_ids]

    class NoImageForTheFirst:  # the first post keeps its words but gets no image
        dim, m = features.dim, features.m

        def __contains__(self, image_id):
            return True

        def batch(self, ids):
            vectors, mask = features.batch([i.removeprefix("no-image-") for i in ids])
            for row, image_id in enumerate(ids):
                if image_id.startswith("no-image-"):
                    mask[row] = False
            return vectors, mask

    rows = []
    for prediction in predict(checkpoint.tagger, checkpoint.tokenizer, posts, NoImageForTheFirst()):
        entities = " ".join(f"{word}/{label}" for word, label in zip(DURANT, prediction.labels) if label != "O")
        image = "none" if prediction.post_id.startswith("no-image-") else prediction.post_id
        relevance = "" if prediction.relevance is None or image == "none" else f"{prediction.relevance:.2f}"
        rows.append(f"| {image} | {relevance} | {entities or '(no entity)'} |")
    return rows


def mean_spread(values: list[float]) -> str:
    """'mean ± sample std' (the mean alone for one value)."""
    spread = f" ± {statistics.stdev(values):.4f}" if len(values) > 1 else ""
    return f"{statistics.fmean(values):.4f}{spread}"


def build_cache(folder: Path, root: Path) -> tuple[FeatureStore, list[str], float]:
    """Detect and extract the set's train and valid images into ``root``: the store, the present image ids and
    the seconds it took."""
    splits = [folder / "train.txt", folder / "valid.txt"]
    start = time.perf_counter()
    run_detect(DetectConfig(files=splits, out=root / "detections.h5", images=folder / "images", progress=False),
               log=lambda _: None)
    extract_features(ExtractConfig(data=splits, detections=root / "detections.h5", out=root / "features.h5",
                                   images=folder / "images", num_workers=0, device="cpu", progress=False))
    seconds = time.perf_counter() - start
    features = FeatureStore(root / "features.h5")
    present = [image_id for image_id in features.image_ids if features.batch([image_id])[1][0, 0]]
    return features, present, seconds


def train_and_score(folder: Path, cache: Path, run_dir: Path, parameters: dict) -> dict[str, float]:
    """Train on the set's train split with ``parameters`` (dev = valid), score the best checkpoint on valid with
    the gold as written: default-mode P/R/F1, strict F1 and the training seconds. The model stays in run_dir/model."""
    start = time.perf_counter()
    train(TrainConfig(**parameters, train_file=folder / "train.txt", dev_file=folder / "valid.txt",
                      features_file=cache / "features.h5", detections_file=cache / "detections.h5",
                      output_dir=run_dir / "model", log_file=None, state_dir=run_dir / "state", progress=False))
    seconds = time.perf_counter() - start
    posts, _ = read_conll(folder / "valid.txt", type_map=OTHER_AS_MISC, invalid_bio="keep")
    result = evaluate(load_checkpoint(run_dir / "model"), posts, FeatureStore(cache / "features.h5"))
    default, strict = result.metrics["default"]["overall"], result.metrics["strict"]["overall"]
    return {"p": default["precision"], "r": default["recall"], "f1": default["f1"], "strict": strict["f1"],
            "seconds": seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", nargs="+", default=["twitter2017", "twitter2015"], choices=sorted(NAMES))
    parser.add_argument("--seeds", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--epochs", type=int, default=None, help="default: params.yaml's train.epochs")
    parser.add_argument("--variants", nargs="+", default=["text", "full"], choices=sorted(VARIANTS))
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="a training parameter other than params.yaml's (repeatable)")
    parser.add_argument("--durant", action="store_true", help="tag the Kevin Durant post with four real photos")
    args = parser.parse_args()
    base = {**params_train(), **parse_set(args.overrides)}
    if args.epochs is not None:
        base["epochs"] = args.epochs
    for data in args.data:
        folder = SHARED / data
        splits = [folder / "train.txt", folder / "valid.txt"]
        posts, _ = read_conll(splits[1], type_map=OTHER_AS_MISC, invalid_bio="keep")
        rows, durant = [], []
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            features, present, cache_seconds = build_cache(folder, root)
            for variant in args.variants:
                name, flags = VARIANTS[variant]
                scores: dict[str, list[float]] = {"p": [], "r": [], "f1": [], "strict": [], "seconds": []}
                for seed in args.seeds:
                    result = train_and_score(folder, root, root, {**base, **flags, "seed": seed})
                    for key, value in result.items():
                        scores[key].append(value)
                    print(f"{data} {name} seed {seed}: F1 {result['f1']:.4f} ({result['seconds']:.0f} s)", flush=True)
                    if args.durant and variant == "full" and seed == args.seeds[0]:
                        durant = durant_rows(root / "model", features, present[:4])

                rows.append(f"| {name} | {mean_spread(scores['p'])} | {mean_spread(scores['r'])} | {mean_spread(scores['f1'])} | "
                            f"{mean_spread(scores['strict'])} | {len(args.seeds)} | {statistics.fmean(scores['seconds']):.0f} |")
        section = f"F1 on {NAMES[data]} valid"
        changed = ", ".join(f"{k}={v}" for k, v in parse_set(args.overrides).items()) or "none"
        body = (f"{NAMES[data]} (../shared/data): train {len(read_conll(splits[0])[0])} posts, scored on valid "
                f"({len(posts)} posts, gold as written; {len(present)} images of the set present), packaged "
                f"all-MiniLM-L6-v2, params.yaml's training parameters ({base['epochs']} epochs; changed: {changed}), "
                f"best dev epoch (dev = valid: these are dev scores), seeds {args.seeds}: mean ± sample std. "
                f"Detect + extract took {cache_seconds:.0f} s.\n\n"
                "| model | P (default) | R (default) | F1 (default) | F1 (strict) | runs | train time per run (s) |\n"
                "|---|---|---|---|---|---|---|\n" + "\n".join(rows))
        if durant:
            body += ("\n\nThe post \"" + " ".join(DURANT) + "\" tagged by the full model (seed "
                     f"{args.seeds[0]}) without an image and with four real photos of the set:\n\n"
                     "| image | relevance s | entities |\n|---|---|---|\n" + "\n".join(durant))
        previous = previous_table(section)
        if previous:
            body += "\n\n" + previous
        update_section(section, body)


if __name__ == "__main__":
    main()
