"""Gradient checkpointing of the encoder's layers with the visual prefix: the same gradients as without it, and
every parameter of the visual branch (relevance score, gates, prefix projection) gets one.

The prefix enters each layer's attention beside the layer's inputs; under checkpointing the layer is recomputed
in backward, after the tagger has handed the prefix over, so the prefix must be an input of the checkpointed call.
"""
from __future__ import annotations

import pytest
import torch
from torch.utils.checkpoint import CheckpointError

from dghc.pipeline.data.conll import Post
from dghc.pipeline.data.tags import bioes_label_set
from dghc.pipeline.model.batching import collate, make_examples
from dghc.pipeline.model.config import ModelConfig
from dghc.pipeline.model.encoder import load_encoder_and_tokenizer
from dghc.pipeline.model.tagger import DGHCTagger
from dghc.pipeline.training.config import TrainConfig
from tests.tiny_models import save_tiny_encoder

LABELS = bioes_label_set(["LOC", "PER"])
POSTS = [Post("a", ["Kevin", "Durant", "signs", "with", "the", "Warriors", "#NBA"],
              ["B-PER", "I-PER", "O", "O", "O", "B-LOC", "O"]),
         Post("b", ["Heavy", "snow", "in", "Reykjavik"], ["O", "O", "O", "B-LOC"]),
         Post("c", ["NASA", "says", "hi"], ["B-LOC", "O", "O"])]
VISUAL_BRANCH = ("relevance.", "gates.", "visual_prefix.")
# BERT's layout (RoBERTa, XLM-R, ELECTRA share it), MPNet's, and DeBERTa-v2's disentangled attention
FAMILIES = ["bert", "mpnet", "deberta-v2"]


@pytest.fixture(scope="module", params=FAMILIES)
def family(request, tmp_path_factory):
    return request.param, save_tiny_encoder(tmp_path_factory.mktemp(request.param), request.param)


def tagger_and_batch(folder, checkpointing: bool, dropout: float = 0.0, **options):
    encoder, tokenizer = load_encoder_and_tokenizer(str(folder))
    for module in encoder.modules():  # the encoder's own dropout (hidden, attention) as asked
        if isinstance(module, torch.nn.Dropout):
            module.p = dropout
    for layer in encoder.encoder.layer:
        attention = getattr(layer.attention, "self", None)
        if hasattr(attention, "dropout_p"):  # BERT-style prefix attention keeps its rate as a float
            attention.dropout_p = dropout
    torch.manual_seed(1)
    config = ModelConfig(labels=LABELS, vision_dim=16, prompt_dim=16, dropout=dropout,
                         **{"relevance_start": 0.5, **options})
    tagger = DGHCTagger(config, encoder).train()
    if checkpointing:
        tagger.set_gradient_checkpointing(True)
    examples = make_examples(POSTS, tokenizer, 64, {label: i for i, label in enumerate(LABELS)})
    batch = collate(examples, tokenizer.pad_token_id)
    batch.visual = torch.randn(3, 4, 16, generator=torch.Generator().manual_seed(0))
    batch.visual_mask = torch.tensor([[True, True, True, False], [True, False, False, False], [False] * 4])
    return tagger, batch


def gradients(folder, checkpointing: bool, **options) -> tuple[dict[str, torch.Tensor | None], int]:
    """Every parameter's gradient after one forward and backward of the loss, and how often the first layer's
    attention ran (a checkpointed layer runs again in backward)."""
    tagger, batch = tagger_and_batch(folder, checkpointing, **options)
    runs = []
    handle = tagger.encoder.encoder.layer[0].attention.register_forward_hook(lambda *_: runs.append(1))
    torch.manual_seed(7)
    tagger.loss(batch).backward()
    handle.remove()
    return {name: p.grad for name, p in tagger.named_parameters()}, len(runs)


@pytest.mark.parametrize("options", [{}, {"prefix_scaling": "values", "prefix_norm": "free"},
                                     {"text_vector": "embeddings"}], ids=["default", "paper", "embeddings"])
def test_checkpointing_gives_the_same_gradients_and_every_visual_parameter_one(family, options):
    name, folder = family
    plain, plain_runs = gradients(folder, checkpointing=False, **options)
    checkpointed, checkpointed_runs = gradients(folder, checkpointing=True, **options)
    assert checkpointed_runs == plain_runs + 1, name  # the layer was recomputed in backward
    assert plain.keys() == checkpointed.keys()
    visual = [n for n in plain if n.startswith(VISUAL_BRANCH)]
    assert any(n.startswith("relevance.") for n in visual) and any(n.startswith("gates.") for n in visual)
    for grads in (plain, checkpointed):
        for n in visual:
            assert grads[n] is not None and grads[n].abs().sum() > 0, f"{name}: {n} has no gradient"
    for n, grad in plain.items():
        if grad is None:
            assert checkpointed[n] is None, n
            continue
        torch.testing.assert_close(checkpointed[n], grad, rtol=1e-5, atol=1e-5, msg=f"{name}: {n}")


def test_dropout_is_replayed_in_the_recomputation(family):
    name, folder = family
    plain, _ = gradients(folder, checkpointing=False, dropout=0.1)
    checkpointed, _ = gradients(folder, checkpointing=True, dropout=0.1)
    for n, grad in plain.items():
        if grad is not None:
            torch.testing.assert_close(checkpointed[n], grad, rtol=1e-5, atol=1e-5, msg=f"{name}: {n}")


def test_checkpointing_off_again_and_outside_training(family):
    name, folder = family
    tagger, batch = tagger_and_batch(folder, checkpointing=True)
    tagger.eval()
    with torch.no_grad():
        checkpointed = tagger(batch).emissions
    tagger.set_gradient_checkpointing(False)
    assert all("forward" not in vars(layer) for layer in tagger.encoder.encoder.layer)
    with torch.no_grad():
        assert torch.equal(tagger(batch).emissions, checkpointed), name


def test_the_train_parameter_exists_and_is_off_by_default():
    assert TrainConfig().gradient_checkpointing is False
    assert TrainConfig(gradient_checkpointing=True).gradient_checkpointing is True


def test_transformers_own_checkpointing_loses_the_prefix_which_is_why_the_tagger_has_its_own(family):
    """What the encoder's own activation checkpointing does to a tagger whose prefix is handed over beside the
    layer's inputs: the recomputation finds no prefix (non-reentrant: an error). The tagger's own checkpointing is
    the one that works."""
    name, folder = family
    tagger, batch = tagger_and_batch(folder, checkpointing=False)
    if not tagger.encoder.supports_gradient_checkpointing:
        pytest.skip(f"{name} has no gradient checkpointing of its own")
    tagger.encoder.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    with pytest.raises(CheckpointError):
        tagger.loss(batch).backward()


def test_a_copy_checkpoints_its_own_layers(family):
    """The moving average of the weights (ema_decay) is a deep copy of the tagger: its layers' checkpointed
    forwards must run its own layers and read its own prefix state."""
    import copy

    name, folder = family
    tagger, batch = tagger_and_batch(folder, checkpointing=True)
    twin = copy.deepcopy(tagger)
    for layer, twin_layer in zip(tagger.encoder.encoder.layer, twin.encoder.encoder.layer):
        assert vars(twin_layer)["forward"].layer is twin_layer and vars(layer)["forward"].layer is layer
        assert vars(twin_layer)["forward"].state is twin.prefix_state
    torch.manual_seed(7)
    twin.loss(batch).backward()
    assert all(p.grad is None for p in tagger.parameters())
    assert all(p.grad is not None for n, p in twin.named_parameters() if n.startswith(VISUAL_BRANCH))
