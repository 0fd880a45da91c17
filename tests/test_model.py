"""The DGHC tagger's parts: prefix attention, gates, relevance, head split, CRF decoding."""
from __future__ import annotations

import itertools

import pytest
import torch
from transformers import AutoModel, AutoTokenizer

from dghc.pipeline.data.conll import Post
from dghc.pipeline.data.tags import bioes_label_set
from dghc.pipeline.model.batching import collate, make_examples
from dghc.pipeline.model.config import ModelConfig
from dghc.pipeline.model.gates import DynamicGates
from dghc.pipeline.model.tagger import DGHCTagger
from dghc.pipeline.model.visual_prefix import VisualPrefix
from tests.tiny_models import save_tiny_bert

VISION_DIM = 16
LABELS = bioes_label_set(["LOC", "PER"])


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory):
    return save_tiny_bert(tmp_path_factory.mktemp("tiny_bert"))


def make_tagger(folder, **overrides) -> DGHCTagger:
    torch.manual_seed(1)
    encoder = AutoModel.from_pretrained(folder)
    # s starts at 0.5 (the paper), not near 0: these tests need an untrained image to change the output
    config = ModelConfig(labels=LABELS, vision_dim=VISION_DIM, **{"relevance_start": 0.5, **overrides})
    return DGHCTagger(config, encoder).eval()


def make_batch(folder, visual_mask: list[list[bool]], seed: int = 0):
    tokenizer = AutoTokenizer.from_pretrained(folder)
    posts = [Post("a", ["Alice", "visits", "Paris", "today"], ["B-PER", "O", "B-LOC", "O"]),
             Post("b", ["Bob", "Smith", "\u200b", "here"], ["B-PER", "I-PER", "O", "O"])]
    label_to_id = {label: i for i, label in enumerate(LABELS)}
    examples = make_examples(posts, tokenizer, 32, label_to_id)
    batch = collate(examples, tokenizer.pad_token_id)
    generator = torch.Generator().manual_seed(seed)
    batch.visual = torch.randn(2, 4, VISION_DIM, generator=generator)
    batch.visual_mask = torch.tensor(visual_mask)
    return batch


def plain_hidden(folder, batch) -> torch.Tensor:
    plain = AutoModel.from_pretrained(folder).eval()
    return plain(input_ids=batch.input_ids, attention_mask=batch.attention_mask.long()).last_hidden_state


def test_every_slot_masked_equals_plain_encoder(tiny_bert):
    tagger = make_tagger(tiny_bert)
    batch = make_batch(tiny_bert, [[False] * 4, [False] * 4])
    prefixes, _, _ = tagger.visual_prefixes(batch)
    hidden = tagger._run_encoder(batch, prefixes)
    expected = plain_hidden(tiny_bert, batch)
    mask = batch.attention_mask
    assert torch.allclose(hidden[mask], expected[mask], atol=1e-5)


def test_unmasked_prefix_changes_hidden_states(tiny_bert):
    tagger = make_tagger(tiny_bert)
    batch = make_batch(tiny_bert, [[True] * 4, [True] * 4])
    prefixes, _, _ = tagger.visual_prefixes(batch)
    hidden = tagger._run_encoder(batch, prefixes)
    expected = plain_hidden(tiny_bert, batch)
    assert not torch.allclose(hidden, expected, atol=1e-3)


def test_masked_region_has_no_influence(tiny_bert):
    tagger = make_tagger(tiny_bert)
    batch = make_batch(tiny_bert, [[True, True, True, False], [True, False, False, False]])
    first = tagger(batch).emissions
    batch.visual[0, 3] = 100.0  # a masked region: any value must leave the output unchanged
    batch.visual[1, 1:] = -50.0
    second = tagger(batch).emissions
    assert torch.allclose(first, second, atol=1e-6)


def test_post_without_image_gives_text_only_output(tiny_bert):
    tagger = make_tagger(tiny_bert)
    batch = make_batch(tiny_bert, [[False, True, True, True], [True, True, True, True]])
    with_image_path = tagger(batch).emissions[0]
    tagger.config.use_image = False  # the same weights through the text-only path
    text_only = tagger(batch).emissions[0]
    assert torch.allclose(with_image_path, text_only, atol=1e-5)


def test_gates_sum_to_one_in_every_layer(tiny_bert):
    tagger = make_tagger(tiny_bert)
    batch = make_batch(tiny_bert, [[True, True, False, False], [False, False, False, False]])
    _, relevance, gates = tagger.visual_prefixes(batch)
    assert gates.shape == (2, 2, 4)
    assert torch.allclose(gates.sum(dim=-1), torch.ones(2, 2), atol=1e-6)
    assert torch.all(gates[0, :, 2:] == 0)  # absent regions get no gate
    assert torch.all((relevance > 0) & (relevance < 1))


def test_gate_module_alone_softmax_over_present_blocks():
    gates = DynamicGates(vision_dim=8, num_blocks=4, num_layers=3)
    blocks = torch.randn(5, 4, 8)
    mask = torch.rand(5, 4) > 0.3
    out = gates(blocks, mask)
    assert torch.allclose(out.sum(-1), torch.ones(5, 3), atol=1e-6)
    assert torch.all(out[~mask.unsqueeze(1).expand_as(out) & mask.any(1)[:, None, None]] == 0)


