"""Sub-word encoding of word-tokenized posts, aligned through the fast tokenizer's ``word_ids()``.

Every word gets a position (its first sub-token), also words that WordPiece turns into nothing
(zero-width joiners, variation selectors, soft hyphens...): those are encoded as the unknown token so
their labels stay aligned. A post too long for the encoder keeps only the first sub-token of each word;
if even that does not fit, the remaining words are reported as cut (the caller tags them ``O`` and warns).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerFast

logger = logging.getLogger(__name__)


@dataclass
class EncodedPost:
    """One post as sub-token ids, with the position of each word's first sub-token."""

    input_ids: list[int]
    word_starts: list[int]  # word i begins at input_ids[word_starts[i]]; only for the words that fit
    n_words: int  # words in the post; n_words - len(word_starts) words did not fit
    shortened: bool = False  # True when later sub-tokens were dropped to fit

    @property
    def words_cut(self) -> int:
        return self.n_words - len(self.word_starts)


def _starts_from_word_ids(word_ids: Sequence[int | None]) -> dict[int, int]:
    starts: dict[int, int] = {}
    for position, word in enumerate(word_ids):
        if word is not None and word not in starts:
            starts[word] = position
    return starts


def encode_words(tokenizer: PreTrainedTokenizerFast, words: Sequence[str], max_length: int) -> EncodedPost:
    """Encode one post given as words. ``tokenizer`` must be a fast (Rust) tokenizer."""
    if not getattr(tokenizer, "is_fast", False):
        raise ValueError("a fast tokenizer is needed for word alignment (word_ids())")
    words = list(words)
    encoding = tokenizer(words, is_split_into_words=True, add_special_tokens=True, truncation=False)
    starts = _starts_from_word_ids(encoding.word_ids())
    if len(starts) < len(words):
        # Words with no sub-token at all: stand in the unknown token so the word keeps a position.
        words = [w if i in starts else tokenizer.unk_token for i, w in enumerate(words)]
        encoding = tokenizer(words, is_split_into_words=True, add_special_tokens=True, truncation=False)
        starts = _starts_from_word_ids(encoding.word_ids())
    input_ids = list(encoding["input_ids"])
    if len(input_ids) <= max_length:
        return EncodedPost(input_ids, [starts[i] for i in range(len(words))], len(words))
    return _shorten(tokenizer, input_ids, encoding.word_ids(), starts, len(words), max_length)


def _shorten(tokenizer, input_ids, word_ids, starts, n_words: int, max_length: int) -> EncodedPost:
    """Keep the first sub-token of each word (the one the tagger reads); cut words that still do not fit."""
    first_ids = [input_ids[starts[i]] for i in range(n_words)]
    room = max_length - 2  # [CLS] and [SEP]
    kept = first_ids[:room]
    ids = [tokenizer.cls_token_id] + kept + [tokenizer.sep_token_id]
    return EncodedPost(ids, list(range(1, len(kept) + 1)), n_words, shortened=True)


def encode_posts(tokenizer: PreTrainedTokenizerFast, posts_words: Sequence[Sequence[str]], max_length: int) -> list[EncodedPost]:
    """Encode many posts; logs one warning with how many posts were shortened or cut."""
    encoded = [encode_words(tokenizer, words, max_length) for words in posts_words]
    shortened = sum(e.shortened for e in encoded)
    cut = sum(e.words_cut for e in encoded)
    if shortened:
        logger.warning(
            "%d post(s) longer than %d sub-tokens were shortened to one sub-token per word; "
            "%d word(s) still did not fit and are tagged O", shortened, max_length, cut)
    return encoded
