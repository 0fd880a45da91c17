"""Prompt phrases of a post, and the merge of two sources' boxes (class-agnostic NMS, top m) on hand-made boxes."""
from __future__ import annotations

import numpy as np
import pytest

from dghc.pipeline.detection.merge import SourceBoxes, box_iou, merge_top_m, nms
from dghc.pipeline.detection.phrases import post_phrases, split_compound

# ---------------------------------------------------------------- phrases

def test_capitalised_runs_keep_connectors_and_drop_sentence_words():
    tokens = "# NBA : Kawhi Leonard wins the fan vote for Block of the Year ! # NBAAwards".split()
    assert post_phrases(tokens) == ["NBA", "Kawhi Leonard", "Block of the Year", "NBA Awards"]


def test_hashtags_and_mentions_attached_or_split_off_are_split_into_words():
    # Twitter-2015 keeps '#'/'@' on the word; Twitter-2017 writes them as tokens of their own.
    assert post_phrases(["RT", "@JayKenMinaj", ":", "hello", "#MakeAmericaGreatAgain"]) == [
        "Jay Ken Minaj", "Make America Great Again"]
    assert post_phrases(["@", "real_madrid", "and", "#", "WNBA20"]) == ["real madrid", "WNBA 20"]
    assert split_compound("NBAAwards") == "NBA Awards"
    assert split_compound("iPhone7Plus") == "i Phone 7 Plus"


def test_urls_rt_entities_and_stopwords_are_not_phrases():
    tokens = "RT The Pope visits Notre Dame tonight http://t.co/abc &amp I love it".split()
    assert post_phrases(tokens) == ["Pope", "Notre Dame"]


def test_place_abbreviation_is_not_mistaken_for_a_connector():
    assert post_phrases("class in LA on the west side".split()) == ["LA"]
    assert post_phrases("Festival de la Musique".split()) == ["Festival de la Musique"]


def test_phrases_are_deduplicated_ignoring_case_and_capped():
    tokens = "Paris is nice . # paris . PARIS again . London . Berlin . Rome".split()
    assert post_phrases(tokens) == ["Paris", "London", "Berlin", "Rome"]
    assert post_phrases(tokens, max_phrases=2) == ["Paris", "London"]
    long_run = "Alpha Beta Gamma Delta Epsilon Zeta Eta Theta".split()
    assert post_phrases(long_run) == ["Alpha Beta Gamma Delta Epsilon Zeta"]  # at most 6 words


def test_a_post_without_names_gives_no_phrase():
    assert post_phrases("which should i wear to my soccer banquet xx".split()) == []
    assert post_phrases([]) == []


# ---------------------------------------------------------------- NMS and merge

def boxes(*rows):
    return np.array(rows, dtype=np.float32).reshape(-1, 4)


def test_box_iou_on_known_boxes():
    iou = box_iou(np.array([0, 0, 10, 10], np.float32), boxes([0, 0, 10, 10], [5, 0, 15, 10], [20, 20, 30, 30]))
    np.testing.assert_allclose(iou, [1.0, 50 / 150, 0.0], rtol=1e-6)


def test_nms_is_class_agnostic_and_keeps_the_best_first():
    b = boxes([0, 0, 10, 10], [1, 0, 11, 10], [50, 50, 60, 60])
    kept = nms(b, np.array([0.6, 0.9, 0.5], np.float32), iou_threshold=0.5)
    assert kept.tolist() == [1, 2]


def test_nms_threshold_is_strict_and_ties_keep_input_order():
    b = boxes([0, 0, 10, 10], [5, 0, 15, 10])  # IoU 1/3
    assert nms(b, np.array([0.5, 0.5], np.float32), iou_threshold=1 / 3 + 1e-6).tolist() == [0, 1]
    assert nms(b, np.array([0.5, 0.5], np.float32), iou_threshold=0.3).tolist() == [0]


def test_merge_across_sources_ranks_by_score_and_keeps_m():
    detector = SourceBoxes("detector", boxes([0, 0, 100, 100], [200, 0, 300, 100], [400, 0, 500, 100]),
                           [0.9, 0.3, 0.2], ["person", "person", "dog"])
    grounding = SourceBoxes("grounding", boxes([2, 2, 100, 100], [600, 0, 700, 100]), [0.95, 0.5],
                            ["Donald Trump", "White House"])
    top = merge_top_m([detector, grounding], m=3, iou_threshold=0.5)
    # The grounding box overlaps the detector's person (IoU > 0.5) and scores higher: it wins the region.
    assert top.sources == ["grounding", "grounding", "detector"]
    assert top.class_names == ["Donald Trump", "White House", "person"]
    np.testing.assert_allclose(top.scores, [0.95, 0.5, 0.3])
    np.testing.assert_allclose(top.boxes[2], [200, 0, 300, 100])
    assert top.valid.tolist() == [True, True, True]


def test_fewer_regions_than_m_leave_empty_slots_never_invented():
    one = SourceBoxes("detector", boxes([10, 10, 20, 20]), [0.7], ["person"])
    top = merge_top_m([one, SourceBoxes.empty("grounding")], m=3, iou_threshold=0.5)
    assert top.valid.tolist() == [True, False, False]
    assert top.class_names == ["person", "", ""] and top.sources == ["detector", "", ""]
    assert np.all(top.boxes[1:] == 0) and np.all(top.scores[1:] == 0)
    empty = merge_top_m([], m=3, iou_threshold=0.5)
    assert empty.count == 0 and empty.boxes.shape == (3, 4)


def test_boxes_are_clipped_to_the_image_and_degenerate_ones_dropped():
    part = SourceBoxes("detector", boxes([-5, -5, 50, 50], [90, 90, 120, 130], [10, 10, 10, 40], [1, 1, 2, 2]),
                       [0.9, 0.8, 0.99, float("nan")], ["a", "b", "zero width", "nan score"])
    top = merge_top_m([part], m=3, iou_threshold=0.5, image_size=(100, 100))
    assert top.class_names == ["a", "b", ""]
    np.testing.assert_allclose(top.boxes[:2], [[0, 0, 50, 50], [90, 90, 100, 100]])


def test_exact_score_tie_between_sources_goes_to_the_first_source():
    a = SourceBoxes("detector", boxes([0, 0, 10, 10]), [0.5], ["person"])
    b = SourceBoxes("grounding", boxes([0, 0, 10, 10]), [0.5], ["Obama"])
    assert merge_top_m([a, b], 3, 0.5).sources == ["detector", "", ""]


def test_source_boxes_refuse_mismatched_lengths():
    with pytest.raises(ValueError):
        SourceBoxes("detector", boxes([0, 0, 1, 1]), [0.5, 0.6], ["x"])
