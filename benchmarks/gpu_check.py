"""GPU check: every CUDA path of dghc on a few batches, with the figures that matter on a first GPU.

One function per check, each timed (the whole run is meant to take under 8 minutes on one GPU):

- detect: the packaged person detector over a small demo set;
- extract: the stage's time against the raw CLIP forward on the same crops (a ViT-B/32-sized CLIP built from a
  config: the paper's model size, untrained; goal >= 0.90), with DataLoader workers;
- train: steps/s of the full model (an untrained bert-base-sized encoder built from a config) in fp32, bf16 and
  fp16 (goal: mixed precision >= 1.6x fp32). On a GPU below compute capability 8.0 (T4, V100) dghc refuses bf16:
  the check says so and times fp16 instead;
- memory: peak GPU memory of training steps at batch 8, 16 and 32, in fp32 and in mixed precision;
- same outputs: one batch of crops through CLIP and one batch through the tagger, on the device and on the CPU,
  both in fp32: the largest differences of the vectors and emissions, the loss, the Viterbi tags, against stated
  tolerances;
- two GPUs: `dghc train --processes 2` for one epoch, only when there are two GPUs;
- predict: detection + CLIP + tagging in process.

It prints the figures (JSON), one PASS/FAIL line per goal, and writes its section of BENCHMARKS.md; without CUDA
the section says "not measured: no GPU". `--device cpu` runs every check on the CPU with tiny sizes, to check the
script itself: it prints the figures and writes a section (marked as a CPU run) only to a file given with
`--benchmarks`.

    .venv/bin/python benchmarks/gpu_check.py [--device cuda|cuda:N|cpu] [--steps 20] [--benchmarks PATH]
"""
from __future__ import annotations

import argparse
import contextlib
import gc
import io
import json
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from dghc.pipeline.core.offline import offline_environment  # noqa: E402

offline_environment(ROOT)

import torch  # noqa: E402

from benchmarks import report  # noqa: E402
from dghc.pipeline.core.devices import resolve_device  # noqa: E402
from dghc.pipeline.core.errors import DghcError  # noqa: E402
from dghc.pipeline.core.precision import check_precision  # noqa: E402

SECTION = "GPU check (CUDA paths, precision, extract ratio)"
BATCH = 16  # posts per training step of the speed check
MEMORY_BATCHES = (8, 16, 32)
TOLERANCE = {"clip": 1e-3, "emissions": 1e-3, "loss": 1e-4, "tags": 0.99}  # fp32 on the device against the CPU
BUDGET_S = 8 * 60
TINY_BERT = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=2, intermediate_size=128)
TINY_CLIP = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2, projection_dim=64)
VIT_B_32 = dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
                projection_dim=512)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(function, device: torch.device) -> float:
    synchronize(device)
    start = time.perf_counter()
    function()
    synchronize(device)
    return time.perf_counter() - start


@contextlib.contextmanager
def convolutions_in(precision: str):
    """cuDNN convolutions in ``precision`` ("ieee": fp32; "tf32": torch's default, on Ampere and later)."""
    conv = torch.backends.cudnn.conv
    before = conv.fp32_precision
    conv.fp32_precision = precision
    try:
        yield
    finally:
        conv.fp32_precision = before


def describe(device: torch.device) -> dict:
    if device.type != "cuda":
        return {"name": "cpu", "torch": torch.__version__}
    index = device.index if device.index is not None else torch.cuda.current_device()
    major, minor = torch.cuda.get_device_capability(index)
    return {"name": f"cuda:{index} ({torch.cuda.get_device_name(index)})", "capability": f"{major}.{minor}",
            "gpus": torch.cuda.device_count(), "torch": torch.__version__}


def mixed_precisions(device: torch.device) -> tuple[list[str], str | None]:
    """The precisions to time: fp32 ("no") first, then bf16 where dghc allows it, and fp16 on a GPU; with the line
    saying why bf16 was left out, or None."""
    wanted = ["no", "bf16", "fp16"] if device.type == "cuda" else ["no", "bf16"]
    try:
        check_precision("bf16", device)
    except DghcError:
        index = device.index if device.index is not None else torch.cuda.current_device()
        major, minor = torch.cuda.get_device_capability(index)
        return [p for p in wanted if p != "bf16"], f"bf16 refused on this GPU (compute capability {major}.{minor})"
    return wanted, None


