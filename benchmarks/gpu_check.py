"""GPU check: every CUDA path of dghc on a few batches, with the figures that matter on a GPU.

- detect on cuda (packaged person detector) over a small demo set;
- extract on cuda with DataLoader workers, stage time against the raw CLIP forward on the same batches
  (a ViT-B/32-sized CLIP built from a config: the paper's model size; goal >= 0.90);
- train steps of the full model with an untrained bert-base-sized encoder built from a config, in fp32, bf16 and
  fp16 (steps/s, peak GPU memory; goal: bf16 >= 1.6x fp32);
- two-GPU data parallel (`dghc train --processes 2`) when there are two GPUs;
- predict on cuda (detection + CLIP + tagging in process).

It writes its section of BENCHMARKS.md; on a machine without CUDA the section says "not measured: no GPU".
`--cpu-dry-run` runs the same code on the CPU with tiny sizes (bf16 only, no fp16) to check the script itself
and writes nothing.

    .venv/bin/python benchmarks/gpu_check.py [--steps 20] [--cpu-dry-run]
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from dghc.pipeline.core.offline import offline_environment  # noqa: E402

offline_environment(ROOT)

import torch  # noqa: E402

from benchmarks.report import update_section  # noqa: E402

SECTION = "GPU check (CUDA paths, precision, extract ratio)"


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(function, device: torch.device) -> float:
    synchronize(device)
    start = time.perf_counter()
    function()
    synchronize(device)
    return time.perf_counter() - start


def make_demo(root: Path, posts: int) -> list[Path]:
    from dghc.pipeline.demo.config import DemoConfig
    from dghc.pipeline.demo.writer import write_demo_data

    write_demo_data(DemoConfig(out=root / "demo", train=posts, valid=max(8, posts // 8), test=8))
    return [root / "demo" / f"{split}.txt" for split in ("train", "valid")]


def check_detect(root: Path, splits: list[Path], device: str) -> dict:
    from dghc.pipeline.detection.config import DetectConfig
    from dghc.pipeline.detection.run import run_detect

    config = DetectConfig(files=splits, out=root / "detections.h5", device=device, grounding=None, imgsz=640,
                          batch_size=16, progress=False)
    start = time.perf_counter()
    summary = run_detect(config, log=lambda _: None)
    return {"images": summary.total, "seconds": time.perf_counter() - start,
            "regions": sum(summary.regions.values())}


def clip_folder(root: Path, dry: bool) -> Path:
    """A CLIP vision model of ViT-B/32's size (untrained, from a config folder), or a tiny one for the dry run."""
    from transformers import CLIPVisionConfig

    folder = root / "clip"
    size = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2,
                projection_dim=64) if dry else dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                                                    num_attention_heads=12, projection_dim=512)
    CLIPVisionConfig(image_size=224, patch_size=32, **size).save_pretrained(folder)
    return folder


def check_extract(root: Path, splits: list[Path], device: str, workers: int, dry: bool) -> dict:
    from dghc.pipeline.features.clip_encoder import load_clip
    from dghc.pipeline.features.config import ExtractConfig
    from dghc.pipeline.features.crops import CropDataset, make_loader
    from dghc.pipeline.features.extract import collect_images, extract_features, load_detection_rows

    model = str(clip_folder(root, dry))
    config = ExtractConfig(files=splits, detections=root / "detections.h5", out=root / "features.h5", model=model,
                           device=device, num_workers=workers, batch_size=32, force=True, progress=False)
    encoder = load_clip(model, "projected", device)
    images = collect_images(config.inputs, None)
    detections = load_detection_rows(config.detections, images.ids, config.inputs)
    dataset = CropDataset(range(len(images.ids)), images.paths, detections.boxes, detections.valid,
                          encoder.preprocessor, encoder.image_size, 0.0, 2, 4.0)
    batches = [batch["pixels"] for batch in make_loader(dataset, 32, 0)]  # preprocessed beforehand, not timed
    device_ = encoder.device
    encoder.encode(batches[0])  # warm-up (kernels, allocator)
    raw = timed(lambda: [encoder.encode(pixels) for pixels in batches], device_)
    stage = timed(lambda: extract_features(config, encoder=encoder), device_)
    return {"images": len(images.ids), "raw_seconds": raw, "stage_seconds": stage, "ratio": raw / stage,
            "workers": workers}


