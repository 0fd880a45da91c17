"""The BIOES-constrained CRF: never an illegal sequence, and exact over the legal ones."""
from __future__ import annotations

import itertools

import pytest
import torch
from torchcrf import CRF

from dghc.pipeline.model.crf import ConstrainedCRF, allowed_bioes

LABELS = ["O", "B-PER", "I-PER", "E-PER", "S-PER", "B-LOC", "I-LOC", "E-LOC", "S-LOC"]


def is_legal(labels: list[str]) -> bool:
    """BIOES written out as the rules a reader checks: an entity is S-X, or B-X (I-X)* E-X."""
    open_type = None
    for label in labels:
        prefix, _, kind = label.partition("-")
        if open_type is None:
            if prefix in ("I", "E"):
                return False
            if prefix == "B":
                open_type = kind
        else:
            if prefix not in ("I", "E") or kind != open_type:
                return False
            if prefix == "E":
                open_type = None
    return open_type is None


def random_crf(generator: torch.Generator, scale: float = 3.0) -> ConstrainedCRF:
    crf = ConstrainedCRF(LABELS)
    with torch.no_grad():
        for name in ("start_transitions", "end_transitions", "transitions"):
            crf._parameters[name].copy_(scale * torch.randn(crf._parameters[name].shape, generator=generator))
    return crf


def raw_score(crf: ConstrainedCRF, emissions: torch.Tensor, tags: tuple[int, ...]) -> float:
    """The learned score of a tag sequence, without any penalty: start + emissions + transitions + end."""
    crf = crf.requires_grad_(False)
    start, end, transitions = (crf._parameters[n] for n in ("start_transitions", "end_transitions", "transitions"))
    score = start[tags[0]] + end[tags[-1]] + sum(emissions[i, t] for i, t in enumerate(tags))
    score = score + sum(transitions[a, b] for a, b in zip(tags, tags[1:]))
    return float(score)


def test_allowed_tables_follow_bioes():
    start, end, transitions = allowed_bioes(LABELS)
    index = LABELS.index
    assert [LABELS[i] for i in range(len(LABELS)) if start[i]] == ["O", "B-PER", "S-PER", "B-LOC", "S-LOC"]
    assert [LABELS[i] for i in range(len(LABELS)) if end[i]] == ["O", "E-PER", "S-PER", "E-LOC", "S-LOC"]
    assert transitions[index("B-PER"), index("I-PER")] and transitions[index("I-PER"), index("E-PER")]
    assert not transitions[index("B-PER"), index("E-LOC")] and not transitions[index("B-PER"), index("O")]
    assert transitions[index("E-PER"), index("S-LOC")] and not transitions[index("O"), index("I-LOC")]
    for a, b in itertools.product(LABELS, repeat=2):
        # a pair is allowed when some legal sequence holds it: open an entity before a, close one after b
        before = [f"B-{a[2:]}"] if a[0] in "IE" else []
        after = [f"E-{b[2:]}"] if b[0] in "BI" else []
        assert bool(transitions[index(a), index(b)]) == is_legal(before + [a, b] + after), (a, b)


def test_random_emissions_never_decode_an_illegal_sequence():
    generator = torch.Generator().manual_seed(0)
    decoded_entities = 0
    for trial in range(40):
        crf = random_crf(generator)
        length = 1 + trial % 9
        emissions = 4 * torch.randn(3, length, len(LABELS), generator=generator)
        mask = torch.ones(3, length, dtype=torch.bool)
        mask[1, max(1, length // 2):] = False  # a shorter post in the batch ends where its mask ends
        for row, tags in enumerate(crf.decode(emissions, mask=mask)):
            labels = [LABELS[t] for t in tags]
            assert len(labels) == int(mask[row].sum())
            assert is_legal(labels), f"trial {trial}: {labels}"
            decoded_entities += sum(label[0] in "BS" for label in labels)
    assert decoded_entities > 20  # the test decoded entities, not only O


def test_unconstrained_crf_does_decode_illegal_sequences_from_the_same_scores():
    """The control: the same random scores give illegal sequences to pytorch-crf's plain CRF."""
    generator = torch.Generator().manual_seed(0)
    illegal = 0
    for trial in range(40):
        crf = random_crf(generator)
        plain = CRF(len(LABELS), batch_first=True)
        plain.load_state_dict(crf.state_dict())
        emissions = 4 * torch.randn(3, 1 + trial % 9, len(LABELS), generator=generator)
        illegal += sum(not is_legal([LABELS[t] for t in tags]) for tags in plain.decode(emissions))
    assert illegal > 10


@pytest.mark.parametrize("length", [1, 2, 4])
def test_viterbi_and_likelihood_equal_brute_force_over_legal_sequences(length):
    generator = torch.Generator().manual_seed(length)
    for trial in range(3):
        crf = random_crf(generator)
        emissions = 2 * torch.randn(1, length, len(LABELS), generator=generator)
        legal = [tags for tags in itertools.product(range(len(LABELS)), repeat=length)
                 if is_legal([LABELS[t] for t in tags])]
        scores = torch.tensor([raw_score(crf, emissions[0], tags) for tags in legal], dtype=torch.float64)
        best = legal[int(scores.argmax())]
        assert crf.decode(emissions)[0] == list(best), f"trial {trial}"
        # the likelihood of a legal sequence is its share among the legal sequences only
        gold = legal[int(torch.randint(len(legal), (1,), generator=generator))]
        expected = raw_score(crf, emissions[0], gold) - float(torch.logsumexp(scores, 0))
        got = float(crf(emissions, torch.tensor([gold]), reduction="sum"))
        assert got == pytest.approx(expected, abs=1e-3)


def test_unconstrained_equals_pytorch_crf_and_state_dicts_keep_its_keys():
    generator = torch.Generator().manual_seed(3)
    crf = ConstrainedCRF(LABELS, constrained=False)
    plain = CRF(len(LABELS), batch_first=True)
    assert set(crf.state_dict()) == set(plain.state_dict())  # older checkpoints load into either
    plain.load_state_dict(crf.state_dict())
    emissions = torch.randn(2, 5, len(LABELS), generator=generator)
    tags = torch.randint(len(LABELS), (2, 5), generator=generator)
    assert torch.allclose(crf(emissions, tags), plain(emissions, tags))
    assert crf.decode(emissions) == plain.decode(emissions)
    constrained = ConstrainedCRF(LABELS)
    constrained.load_state_dict(plain.state_dict())
    assert all(param.abs().max() <= 0.1 for param in ConstrainedCRF(LABELS).parameters())  # initialised
