"""The CoNLL reader and writer: bad input named by file and line, line endings, BIO repair, real data counts."""
from __future__ import annotations

from pathlib import Path

import pytest

from dghc.pipeline.core.errors import DataFormatError
from dghc.pipeline.data.conll import (  # noqa: I001
    Post,
    check_image_id,
    entity_counts,
    format_conll,
    image_path_for,
    read_conll,
    write_conll,
)
from tests.datasets import data_sets

GOOD = (
    "IMGID:101\n"
    "Jordan\tB-PER\n"
    "visits\tO\n"
    "New\tB-LOC\n"
    "York\tI-LOC\n"
    "\n"
    "IMGID:102\n"
    "RT\tO\n"
    "Red\tB-ORG\n"
    "Cross\tI-ORG\n"
    "at\tO\n"
    "Wimbledon\tB-OTHER\n"
)


def write(tmp_path: Path, content: str | bytes, name: str = "data.txt") -> Path:
    path = tmp_path / name
    if isinstance(content, str):
        content = content.encode("utf-8")
    path.write_bytes(content)
    return path


def read_error(path: Path, **kwargs) -> DataFormatError:
    with pytest.raises(DataFormatError) as caught:
        read_conll(path, **kwargs)
    return caught.value


def assert_names(err: DataFormatError, path: Path, line: int | None, *phrases: str) -> None:
    message = str(err)
    where = f"{path}:{line}" if line is not None else f"{path}"
    assert message.startswith(where + ":"), message
    assert err.line == line
    assert err.path == path
    for phrase in phrases:
        assert phrase in message, message
    assert "\n" not in message


# ---------------------------------------------------------------------------------------------------------
# Good input


def test_reads_posts_with_ids_tokens_labels_and_image_paths(tmp_path):
    path = write(tmp_path, GOOD)
    posts, report = read_conll(path)
    assert [p.post_id for p in posts] == ["101", "102"]
    assert posts[0].tokens == ["Jordan", "visits", "New", "York"]
    assert posts[0].labels == ["B-PER", "O", "B-LOC", "I-LOC"]
    assert posts[1].labels == ["O", "B-ORG", "I-ORG", "O", "B-MISC"]  # OTHER read as MISC by default
    assert posts[0].image_path == tmp_path / "images" / "101.jpg"
    assert posts[0].line == 1 and posts[1].line == 7
    assert report.bio_repairs == 0
    assert entity_counts(posts) == {"PER": 1, "LOC": 1, "ORG": 1, "MISC": 1}


def test_other_kept_as_its_own_type_on_request(tmp_path):
    posts, _ = read_conll(write(tmp_path, GOOD), type_map=None)
    assert posts[1].labels[-1] == "B-OTHER"


def test_images_dir_option_and_has_image_file(tmp_path):
    path = write(tmp_path, GOOD)
    images = tmp_path / "pics"
    images.mkdir()
    (images / "102.jpg").write_bytes(b"not checked here")
    posts, _ = read_conll(path, images_dir=images)
    assert posts[1].image_path == images / "102.jpg"
    assert [p.has_image_file for p in posts] == [False, True]


def test_crlf_and_missing_final_newline_read_like_lf(tmp_path):
    reference, _ = read_conll(write(tmp_path, GOOD, "lf.txt"))
    crlf, _ = read_conll(write(tmp_path, GOOD.replace("\n", "\r\n"), "crlf.txt"))
    no_final, _ = read_conll(write(tmp_path, GOOD.rstrip("\n"), "nofinal.txt"))
    crlf_no_final, _ = read_conll(write(tmp_path, GOOD.replace("\n", "\r\n").rstrip("\r\n"), "both.txt"))
    extra_blank, _ = read_conll(write(tmp_path, "\n\n" + GOOD.replace("\n\n", "\n\n\n") + "\n\n", "blank.txt"))
    for other in (crlf, no_final, crlf_no_final, extra_blank):
        assert [(p.post_id, p.tokens, p.labels) for p in other] == [(p.post_id, p.tokens, p.labels) for p in reference]
    # Tokens and labels carry no stray carriage return.
    assert all("\r" not in t for p in crlf for t in p.tokens + p.labels)