def test_prefix_head_split_keeps_heads_contiguous():
    heads, head_size, prompt_len, blocks = 3, 4, 2, 2
    prefix = VisualPrefix(vision_dim=6, hidden_size=heads * head_size, num_heads=heads, num_layers=1, prompt_len=prompt_len,
                          prompt_dim=5, dropout=0.0, projection="shared", scaling="values", match_norm=False)
    vectors = torch.randn(1, blocks, 6)
    gates = torch.tensor([[[0.25, 0.75]]])  # one layer
    projected = prefix.project(vectors).view(1, blocks, prompt_len, 2, heads * head_size)
    layer = prefix(vectors, torch.ones(1, blocks, dtype=torch.bool), gates)[0]
    assert layer.keys.shape == (1, heads, blocks * prompt_len, head_size)
    for block in range(blocks):
        for token in range(prompt_len):
            slot = block * prompt_len + token
            for head in range(heads):
                dims = slice(head * head_size, (head + 1) * head_size)
                assert torch.allclose(layer.keys[0, head, slot], projected[0, block, token, 0, dims], atol=1e-6)
                assert torch.allclose(layer.values[0, head, slot], projected[0, block, token, 1, dims], atol=1e-6)
                assert layer.weight[0, slot] == gates[0, 0, block]  # the gate of the slot's block


@pytest.mark.parametrize("overrides,blocks", [({"use_regions": False}, 1), ({"use_gates": False}, 4),
                                              ({"use_relevance": False}, 4)])
def test_ablations_run_and_have_expected_shapes(tiny_bert, overrides, blocks):
    tagger = make_tagger(tiny_bert, **overrides)
    batch = make_batch(tiny_bert, [[True] * 4, [True, True, False, False]])
    prefixes, relevance, gates = tagger.visual_prefixes(batch)
    # an ablated score or gate is reported as None and computes as 1: each slot's logit bias (attention scaling)
    # is log(s g) with the ablated factor 1
    assert (relevance is None) == ("use_relevance" in overrides)
    assert (gates is None) == ("use_gates" in overrides)
    if gates is not None:
        assert gates.shape == (2, 2, blocks)
    for layer, prefix in enumerate(prefixes):
        s = relevance[:, None] if relevance is not None else torch.ones(2, 1)
        g = gates[:, layer] if gates is not None else torch.ones(2, blocks)
        expected = torch.log((s * g).clamp(min=1e-30)).repeat_interleave(tagger.config.prompt_len, dim=1)
        assert torch.allclose(prefix.bias, expected, atol=1e-6)
    assert torch.isfinite(tagger.loss(batch))


def test_text_vector_sources_differ_and_run(tiny_bert):
    batch = make_batch(tiny_bert, [[True] * 4, [True] * 4])
    for source in ("encoder", "embeddings"):
        tagger = make_tagger(tiny_bert, text_vector=source)
        assert tagger.text_vector(batch).shape == (2, 32)
        assert torch.isfinite(tagger.loss(batch))


def test_zero_subtoken_word_keeps_its_position(tiny_bert):
    batch = make_batch(tiny_bert, [[True] * 4, [True] * 4])
    assert batch.word_mask.sum(dim=1).tolist() == [4, 4]
    assert batch.labels[1].tolist()[:4] == [LABELS.index("B-PER"), LABELS.index("E-PER"), 0, 0]


def test_viterbi_equals_brute_force():
    from torchcrf import CRF

    generator = torch.Generator().manual_seed(0)
    for trial in range(5):
        num_tags, length = 3, 4
        crf = CRF(num_tags, batch_first=True)
        with torch.no_grad():
            for p in (crf.start_transitions, crf.end_transitions, crf.transitions):
                p.copy_(torch.randn(p.shape, generator=generator))
        emissions = torch.randn(1, length, num_tags, generator=generator)
        best = max(itertools.product(range(num_tags), repeat=length),
                   key=lambda tags: crf(emissions, torch.tensor([tags]), reduction="sum").item())
        assert crf.decode(emissions)[0] == list(best), f"trial {trial}"


def test_prefix_built_inside_the_pass_equals_the_explicit_prefix(tiny_bert):
    """text_vector=embeddings builds the prefix from the pass's own embedding output: same result as building
    it first from a separate embeddings call."""
    tagger = make_tagger(tiny_bert, text_vector="embeddings")
    batch = make_batch(tiny_bert, [[True, True, False, False], [True] * 4])
    inside = tagger(batch)
    prefixes, relevance, gates = tagger.visual_prefixes(batch)
    explicit = tagger._run_encoder(batch, prefixes)
    index = batch.word_starts.unsqueeze(-1).expand(-1, -1, explicit.shape[-1])
    expected = tagger.emissions(torch.gather(explicit, 1, index))
    assert torch.allclose(inside.emissions, expected, atol=1e-5)
    assert torch.allclose(inside.relevance, relevance) and torch.allclose(inside.gates, gates)