def make_demo(root: Path, posts: int) -> list[Path]:
    from dghc.pipeline.demo.config import DemoConfig
    from dghc.pipeline.demo.writer import write_demo_data

    write_demo_data(DemoConfig(out=root / "demo", train=posts, valid=max(8, posts // 8), test=8))
    return [root / "demo" / f"{split}.txt" for split in ("train", "valid")]


def save_tiny_bert(folder: Path) -> Path:
    """A randomly initialised 2-layer BERT with the packaged MiniLM's tokenizer, saved like a hub model."""
    from transformers import AutoTokenizer, BertConfig, BertModel

    from dghc.pipeline.model.encoder import PACKAGED_MINILM, resolve_encoder

    tokenizer = AutoTokenizer.from_pretrained(resolve_encoder(PACKAGED_MINILM))
    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=tokenizer.vocab_size, **TINY_BERT)).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def check_detect(root: Path, splits: list[Path], device: str, imgsz: int) -> dict:
    from dghc.pipeline.detection.config import DetectConfig
    from dghc.pipeline.detection.run import run_detect

    config = DetectConfig(files=splits, out=root / "detections.h5", device=device, grounding=None, imgsz=imgsz,
                          batch_size=16, progress=False)
    start = time.perf_counter()
    summary = run_detect(config, log=lambda _: None)
    return {"images": summary.total, "imgsz": imgsz, "seconds": time.perf_counter() - start,
            "regions": sum(summary.regions.values())}


def clip_folder(root: Path, tiny: bool) -> Path:
    """A CLIP vision model of ViT-B/32's size (untrained, from a config folder), or a tiny one."""
    from transformers import CLIPVisionConfig

    folder = root / "clip"
    if not folder.is_dir():
        CLIPVisionConfig(image_size=224, patch_size=32, **(TINY_CLIP if tiny else VIT_B_32)).save_pretrained(folder)
    return folder


def extract_config(root: Path, splits: list[Path], device: str, workers: int, tiny: bool):
    from dghc.pipeline.features.config import ExtractConfig

    return ExtractConfig(files=splits, detections=root / "detections.h5", out=root / "features.h5",
                         model=str(clip_folder(root, tiny)), device=device, num_workers=workers, batch_size=32,
                         force=True, progress=False)


def pixel_batches(config, encoder) -> list[torch.Tensor]:
    """The preprocessed crops of every image (whole image and regions), in batches of 32 images."""
    from dghc.pipeline.features.crops import CropDataset, make_loader
    from dghc.pipeline.features.extract import collect_images, load_detection_rows

    images = collect_images(config.inputs, None)
    detections = load_detection_rows(config.detections, images.ids, config.inputs)
    dataset = CropDataset(range(len(images.ids)), images.paths, detections.boxes, detections.valid,
                          encoder.preprocessor, encoder.image_size, 0.0, 2, 4.0)
    return [batch["pixels"] for batch in make_loader(dataset, 32, 0)]


def check_extract(root: Path, splits: list[Path], device: str, workers: int, tiny: bool) -> dict:
    from dghc.pipeline.features.clip_encoder import load_clip
    from dghc.pipeline.features.extract import extract_features

    config = extract_config(root, splits, device, workers, tiny)
    encoder = load_clip(config.model, "projected", device)
    batches = pixel_batches(config, encoder)  # preprocessed beforehand, not timed
    encoder.encode(batches[0])  # warm-up (kernels, allocator)
    raw = timed(lambda: [encoder.encode(pixels) for pixels in batches], encoder.device)
    stage = timed(lambda: extract_features(config, encoder=encoder), encoder.device)
    return {"images": sum(len(b) for b in batches), "raw_seconds": raw, "stage_seconds": stage,
            "ratio": raw / stage, "workers": workers}


@dataclass
class TrainData:
    """What every training check reads: the demo's posts as examples, their features, the encoder's config."""

    root: Path
    tokenizer: Any
    bert: Any  # BertConfig: bert-base's sizes, or TINY_BERT
    labels: list[str]
    features: Any  # FeatureStore
    examples: list

    def tagger(self, config) -> Any:
        from transformers import BertModel

        from dghc.pipeline.model.tagger import DGHCTagger

        model_config = config.model_config(self.labels, self.features.dim, self.features.m)
        return DGHCTagger(model_config, BertModel(self.bert, add_pooling_layer=False))

    def batches(self, size: int, count: int) -> list:
        from dghc.pipeline.model.batching import collate

        examples = self.examples * (size * count // len(self.examples) + 1)  # cycling the posts
        return [collate(examples[i:i + size], self.tokenizer.pad_token_id, self.features)
                for i in range(0, size * count, size)]


def train_data(root: Path, splits: list[Path], tiny: bool) -> TrainData:
    from transformers import AutoTokenizer, BertConfig

    from dghc.pipeline.data.conll import read_conll
    from dghc.pipeline.data.tags import bioes_label_set, entity_types
    from dghc.pipeline.features.store import FeatureStore
    from dghc.pipeline.model.batching import make_examples
    from dghc.pipeline.model.encoder import PACKAGED_MINILM, resolve_encoder

    tokenizer = AutoTokenizer.from_pretrained(resolve_encoder(PACKAGED_MINILM))
    bert = BertConfig(vocab_size=tokenizer.vocab_size, **(TINY_BERT if tiny else {}))  # default: 12 x 768
    posts, _ = read_conll(splits[0])
    labels = bioes_label_set(entity_types([p.labels for p in posts]))
    examples = make_examples(posts, tokenizer, 128, {label: i for i, label in enumerate(labels)})
    return TrainData(root, tokenizer, bert, labels, FeatureStore(root / "features.h5"), examples)


def train_steps(data: TrainData, device: str, precision: str, batch_size: int, steps: int) -> dict:
    """A fresh model's training steps: 2 warm-up steps, then ``steps`` timed; steps/s and peak GPU memory (GiB;
    None on the CPU)."""
    from dghc.pipeline.training.config import TrainConfig
    from dghc.pipeline.training.distributed import make_accelerator
    from dghc.pipeline.training.optim import make_optimizer
    from dghc.pipeline.training.run import TrainingStep

    gc.collect()  # the previous run's model and optimizer state: out of the peak
    config = TrainConfig(device=device, precision=precision, batch_size=batch_size, state_dir=data.root / "state")
    accelerator = make_accelerator(config)
    cuda = accelerator.device.type == "cuda"
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(accelerator.device)
    torch.manual_seed(0)
    tagger = data.tagger(config)
    module, optimizer = accelerator.prepare(TrainingStep(tagger), make_optimizer(tagger, config))
    batches = data.batches(batch_size, steps + 2)

    def run(chosen) -> None:
        for batch in chosen:
            with accelerator.autocast():
                loss = module(batch.to(accelerator.device)) / batch.input_ids.shape[0]
            accelerator.backward(loss)
            accelerator.clip_grad_norm_(module.parameters(), 1.0)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)

    run(batches[:2])
    seconds = timed(lambda: run(batches[2:]), accelerator.device)
    peak = torch.cuda.max_memory_allocated(accelerator.device) / 2**30 if cuda else None
    return {"steps_per_s": steps / seconds, "peak_gib": peak}


def check_train(data: TrainData, device: str, precisions: list[str], steps: int) -> dict:
    return {precision: train_steps(data, device, precision, BATCH, steps) for precision in precisions}


def check_memory(data: TrainData, device: str, precisions: list[str]) -> dict:
    """Peak GPU memory (GiB) of training at each batch size of MEMORY_BATCHES; None on the CPU."""
    return {precision: {size: train_steps(data, device, precision, size, 1)["peak_gib"] for size in MEMORY_BATCHES}
            for precision in precisions}


def check_same_outputs(root: Path, splits: list[Path], data: TrainData, device: str, tiny: bool) -> dict:
    """The same inputs on the device and on the CPU, both in fp32: one batch of crops through CLIP (with cuDNN's
    convolutions in fp32, and with torch's default, TF32 on Ampere and later), one batch through the tagger."""
    from dghc.pipeline.features.clip_encoder import load_clip
    from dghc.pipeline.training.config import TrainConfig

    config = extract_config(root, splits, device, 0, tiny)
    here, there = (load_clip(config.model, "projected", where) for where in ("cpu", device))
    pixels = pixel_batches(config, here)[0]
    expected = here.encode(pixels)
    with convolutions_in("ieee"):
        clip = (there.encode(pixels) - expected).abs().max().item()
    clip_default = (there.encode(pixels) - expected).abs().max().item()

    torch.manual_seed(0)
    cpu_tagger = data.tagger(TrainConfig(device="cpu")).eval()
    device_tagger = data.tagger(TrainConfig(device="cpu"))
    device_tagger.load_state_dict(cpu_tagger.state_dict())
    device_tagger.to(resolve_device(device)).eval()
    batch = data.batches(BATCH, 1)[0]
    outputs = []
    with torch.no_grad():
        for tagger, where in ((cpu_tagger, "cpu"), (device_tagger, resolve_device(device))):
            tags, output = tagger.decode(batch.to(where))
            outputs.append((output.emissions.float().cpu(), tagger.loss(batch.to(where)).item(), tags))
    (emissions, loss, tags), (emissions_there, loss_there, tags_there) = outputs
    same = sum(a == b for post, post_there in zip(tags, tags_there) for a, b in zip(post, post_there))
    return {"clip_max_abs": clip, "clip_max_abs_torch_default": clip_default,
            "clip_scale": expected.abs().max().item(),
            "emissions_max_abs": (emissions_there - emissions).abs().max().item(),
            "loss_cpu": loss, "loss_relative": abs(loss_there - loss) / abs(loss),
            "tags_same": same / sum(len(post) for post in tags)}


def check_two_gpus(root: Path, splits: list[Path], bert: Path) -> dict | None:
    if torch.cuda.device_count() < 2:
        return None
    command = [str(Path(sys.executable).with_name("dghc")), "train", "--train", str(splits[0]), "--dev", str(splits[1]),
               "--features", str(root / "features.h5"), "--detections", str(root / "detections.h5"),
               "--encoder", str(bert), "--out", str(root / "ddp_model"), "--state", str(root / "ddp_state"),
               "--log", str(root / "ddp_log.csv"), "--epochs", "1", "--device", "cuda", "--processes", "2",
               "--no-progress"]
    start = time.perf_counter()
    try:
        done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=300)
    except subprocess.TimeoutExpired:  # a hung rendezvous must not take the whole budget
        return {"exit": -1, "seconds": time.perf_counter() - start, "tail": "timed out after 300 s"}
    return {"exit": done.returncode, "seconds": time.perf_counter() - start,
            "tail": (done.stdout + done.stderr)[-300:].replace("\n", " ")}


