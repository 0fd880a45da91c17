"""Tag schemes: BIO <-> BIOES, repair of stray I- tags, renaming, label sets."""
from __future__ import annotations

import random

import pytest

from dghc.pipeline.data.tags import (
    BIOES_LABEL,
    OTHER_AS_MISC,
    bio_to_bioes,
    bioes_label_set,
    bioes_to_bio,
    entity_types,
    invalid_bio_positions,
    is_valid_bio_label,
    rename_types,
    repair_bio,
    split_label,
)

TYPES = ("PER", "LOC", "ORG", "MISC")


def random_valid_bio(rng: random.Random, length: int) -> list[str]:
    """A random well-formed BIO sequence: entities of random types and lengths, adjacent ones included."""
    labels: list[str] = []
    while len(labels) < length:
        if rng.random() < 0.4:
            labels.append("O")
            continue
        entity_type = rng.choice(TYPES)
        size = rng.randint(1, 4)
        labels.extend(["B-" + entity_type] + ["I-" + entity_type] * (size - 1))
    return labels[:length]


def spans(labels: list[str]) -> list[tuple[int, int, str]]:
    """Entities of a valid BIO or BIOES sequence as (start, end, type), computed independently of dghc.pipeline.data.tags."""
    out = []
    start = None
    for i, label in enumerate(labels + ["O"]):
        prefix = label[0]
        if start is not None and prefix in "OBS":
            out.append((start, i, labels[start][2:]))
            start = None
        if prefix in "BS":
            start = i
        if start is not None and prefix in "ES":
            out.append((start, i + 1, labels[start][2:]))
            start = None
    return out


def test_split_label():
    assert split_label("B-PER") == ("B", "PER")
    assert split_label("I-MY_TYPE") == ("I", "MY_TYPE")
    assert split_label("O") == ("O", None)


def test_bio_to_bioes_examples():
    assert bio_to_bioes(["B-PER"]) == ["S-PER"]
    assert bio_to_bioes(["B-PER", "I-PER"]) == ["B-PER", "E-PER"]
    assert bio_to_bioes(["B-PER", "I-PER", "I-PER", "O"]) == ["B-PER", "I-PER", "E-PER", "O"]
    assert bio_to_bioes(["B-PER", "B-PER"]) == ["S-PER", "S-PER"]
    assert bio_to_bioes(["B-PER", "B-LOC", "I-LOC"]) == ["S-PER", "B-LOC", "E-LOC"]
    assert bio_to_bioes(["O", "O"]) == ["O", "O"]
    assert bio_to_bioes([]) == []


def test_bio_to_bioes_reads_a_stray_i_as_a_start():
    assert bio_to_bioes(["O", "I-PER", "I-PER"]) == ["O", "B-PER", "E-PER"]
    assert bio_to_bioes(["B-LOC", "I-ORG"]) == ["S-LOC", "S-ORG"]
    assert bio_to_bioes(["I-MISC"]) == ["S-MISC"]


def test_bioes_to_bio_examples():
    assert bioes_to_bio(["S-PER", "O", "B-LOC", "I-LOC", "E-LOC"]) == ["B-PER", "O", "B-LOC", "I-LOC", "I-LOC"]
    assert bioes_to_bio(["S-PER", "S-PER"]) == ["B-PER", "B-PER"]
    assert bioes_to_bio(["B-ORG", "E-ORG", "B-ORG", "E-ORG"]) == ["B-ORG", "I-ORG", "B-ORG", "I-ORG"]


@pytest.mark.parametrize("seed", range(20))
def test_round_trip_of_random_valid_sequences(seed):
    rng = random.Random(seed)
    for _ in range(50):
        bio = random_valid_bio(rng, rng.randint(0, 30))
        bioes = bio_to_bioes(bio)
        assert len(bioes) == len(bio)
        assert all(BIOES_LABEL.match(label) for label in bioes)
        assert bioes_to_bio(bioes) == bio
        assert spans(bioes) == spans(bio)
        # Every B- is closed by an E-, every S- stands alone.
        for i, label in enumerate(bioes):
            if label.startswith(("B-", "I-")):
                assert i + 1 < len(bioes) and bioes[i + 1][0] in "IE" and bioes[i + 1][2:] == label[2:]
            if label.startswith(("I-", "E-")):
                assert bioes[i - 1][0] in "BI" and bioes[i - 1][2:] == label[2:]


