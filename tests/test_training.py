"""Training end to end on tiny models: overfitting, checkpoint round trip, parameter groups."""
from __future__ import annotations

import csv
import math

import pytest
import torch

from dghc.pipeline.data.conll import Post
from dghc.pipeline.inference.checkpoint import load_checkpoint
from dghc.pipeline.inference.metrics import entity_scores
from dghc.pipeline.inference.tagging import predict
from dghc.pipeline.training.config import TrainConfig
from dghc.pipeline.training.optim import parameter_groups
from dghc.pipeline.training.trainer import train
from tests.tiny_models import save_tiny_bert


class MemoryFeatures:
    """An in-memory stand-in for FeatureStore with the same batch() contract (for unit tests only)."""

    def __init__(self, vectors: dict[str, torch.Tensor], m: int = 3, dim: int = 8) -> None:
        self.vectors, self.m, self.dim = vectors, m, dim
        self.fingerprint = {"model": "memory", "m": m}

    def __contains__(self, image_id) -> bool:
        return True  # every post has a row; those absent from ``vectors`` have no image

    def batch(self, image_ids):
        out = torch.zeros(len(image_ids), 1 + self.m, self.dim)
        mask = torch.zeros(len(image_ids), 1 + self.m, dtype=torch.bool)
        for i, image_id in enumerate(image_ids):
            if image_id in self.vectors:
                out[i] = self.vectors[image_id]
                mask[i] = True
        return out, mask


POSTS = [
    Post("p1", ["Jordan", "scored", "again"], ["B-PER", "O", "O"]),
    Post("p2", ["Jordan", "scored", "again"], ["B-LOC", "O", "O"]),
    Post("p3", ["Visit", "New", "York", "now"], ["O", "B-LOC", "I-LOC", "O"]),
    Post("p4", ["Apple", "sues", "Samsung"], ["B-ORG", "O", "B-ORG"]),
    Post("p5", ["Jordan", "was", "here"], ["B-PER", "O", "O"]),
    Post("p6", ["Jordan", "was", "here"], ["B-LOC", "O", "O"]),
]


def image_features():
    # the image tells PER from LOC for the ambiguous "Jordan"
    per, loc = torch.zeros(4, 8), torch.zeros(4, 8)
    per[:, 0], loc[:, 1] = 3.0, 3.0
    vectors = {"p1": per, "p2": loc, "p5": per, "p6": loc, "p3": loc, "p4": torch.full((4, 8), 0.5)}
    return MemoryFeatures(vectors)


def tiny_config(tmp_path, folder, **overrides) -> TrainConfig:
    values = dict(encoder=str(folder), output_dir=str(tmp_path / "model"), log_file=str(tmp_path / "log.csv"),
                  state_dir=tmp_path / "state",
                  epochs=40, batch_size=6, lr_encoder=2e-3, lr_head=5e-3, lr_crf=5e-2, warmup_ratio=0.0,
                  dropout=0.0, prompt_dim=16, eval_begin_epoch=1, progress=False, seed=3)
    values.update(overrides)
    return TrainConfig(**values)


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory):
    return save_tiny_bert(tmp_path_factory.mktemp("tiny_bert"), hidden=32, layers=2, heads=2)


def test_tiny_model_overfits_to_f1_one_and_reloads_identically(tmp_path, tiny_bert):
    torch.set_num_threads(1)
    features = image_features()
    config = tiny_config(tmp_path, tiny_bert)
    result = train(config, POSTS, POSTS, features)
    assert result.best_dev["default"]["overall"]["f1"] == 1.0

    checkpoint = load_checkpoint(result.output_dir)
    predictions = predict(checkpoint.tagger, checkpoint.tokenizer, POSTS, features)
    assert entity_scores([p.labels for p in POSTS], [p.labels for p in predictions])["overall"]["f1"] == 1.0
    again = predict(checkpoint.tagger, checkpoint.tokenizer, POSTS, features)
    assert [p.labels for p in predictions] == [p.labels for p in again]
    assert all(0 < p.relevance < 1 for p in predictions)
    assert checkpoint.features_fingerprint == features.fingerprint

    with open(config.log_file) as handle:
        rows = list(csv.DictReader(handle))
    assert [int(r["epoch"]) for r in rows] == list(range(1, len(rows) + 1))
    assert {"loss", "dev_f1"} <= set(rows[0])


def test_text_only_cannot_separate_ambiguous_posts(tmp_path, tiny_bert):
    config = tiny_config(tmp_path, tiny_bert, use_image=False, epochs=15)
    result = train(config, POSTS, POSTS, None)
    # p1/p2 and p5/p6 have identical text and different labels: text alone cannot get them all
    assert result.best_dev["default"]["overall"]["f1"] < 1.0


