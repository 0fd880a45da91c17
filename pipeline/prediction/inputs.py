"""The input of ``dghc predict``: one JSON object per line.

    {"id": "p1", "text": "Jordan scored twice", "image": "photos/p1.jpg"}
    {"id": "p2", "tokens": ["Jordan", "scored", "twice"]}

``id`` (string, unique) names the post in the output and nothing else: it is never used as a file name.
``text`` is split into word tokens with character offsets (``dghc.pipeline.data.raw_text``, cutting hashtags and
mentions as the model's training data did); ``tokens`` gives the
words directly, and offsets then refer to the tokens joined by single spaces. ``image`` is a path, relative to
the input file's folder (or to the current folder when reading stdin). Blank lines are ignored.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Callable, Iterable

from ..core.errors import DataFormatError, DghcError
from ..data.raw_text import TextSplit, Token, tokenize
from .config import PredictConfig

KNOWN_FIELDS = ("id", "text", "tokens", "image")
STDIN_NAME = "<stdin>"


@dataclass
class InputPost:
    post_id: str
    text: str  # the string the character offsets refer to (the tokens joined by spaces for ``tokens`` input)
    tokens: list[Token]
    image: Path | None  # resolved path, or None when the line gives no image
    line: int

    @property
    def words(self) -> list[str]:
        return [token.text for token in self.tokens]


@dataclass
class ReadResult:
    posts: list[InputPost]
    skipped: list[str] = field(default_factory=list)  # one message per bad line skipped under skip_bad
    unknown_fields: list[str] = field(default_factory=list)  # sorted field names that were ignored


def tokens_with_offsets(words: list[str]) -> tuple[str, list[Token]]:
    """The text ``" ".join(words)`` and each word's offsets in it."""
    tokens, position = [], 0
    for word in words:
        tokens.append(Token(word, position, position + len(word)))
        position += len(word) + 1
    return " ".join(words), tokens


def parse_post(value: object, *, source: str, line: int, base_dir: Path, split: TextSplit = TextSplit()) -> InputPost:
    """One decoded JSON value as a post (``text`` cut into words by ``split``); raises DataFormatError naming
    ``source:line`` and the fix."""

    def bad(problem: str, fix: str) -> DataFormatError:
        return DataFormatError(source, line, problem, fix)

    if not isinstance(value, dict):
        raise bad(f"expected a JSON object, found a {type(value).__name__}",
                  'write one object per line: {"id": "...", "text": "..."}')
    if "id" not in value:
        raise bad("the post has no \"id\"", 'give each post a unique string id: {"id": "p1", ...}')
    post_id = value["id"]
    if not isinstance(post_id, str):
        raise bad(f"\"id\" must be a string, found {json.dumps(post_id)}",
                  f'write it as a JSON string: "id": "{post_id}"')
    if not post_id.strip():
        raise bad("\"id\" is empty", "give each post a unique, non-empty id")
    has_text, has_tokens = value.get("text") is not None, value.get("tokens") is not None
    if has_text and has_tokens:
        raise bad(f"post {post_id!r} gives both \"text\" and \"tokens\"", "give only one of them")
    if not has_text and not has_tokens:
        raise bad(f"post {post_id!r} has no \"text\" (nor \"tokens\")",
                  'add "text": "the post" or "tokens": ["the", "post"]')
    if has_text:
        text = value["text"]
        if not isinstance(text, str):
            raise bad(f"post {post_id!r}: \"text\" must be a string, found a {type(text).__name__}",
                      'write the post as one string, or use "tokens": [...] for a list of words')
        tokens = tokenize(text, split)
        if not tokens:
            raise bad(f"post {post_id!r}: \"text\" is empty", "give the post's text, or leave the line out")
    else:
        words = value["tokens"]
        if not isinstance(words, list) or not words:
            raise bad(f"post {post_id!r}: \"tokens\" must be a non-empty list of strings",
                      'write e.g. "tokens": ["Jordan", "scored"]')
        for i, word in enumerate(words):
            if not isinstance(word, str) or not word:
                raise bad(f"post {post_id!r}: token {i} is {json.dumps(word)}, not a non-empty string",
                          "give every token as a non-empty string")
            if any(ch.isspace() for ch in word):
                raise bad(f"post {post_id!r}: token {i} {word!r} contains whitespace",
                          'split it into several tokens, or send the post as "text"')
        text, tokens = tokens_with_offsets(words)
    image = value.get("image")
    path = None
    if image is not None:
        if not isinstance(image, str) or not image.strip():
            raise bad(f"post {post_id!r}: \"image\" must be a non-empty path string, found {json.dumps(image)}",
                      'give the image file\'s path, or leave "image" out for a post without an image')
        path = Path(image).expanduser()
        if not path.is_absolute():
            path = base_dir / path
    return InputPost(post_id, text, tokens, path, line)


def read_posts(lines: Iterable[bytes], *, source: str, base_dir: Path, skip_bad: bool = PredictConfig.skip_bad,
               warn: Callable[[str], None] = lambda message: None, split: TextSplit = TextSplit()) -> ReadResult:
    """Parse every line; a bad line raises DataFormatError, or with ``skip_bad`` is reported through ``warn``.
    ``split``: how raw ``text`` is cut into words (as the model's training data was)."""
    posts: list[InputPost] = []
    seen: dict[str, int] = {}
    skipped: list[str] = []
    unknown: set[str] = set()
    for number, raw in enumerate(lines, start=1):
        try:
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as err:
                raise DataFormatError(source, number, f"not UTF-8 ({err.reason} at byte {err.start})",
                                      "save the input as UTF-8") from None
            if number == 1:
                text = text.lstrip("\ufeff")
            if not text.strip():
                continue
            try:
                value = json.loads(text)
            except json.JSONDecodeError as err:
                raise DataFormatError(source, number, f"not valid JSON ({err.msg} at column {err.colno})",
                                      'write one JSON object per line, e.g. {"id": "p1", "text": "..."}') from None
            post = parse_post(value, source=source, line=number, base_dir=base_dir, split=split)
            if post.post_id in seen:
                raise DataFormatError(source, number,
                                      f"id {post.post_id!r} already used on line {seen[post.post_id]}",
                                      "give every post its own id")
        except DataFormatError as err:
            if not skip_bad:
                raise
            skipped.append(str(err))
            warn(f"predict: skipping bad line: {err}")
            continue
        seen[post.post_id] = number
        posts.append(post)
        unknown.update(key for key in value if key not in KNOWN_FIELDS)
    return ReadResult(posts, skipped, sorted(unknown))


def open_input(path: Path | None, stdin: BinaryIO) -> tuple[BinaryIO, str, Path]:
    """The byte stream to read, its name for messages and the folder relative image paths start from."""
    if path is None or str(path) == "-":
        return stdin, STDIN_NAME, Path.cwd()
    try:
        handle = open(path, "rb")
    except FileNotFoundError:
        raise DghcError(f"input file {path} not found (give a JSONL file, or - to read stdin)") from None
    except IsADirectoryError:
        raise DghcError(f"input {path} is a folder, not a JSONL file") from None
    except OSError as err:
        raise DghcError(f"cannot read {path}: {err.strerror}") from None
    return handle, str(path), Path(path).parent
