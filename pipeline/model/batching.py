"""From posts to tensors: sub-word encoding, BIOES tag ids, padding, and the cached visual features."""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterator, Protocol, Sequence

import torch

from ..data.alignment import EncodedPost, encode_posts
from ..data.characters import word_byte_ids
from ..data.conll import Post
from ..data.tags import bio_to_bioes
from ..data.word_shape import word_shape_ids
from .tagger import Batch

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerFast


class VisualFeatures(Protocol):
    """What collate reads image vectors through: a feature store (``FeatureStore``, or vectors computed in process)."""

    dim: int
    m: int

    def batch(self, image_ids: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]: ...

    def __contains__(self, image_id: object) -> bool: ...


@dataclass
class Example:
    post: Post
    encoded: EncodedPost
    tag_ids: list[int] | None  # BIOES tag ids of the words that fit; None when labels are not needed


def make_examples(posts: Sequence[Post], tokenizer: PreTrainedTokenizerFast, max_length: int,
                  label_to_id: dict[str, int] | None = None) -> list[Example]:
    """Encode posts; with ``label_to_id`` also their BIOES tag ids (every label must be known)."""
    encoded = encode_posts(tokenizer, [p.tokens for p in posts], max_length)
    examples = []
    for post, enc in zip(posts, encoded):
        tag_ids = None
        if label_to_id is not None:
            # convert what fits, so that an entity cut by truncation still ends in E-/S-
            bioes = bio_to_bioes(post.labels[: len(enc.word_starts)])
            missing = sorted({t for t in bioes if t not in label_to_id})
            if missing:
                raise ValueError(f"post {post.post_id!r}: labels {missing} are not in the model's label set")
            tag_ids = [label_to_id[t] for t in bioes]
        examples.append(Example(post, enc, tag_ids))
    return examples


def collate(examples: Sequence[Example], pad_token_id: int, features: VisualFeatures | None = None) -> Batch:
    """Pad a list of examples into a Batch (features looked up by post id when given)."""
    size = len(examples)
    seq_len = max(len(e.encoded.input_ids) for e in examples)
    n_words = max(max(len(e.encoded.word_starts), 1) for e in examples)
    input_ids = torch.full((size, seq_len), pad_token_id, dtype=torch.long)
    attention_mask = torch.zeros(size, seq_len, dtype=torch.bool)
    word_starts = torch.zeros(size, n_words, dtype=torch.long)
    word_mask = torch.zeros(size, n_words, dtype=torch.bool)
    word_shapes = torch.zeros(size, n_words, dtype=torch.long)
    token_shapes = torch.zeros(size, seq_len, dtype=torch.long)
    byte_ids = [[word_byte_ids(word) for word in e.post.tokens[: len(e.encoded.word_starts)]] for e in examples]
    width = max((len(ids) for words in byte_ids for ids in words), default=1)
    word_bytes = torch.tensor([[ids + [0] * (width - len(ids)) for ids in words] + [[0] * width] * (n_words - len(words))
                               for words in byte_ids], dtype=torch.long)
    has_labels = all(e.tag_ids is not None for e in examples)
    labels = torch.zeros(size, n_words, dtype=torch.long) if has_labels else None
    for i, example in enumerate(examples):
        ids = example.encoded.input_ids
        input_ids[i, : len(ids)] = torch.tensor(ids)
        attention_mask[i, : len(ids)] = True
        starts = example.encoded.word_starts
        word_starts[i, : len(starts)] = torch.tensor(starts, dtype=torch.long)
        word_mask[i, : len(starts)] = True
        shapes = word_shape_ids(example.post.tokens[: len(starts)])
        word_shapes[i, : len(starts)] = torch.tensor(shapes)
        # a word's sub-tokens run from its start to the next word's; the last one to the closing special token
        for shape, start, end in zip(shapes, starts, [*starts[1:], len(ids) - 1]):
            token_shapes[i, start:end] = shape + 1
        if labels is not None:
            labels[i, : len(starts)] = torch.tensor(example.tag_ids, dtype=torch.long)
    visual = visual_mask = None
    if features is not None:
        visual, visual_mask = features.batch([e.post.post_id for e in examples])
    return Batch(input_ids, attention_mask, word_starts, word_mask, labels, visual, visual_mask, word_shapes,
                 token_shapes, word_bytes)


def batches(examples: Sequence[Example], batch_size: int, pad_token_id: int,
            features: VisualFeatures | None = None,
            order: Sequence[int] | None = None) -> Iterator[tuple[list[Example], Batch]]:
    """Yield (examples, Batch) in ``order`` (default: as given)."""
    indices = list(order) if order is not None else list(range(len(examples)))
    for start in range(0, len(indices), batch_size):
        chunk = [examples[i] for i in indices[start: start + batch_size]]
        yield chunk, collate(chunk, pad_token_id, features)