def check_train(root: Path, splits: list[Path], device: str, precisions: list[str], steps: int, dry: bool) -> dict:
    from transformers import AutoTokenizer, BertConfig, BertModel

    from dghc.pipeline.data.conll import read_conll
    from dghc.pipeline.data.tags import bioes_label_set, entity_types
    from dghc.pipeline.features.store import FeatureStore
    from dghc.pipeline.model.batching import collate, make_examples
    from dghc.pipeline.model.encoder import PACKAGED_MINILM, resolve_encoder
    from dghc.pipeline.model.tagger import DGHCTagger
    from dghc.pipeline.training.config import TrainConfig
    from dghc.pipeline.training.distributed import make_accelerator
    from dghc.pipeline.training.optim import make_optimizer
    from dghc.pipeline.training.run import TrainingStep

    tokenizer = AutoTokenizer.from_pretrained(resolve_encoder(PACKAGED_MINILM))
    size = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=2, intermediate_size=128) if dry else {}
    bert_config = BertConfig(vocab_size=tokenizer.vocab_size, **size)  # bert-base by default: 12 x 768
    posts, _ = read_conll(splits[0])
    labels = bioes_label_set(entity_types([p.labels for p in posts]))
    features = FeatureStore(root / "features.h5")
    examples = make_examples(posts, tokenizer, 128, {label: i for i, label in enumerate(labels)})
    examples = examples * (16 * steps // len(examples) + 1)  # as many batches as steps, cycling the posts
    batches = [collate(examples[i:i + 16], tokenizer.pad_token_id, features) for i in range(0, 16 * steps, 16)]
    figures = {}
    for precision in precisions:
        config = TrainConfig(device=device, precision=precision, state_dir=root / "state")
        accelerator = make_accelerator(config)
        torch.manual_seed(0)
        tagger = DGHCTagger(config.model_config(labels, features.dim, features.m), BertModel(bert_config,
                                                                                              add_pooling_layer=False))
        module, optimizer = accelerator.prepare(TrainingStep(tagger), make_optimizer(tagger, config))
        if accelerator.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(accelerator.device)

        def run_steps(chosen) -> None:
            for batch in chosen:
                with accelerator.autocast():
                    loss = module(batch.to(accelerator.device)) / batch.input_ids.shape[0]
                accelerator.backward(loss)
                accelerator.clip_grad_norm_(module.parameters(), 1.0)
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)

        run_steps(batches[:2])  # warm-up
        seconds = timed(lambda: run_steps(batches), accelerator.device)
        peak = torch.cuda.max_memory_allocated(accelerator.device) / 2**30 if accelerator.device.type == "cuda" else 0
        figures[precision] = {"steps_per_s": len(batches) / seconds, "peak_gib": peak}
    return figures


def check_two_gpus(root: Path, splits: list[Path]) -> dict | None:
    if torch.cuda.device_count() < 2:
        return None
    from tests.tiny_models import save_tiny_bert

    bert = save_tiny_bert(root / "tiny_bert", hidden=64, layers=2, heads=2)
    command = [str(Path(sys.executable).with_name("dghc")), "train", "--train", str(splits[0]), "--dev", str(splits[1]),
               "--features", str(root / "features.h5"), "--detections", str(root / "detections.h5"),
               "--encoder", str(bert), "--out", str(root / "ddp_model"), "--state", str(root / "ddp_state"),
               "--log", str(root / "ddp_log.csv"), "--epochs", "1", "--device", "cuda", "--processes", "2",
               "--no-progress"]
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    return {"exit": done.returncode, "seconds": time.perf_counter() - start,
            "tail": (done.stdout + done.stderr)[-300:].replace("\n", " ")}