def test_utf8_bom_is_ignored(tmp_path):
    posts, _ = read_conll(write(tmp_path, b"\xef\xbb\xbf" + GOOD.encode()))
    assert posts[0].post_id == "101"


def test_unicode_line_separators_inside_tokens_are_tokens_not_line_breaks(tmp_path):
    # str.splitlines() breaks at these; a post may hold them as tokens.
    text = "IMGID:1\nhello\tO\n\u2028\tO\n\x85\tO\nx\x1cy\tO\n\u000c\tO\nParis\tB-LOC\n"
    posts, _ = read_conll(write(tmp_path, text))
    assert posts[0].tokens == ["hello", "\u2028", "\x85", "x\x1cy", "\u000c", "Paris"]
    assert posts[0].labels[-1] == "B-LOC"


def test_invisible_tokens_keep_their_labels(tmp_path):
    text = "IMGID:1\n\u200b\tO\n\u00a0\tO\n\ufe0f\tO\n\u200d\tB-MISC\n"
    posts, _ = read_conll(write(tmp_path, text))
    assert posts[0].tokens == ["\u200b", "\u00a0", "\ufe0f", "\u200d"]
    assert posts[0].labels == ["O", "O", "O", "B-MISC"]


def test_round_trip_write_then_read(tmp_path):
    posts = [
        Post("a1", ["Jordan", "\u200b", "in", "New", "York", "😂"], ["B-PER", "O", "O", "B-LOC", "I-LOC", "O"]),
        Post("a2", ["Red", "Cross", "\u00a0", "#tbt"], ["B-ORG", "I-ORG", "O", "O"]),
        Post("a3", ["x"], ["O"]),
    ]
    path = tmp_path / "out" / "round.txt"
    write_conll(path, posts)
    text = path.read_text(encoding="utf-8")
    assert text.startswith("IMGID:a1\nJordan\tB-PER\n")
    assert text.endswith("x\tO\n") and not text.endswith("\n\n")  # like the benchmark files
    back, report = read_conll(path)
    assert [(p.post_id, p.tokens, p.labels) for p in back] == [(p.post_id, p.tokens, p.labels) for p in posts]
    assert report.bio_repairs == 0
    assert format_conll(back) == text
    assert not list(path.parent.glob("*.tmp"))  # written atomically, nothing left behind


@pytest.mark.parametrize("data", data_sets())
def test_round_trip_of_benchmark_shaped_files_is_identical(tmp_path, data):
    source = data.split("valid")
    posts, _ = read_conll(source, invalid_bio="keep", type_map=None)
    copy = tmp_path / "valid.txt"
    write_conll(copy, posts)
    # Twitter-2017's files end with a blank line, Twitter-2015's do not; the writer never adds one.
    assert copy.read_bytes() == source.read_bytes().rstrip(b"\n") + b"\n"


# ---------------------------------------------------------------------------------------------------------
# Invalid BIO: repair, refuse or keep


BAD_BIO = (
    "IMGID:1\n"
    "a\tO\n"
    "b\tI-PER\n"       # line 3: I- after O
    "c\tI-PER\n"
    "\n"
    "IMGID:2\n"
    "d\tB-LOC\n"
    "e\tI-ORG\n"       # line 8: I- after another type
    "f\tO\n"
    "\n"
    "IMGID:3\n"
    "g\tI-LOC\n"       # line 12: I- at the start
)


def test_invalid_bio_repaired_and_counted(tmp_path):
    path = write(tmp_path, BAD_BIO)
    posts, report = read_conll(path, invalid_bio="repair")
    assert posts[0].labels == ["O", "B-PER", "I-PER"]
    assert posts[1].labels == ["B-LOC", "B-ORG", "O"]
    assert posts[2].labels == ["B-LOC"]
    assert report.bio_repairs == 3
    assert report.repaired_lines == [3, 8, 12]
    assert entity_counts(posts) == {"PER": 1, "LOC": 2, "ORG": 1}


