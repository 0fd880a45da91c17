"""Train-step time of the full DGHC model over the text-only model (BERT-CRF), on the same batches.

Both text-vector sources are measured (``encoder``: the paper's prefix-free [CLS] pass; ``embeddings``:
mean of the embedding output). The variants are timed in interleaved rounds so machine noise hits
all of them alike; the figure is the ratio of median step times. Also: posts per second of inference.

    python benchmarks/bench_model.py [--steps 12] [--batch-size 16]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from dghc.pipeline.core.offline import offline_environment  # noqa: E402

offline_environment(REPO)

import torch  # noqa: E402

from benchmarks.report import update_section  # noqa: E402
from dghc.pipeline.data.conll import read_conll  # noqa: E402
from dghc.pipeline.data.tags import bioes_label_set, entity_types  # noqa: E402
from dghc.pipeline.inference.tagging import predict  # noqa: E402
from dghc.pipeline.model.batching import collate, make_examples  # noqa: E402
from dghc.pipeline.model.config import ModelConfig  # noqa: E402
from dghc.pipeline.model.encoder import PACKAGED_MINILM, load_encoder_and_tokenizer  # noqa: E402
from dghc.pipeline.model.tagger import DGHCTagger  # noqa: E402
from dghc.pipeline.training.config import TrainConfig  # noqa: E402
from dghc.pipeline.training.optim import make_optimizer, make_scheduler  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "twitter2017" / "train.txt"
VISION_DIM = 256


class RandomFeatures:
    """Every post has an image and 3 regions (the most expensive case for the prefix)."""

    dim, m = VISION_DIM, 3

    def __contains__(self, image_id) -> bool:
        return True

    def batch(self, image_ids):
        generator = torch.Generator().manual_seed(len(image_ids))
        return torch.randn(len(image_ids), 4, VISION_DIM, generator=generator), torch.ones(len(image_ids), 4, dtype=torch.bool)


def make_variant(labels, **model_flags):
    encoder, tokenizer = load_encoder_and_tokenizer(PACKAGED_MINILM)
    torch.manual_seed(0)
    tagger = DGHCTagger(ModelConfig(labels=labels, vision_dim=VISION_DIM, **model_flags), encoder)
    config = TrainConfig()
    optimizer = make_optimizer(tagger, config)
    scheduler = make_scheduler(optimizer, config, 10_000)
    return tagger, tokenizer, optimizer, scheduler


def step(tagger, optimizer, scheduler, batch) -> None:
    tagger.train()
    loss = tagger.loss(batch)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(tagger.parameters(), 1.0)
    optimizer.step()
    scheduler.step()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--batch-size", type=int, default=16)
    args = parser.parse_args()
    torch.manual_seed(0)
    posts, _ = read_conll(DATA)
    labels = bioes_label_set(entity_types([p.labels for p in posts]))
    variants = {
        "text only": dict(use_image=False),
        "full, text vector = encoder": dict(text_vector="encoder"),
        "full, text vector = embeddings": dict(text_vector="embeddings"),
    }
    built = {name: make_variant(labels, **flags) for name, flags in variants.items()}
    tokenizer = next(iter(built.values()))[1]
    label_to_id = {label: i for i, label in enumerate(labels)}
    features = RandomFeatures()
    chosen = posts[: args.batch_size * args.steps]
    examples = make_examples(chosen, tokenizer, 128, label_to_id)
    batches = [collate(examples[i:i + args.batch_size], tokenizer.pad_token_id, features)
               for i in range(0, len(examples), args.batch_size)]
    times: dict[str, list[float]] = {name: [] for name in variants}
    for name, (tagger, _, optimizer, scheduler) in built.items():  # warm-up step each
        step(tagger, optimizer, scheduler, batches[0])
    for batch in batches:
        for name, (tagger, _, optimizer, scheduler) in built.items():
            start = time.perf_counter()
            step(tagger, optimizer, scheduler, batch)
            times[name].append(time.perf_counter() - start)
    medians = {name: statistics.median(values) for name, values in times.items()}
    base = medians["text only"]

    tagger = built["full, text vector = encoder"][0]
    eval_posts = posts[:256]
    start = time.perf_counter()
    predict(tagger, tokenizer, eval_posts, features, batch_size=32)
    posts_per_second = len(eval_posts) / (time.perf_counter() - start)

    goals = {"full, text vector = encoder": 1.45, "full, text vector = embeddings": 1.10}
    rows = ["| variant | median train step (s) | over text only | goal |", "|---|---|---|---|"]
    for name, median in medians.items():
        goal = f"<= {goals[name]:.2f}" if name in goals else ""
        rows.append(f"| {name} | {median:.3f} | {median / base:.3f} | {goal} |")
    body = (f"Packaged MiniLM encoder (6 layers, 384 wide), batch {args.batch_size}, {len(batches)} batches of "
            f"Twitter-2017 train (same batches for every variant, interleaved), every post with an image and 3 "
            f"regions (random 256-d vectors), AdamW step included.\n\n" + "\n".join(rows) +
            f"\n\nInference (`predict`, full model, batch 32, 256 Twitter-2017 posts): {posts_per_second:.1f} posts/s.")
    update_section("model: train step and inference", body, "python benchmarks/bench_model.py")


if __name__ == "__main__":
    main()
