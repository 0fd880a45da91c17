"""The fusion options: how the relevance score and gates weigh the prefix, its length, per-layer projections,
modality dropout, the visual LayerNorm, and checkpoints saved before the options existed."""
from __future__ import annotations

import itertools

import pytest
import torch

from dghc.pipeline.model.config import OLDER_CHECKPOINT_VALUES, ModelConfig
from tests.test_model import LABELS, make_batch, make_tagger, plain_hidden, tiny_bert  # noqa: F401 (a fixture)


@pytest.mark.parametrize("scaling,norm", list(itertools.product(["values", "attention"], ["free", "text"])))
def test_prefix_attention_options_match_their_formula(tiny_bert, scaling, norm):  # noqa: F811
    """softmax(Q [phi_k ; K]^T / sqrt(d_h) + bias) [phi_v ; V], written out by hand for one layer, where bias is
    log(s g) on the prefix slots with ``attention`` scaling, and phi is rescaled to the text's mean length with
    ``text`` norm (``values`` + ``free`` is the paper's eq. 14 as written)."""
    tagger = make_tagger(tiny_bert, prefix_scaling=scaling, prefix_norm=norm)
    batch = make_batch(tiny_bert, [[True, True, False, False], [True] * 4])
    prefixes, relevance, gates = tagger.visual_prefixes(batch)
    attention = tagger.encoder.encoder.layer[0].attention.self
    hidden = torch.randn(2, batch.input_ids.shape[1], 32)
    tagger.prefix_state.text_mask = batch.attention_mask
    tagger.prefix_state.layers = prefixes
    output, _ = attention(hidden)
    tagger.prefix_state.clear()

    def split(x):
        return x.view(2, -1, 4, 8).transpose(1, 2)

    q, k, v = split(attention.query(hidden)), split(attention.key(hidden)), split(attention.value(hidden))
    prefix_keys, prefix_values = prefixes[0].keys, prefixes[0].values
    if norm == "text":
        real = batch.attention_mask[:, None, :].float()  # (2, 1, length)

        def text_length(x):
            return ((x.norm(dim=-1) * real).sum(-1) / real.sum(-1))[..., None, None]

        prefix_keys = prefix_keys / prefix_keys.norm(dim=-1, keepdim=True) * text_length(k)
        prefix_values = prefix_values / prefix_values.norm(dim=-1, keepdim=True) * text_length(v)
    if scaling == "values":  # each slot's key and value times its block's gate, after the length is set
        gate = gates[:, 0].repeat_interleave(4, dim=1)[:, None, :, None]
        prefix_keys, prefix_values = gate * prefix_keys, gate * prefix_values
    keys = torch.cat([prefix_keys, k], dim=2)
    values = torch.cat([prefix_values, v], dim=2)
    allowed = torch.cat([prefixes[0].mask, batch.attention_mask], dim=1)[:, None, None, :]
    scores = (q @ keys.transpose(-1, -2)) / 8 ** 0.5
    if scaling == "attention":  # block b's 4 slots get log(s * g_0,b)
        bias = torch.log(relevance[:, None] * gates[:, 0]).repeat_interleave(4, dim=1)  # (2, 16)
        scores[:, :, :, :16] += bias[:, None, None, :]
    weights = torch.softmax(scores.masked_fill(~allowed, float("-inf")), dim=-1)
    expected = (weights @ values).transpose(1, 2).reshape(2, -1, 32)
    assert torch.allclose(output, expected, atol=1e-5)
    assert torch.all(weights[0, :, :, 8:16] == 0)  # regions 2 and 3 of post 0 are absent: no attention


@torch.no_grad()  # forward passes only
def test_with_attention_scaling_a_zero_score_removes_the_image(tiny_bert):  # noqa: F811
    """s -> 0 gives the plain encoder with ``attention`` scaling; with ``values`` (the paper) the projection's
    biases still leave a prefix, which the score cannot switch off."""
    batch = make_batch(tiny_bert, [[True] * 4, [True] * 4])
    expected = plain_hidden(tiny_bert, batch)
    mask = batch.attention_mask
    differences = {}
    for scaling in ("attention", "values"):
        tagger = make_tagger(tiny_bert, prefix_scaling=scaling)
        tagger.relevance.forward = lambda text, image: torch.zeros(text.shape[0])
        prefixes, relevance, _ = tagger.visual_prefixes(batch)
        assert torch.all(relevance == 0)
        hidden = tagger._run_encoder(batch, prefixes)
        differences[scaling] = float((hidden[mask] - expected[mask]).abs().max())
    print(f"largest change of a hidden state at s = 0: {differences}")
    assert differences["attention"] < 1e-5
    assert differences["values"] > 1e-3