def check_predict(root: Path, splits: list[Path], device: str, bert: Path) -> dict:
    from dghc.pipeline.prediction.config import PredictConfig
    from dghc.pipeline.prediction.run import run_predict
    from dghc.pipeline.training.config import TrainConfig
    from dghc.pipeline.training.trainer import train

    train(TrainConfig(train_file=splits[0], dev_file=splits[1], features_file=root / "features.h5",
                      detections_file=root / "detections.h5", output_dir=root / "model", state_dir=root / "state2",
                      log_file=None, encoder=str(bert), epochs=1, device=device, progress=False))
    posts = root / "posts.jsonl"
    with posts.open("w") as handle:
        for path in sorted((root / "demo" / "images").glob("*.jpg"))[:32]:
            handle.write(json.dumps({"id": path.stem, "text": "Look at Jordan !", "image": str(path)}) + "\n")
    start = time.perf_counter()
    summary = run_predict(PredictConfig(model_dir=root / "model", input=posts, device=device, progress=False),
                          stdout=io.StringIO(), log=lambda _: None)
    return {"posts": summary.posts, "seconds": time.perf_counter() - start, "statuses": summary.image_status}


def run_checks(device: str, steps: int, root: Path) -> dict:
    """Every check in turn, each timed; the figures, with the goals they meet or miss."""
    resolved = resolve_device(device)
    tiny = resolved.type == "cpu"
    precisions, refused = mixed_precisions(resolved)
    figures: dict[str, Any] = {"device": describe(resolved), "bf16_refused": refused, "seconds": {}}
    if refused:
        print(f"{refused}: timing {', '.join(p for p in precisions if p != 'no')} against fp32 instead", flush=True)
    start = time.perf_counter()

    def check(name: str, function, *args) -> Any:
        began = time.perf_counter()
        figures[name] = function(*args)
        figures["seconds"][name] = round(time.perf_counter() - began, 1)
        print(f"gpu_check: {name} took {figures['seconds'][name]:.1f} s", flush=True)
        return figures[name]

    splits = make_demo(root, 32 if tiny else 256)
    check("detect", check_detect, root, splits, device, 320 if tiny else 640)
    check("extract", check_extract, root, splits, device, 0 if tiny else 4, tiny)
    data = train_data(root, splits, tiny)
    check("train", check_train, data, device, precisions, steps)
    check("memory", check_memory, data, device, precisions[:2])  # fp32 and the first mixed precision
    check("same_outputs", check_same_outputs, root, splits, data, device, tiny)
    bert = save_tiny_bert(root / "tiny_bert")
    check("two_gpus", check_two_gpus, root, splits, bert)
    check("predict", check_predict, root, splits, device, bert)
    figures["seconds"]["total"] = round(time.perf_counter() - start, 1)
    figures["goals"] = goals(figures)
    return figures


