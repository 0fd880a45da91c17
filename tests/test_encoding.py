"""Sub-word encoding with the offline MiniLM fast tokenizer: every word keeps a position, long posts are shortened."""
from __future__ import annotations

import logging

import pytest

from dghc.pipeline.data.alignment import encode_posts, encode_words
from dghc.pipeline.data.conll import read_conll
from tests.datasets import data_sets
from tests.tiny_models import minilm_path

INVISIBLE = ["\u200b", "\u200d", "\ufe0f", "\u00a0", "\u00ad", "\u200b\u200d", "\ufe0f\u200d\u00a0"]


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(minilm_path())
    assert tok.is_fast
    return tok


def check_alignment(tokenizer, words, encoded) -> None:
    """Starts are strictly increasing, inside the ids, never on [CLS]/[SEP]/[PAD]."""
    assert encoded.n_words == len(words)
    starts = encoded.word_starts
    assert all(a < b for a, b in zip(starts, starts[1:]))
    assert all(0 < s < len(encoded.input_ids) - 1 for s in starts)
    assert encoded.input_ids[0] == tokenizer.cls_token_id and encoded.input_ids[-1] == tokenizer.sep_token_id
    specials = {tokenizer.cls_token_id, tokenizer.sep_token_id, tokenizer.pad_token_id}
    assert not any(encoded.input_ids[s] in specials for s in starts)


@pytest.mark.parametrize("invisible", INVISIBLE)
def test_invisible_words_keep_a_position(tokenizer, invisible):
    # WordPiece gives these words no sub-token at all.
    assert tokenizer(invisible, add_special_tokens=False)["input_ids"] == []
    words = ["Jordan", invisible, "in", "Paris", invisible]
    encoded = encode_words(tokenizer, words, max_length=64)
    assert len(encoded.word_starts) == len(words)
    check_alignment(tokenizer, words, encoded)
    for i in (1, 4):
        assert encoded.input_ids[encoded.word_starts[i]] == tokenizer.unk_token_id
    # The visible words are encoded as they would be alone.
    assert tokenizer.convert_ids_to_tokens(encoded.input_ids[encoded.word_starts[3]]) == "paris"
    assert not encoded.shortened and encoded.words_cut == 0


def test_post_made_only_of_invisible_words(tokenizer):
    encoded = encode_words(tokenizer, INVISIBLE, max_length=64)
    assert len(encoded.word_starts) == len(INVISIBLE)
    check_alignment(tokenizer, INVISIBLE, encoded)
    assert encoded.input_ids[1:-1] == [tokenizer.unk_token_id] * len(INVISIBLE)


def test_every_word_gets_its_first_sub_token(tokenizer):
    words = ["RT", "@user", ":", "Antidisestablishmentarianism", "in", "#NewYork", "😂", "http://t.co/abc"]
    encoded = encode_words(tokenizer, words, max_length=128)
    check_alignment(tokenizer, words, encoded)
    for i, word in enumerate(words):
        alone = tokenizer(word, add_special_tokens=False)["input_ids"]
        assert encoded.input_ids[encoded.word_starts[i]] == alone[0], word
    # Multi-piece words: the next word starts after all of this word's pieces.
    long_word = tokenizer(words[3], add_special_tokens=False)["input_ids"]
    assert len(long_word) > 1
    assert encoded.word_starts[4] - encoded.word_starts[3] == len(long_word)


def test_slow_tokenizer_is_refused():
    class Slow:
        is_fast = False

    with pytest.raises(ValueError, match="fast tokenizer"):
        encode_words(Slow(), ["a"], 8)


def test_long_post_is_shortened_to_first_sub_tokens(tokenizer):
    words = ["Antidisestablishmentarianism"] * 5 + ["ok"]
    full = encode_words(tokenizer, words, max_length=512)
    assert not full.shortened and len(full.input_ids) > 10
    short = encode_words(tokenizer, words, max_length=10)
    assert short.shortened
    assert len(short.input_ids) <= 10
    assert short.words_cut == 0  # one sub-token per word fits: nothing is lost
    assert short.word_starts == list(range(1, len(words) + 1))
    assert [short.input_ids[s] for s in short.word_starts] == [full.input_ids[s] for s in full.word_starts]


def test_words_that_do_not_fit_are_counted(tokenizer):
    words = [f"w{i}" for i in range(40)]
    encoded = encode_words(tokenizer, words, max_length=12)
    assert encoded.shortened
    assert len(encoded.input_ids) == 12
    assert len(encoded.word_starts) == 10
    assert encoded.words_cut == 30
    check_alignment(tokenizer, words[:10], type(encoded)(encoded.input_ids, encoded.word_starts, 10))


def test_encode_posts_warns_once_with_counts(tokenizer, caplog):
    posts = [["short", "post"], [f"w{i}" for i in range(40)], ["Antidisestablishmentarianism"] * 4]
    with caplog.at_level(logging.WARNING, logger="dghc.pipeline.data.alignment"):
        encoded = encode_posts(tokenizer, posts, max_length=12)
    assert [e.shortened for e in encoded] == [False, True, True]
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    message = warnings[0].getMessage()
    assert "2 post(s)" in message and "30 word(s)" in message


@pytest.mark.parametrize("data", data_sets())
@pytest.mark.parametrize("split", ["train", "valid"])
def test_every_word_of_benchmark_shaped_posts_has_a_start(data, split, tokenizer):
    posts, _ = read_conll(data.split(split))
    words = [p.tokens for p in posts]
    encoded = encode_posts(tokenizer, words, max_length=128)
    zero_piece_words = 0
    for post_words, e in zip(words, encoded):
        assert len(e.word_starts) == len(post_words) and not e.shortened
        check_alignment(tokenizer, post_words, e)
        zero_piece_words += sum(e.input_ids[s] == tokenizer.unk_token_id and
                                tokenizer(w, add_special_tokens=False)["input_ids"] == []
                                for w, s in zip(post_words, e.word_starts))
    expected = getattr(data, split).zero_piece_words
    print(f"{data.name} {split}: {zero_piece_words} zero-piece words (expected {expected})")
    if expected is not None:
        assert zero_piece_words == expected