@torch.no_grad()  # forward passes only
def test_text_norm_gives_prefix_keys_the_length_of_the_text_keys(tiny_bert):  # noqa: F811
    """Huge visual vectors: free prefix keys grow with them, text-normed ones keep the text keys' length."""
    lengths = {}
    for norm in ("free", "text"):
        tagger = make_tagger(tiny_bert, prefix_norm=norm, use_relevance=False, use_gates=False)
        batch = make_batch(tiny_bert, [[True] * 4, [True] * 4])
        batch.visual = batch.visual * 1000
        captured = {}
        original = torch.nn.functional.scaled_dot_product_attention

        def spy(query, key, value, **kwargs):
            captured["key"] = key
            return original(query, key, value, **kwargs)

        torch.nn.functional.scaled_dot_product_attention = spy
        try:
            prefixes, _, _ = tagger.visual_prefixes(batch)
            tagger._run_encoder(batch, prefixes)
        finally:
            torch.nn.functional.scaled_dot_product_attention = original
        key = captured["key"]  # (2, heads, 16 + length, 8): the last layer's prefix slots, then the text
        text = key[:, :, 16:][batch.attention_mask[:, None, :].expand(-1, key.shape[1], -1)]
        lengths[norm] = (float(key[:, :, :16].norm(dim=-1).mean()), float(text.norm(dim=-1).mean()))
    print(f"mean length of prefix keys, text keys: {lengths}")
    prefix, text = lengths["text"]
    assert prefix == pytest.approx(text, rel=1e-3)
    assert lengths["free"][0] > 3 * lengths["free"][1]  # the projection saturates: bounded, but long


def test_per_layer_projection_gives_each_layer_its_own_prefix(tiny_bert):  # noqa: F811
    """Shared: layer prefixes differ by the gates only. Per layer (eq. 13): the projected tokens differ too."""
    batch = make_batch(tiny_bert, [[True] * 4, [True] * 4])
    for projection, same_tokens in (("shared", True), ("per_layer", False)):
        tagger = make_tagger(tiny_bert, prefix_projection=projection)
        prefixes, _, gates = tagger.visual_prefixes(batch)
        first, second = prefixes[0].keys[0, :, :4], prefixes[1].keys[0, :, :4]  # block 0, before its gate
        assert torch.allclose(first, second, atol=1e-5) == same_tokens, projection
        assert not torch.allclose(gates[:, 0], gates[:, 1])  # the gates differ in either case
    per_layer = make_tagger(tiny_bert, prefix_projection="per_layer")
    shared = make_tagger(tiny_bert)
    extra = sum(p.numel() for p in per_layer.parameters()) - sum(p.numel() for p in shared.parameters())
    assert extra == (2 - 1) * 4 * 2 * 32 * (ModelConfig(labels=LABELS).prompt_dim + 1)  # one more output per layer


def test_image_dropout_hides_images_in_training_only(tiny_bert):  # noqa: F811
    batch = make_batch(tiny_bert, [[True] * 4, [True] * 4])
    tagger = make_tagger(tiny_bert, image_dropout=1.0, dropout=0.0)
    evaluated = tagger._run_encoder(batch, tagger.visual_prefixes(batch)[0])
    tagger.train()
    prefixes, _, _ = tagger.visual_prefixes(batch)
    assert all(not prefix.mask.any() for prefix in prefixes)  # every image hidden
    tagger.eval()
    expected = plain_hidden(tiny_bert, batch)
    mask = batch.attention_mask
    assert not torch.allclose(evaluated[mask], expected[mask], atol=1e-3)  # in eval the image is read


def test_visual_norm_makes_the_prefix_blind_to_the_scale_of_the_vectors(tiny_bert):  # noqa: F811
    batch = make_batch(tiny_bert, [[True] * 4, [True] * 4])
    tagger = make_tagger(tiny_bert, visual_norm=True)
    first, relevance, _ = tagger.visual_prefixes(batch)
    batch.visual = batch.visual * 50
    second, relevance_scaled, _ = tagger.visual_prefixes(batch)
    assert torch.allclose(first[0].keys, second[0].keys, atol=1e-4)
    assert torch.allclose(relevance, relevance_scaled, atol=1e-5)


