"""Read and write the CoNLL column format of the Twitter MNER benchmarks.

Each post starts with ``IMGID:<id>``, then one ``token<TAB>label`` line per token; posts are separated by
a blank line. The post's image is ``<images dir>/<id>.jpg``.
"""
from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Literal, Mapping, Sequence

from ..artifacts.atomic import write_text_atomically
from ..core.errors import DataFormatError, DghcError
from .tags import (
    OTHER_AS_MISC,
    invalid_bio_positions,
    is_valid_bio_label,
    rename_types,
    repair_bio,
    split_label,
)

IMGID_PREFIX = "IMGID:"
IMAGE_SUFFIX = ".jpg"
InvalidBio = Literal["repair", "refuse", "keep"]


@dataclass
class Post:
    """One social-media post: its id (also the image's name), tokens, BIO labels and image path."""

    post_id: str
    tokens: list[str]
    labels: list[str]
    image_path: Path | None = None
    line: int = 0  # line of the IMGID in the source file, for messages

    @property
    def has_image_file(self) -> bool:
        return self.image_path is not None and self.image_path.is_file()


@dataclass
class ReadReport:
    """What reading a file changed or noticed."""

    path: Path
    bio_repairs: int = 0
    repaired_lines: list[int] = field(default_factory=list)


def check_image_id(post_id: str) -> str | None:
    """Return why ``post_id`` cannot name an image file, or None when it is safe.

    An id must stay inside the images folder: no path separators, no ``..``, nothing empty.
    """
    if not post_id:
        return "the image id is empty"
    if "/" in post_id or "\\" in post_id or os.sep in post_id:
        return f"the image id {post_id!r} contains a path separator"
    if post_id in (".", "..") or ".." in post_id:
        return f"the image id {post_id!r} contains '..'"
    if "\x00" in post_id:
        return f"the image id {post_id!r} contains a NUL byte"
    return None


def image_path_for(images_dir: Path, post_id: str) -> Path:
    """The image file of a post. Raises ValueError for an id that could leave ``images_dir``."""
    problem = check_image_id(post_id)
    if problem:
        raise ValueError(problem)
    return Path(images_dir) / f"{post_id}{IMAGE_SUFFIX}"


def default_images_dir(conll_path: Path) -> Path:
    """By convention, images lie in ``images/`` beside the CoNLL file."""
    return Path(conll_path).parent / "images"


def read_conll(
    path: str | Path,
    images_dir: str | Path | None = None,
    *,
    invalid_bio: InvalidBio = "repair",
    type_map: Mapping[str, str] | None = OTHER_AS_MISC,
    allowed_types: Iterable[str] | None = None,
) -> tuple[list[Post], ReadReport]:
    """Read a CoNLL file into posts.

    ``invalid_bio``: what to do with an ``I-`` that follows ``O`` or another type: ``repair`` it into ``B-``
    (the count is in the report), ``refuse`` the file, or ``keep`` it as it is.
    ``type_map`` renames entity types (default: OTHER -> MISC). ``allowed_types`` (after renaming) makes any
    other type an error. Errors name the file and line.
    """
    path = Path(path)
    images = Path(images_dir) if images_dir is not None else default_images_dir(path)
    allowed = set(allowed_types) if allowed_types is not None else None
    text = read_utf8_text(path)
    posts: list[Post] = []
    report = ReadReport(path=path)
    seen_ids: dict[str, int] = {}
    current: Post | None = None
    label_lines: list[int] = []

    def finish() -> None:
        nonlocal current
        if current is None:
            return
        if not current.tokens:
            raise DataFormatError(path, current.line, f"post {current.post_id!r} has no tokens",
                                  "add token<TAB>label lines after the IMGID line or remove it")
        labels = rename_types(current.labels, type_map) if type_map else current.labels
        bad = invalid_bio_positions(labels)
        if bad:
            if invalid_bio == "refuse":
                i = bad[0]
                raise DataFormatError(
                    path, label_lines[i], f"invalid BIO: {labels[i]!r} does not continue an entity of its type",
                    "make it B-, or read with invalid BIO set to 'repair'",
                )
            if invalid_bio == "repair":
                labels, count = repair_bio(labels)
                report.bio_repairs += count
                report.repaired_lines.extend(label_lines[i] for i in bad)
        current.labels = labels
        posts.append(current)
        current = None

    # split("\n"), not splitlines(): splitlines also breaks at U+2028, U+0085, \x1c..\x1e, \x0b, \x0c, which
    # can be tokens of a post; CRLF is handled by the rstrip below.
    for line_no, line in enumerate(text.split("\n"), start=1):
        line = line.rstrip("\r")
        if not line.strip():
            finish()
            continue
        if line.startswith(IMGID_PREFIX):
            finish()
            post_id = line[len(IMGID_PREFIX):].strip()
            problem = check_image_id(post_id)
            if problem:
                raise DataFormatError(path, line_no, problem, "use the image's file name without '.jpg'")
            if post_id in seen_ids:
                raise DataFormatError(path, line_no, f"duplicate IMGID {post_id!r} (first at line {seen_ids[post_id]})",
                                      "give each post a unique id")
            seen_ids[post_id] = line_no
            current = Post(post_id=post_id, tokens=[], labels=[], image_path=image_path_for(images, post_id),
                           line=line_no)
            label_lines = []
            continue
        if current is None:
            raise DataFormatError(path, line_no, "token line outside a post (no IMGID line before it)",
                                  "start each post with an 'IMGID:<id>' line")
        token, label = _token_line(path, line_no, line, type_map, allowed)
        current.tokens.append(token)
        current.labels.append(label)
        label_lines.append(line_no)
    finish()
    return posts, report