def check_predict(root: Path, splits: list[Path], device: str) -> dict:
    from dghc.pipeline.prediction.config import PredictConfig
    from dghc.pipeline.prediction.run import run_predict
    from dghc.pipeline.training.config import TrainConfig
    from dghc.pipeline.training.trainer import train
    from tests.tiny_models import save_tiny_bert

    bert = save_tiny_bert(root / "tiny_bert_predict", hidden=64, layers=2, heads=2)
    train(TrainConfig(train_file=splits[0], dev_file=splits[1], features_file=root / "features.h5",
                      detections_file=root / "detections.h5", output_dir=root / "model", state_dir=root / "state2",
                      log_file=None, encoder=str(bert), epochs=1, device=device, progress=False))
    posts = root / "posts.jsonl"
    images = root / "demo" / "images"
    with posts.open("w") as handle:
        for path in sorted(images.glob("*.jpg"))[:32]:
            handle.write(json.dumps({"id": path.stem, "text": "Look at Jordan !", "image": str(path)}) + "\n")
    import io

    out = io.StringIO()
    start = time.perf_counter()
    summary = run_predict(PredictConfig(model_dir=root / "model", input=posts, device=device, progress=False),
                          stdout=out, log=lambda _: None)
    return {"posts": summary.posts, "seconds": time.perf_counter() - start, "statuses": summary.image_status}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20, help="train steps timed per precision")
    parser.add_argument("--cpu-dry-run", action="store_true", help="tiny sizes on the CPU; writes nothing")
    args = parser.parse_args()
    dry = args.cpu_dry_run
    if not dry and not torch.cuda.is_available():
        update_section(SECTION, "not measured: no GPU (`torch.cuda.is_available()` is false on this machine). "
                                "Run this script on a machine with CUDA to fill this section.",
                       command="python benchmarks/gpu_check.py")
        return
    device = "cpu" if dry else "cuda"
    with tempfile.TemporaryDirectory(prefix="dghc-gpu-check-") as folder:
        root = Path(folder)
        splits = make_demo(root, 32 if dry else 256)
        detect = check_detect(root, splits, device)
        extract = check_extract(root, splits, device, 0 if dry else 4, dry)
        train_figures = check_train(root, splits, device, ["no", "bf16"] if dry else ["no", "bf16", "fp16"],
                                    3 if dry else args.steps, dry)
        two = None if dry else check_two_gpus(root, splits)
        predict = check_predict(root, splits, device)
    if dry:
        print(json.dumps({"detect": detect, "extract": extract, "train": train_figures, "predict": predict},
                         indent=1, default=str))
        return
    name = torch.cuda.get_device_name(0)
    fp32 = train_figures["no"]["steps_per_s"]
    rows = [f"| {p} | {f['steps_per_s']:.2f} | {f['steps_per_s'] / fp32:.2f} | {f['peak_gib']:.2f} | "
            f"{'>= 1.6' if p == 'bf16' else ''} |" for p, f in train_figures.items()]
    body = "\n".join([
        f"Device: {name} ({torch.cuda.device_count()} visible), torch {torch.__version__}.",
        "",
        f"- detect on cuda: {detect['images']} demo images in {detect['seconds']:.1f} s "
        f"({detect['images'] / detect['seconds']:.1f} images/s), {detect['regions']} regions kept.",
        f"- extract on cuda, {extract['workers']} DataLoader workers, ViT-B/32-sized CLIP (untrained): stage "
        f"{extract['stage_seconds']:.2f} s, raw forward {extract['raw_seconds']:.2f} s, ratio "
        f"**{extract['ratio']:.2f}** (goal >= 0.90).",
        f"- predict on cuda: {predict['posts']} posts with images in {predict['seconds']:.1f} s.",
        "- two-GPU data parallel: " + ("not measured: fewer than 2 GPUs" if two is None else
                                       f"exit {two['exit']}, 1 epoch in {two['seconds']:.1f} s"),
        "",
        f"Train steps, full model, untrained bert-base-sized encoder (12 x 768) from a config, batch 16, "
        f"{args.steps} steps:",
        "",
        "| precision | steps/s | over fp32 | peak GPU memory (GiB) | goal |",
        "|---|---|---|---|---|",
        *rows,
    ])
    update_section(SECTION, body, command=f"python benchmarks/gpu_check.py --steps {args.steps}")


if __name__ == "__main__":
    main()