def test_invalid_bio_refused_names_the_line(tmp_path):
    path = write(tmp_path, BAD_BIO)
    err = read_error(path, invalid_bio="refuse")
    assert_names(err, path, 3, "invalid BIO", "'I-PER'")


def test_invalid_bio_kept_as_is(tmp_path):
    posts, report = read_conll(write(tmp_path, BAD_BIO), invalid_bio="keep")
    assert posts[0].labels == ["O", "I-PER", "I-PER"]
    assert posts[1].labels == ["B-LOC", "I-ORG", "O"]
    assert report.bio_repairs == 0


def test_other_continuing_misc_is_valid_after_renaming(tmp_path):
    # The renaming comes first, so B-MISC I-OTHER is one MISC entity, not a repair.
    posts, report = read_conll(write(tmp_path, "IMGID:1\nx\tB-MISC\ny\tI-OTHER\n"), invalid_bio="refuse")
    assert posts[0].labels == ["B-MISC", "I-MISC"]
    assert report.bio_repairs == 0


# ---------------------------------------------------------------------------------------------------------
# Bad input: every error names the file and the line


def test_token_line_without_label(tmp_path):
    path = write(tmp_path, "IMGID:1\nhello\tO\nworld\n")
    assert_names(read_error(path), path, 3, "token line without a label", "'world'")


def test_token_line_with_tab_but_empty_label(tmp_path):
    path = write(tmp_path, "IMGID:1\nhello\tO\nworld\t \n")
    assert_names(read_error(path), path, 3, "token line without a label")


def test_three_columns_are_refused_not_read_as_token_and_last_label(tmp_path):
    # A predictions file (token, gold, predicted) must not be read with the predictions as its labels.
    path = write(tmp_path, "IMGID:1\nJordan\tB-PER\tO\n")
    assert_names(read_error(path), path, 2, "3 tab-separated columns", "cut -f1,2")


def test_trailing_tab_is_not_a_third_column(tmp_path):
    posts, _ = read_conll(write(tmp_path, "IMGID:1\nJordan\tB-PER\t\n"))
    assert posts[0].tokens == ["Jordan"] and posts[0].labels == ["B-PER"]


def test_space_instead_of_tab_is_a_line_without_label(tmp_path):
    path = write(tmp_path, "IMGID:1\nhello O\n")
    assert_names(read_error(path), path, 2, "token line without a label", "TAB")


@pytest.mark.parametrize("label", ["PER", "B-", "X-PER", "b-PER", "B_PER", "S-PER", "E-LOC", "I-", "B-PER-X"])
def test_unknown_label(tmp_path, label):
    path = write(tmp_path, f"IMGID:1\nhello\tO\nworld\t{label}\n")
    assert_names(read_error(path), path, 3, f"unknown label {label!r}")


def test_type_outside_allowed_types(tmp_path):
    path = write(tmp_path, "IMGID:1\nhello\tB-PER\nworld\tB-ANIMAL\n")
    err = read_error(path, allowed_types={"PER", "LOC", "ORG", "MISC"})
    assert_names(err, path, 3, "unknown entity type 'ANIMAL'", "LOC, MISC, ORG, PER")
    # OTHER is allowed once renamed to MISC.
    posts, _ = read_conll(write(tmp_path, "IMGID:1\nx\tB-OTHER\n", "other.txt"), allowed_types={"MISC"})
    assert posts[0].labels == ["B-MISC"]


def test_token_before_any_imgid(tmp_path):
    path = write(tmp_path, "hello\tO\nIMGID:1\nworld\tO\n")
    assert_names(read_error(path), path, 1, "no IMGID line before it")


def test_token_after_blank_line_without_imgid(tmp_path):
    path = write(tmp_path, "IMGID:1\nhello\tO\n\nworld\tO\n")
    assert_names(read_error(path), path, 4, "no IMGID line before it")