def require_posts(posts: Sequence[Post], path: str | Path, stage: str) -> None:
    """An empty CoNLL file (or one with no token lines) given to a stage is a mistake, never an empty result."""
    if not posts:
        raise DghcError(f"{path}: no posts in this file (is it empty?); {stage} needs CoNLL posts: IMGID:<id> lines "
                        "followed by token and tag lines")


def read_utf8_text(path: Path) -> str:
    """A data file's text: UTF-8, a BOM dropped; a missing file, a folder or other bytes are one clear error."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise DataFormatError(path, None, "file not found", "check the path") from None
    except IsADirectoryError:
        raise DataFormatError(path, None, "is a folder, not a CoNLL file", "give the .txt file") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line_no = raw[: err.start].count(b"\n") + 1
        raise DataFormatError(
            path, line_no, f"bytes that are not UTF-8 ({raw[err.start:err.start + 1]!r} at byte {err.start})",
            "re-encode the file as UTF-8",
        ) from None
    return text[1:] if text.startswith("\ufeff") else text


def _token_line(path: Path, line_no: int, line: str, type_map: Mapping[str, str] | None,
                allowed: set[str] | None) -> tuple[str, str]:
    """The token and its label of a ``token<TAB>label`` line, checked: a label of O, B-TYPE or I-TYPE whose type
    (after ``type_map``) is ``allowed``."""
    columns = line.rstrip().split("\t")
    if len(columns) > 2:
        # e.g. a predictions file of `dghc evaluate --predictions` (token, gold, predicted): reading its last
        # column as the label would silently score predictions as gold.
        raise DataFormatError(path, line_no, f"{len(columns)} tab-separated columns: {line!r}",
                              "give a file of two columns, token<TAB>label (keep the first two: cut -f1,2)")
    if len(columns) < 2 or not columns[1].strip():
        raise DataFormatError(path, line_no, f"token line without a label: {line!r}",
                              "write 'token<TAB>label', the label O for no entity")
    token, label = columns[0], columns[1].strip()
    if not token:
        raise DataFormatError(path, line_no, "empty token before the label", "remove the line or add the token")
    if not is_valid_bio_label(label):
        raise DataFormatError(path, line_no, f"unknown label {label!r}", "labels are O, B-<TYPE> or I-<TYPE>")
    renamed_type = split_label(label)[1]
    if type_map and renamed_type in type_map:
        renamed_type = type_map[renamed_type]
    if allowed is not None and renamed_type is not None and renamed_type not in allowed:
        raise DataFormatError(path, line_no, f"unknown entity type {renamed_type!r} in label {label!r}",
                              f"known types: {', '.join(sorted(allowed))}")
    return token, label


def format_conll(posts: Sequence[Post], extra_columns: Sequence[Sequence[Sequence[str]]] = ()) -> str:
    """CoNLL text of the posts; ``extra_columns`` adds columns (e.g. predictions) after the label."""
    blocks = []
    for p_index, post in enumerate(posts):
        lines = [f"{IMGID_PREFIX}{post.post_id}"]
        for t_index, (token, label) in enumerate(zip(post.tokens, post.labels)):
            columns = [token, label] + [column[p_index][t_index] for column in extra_columns]
            lines.append("\t".join(columns))
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks) + "\n"


def write_conll(path: str | Path, posts: Sequence[Post]) -> None:
    write_text_atomically(path, format_conll(posts))


def entity_counts(posts: Sequence[Post]) -> Counter:
    """Entities per type, counted by their B- tags (after any repair)."""
    counts: Counter = Counter()
    for post in posts:
        for label in post.labels:
            prefix, entity_type = split_label(label)
            if prefix == "B":
                counts[entity_type] += 1
    return counts