def test_every_parameter_in_one_optimizer_group(tmp_path, tiny_bert):
    from dghc.pipeline.data.tags import bioes_label_set
    from dghc.pipeline.model.encoder import load_encoder_and_tokenizer
    from dghc.pipeline.model.tagger import DGHCTagger

    config = tiny_config(tmp_path, tiny_bert)
    encoder, _ = load_encoder_and_tokenizer(str(tiny_bert))
    tagger = DGHCTagger(config.model_config(bioes_label_set(["PER"]), 8, 3), encoder)
    groups = {g["name"]: g for g in parameter_groups(tagger, config)}
    assert set(groups) >= {"encoder", "encoder/no_decay", "head", "head/no_decay", "crf/no_decay"}
    assert groups["encoder"]["lr"] == config.lr_encoder and groups["crf/no_decay"]["lr"] == config.lr_crf
    assert groups["encoder/no_decay"]["weight_decay"] == 0.0 and groups["head"]["weight_decay"] == config.weight_decay


def read_log(path) -> list[dict]:
    with open(path) as handle:
        return list(csv.DictReader(handle))


def test_best_dev_epoch_is_kept_not_the_last(tmp_path, tiny_bert):
    # dev differs from train, so dev F1 goes up and down; the checkpoint must hold the best epoch's weights
    dev = [Post("d1", ["Jordan", "was", "here"], ["B-LOC", "O", "O"]), Post("d2", ["Apple", "sues"], ["B-ORG", "O"])]
    config = tiny_config(tmp_path, tiny_bert, epochs=8, eval_begin_epoch=3)
    result = train(config, POSTS, dev, image_features())
    rows = read_log(config.log_file)
    assert all(r["dev_f1"] == "" for r in rows[:2]) and all(r["dev_f1"] != "" for r in rows[2:])
    best = max(rows[2:], key=lambda r: float(r["dev_f1"]))  # first epoch with the highest dev F1
    assert result.best_epoch == int(best["epoch"])
    checkpoint = load_checkpoint(result.output_dir)
    assert checkpoint.info["best_epoch"] == result.best_epoch
    reloaded = predict(checkpoint.tagger, checkpoint.tokenizer, dev, image_features())
    f1 = entity_scores([p.labels for p in dev], [p.labels for p in reloaded])["overall"]["f1"]
    assert f1 == pytest.approx(float(best["dev_f1"]), abs=1e-6)


def test_with_ema_decay_the_checkpoint_is_the_average_of_every_steps_weights(tmp_path, tiny_bert, monkeypatch):
    """The average is updated after every optimizer step, and it is what dev scoring reads and the checkpoint
    holds: recomputed here from the weights of each step, it equals the saved model, which scores the recorded
    dev F1."""
    from dghc.pipeline.training import trainer as trainer_module

    steps: list[dict[str, torch.Tensor]] = []
    make_average = trainer_module.make_weight_average

    def recording(tagger, decay):
        average = make_average(tagger, decay)
        update = average.update_parameters

        def record_then_update(model):
            steps.append({name: value.detach().clone() for name, value in model.named_parameters()})
            update(model)

        average.update_parameters = record_then_update
        return average

    monkeypatch.setattr(trainer_module, "make_weight_average", recording)
    decay = 0.7
    config = tiny_config(tmp_path, tiny_bert, epochs=3, eval_begin_epoch=3, ema_decay=decay)  # scored once, at the end
    result = train(config, POSTS, POSTS[:3], image_features())
    assert len(steps) == 3 * math.ceil(len(POSTS) / config.batch_size)
    expected = steps[0]
    for weights in steps[1:]:
        expected = {name: decay * expected[name] + (1 - decay) * weights[name] for name in expected}
    checkpoint = load_checkpoint(result.output_dir)
    saved = dict(checkpoint.tagger.named_parameters())
    for name in ("emissions.weight", "crf.transitions", "encoder.encoder.layer.0.attention.self.query.weight"):
        torch.testing.assert_close(saved[name], expected[name], atol=1e-6, rtol=1e-5)
    assert not torch.allclose(steps[-1]["emissions.weight"], expected["emissions.weight"], atol=1e-4)  # not the last
    reloaded = predict(checkpoint.tagger, checkpoint.tokenizer, POSTS[:3], image_features())
    f1 = entity_scores([p.labels for p in POSTS[:3]], [p.labels for p in reloaded])["overall"]["f1"]
    assert f1 == pytest.approx(result.best_dev["default"]["overall"]["f1"], abs=1e-6)


