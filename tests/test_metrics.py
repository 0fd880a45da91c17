"""Entity-level scores with seqeval: plain dicts, both modes labelled, per type."""
from __future__ import annotations

import json

import pytest
from seqeval.metrics import f1_score, precision_score, recall_score
from seqeval.scheme import IOB2

from dghc.pipeline.inference.metrics import MODES, all_modes, entity_scores

# Hand-checked example. Gold entities: PER(0-1), LOC(3), ORG(4), PER(6).
# Predicted: a PER written with a stray I- start (0-1), LOC(3) right, ORG(4) right, LOC(6) of the wrong type.
GOLD = [["B-PER", "I-PER", "O", "B-LOC"], ["B-ORG", "O", "B-PER"]]
PRED = [["I-PER", "I-PER", "O", "B-LOC"], ["B-ORG", "O", "B-LOC"]]


def test_result_is_a_plain_dict_labelled_with_its_mode():
    result = entity_scores(GOLD, PRED)
    assert result["mode"] == "default"
    assert set(result) == {"mode", "overall", "per_type"}
    assert set(result["overall"]) == {"precision", "recall", "f1", "support"}
    assert type(result["overall"]["f1"]) is float and type(result["overall"]["support"]) is int
    json.dumps(result)  # nothing but JSON types (no numpy scalars)


def test_default_mode_reads_a_stray_i_as_an_entity():
    result = entity_scores(GOLD, PRED, mode="default")
    # 4 predicted, 4 gold, 3 right (PER, LOC, ORG).
    assert result["overall"] == {"precision": 0.75, "recall": 0.75, "f1": 0.75, "support": 4}
    per_type = result["per_type"]
    assert set(per_type) == {"PER", "LOC", "ORG"}
    assert per_type["PER"] == pytest.approx({"precision": 1.0, "recall": 0.5, "f1": 2 / 3, "support": 2})
    assert per_type["LOC"] == pytest.approx({"precision": 0.5, "recall": 1.0, "f1": 2 / 3, "support": 1})
    assert per_type["ORG"] == {"precision": 1.0, "recall": 1.0, "f1": 1.0, "support": 1}


def test_strict_mode_differs_where_a_prediction_starts_with_i():
    result = entity_scores(GOLD, PRED, mode="strict")
    assert result["mode"] == "strict"
    # The I-PER I-PER prediction is no entity in strict IOB2: 3 predicted, 2 right, 4 gold.
    assert result["overall"]["precision"] == pytest.approx(2 / 3)
    assert result["overall"]["recall"] == pytest.approx(0.5)
    assert result["overall"]["f1"] == pytest.approx(4 / 7)
    assert result["per_type"]["PER"]["recall"] == 0.0
    default = entity_scores(GOLD, PRED, mode="default")
    assert default["overall"]["f1"] != result["overall"]["f1"]


def test_all_modes_labels_each_result():
    both = all_modes(GOLD, PRED)
    assert set(both) == set(MODES) == {"default", "strict"}
    for mode, result in both.items():
        assert result["mode"] == mode


def test_values_are_exact_not_parsed_from_a_rounded_report():
    # F1 = 4/7 has more digits than seqeval's text report shows.
    strict = entity_scores(GOLD, PRED, mode="strict")["overall"]
    assert strict["f1"] == pytest.approx(f1_score(GOLD, PRED, mode="strict", scheme=IOB2), abs=1e-12)
    assert strict["precision"] == pytest.approx(precision_score(GOLD, PRED, mode="strict", scheme=IOB2), abs=1e-12)
    default = entity_scores(GOLD, PRED)["overall"]
    assert default["recall"] == pytest.approx(recall_score(GOLD, PRED), abs=1e-12)
    assert strict["f1"] != round(strict["f1"], 2)


def test_perfect_and_empty_predictions():
    gold = [["B-PER", "I-PER", "O"], ["B-MISC"]]
    for mode in MODES:
        perfect = entity_scores(gold, gold, mode=mode)["overall"]
        assert perfect == {"precision": 1.0, "recall": 1.0, "f1": 1.0, "support": 2}
        nothing = entity_scores(gold, [["O", "O", "O"], ["O"]], mode=mode)
        assert nothing["overall"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 2}
        assert nothing["per_type"]["PER"]["support"] == 1  # one PER entity of two tokens


@pytest.mark.filterwarnings("ignore:Mean of empty slice", "ignore:invalid value encountered")
def test_no_entities_anywhere_gives_zeros_not_an_error():
    result = entity_scores([["O", "O"]], [["O", "O"]])
    assert result["overall"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    assert result["per_type"] == {}


def test_a_type_only_predicted_appears_with_zero_support():
    result = entity_scores([["O", "B-PER"]], [["B-ORG", "B-PER"]])
    assert result["per_type"]["ORG"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    assert result["overall"]["precision"] == 0.5 and result["overall"]["recall"] == 1.0


def test_mismatched_lengths_and_unknown_mode_are_refused():
    with pytest.raises(ValueError, match="2 gold sequences but 1 predicted"):
        entity_scores(GOLD, PRED[:1])
    with pytest.raises(ValueError, match="sequence 1"):
        entity_scores(GOLD, [PRED[0], PRED[1][:2]])
    with pytest.raises(ValueError, match="unknown mode"):
        entity_scores(GOLD, PRED, mode="lenient")  # type: ignore[arg-type]