def goals(figures: dict) -> list[dict]:
    """One row per goal: what, the figure, the target, met or not."""
    rows = []

    def goal(what: str, value: float, target: str, met: bool) -> None:
        rows.append({"goal": what, "value": value, "target": target, "pass": bool(met)})

    ratio = figures["extract"]["ratio"]
    goal("extract stage / raw CLIP forward", ratio, ">= 0.90", ratio >= 0.90)
    train = figures["train"]
    mixed = next(p for p in ("bf16", "fp16") if p in train)
    speedup = train[mixed]["steps_per_s"] / train["no"]["steps_per_s"]
    goal(f"{mixed} / fp32 train step speed-up", speedup, ">= 1.6", speedup >= 1.6)
    same = figures["same_outputs"]
    for key, tolerance, what in (
            ("clip_max_abs", TOLERANCE["clip"], "CLIP vectors, device vs CPU (fp32), max abs difference"),
            ("emissions_max_abs", TOLERANCE["emissions"], "tagger emissions, device vs CPU (fp32), max abs difference"),
            ("loss_relative", TOLERANCE["loss"], "tagger loss, device vs CPU (fp32), relative difference")):
        goal(what, same[key], f"<= {tolerance:g}", same[key] <= tolerance)
    goal("Viterbi tags, device vs CPU: share of words with the same tag", same["tags_same"],
         f">= {TOLERANCE['tags']:g}", same["tags_same"] >= TOLERANCE["tags"])
    if figures["two_gpus"] is not None:
        goal("dghc train --processes 2: exit status", figures["two_gpus"]["exit"], "0", figures["two_gpus"]["exit"] == 0)
    total = figures["seconds"]["total"]
    goal("all checks, seconds", total, f"< {BUDGET_S}", total < BUDGET_S)
    return rows