@torch.no_grad()
def test_layer_mix_is_a_weighted_sum_of_every_layers_output(tiny_bert):  # noqa: F811
    """The mix starts as the mean of the embedding output and every layer; one-hot weights give one layer back."""
    batch = make_batch(tiny_bert, [[True] * 4, [False] * 4])
    tagger = make_tagger(tiny_bert, layer_mix=True)
    prefixes = tagger.visual_prefixes(batch)[0]
    tagger.prefix_state.layers = prefixes
    tagger.prefix_state.text_mask = batch.attention_mask
    try:
        layers = tagger.encoder(input_ids=batch.input_ids, attention_mask=batch.attention_mask.long(),
                                output_hidden_states=True).hidden_states
    finally:
        tagger.prefix_state.clear()
    assert len(layers) == tagger.num_layers + 1
    mixed = tagger._run_encoder(batch, prefixes, mix_layers=True)
    torch.testing.assert_close(mixed, torch.stack(layers).mean(dim=0), atol=1e-5, rtol=0)
    tagger.layer_weights.copy_(torch.tensor([-1e4] * tagger.num_layers + [0.0]))
    torch.testing.assert_close(tagger._run_encoder(batch, prefixes, mix_layers=True), layers[-1], atol=1e-5, rtol=0)
    assert torch.isfinite(tagger(batch).emissions).all()


def test_a_checkpoint_config_without_the_new_keys_keeps_its_older_behaviour():
    saved = ModelConfig(labels=LABELS).to_dict()
    for key in OLDER_CHECKPOINT_VALUES:
        saved.pop(key)
    loaded = ModelConfig.from_dict(saved)
    assert {key: getattr(loaded, key) for key in OLDER_CHECKPOINT_VALUES} == OLDER_CHECKPOINT_VALUES
    with pytest.raises(ValueError, match="prefix_scaling must be one of"):
        ModelConfig.from_dict({**saved, "prefix_scaling": "sideways"})


def test_relevance_start_sets_the_untrained_score_and_how_much_an_untrained_image_moves_the_text(tiny_bert):  # noqa: F811
    """relevance_start is the score's output bias (logit(start)): s starts near it, and a closed start (0.05) moves
    the text's hidden states far less than the paper's 0.5 does."""
    from dghc.pipeline.model.relevance import RelevanceScore

    batch = make_batch(tiny_bert, [[True] * 4, [True] * 4])
    plain = plain_hidden(tiny_bert, batch)
    mask = batch.attention_mask
    shift, scores = {}, {}
    for start in (0.05, 0.5):
        tagger = make_tagger(tiny_bert, relevance_start=start)
        assert tagger.relevance.score.bias.item() == pytest.approx(torch.logit(torch.tensor(start)).item(), abs=1e-6)
        prefixes, relevance, _ = tagger.visual_prefixes(batch)
        scores[start] = relevance.mean().item()
        shift[start] = (tagger._run_encoder(batch, prefixes) - plain)[mask].abs().mean().item()
    print(f"mean s at start: {scores}; mean shift of the text's hidden states: {shift}")
    assert scores[0.05] < 0.2 < scores[0.5]
    assert shift[0.05] < shift[0.5] / 3
    for start in (0.0, 1.0):
        with pytest.raises(ValueError, match="start must lie in"):
            RelevanceScore(8, 8, start)


@torch.no_grad()
@pytest.mark.parametrize("text_vector", ["encoder", "embeddings"])
def test_an_ablated_score_or_gates_are_reported_as_none_not_as_one(tiny_bert, text_vector):  # noqa: F811
    """The ablations "w/o RE score" and "w/o gating" compute with s = 1 and g = 1, but have no score or gate to
    report: predictions (and evaluate's means) carry None for them, so a table cannot read 1.0 as a measurement."""
    from dghc.pipeline.inference.evaluation import summarise_visual
    from dghc.pipeline.inference.tagging import PostPrediction

    batch = make_batch(tiny_bert, [[True] * 4, [True] * 4])
    for use_relevance, use_gates in itertools.product([True, False], repeat=2):
        output = make_tagger(tiny_bert, text_vector=text_vector, use_relevance=use_relevance,
                             use_gates=use_gates)(batch)
        assert (output.relevance is not None) == use_relevance and (output.gates is not None) == use_gates
        if use_relevance:
            assert torch.all((output.relevance > 0) & (output.relevance < 1))
        prediction = PostPrediction("a", ["O"], None if output.relevance is None else float(output.relevance[0]),
                                    None if output.gates is None else output.gates[0].tolist(), has_image=True)
        summary = summarise_visual([prediction])
        assert (summary["relevance_mean"] is None) == (not use_relevance)
        assert (summary["gates_mean_per_layer"] is None) == (not use_gates)
