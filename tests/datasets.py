"""The data sets tests read: the committed fixture (always) and the real benchmarks (where ../shared/data exists).

Each comes with the facts a test can check it against, counted by hand for the fixture and measured once for the
real files (the README of ../shared/data states them too). Tests parametrised with ``data_sets(...)`` run on the
fixture on every clone, and on the real files as well where they lie beside the repository: nothing is skipped.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.environment import REPO, SHARED_DATA

FIXTURES = REPO / "tests" / "fixtures"


@dataclass(frozen=True)
class SplitFacts:
    posts: int
    entities: int  # counted by B- tags, as written
    repairs: int  # stray I- tags (each opens one more entity when read as conlleval does)
    per_type: dict[str, int] = field(default_factory=dict)  # by B- tags, OTHER read as MISC
    images: int | None = None  # posts whose image file exists (None: not stated)
    zero_piece_words: int | None = None  # words the packaged MiniLM tokenizer turns into no sub-token at all


@dataclass(frozen=True)
class DataSet:
    name: str
    root: Path  # train.txt, valid.txt, images/
    style: str  # "twitter2015" (URLs, #word, OTHER, stray I-) or "twitter2017" (# split off, MISC)
    train: SplitFacts
    valid: SplitFacts
    real: bool = False

    def split(self, name: str) -> Path:
        return self.root / f"{name}.txt"

    @property
    def images(self) -> Path:
        return self.root / "images"


FIXTURE_SETS = [
    DataSet("fixture-2015", FIXTURES / "twitter2015", "twitter2015",
            SplitFacts(8, 8, 2, {"PER": 3, "LOC": 3, "ORG": 1, "MISC": 1}, images=3, zero_piece_words=1),
            SplitFacts(4, 4, 1, {"PER": 1, "LOC": 2, "ORG": 1}, images=0, zero_piece_words=0)),
    DataSet("fixture-2017", FIXTURES / "twitter2017", "twitter2017",
            SplitFacts(8, 11, 0, {"PER": 3, "LOC": 3, "ORG": 3, "MISC": 2}, images=3, zero_piece_words=2),
            SplitFacts(4, 4, 0, {"PER": 1, "LOC": 1, "ORG": 1, "MISC": 1}, images=2, zero_piece_words=0)),
]
REAL_SETS = [
    DataSet("twitter2015", SHARED_DATA / "twitter2015", "twitter2015",
            SplitFacts(4000, 6166, 186, {"MISC": 931}), SplitFacts(1000, 0, 53), real=True),
    DataSet("twitter2017", SHARED_DATA / "twitter2017", "twitter2017",
            SplitFacts(3373, 6049, 0, {"PER": 2943, "LOC": 731, "ORG": 1674, "MISC": 701}, zero_piece_words=116),
            SplitFacts(723, 0, 0, zero_piece_words=16), real=True),
]


def available_sets() -> list[DataSet]:
    """The fixture sets, and each real set whose files lie in ../shared/data (a copy may hold only one of them)."""
    return FIXTURE_SETS + [d for d in REAL_SETS if d.split("train").is_file() and d.split("valid").is_file()]


def data_sets(style: str | None = None) -> list:
    """pytest params: the fixture sets, and each real set whose files are in ../shared/data."""
    chosen = available_sets()
    return [pytest.param(d, id=d.name) for d in chosen if style is None or d.style == style]


def image_files(style: str | None = None) -> list[Path]:
    """Every image of the available sets: generated pictures, plus real tweet photos where they exist."""
    sets = [d for d in available_sets() if style in (None, d.style)]
    return sorted(p for d in sets for p in d.images.glob("*.jpg"))