def goal_lines(figures: dict) -> list[str]:
    return [f"{'PASS' if row['pass'] else 'FAIL'}  {row['goal']}: {row['value']:.3g} (goal {row['target']})"
            for row in figures["goals"]]


def gib(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def markdown(figures: dict, steps: int) -> str:
    """The section of BENCHMARKS.md."""
    device, seconds = figures["device"], figures["seconds"]
    cpu = device["name"] == "cpu"
    detect, extract, predict, two = (figures[k] for k in ("detect", "extract", "predict", "two_gpus"))
    train, memory, same = figures["train"], figures["memory"], figures["same_outputs"]
    fp32 = train["no"]["steps_per_s"]
    where = "cpu" if cpu else "cuda"
    lines = [
        ("**CPU run** (`--device cpu`, tiny model sizes): it checks that the script runs end to end; the figures are "
         "not a GPU's and the speed goals do not apply." if cpu else
         f"Device: {device['name']}, compute capability {device['capability']} ({device['gpus']} visible), "
         f"torch {device['torch']}."),
        *([f"{figures['bf16_refused']}: mixed precision measured in fp16."] if figures["bf16_refused"] else []),
        "",
        "| goal | figure | target | result |",
        "|---|---|---|---|",
        *[f"| {r['goal']} | {r['value']:.3g} | {r['target']} | {'PASS' if r['pass'] else 'FAIL'} |"
          for r in figures["goals"]],
        "",
        "Seconds per check: " + ", ".join(f"{name} {value:.1f}" for name, value in seconds.items()) + ".",
        "",
        f"- detect on {where} at {detect['imgsz']} px: {detect['images']} demo images in {detect['seconds']:.1f} s "
        f"({detect['images'] / detect['seconds']:.1f} images/s), {detect['regions']} regions kept.",
        f"- extract on {where}, {extract['workers']} DataLoader workers, {'tiny' if cpu else 'ViT-B/32-sized'} CLIP "
        f"(untrained), {extract['images']} crops: stage {extract['stage_seconds']:.2f} s, raw forward "
        f"{extract['raw_seconds']:.2f} s, ratio **{extract['ratio']:.2f}** (goal >= 0.90).",
        f"- predict on {where}: {predict['posts']} posts with images in {predict['seconds']:.1f} s.",
        "- two-GPU data parallel: " + ("not measured: fewer than 2 GPUs" if two is None else
                                       f"exit {two['exit']}, 1 epoch in {two['seconds']:.1f} s"
                                       + ("" if two["exit"] == 0 else f" ({two['tail']})")),
        "",
        f"Train steps, full model, untrained {'tiny' if cpu else 'bert-base-sized (12 x 768)'} encoder from a "
        f"config, batch {BATCH}, {steps} timed steps:",
        "",
        "| precision | steps/s | over fp32 | peak GPU memory (GiB) |",
        "|---|---|---|---|",
        *[f"| {p} | {f['steps_per_s']:.2f} | {f['steps_per_s'] / fp32:.2f} | {gib(f['peak_gib'])} |"
          for p, f in train.items()],
        "",
        "Peak GPU memory of training (GiB) per batch size:",
        "",
        "| precision | " + " | ".join(f"batch {size}" for size in MEMORY_BATCHES) + " |",
        "|---|" + "---|" * len(MEMORY_BATCHES),
        *[f"| {p} | " + " | ".join(gib(sizes[size]) for size in MEMORY_BATCHES) + " |" for p, sizes in memory.items()],
        "",
        f"Same outputs as the CPU (fp32 on both): CLIP vectors (largest |value| {same['clip_scale']:.3g}) differ by "
        f"at most {same['clip_max_abs']:.2e} with cuDNN convolutions in fp32, {same['clip_max_abs_torch_default']:.2e} "
        f"with torch's default (TF32 convolutions on Ampere and later: what `dghc extract` runs); the tagger's "
        f"emissions by {same['emissions_max_abs']:.2e}, its loss ({same['loss_cpu']:.4g}) by "
        f"{same['loss_relative']:.2e} relative, and {same['tags_same']:.1%} of the words get the same Viterbi tag.",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", help="cuda, cuda:N, or cpu (every check with tiny sizes)")
    parser.add_argument("--steps", type=int, default=20, help="train steps timed per precision (3 on the CPU)")
    parser.add_argument("--benchmarks", type=Path, default=None,
                        help="the markdown file to write the section into (default: BENCHMARKS.md on a GPU; "
                             "with --device cpu, none unless given)")
    args = parser.parse_args()
    try:
        cpu = torch.device(args.device).type == "cpu"
    except RuntimeError:
        parser.error(f"--device {args.device}: give cuda, cuda:N or cpu")
    path = args.benchmarks if args.benchmarks is not None or cpu else report.BENCHMARKS_MD
    if not cpu and not torch.cuda.is_available():
        report.update_section(SECTION, "not measured: no GPU (`torch.cuda.is_available()` is false on this machine). "
                                       "Run this script on a machine with CUDA to fill this section.",
                              command="python benchmarks/gpu_check.py", path=path)
        return
    steps = min(args.steps, 3) if cpu else args.steps
    with tempfile.TemporaryDirectory(prefix="dghc-gpu-check-") as folder:
        figures = run_checks(args.device, steps, Path(folder))
    print(json.dumps(figures, indent=1, default=str))
    print("\n".join(goal_lines(figures)))
    if path is not None:
        report.update_section(SECTION, markdown(figures, steps),
                              command="python " + " ".join(["benchmarks/gpu_check.py", *sys.argv[1:]]), path=path)


if __name__ == "__main__":
    main()
