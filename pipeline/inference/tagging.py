"""Tagging posts with a trained tagger: BIO labels per word, plus the relevance score and gates per post."""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

import torch

from ..core.devices import resolve_device
from ..core.precision import autocast
from ..data.conll import Post
from ..data.tags import OUTSIDE, bioes_to_bio
from ..model.batching import VisualFeatures, batches, make_examples
from ..model.tagger import DGHCTagger
from .config import EvaluateConfig

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerFast


@dataclass
class PostPrediction:
    post_id: str
    labels: list[str]  # BIO, one per word (words that did not fit the encoder are O)
    relevance: float | None  # text-image relevance s in (0, 1); None for a text-only model
    gates: list[list[float]] | None  # (layers, blocks)
    words_cut: int = 0
    has_image: bool = False  # the post's image vector was present (relevance and gates mean something)


def predict(tagger: DGHCTagger, tokenizer: PreTrainedTokenizerFast, posts: Sequence[Post], features: VisualFeatures | None,
            batch_size: int = EvaluateConfig.batch_size, device: str | torch.device = EvaluateConfig.device,
            progress: bool = False, precision: str = EvaluateConfig.precision) -> list[PostPrediction]:
    """Tag posts in batches of similar length (results come back in the input order), on ``device`` under the
    ``precision`` switch (autocast for fp16/bf16). The defaults are the evaluate stage's (``auto``: the GPU when
    there is one)."""
    device = resolve_device(str(device))
    tagger.eval().to(device)
    examples = make_examples(posts, tokenizer, tagger.max_length)
    order = sorted(range(len(examples)), key=lambda i: len(examples[i].encoded.input_ids))
    results: dict[int, PostPrediction] = {}
    id_to_label = tagger.config.labels
    use_features = features if tagger.config.use_image else None
    iterator = batches(examples, batch_size, tokenizer.pad_token_id, use_features, order)
    if progress:
        from tqdm import tqdm
        iterator = tqdm(iterator, total=(len(order) + batch_size - 1) // batch_size, desc="tagging", unit="batch")
    position = 0
    with torch.inference_mode(), autocast(precision, device):
        for chunk, batch in iterator:
            tag_ids, output = tagger.decode(batch.to(device))
            for row, (example, ids) in enumerate(zip(chunk, tag_ids)):
                labels = bioes_to_bio([id_to_label[i] for i in ids])
                labels += [OUTSIDE] * example.encoded.words_cut
                relevance = float(output.relevance[row]) if output.relevance is not None else None
                gates = output.gates[row].tolist() if output.gates is not None else None
                has_image = batch.visual_mask is not None and bool(batch.visual_mask[row, 0])
                results[order[position]] = PostPrediction(example.post.post_id, labels, relevance, gates,
                                                          example.encoded.words_cut, has_image)
                position += 1
    return [results[i] for i in range(len(examples))]