def test_early_stop_and_same_seed_same_weights(tmp_path, tiny_bert):
    frozen = dict(lr_encoder=0.0, lr_head=0.0, lr_crf=0.0, epochs=6, early_stop_patience=2)
    first = train(tiny_config(tmp_path / "a", tiny_bert, **frozen), POSTS, POSTS, image_features())
    assert len(first.history) == 3  # no learning: no improvement after epoch 1, stop after 2 stale epochs

    config = dict(epochs=2)
    one = train(tiny_config(tmp_path / "b", tiny_bert, **config), POSTS, POSTS, image_features())
    two = train(tiny_config(tmp_path / "c", tiny_bert, **config), POSTS, POSTS, image_features())
    weights_one = load_checkpoint(one.output_dir).tagger.state_dict()
    weights_two = load_checkpoint(two.output_dir).tagger.state_dict()
    assert all(torch.equal(weights_one[k], weights_two[k]) for k in weights_one)


def test_features_that_miss_posts_are_refused(tmp_path, tiny_bert):
    from dghc.pipeline.core.errors import DghcError

    class PartialFeatures(MemoryFeatures):
        def __contains__(self, image_id) -> bool:
            return image_id != "p4"

    with pytest.raises(DghcError, match="no row for 1 of the 6 posts"):
        train(tiny_config(tmp_path, tiny_bert, epochs=1), POSTS, POSTS, PartialFeatures({}))


def test_a_pass_is_shared_by_the_processes_without_losing_or_doubling_posts():
    from dghc.pipeline.training.plan import epoch_order, epoch_steps, share

    for size in range(1, 12):
        for processes in range(1, 5):
            shares = [share(list(range(size)), rank, processes) for rank in range(processes)]
            assert sum(shares, []) == list(range(size))  # every post once, in order
            assert max(map(len, shares)) - min(map(len, shares)) <= 1
    config = TrainConfig(batch_size=4, grad_accum_steps=2, processes=3, state_dir="unused")
    steps = epoch_steps(list(range(10)), config)  # passes of 4, 4, 2 (+1 from the start: every process gets one)
    assert steps == [[[0, 1, 2, 3], [4, 5, 6, 7]], [[8, 9, 0]]]
    assert epoch_order(30, seed=5, epoch=3) == epoch_order(30, seed=5, epoch=3) != epoch_order(30, seed=5, epoch=2)


def test_max_grad_norm_zero_trains_without_clipping(tmp_path, tiny_bert):
    """0 turns clipping off; clipping to a norm of 0 would scale every gradient to 0 and train nothing."""
    from transformers import AutoModel

    config = tiny_config(tmp_path, tiny_bert, epochs=1, max_grad_norm=0.0, weight_decay=0.0)
    result = train(config, POSTS, POSTS, image_features())
    trained = load_checkpoint(result.output_dir).tagger.encoder.state_dict()
    initial = AutoModel.from_pretrained(tiny_bert).state_dict()
    moved = [name for name, tensor in initial.items() if name in trained and not torch.equal(tensor, trained[name])]
    print(f"{len(moved)} of {len(initial)} encoder tensors moved in one epoch")
    assert len(moved) > len(initial) // 2


@pytest.mark.parametrize("every", [1, 2, 5])
def test_the_state_is_saved_every_save_every_epochs_epochs_and_with_each_new_best(tmp_path, tiny_bert, monkeypatch,
                                                                                 every):
    """The last epoch saves no state (the run ends); a large model saves gigabytes, so a user may save less often.
    An epoch that writes a new best checkpoint saves the state as well, so that a resumed run knows that best."""
    from dghc.pipeline.training.state import StateFolder

    saved: list[int] = []
    original = StateFolder.save

    def recording(self, **state):
        saved.append(state["progress"].epoch)
        return original(self, **state)

    monkeypatch.setattr(StateFolder, "save", recording)
    dev = [Post("d1", ["Jordan", "was", "here"], ["B-LOC", "O", "O"]), Post("d2", ["Apple", "sues"], ["B-ORG", "O"])]
    result = train(tiny_config(tmp_path, tiny_bert, epochs=6, save_every_epochs=every), POSTS, dev, image_features())
    f1 = [record.dev_f1 for record in result.history]
    new_best = {epoch for epoch in range(1, 7) if f1[epoch - 1] > max([-1.0] + f1[:epoch - 1])}
    print(f"dev F1 by epoch {f1}; saved after {saved}")
    assert saved == sorted({e for e in range(1, 6) if e % every == 0} | (new_best - {6}))
    assert len(new_best) < 6  # the dev set is not learned at every epoch: the schedule alone decides some saves
