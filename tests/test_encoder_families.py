"""The visual prefix in every supported encoder family, on tiny randomly initialised models of each, loaded the
way users load hub models (``from_pretrained`` on a folder with the family's own kind of tokenizer)."""
from __future__ import annotations

import pytest
import torch
from transformers import AutoModel

from dghc.pipeline.core.errors import DghcError
from dghc.pipeline.data.conll import Post
from dghc.pipeline.data.tags import bioes_label_set
from dghc.pipeline.inference.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from dghc.pipeline.model.batching import collate, make_examples
from dghc.pipeline.model.config import ModelConfig
from dghc.pipeline.model.encoder import load_encoder_and_tokenizer
from dghc.pipeline.model.tagger import DGHCTagger
from tests.tiny_models import save_tiny_encoder

FAMILIES = ["bert", "roberta", "mpnet", "xlm-roberta", "electra", "deberta-v2"]
LABELS = bioes_label_set(["LOC", "PER"])
POSTS = [Post("a", ["Kevin", "Durant", "signs", "with", "the", "Warriors", "#NBA"],
              ["B-PER", "I-PER", "O", "O", "O", "B-LOC", "O"]),
         Post("b", ["Heavy", "snow", "in", "Reykjavik"], ["O", "O", "O", "B-LOC"])]


def batch_for(tokenizer, visual_mask: list[list[bool]]):
    examples = make_examples(POSTS, tokenizer, 64, {label: i for i, label in enumerate(LABELS)})
    batch = collate(examples, tokenizer.pad_token_id)
    batch.visual = torch.randn(2, 4, 16, generator=torch.Generator().manual_seed(0))
    batch.visual_mask = torch.tensor(visual_mask)
    return batch


@pytest.fixture(scope="module", params=FAMILIES)
def family(request, tmp_path_factory):
    return request.param, save_tiny_encoder(tmp_path_factory.mktemp(request.param), request.param)


def tagger_of(folder, **options) -> tuple[DGHCTagger, object]:
    """An untrained tagger whose relevance score starts at 0.5 (the paper), so that an image changes its output."""
    encoder, tokenizer = load_encoder_and_tokenizer(str(folder))
    torch.manual_seed(1)
    return DGHCTagger(ModelConfig(labels=LABELS, vision_dim=16, prompt_dim=16,
                                  **{"relevance_start": 0.5, **options}), encoder).eval(), tokenizer


def test_every_slot_masked_equals_the_plain_encoder(family):
    name, folder = family
    tagger, tokenizer = tagger_of(folder)
    batch = batch_for(tokenizer, [[False] * 4, [False] * 4])
    assert batch.word_mask.sum().item() == sum(len(p.tokens) for p in POSTS)  # every word has its sub-tokens
    prefixes, _, _ = tagger.visual_prefixes(batch)
    hidden = tagger._run_encoder(batch, prefixes)
    plain = AutoModel.from_pretrained(folder).eval()
    expected = plain(input_ids=batch.input_ids, attention_mask=batch.attention_mask.long()).last_hidden_state
    mask = batch.attention_mask
    assert torch.allclose(hidden[mask], expected[mask], atol=1e-5), name
    if name == "deberta-v2":  # the disentangled terms are in play, not only DeBERTa's content attention
        attention = tagger.encoder.encoder.layer[0].attention.self
        assert type(attention).__name__ == "PrefixDisentangledSelfAttention" and attention.relative_attention
        assert attention.pos_att_type == ["p2c", "c2p"]
    with_image = tagger._run_encoder(batch_for(tokenizer, [[True] * 4] * 2), tagger.visual_prefixes(
        batch_for(tokenizer, [[True] * 4] * 2))[0])
    assert not torch.allclose(with_image[mask], expected[mask], atol=1e-3), f"{name}: the image changes nothing"
    if name == "mpnet":  # its relative-position bias reaches the prefix attention: changing it changes the output
        attention = tagger.encoder.encoder.layer[0].attention.attn
        assert type(attention).__name__ == "PrefixMPNetSelfAttention"
        with torch.no_grad():
            tagger.encoder.encoder.relative_attention_bias.weight.normal_(0, 1.0)
            moved = tagger._run_encoder(batch, prefixes)
        assert not torch.allclose(moved[mask], hidden[mask], atol=1e-3)