def test_duplicate_imgid(tmp_path):
    path = write(tmp_path, "IMGID:7\na\tO\n\nIMGID:8\nb\tO\n\nIMGID:7\nc\tO\n")
    assert_names(read_error(path), path, 7, "duplicate IMGID '7'", "first at line 1")


def test_non_utf8_bytes_give_the_line(tmp_path):
    path = write(tmp_path, b"IMGID:1\nhello\tO\ncaf\xe9\tO\n")
    assert_names(read_error(path), path, 3, "not UTF-8", "\\xe9")


def test_non_utf8_bytes_with_crlf_give_the_line(tmp_path):
    path = write(tmp_path, b"IMGID:1\r\nhello\tO\r\nok\tO\r\n\xff\tO\r\n")
    assert_names(read_error(path), path, 4, "not UTF-8")


@pytest.mark.parametrize("text, line", [
    ("IMGID:1\n\nIMGID:2\nx\tO\n", 1),           # IMGID followed by a blank line
    ("IMGID:1\nIMGID:2\nx\tO\n", 1),             # IMGID followed by another IMGID
    ("IMGID:1\nx\tO\n\nIMGID:2\n", 4),           # IMGID at the end of the file
])
def test_empty_post(tmp_path, text, line):
    path = write(tmp_path, text)
    assert_names(read_error(path), path, line, "has no tokens")


@pytest.mark.parametrize("image_id, phrase", [
    ("../etc/passwd", "path separator"),
    ("a/b", "path separator"),
    ("a\\b", "path separator"),
    ("..", "'..'"),
    ("x..y", "'..'"),
    ("", "empty"),
])
def test_unsafe_image_ids(tmp_path, image_id, phrase):
    path = write(tmp_path, f"IMGID:ok\nx\tO\n\nIMGID:{image_id}\ny\tO\n")
    assert_names(read_error(path), path, 4, phrase)


def test_check_image_id_and_image_path_for(tmp_path):
    assert check_image_id("1234_5") is None
    assert check_image_id("a/b") and check_image_id("..") and check_image_id("") and check_image_id("a\x00b")
    assert image_path_for(tmp_path, "99") == tmp_path / "99.jpg"
    with pytest.raises(ValueError, match="path separator"):
        image_path_for(tmp_path, "../99")


def test_missing_file_and_folder(tmp_path):
    missing = tmp_path / "nope.txt"
    assert_names(read_error(missing), missing, None, "file not found")
    assert_names(read_error(tmp_path), tmp_path, None, "folder")


# ---------------------------------------------------------------------------------------------------------
# Benchmark-shaped files: the fixture's counts (by hand), and the real files' where they exist


@pytest.mark.parametrize("data", data_sets())
def test_train_counts_by_b_tags_and_after_repair(data):
    facts = data.train
    kept, _ = read_conll(data.split("train"), invalid_bio="keep")
    assert len(kept) == facts.posts
    assert sum(entity_counts(kept).values()) == facts.entities
    repaired, report = read_conll(data.split("train"), invalid_bio="repair")
    assert report.bio_repairs == facts.repairs
    assert sum(entity_counts(repaired).values()) == facts.entities + facts.repairs
    assert set(entity_counts(repaired)) <= {"PER", "LOC", "ORG", "MISC"}  # OTHER read as MISC
    assert max(len(p.tokens) for p in kept) <= 50
    if facts.repairs:
        err = read_error(data.split("train"), invalid_bio="refuse")
        assert "invalid BIO" in str(err) and err.line is not None
    else:
        read_conll(data.split("train"), invalid_bio="refuse")


@pytest.mark.parametrize("data", data_sets())
def test_valid_repairs(data):
    _, report = read_conll(data.split("valid"))
    assert report.bio_repairs == data.valid.repairs


@pytest.mark.parametrize("data", data_sets())
def test_images_beside_the_files_are_found(data):
    posts, _ = read_conll(data.split("train"))
    present = [p for p in posts if p.has_image_file]
    assert 0 < len(present) <= 15
    assert all(p.image_path.parent == data.images for p in present)
    if data.train.images is not None:
        assert len(present) == data.train.images
