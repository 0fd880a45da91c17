"""Training on this machine: what saving the resumable state costs per epoch, and 2 processes against 1.

- state save: the time of one save of the whole state (packaged MiniLM tagger, AdamW moments, RNGs) as a share
  of one epoch of real `dghc train` on the demo set, and of a Twitter-2017-sized epoch at the same step time (one
  save per epoch; goal <= 2%);
- processes: the step time of `dghc train --processes 2` over `--processes 1` with the same effective batch, from
  the difference of a 1-epoch and a 3-epoch run of each (start-up and data loading cancel out). On 2 cores two
  processes share the cores the one process used: no speed-up is expected here.

    .venv/bin/python benchmarks/bench_train.py [--posts 200]
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from dghc.pipeline.core.offline import offline_environment  # noqa: E402

offline_environment(ROOT)

from benchmarks.report import update_section  # noqa: E402

DGHC = str(Path(sys.executable).with_name("dghc"))


def prepare(root: Path, posts: int) -> list[str]:
    """A demo set with its detections and features; the common arguments of the training runs."""
    from dghc.pipeline.demo.config import DemoConfig
    from dghc.pipeline.demo.writer import write_demo_data
    from dghc.pipeline.detection.config import DetectConfig
    from dghc.pipeline.detection.run import run_detect
    from dghc.pipeline.features.config import ExtractConfig
    from dghc.pipeline.features.extract import extract_features

    write_demo_data(DemoConfig(out=root / "demo", train=posts, valid=40, test=8))
    splits = [root / "demo" / f"{s}.txt" for s in ("train", "valid")]
    run_detect(DetectConfig(files=splits, out=root / "detections.h5", imgsz=320, grounding=None, progress=False),
               log=lambda _: None)
    extract_features(ExtractConfig(files=splits, detections=root / "detections.h5", out=root / "features.h5",
                                   device="cpu", progress=False))
    return ["train", "--train", str(splits[0]), "--dev", str(splits[1]), "--features", str(root / "features.h5"),
            "--detections", str(root / "detections.h5"), "--batch-size", "16", "--no-progress",
            "--eval-begin-epoch", "99"]


def run_seconds(args: list[str], root: Path, name: str, epochs: int, processes: int) -> float:
    run = root / name
    command = [DGHC, *args, "--out", str(run / "model"), "--state", str(run / "state"), "--log", str(run / "log.csv"),
               "--epochs", str(epochs), "--processes", str(processes)]
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr[-3000:]}")
    return time.perf_counter() - start


def state_save_seconds(root: Path, repeats: int = 3) -> tuple[float, float]:
    """One save of the whole state of the packaged-MiniLM tagger after a real optimizer step."""
    import torch

    from dghc.pipeline.model.encoder import PACKAGED_MINILM, load_encoder_and_tokenizer
    from dghc.pipeline.model.tagger import DGHCTagger
    from dghc.pipeline.training.config import TrainConfig
    from dghc.pipeline.training.optim import make_optimizer, make_scheduler
    from dghc.pipeline.training.state import Progress, StateFolder, capture_rng

    encoder, _ = load_encoder_and_tokenizer(PACKAGED_MINILM)
    config = TrainConfig()
    tagger = DGHCTagger(config.model_config(["O", "B-PER", "I-PER", "E-PER", "S-PER"], 256, 3), encoder)
    optimizer = make_optimizer(tagger, config)
    scheduler = make_scheduler(optimizer, config, 100)
    for parameter in tagger.parameters():  # AdamW's moments exist after a first step, as in a real save
        parameter.grad = torch.zeros_like(parameter)
    optimizer.step()
    folder = StateFolder(root / "save_timing")
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        folder.save(model=tagger.state_dict(), optimizer=optimizer.state_dict(), scheduler=scheduler.state_dict(),
                    scaler=None, rng=[capture_rng()], progress=Progress(), resume_key={"run": 1})
        times.append(time.perf_counter() - start)
    size = sum(p.stat().st_size for p in folder.current.iterdir()) / 2**20
    return min(times), size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--posts", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="dghc-bench-train-") as folder:
        root = Path(folder)
        common = prepare(root, args.posts)
        epoch = {}
        for processes in (1, 2):
            short = run_seconds(common, root, f"p{processes}e1", 1, processes)
            long = run_seconds(common, root, f"p{processes}e3", 3, processes)
            epoch[processes] = (long - short) / 2
            print(f"{processes} process(es): 1 epoch run {short:.1f} s, 3 epochs {long:.1f} s")
        save, size = state_save_seconds(root)
        size_note = f"{size:.0f} MiB: weights, AdamW moments, RNGs"
    steps = -(-args.posts // 16)
    body = "\n".join([
        f"Demo set, {args.posts} training posts, batch 16 ({steps} optimizer steps per epoch), packaged MiniLM, full "
        "model; an epoch's time is the difference of a 3-epoch and a 1-epoch run of `dghc train` divided by 2.",
        "",
        "| | seconds | ratio | goal |",
        "|---|---|---|---|",
        f"| epoch, 1 process | {epoch[1]:.1f} | | |",
        f"| epoch, 2 processes (gloo, same effective batch) | {epoch[2]:.1f} | {epoch[2] / epoch[1]:.2f} of 1 process | "
        "(2 cores: no speed-up expected) |",
        f"| one save of the whole state ({size_note}) | {save:.2f} | {100 * save / epoch[1]:.1f} % of this epoch | "
        "<= 2 % |",
        f"| the same save against a Twitter-2017 epoch (3373 posts = 211 steps at the step time above, "
        f"{211 * epoch[1] / steps:.0f} s) | | {100 * save / (211 * epoch[1] / steps):.2f} % | <= 2 % |",
    ])
    update_section("training: state saves and processes", body,
                   command=f"python benchmarks/bench_train.py --posts {args.posts}")


if __name__ == "__main__":
    main()