@pytest.mark.parametrize("text_vector", ["encoder", "embeddings"])
def test_a_training_step_runs_and_moves_the_weights(family, text_vector):
    name, folder = family
    tagger, tokenizer = tagger_of(folder, text_vector=text_vector)
    tagger.train()
    batch = batch_for(tokenizer, [[True, True, False, False], [True] * 4])
    optimizer = torch.optim.AdamW(tagger.parameters(), lr=1e-3)
    before = {k: v.clone() for k, v in tagger.state_dict().items()}
    loss = tagger.loss(batch)
    loss.backward()
    optimizer.step()
    assert torch.isfinite(loss), name
    moved = [k for k, v in tagger.state_dict().items() if not torch.equal(v, before[k])]
    assert any(k.startswith("encoder.") for k in moved) and any(k.startswith("visual_prefix.") for k in moved), name


def test_save_load_and_predict_are_identical(family, tmp_path):
    name, folder = family
    tagger, tokenizer = tagger_of(folder)
    batch = batch_for(tokenizer, [[True, True, False, False], [True] * 4])
    save_checkpoint(tmp_path / "model", Checkpoint(tagger, tokenizer))
    loaded = load_checkpoint(tmp_path / "model")
    reloaded_batch = batch_for(loaded.tokenizer, [[True, True, False, False], [True] * 4])
    assert torch.equal(reloaded_batch.input_ids, batch.input_ids), name
    with torch.no_grad():
        assert torch.equal(loaded.tagger(reloaded_batch).emissions, tagger(batch).emissions), name
    assert loaded.tagger.decode(reloaded_batch)[0] == tagger.decode(batch)[0]


def test_an_unsupported_family_is_named_in_one_line():
    from transformers import DistilBertConfig

    encoder = AutoModel.from_config(DistilBertConfig(vocab_size=100, dim=32, n_layers=2, n_heads=4, hidden_dim=64))
    with pytest.raises(DghcError, match="supports BERT, RoBERTa, XLM-RoBERTa, ELECTRA.*MPNet.*DeBERTa-v2/v3") as error:
        DGHCTagger(ModelConfig(labels=LABELS, vision_dim=16), encoder)
    assert "\n" not in str(error.value)


@pytest.mark.parametrize("damage, expected", [("drop", "1 missing (encoder.layer.1.output.dense.weight)"),
                                              ("rename", "1 missing (encoder.layer.1.output.dense.weight); "
                                                         "1 unexpected (encoder.layer.1.output.dense.weight_old)"),
                                              ("reshape", "1 of another shape (encoder.layer.1.output.dense.weight)")])
def test_an_encoder_whose_weights_do_not_fit_is_refused_naming_the_keys(tmp_path, damage, expected):
    from safetensors.torch import load_file, save_file

    from tests.tiny_models import save_tiny_bert

    folder = save_tiny_bert(tmp_path / "bert", hidden=16, layers=2, heads=2)
    load_encoder_and_tokenizer(str(folder))  # complete: loads (a pooler in the file is a head, dropped in silence)
    weights = load_file(folder / "model.safetensors")
    moved = weights.pop("encoder.layer.1.output.dense.weight")
    if damage == "rename":
        weights["encoder.layer.1.output.dense.weight_old"] = moved
    if damage == "reshape":
        weights["encoder.layer.1.output.dense.weight"] = moved[:, :-1].contiguous()
    save_file(weights, folder / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(DghcError) as error:
        load_encoder_and_tokenizer(str(folder))
    print(error.value)
    assert expected in str(error.value) and str(folder) in str(error.value)
