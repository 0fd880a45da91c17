"""The character CNN: each word's bytes as written, so an uncased encoder's tags still see case and affixes."""
from __future__ import annotations

import pytest
import torch
from transformers import AutoModel, AutoTokenizer

from dghc.pipeline.data.characters import MAX_WORD_BYTES, word_byte_ids
from dghc.pipeline.data.conll import Post
from dghc.pipeline.inference.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from dghc.pipeline.inference.metrics import entity_scores
from dghc.pipeline.inference.tagging import predict
from dghc.pipeline.model.batching import collate, make_examples
from dghc.pipeline.model.config import ModelConfig
from dghc.pipeline.model.encoder import load_encoder_and_tokenizer
from dghc.pipeline.model.tagger import DGHCTagger
from dghc.pipeline.training.trainer import train
from tests.test_training import POSTS, image_features, tiny_bert, tiny_config  # noqa: F401 (a fixture)
from tests.test_word_shape import paris_and_paris


def test_byte_ids_keep_case_every_script_and_long_words_ends():
    assert word_byte_ids("Paris") != word_byte_ids("paris")
    assert word_byte_ids("Ab") == [ord("A") + 1, ord("b") + 1]
    assert len(word_byte_ids("😍")) == 4 and min(word_byte_ids("Zürich")) >= 1  # every byte, none is padding
    long_word = "#" + "a" * 30 + "Warriors"
    ids = word_byte_ids(long_word)
    half = MAX_WORD_BYTES // 2
    assert len(ids) == MAX_WORD_BYTES
    assert bytes(i - 1 for i in ids) == long_word.encode()[:half] + long_word.encode()[-half:]


def test_batch_bytes_are_padded_per_word_and_per_post(tmp_path):
    tokenizer = AutoTokenizer.from_pretrained(paris_and_paris(tmp_path)[0])
    posts = [Post("a", ["Golden", "State"], ["O", "O"]), Post("b", ["NBA"], ["O"])]
    batch = collate(make_examples(posts, tokenizer, 32), tokenizer.pad_token_id)
    assert tuple(batch.word_bytes.shape) == (2, 2, len("Golden"))
    assert batch.word_bytes[0, 1].tolist() == [b + 1 for b in b"State"] + [0]
    assert batch.word_bytes[1, 1].tolist() == [0] * 6  # a padded word has no bytes


def test_the_loss_reaches_the_byte_embedding_and_the_convolution(tmp_path):
    folder, labels, batch = paris_and_paris(tmp_path)
    tagger = DGHCTagger(ModelConfig(labels=labels, use_image=False, char_cnn=True), AutoModel.from_pretrained(folder))
    tagger.loss(batch).backward()
    assert tagger.characters.embedding.weight.grad.abs().sum() > 0
    assert tagger.characters.convolution.weight.grad.abs().sum() > 0


def test_a_character_cnn_tagger_saves_and_loads_identically(tmp_path):
    folder, labels, batch = paris_and_paris(tmp_path)
    encoder, tokenizer = load_encoder_and_tokenizer(str(folder))  # as `dghc train` builds it
    torch.manual_seed(0)
    tagger = DGHCTagger(ModelConfig(labels=labels, use_image=False, char_cnn=True), encoder)
    save_checkpoint(tmp_path / "model", Checkpoint(tagger.eval(), tokenizer))
    loaded = load_checkpoint(tmp_path / "model")
    assert loaded.tagger.config.char_cnn and loaded.tagger.characters is not None
    with torch.no_grad():
        assert torch.equal(loaded.tagger(batch).emissions, tagger(batch).emissions)


@pytest.mark.slow  # it trains: make test-fast stays under a minute
def test_training_with_the_character_cnn_overfits_and_reloads(tmp_path, tiny_bert):  # noqa: F811
    torch.set_num_threads(1)
    features = image_features()
    result = train(tiny_config(tmp_path, tiny_bert, char_cnn=True), POSTS, POSTS, features)
    checkpoint = load_checkpoint(result.output_dir)
    predictions = predict(checkpoint.tagger, checkpoint.tokenizer, POSTS, features)
    f1 = entity_scores([p.labels for p in POSTS], [p.labels for p in predictions])["overall"]["f1"]
    print(f"dev F1 {result.best_dev['default']['overall']['f1']:.3f}, reloaded F1 {f1:.3f}")
    assert f1 == 1.0 and checkpoint.tagger.characters is not None