@pytest.mark.parametrize("seed", range(20))
def test_ill_formed_bioes_gives_valid_bio(seed):
    # What a model may predict: any label anywhere.
    rng = random.Random(1000 + seed)
    labels = ["O"] + [f"{p}-{t}" for p in "BIES" for t in TYPES]
    for _ in range(50):
        predicted = [rng.choice(labels) for _ in range(rng.randint(0, 25))]
        bio = bioes_to_bio(predicted)
        assert len(bio) == len(predicted)
        assert all(is_valid_bio_label(label) for label in bio)
        assert invalid_bio_positions(bio) == []
        # Types and outside positions are kept.
        assert [split_label(label)[1] for label in bio] == [split_label(label)[1] for label in predicted]


def test_ill_formed_bioes_examples():
    assert bioes_to_bio(["I-PER"]) == ["B-PER"]
    assert bioes_to_bio(["E-PER", "E-PER"]) == ["B-PER", "B-PER"]  # E- closes: the next E- starts again
    assert bioes_to_bio(["B-PER", "I-LOC", "E-LOC"]) == ["B-PER", "B-LOC", "I-LOC"]
    assert bioes_to_bio(["S-PER", "I-PER"]) == ["B-PER", "B-PER"]  # S- closes its entity
    assert bioes_to_bio(["O", "E-ORG"]) == ["O", "B-ORG"]


def test_invalid_bio_positions_and_repair():
    labels = ["I-PER", "I-PER", "O", "I-LOC", "B-ORG", "I-ORG", "I-MISC", "B-PER", "I-PER"]
    assert invalid_bio_positions(labels) == [0, 3, 6]
    repaired, count = repair_bio(labels)
    assert count == 3
    assert repaired == ["B-PER", "I-PER", "O", "B-LOC", "B-ORG", "I-ORG", "B-MISC", "B-PER", "I-PER"]
    assert invalid_bio_positions(repaired) == []
    assert labels[0] == "I-PER"  # the input is not changed in place


@pytest.mark.parametrize("seed", range(10))
def test_repair_keeps_valid_sequences_and_matches_seqeval_default(seed):
    from seqeval.metrics.sequence_labeling import get_entities

    rng = random.Random(2000 + seed)
    for _ in range(50):
        valid = random_valid_bio(rng, rng.randint(0, 20))
        assert repair_bio(valid) == (valid, 0)
        # Scramble some prefixes into stray I- tags: the repair finds the entities seqeval's default mode finds.
        scrambled = [("I" + label[1:]) if label != "O" and rng.random() < 0.3 else label for label in valid]
        repaired, _ = repair_bio(scrambled)
        assert get_entities(repaired) == get_entities(scrambled)


def test_rename_types():
    assert rename_types(["B-OTHER", "I-OTHER", "O", "B-PER"], OTHER_AS_MISC) == ["B-MISC", "I-MISC", "O", "B-PER"]
    assert rename_types(["B-PER"], {}) == ["B-PER"]


def test_label_checks():
    for good in ("O", "B-PER", "I-MISC", "B-OTHER", "I-My_Type2"):
        assert is_valid_bio_label(good)
    for bad in ("", "o", "B", "B-", "S-PER", "E-PER", "B--PER", "B-1X", "B PER", " B-PER", "X-PER"):
        assert not is_valid_bio_label(bad)


def test_entity_types_and_label_set():
    assert entity_types([["B-PER", "O"], ["B-LOC", "I-LOC", "B-PER"]]) == ["LOC", "PER"]
    assert entity_types([["O"]]) == []
    label_set = bioes_label_set(["PER", "LOC"])
    assert label_set[0] == "O"
    assert label_set == ["O", "B-LOC", "I-LOC", "E-LOC", "S-LOC", "B-PER", "I-PER", "E-PER", "S-PER"]
    assert bioes_label_set(["LOC", "PER"]) == bioes_label_set(["PER", "LOC"])  # stable order
