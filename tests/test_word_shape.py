"""Word shapes: the capitalisation an uncased encoder loses, as a small embedding beside the encoder's output."""
from __future__ import annotations

import logging

import pytest
import torch
from transformers import AutoModel, AutoTokenizer

from dghc.pipeline.data.conll import Post
from dghc.pipeline.data.tags import bioes_label_set
from dghc.pipeline.data.word_shape import tokenizer_lowercases, word_shape
from dghc.pipeline.model.batching import collate, make_examples
from dghc.pipeline.model.config import ModelConfig
from dghc.pipeline.model.tagger import DGHCTagger
from dghc.pipeline.training.config import TrainConfig
from tests.tiny_models import minilm_path, save_tiny_bert, save_wordpiece_tokenizer


@pytest.mark.parametrize("word,shape", [
    ("paris", "lower"), ("Paris", "capitalised"), ("NASA", "all_caps"), ("I", "capitalised"), ("iPhone", "mixed_case"),
    ("McDonald", "mixed_case"), ("2017", "digits"), ("3.5%", "digits"), ("#NBA", "hashtag"), ("@daily_pics", "mention"),
    ("https://t.co/x1", "url"), ("www.bbc.co.uk", "url"), ("😍", "emoji"), ("❤️", "emoji"), (",", "punctuation"),
    ("...", "punctuation"), ("#", "punctuation"), ("+", "other"), ("Zürich", "capitalised"), ("ÉCOLE", "all_caps"),
])
def test_shapes_of_tweet_words(word, shape):
    assert word_shape(word) == shape


def test_lowercasing_tokenizers_are_recognised(tmp_path):
    assert tokenizer_lowercases(AutoTokenizer.from_pretrained(minilm_path()))  # MiniLM is uncased
    cased = AutoTokenizer.from_pretrained(save_wordpiece_tokenizer(tmp_path / "cased", lowercase=False))
    uncased = AutoTokenizer.from_pretrained(save_wordpiece_tokenizer(tmp_path / "uncased", lowercase=True))
    assert not tokenizer_lowercases(cased) and tokenizer_lowercases(uncased)


def test_auto_turns_word_shape_on_for_uncased_tokenizers_only():
    labels = bioes_label_set(["PER"])
    for setting, lowercasing, expected in (("auto", True, True), ("auto", False, False), ("true", False, True),
                                           ("false", True, False)):
        config = TrainConfig(word_shape=setting)
        assert config.model_config(labels, 8, 3, lowercasing).word_shape is expected, (setting, lowercasing)


def test_word_shape_encoder_without_word_shape_is_named_not_silently_dropped(caplog):
    labels = bioes_label_set(["PER"])
    for setting, lowercasing, warned in (("auto", False, True), ("false", True, True), ("auto", True, False),
                                         ("true", False, False)):
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="dghc.pipeline.training.config"):
            TrainConfig(word_shape=setting, word_shape_encoder=True).model_config(labels, 8, 3, lowercasing)
        assert ("word_shape_encoder is on but word_shape is off" in caplog.text) is warned, (setting, caplog.text)


def paris_and_paris(tmp_path):
    """A tiny uncased BERT, the LOC labels, and a batch of two posts that differ only in the case of 'Paris'."""
    folder = save_tiny_bert(tmp_path / "bert")
    tokenizer = AutoTokenizer.from_pretrained(folder)
    labels = bioes_label_set(["LOC"])
    posts = [Post("a", ["visit", "Paris", "now"], ["O", "B-LOC", "O"]), Post("b", ["visit", "paris", "now"], ["O"] * 3)]
    batch = collate(make_examples(posts, tokenizer, 32, {label: i for i, label in enumerate(labels)}),
                    tokenizer.pad_token_id)
    return folder, labels, batch


@pytest.mark.parametrize("option", ["word_shape", "char_cnn"])
def test_an_uncased_tagger_tells_capitalised_words_apart_only_with_a_case_feature(tmp_path, option):
    """'Paris' and 'paris' are the same sub-tokens for an uncased encoder: only the shape embedding (or the
    character CNN) separates their emissions."""
    folder, labels, batch = paris_and_paris(tmp_path)
    assert batch.word_shapes[:, 1].tolist() == [2, 1]  # capitalised, lower
    for with_feature in (False, True):
        torch.manual_seed(0)
        tagger = DGHCTagger(ModelConfig(labels=labels, use_image=False, **{option: with_feature}),
                            AutoModel.from_pretrained(folder)).eval()
        emissions = tagger(batch).emissions
        same = torch.allclose(emissions[0, 1], emissions[1, 1], atol=1e-6)
        assert same != with_feature, f"{option}={with_feature}"
        assert torch.isfinite(tagger.loss(batch))


def test_token_shapes_cover_each_words_sub_tokens_and_skip_special_tokens(tmp_path):
    tokenizer = AutoTokenizer.from_pretrained(minilm_path())
    posts = [Post("a", ["NASA", "launches", "#Starship"], ["O"] * 3)]
    batch = collate(make_examples(posts, tokenizer, 32), tokenizer.pad_token_id)
    tokens = tokenizer.convert_ids_to_tokens(batch.input_ids[0])
    by_token = dict(zip(tokens, batch.token_shapes[0].tolist()))
    shape_id = {name: 1 + index for index, name in enumerate(("other", "lower", "capitalised", "all_caps"))}
    assert by_token["[CLS]"] == 0 and by_token["[SEP]"] == 0, tokens
    assert by_token["nasa"] == shape_id["all_caps"] and by_token["launches"] == shape_id["lower"], by_token
    hashtag = batch.token_shapes[0, batch.word_starts[0, 2]: len(tokens) - 1]
    assert len(hashtag) >= 2 and set(hashtag.tolist()) == {1 + 6}, (tokens, hashtag)  # '#' and its word: hashtag


def test_word_shape_in_the_encoder_starts_as_the_plain_encoder_and_learns_case(tmp_path):
    """Zero at start: the tagger's emissions equal those of word_shape alone; after a few steps on a post where
    only the case differs, the encoder's own output (not only the emission layer) tells 'Paris' from 'paris'."""
    folder, labels, batch = paris_and_paris(tmp_path)
    taggers = []
    for in_encoder in (False, True):
        torch.manual_seed(0)
        config = ModelConfig(labels=labels, use_image=False, word_shape=True, word_shape_encoder=in_encoder)
        taggers.append(DGHCTagger(config, AutoModel.from_pretrained(folder)).eval())
    plain, shaped = taggers
    torch.testing.assert_close(shaped(batch).emissions, plain(batch).emissions, atol=1e-6, rtol=0)
    optimizer = torch.optim.Adam(shaped.token_shape.parameters(), lr=1e-2)  # only the shape embedding learns
    for _ in range(3):
        optimizer.zero_grad()
        shaped.loss(batch).backward()
        optimizer.step()
    hidden = shaped._run_encoder(batch, None)
    start = batch.word_starts[0, 1]
    gap = (hidden[0, start] - hidden[1, start]).abs().max().item()
    print(f"encoder output gap between 'Paris' and 'paris' after 3 steps: {gap:.4f}")
    assert gap > 1e-3
    assert shaped.token_shape.weight[0].abs().max() == 0  # special tokens and padding keep no shape
