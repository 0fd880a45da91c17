"""The artifact layer every stage writes through: atomic files and folders, resumable outputs, fingerprints."""
from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from dghc.pipeline.artifacts.atomic import atomic_folder, atomic_path, atomic_text, write_text_atomically
from dghc.pipeline.artifacts.fingerprint import (
    canonical_json,
    code_sha256,
    differences,
    require_match,
    sha256_file,
    sha256_json,
)
from dghc.pipeline.artifacts.partial import PartialOutput
from dghc.pipeline.core.errors import FingerprintMismatch
from tests.environment import REPO


class Boom(Exception):
    pass


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


# ------------------------------------------------------------------------------------------------ atomic


def test_atomic_file_replaces_whole_or_not_at_all(tmp_path):
    target = tmp_path / "sub" / "out.json"
    write_text_atomically(target, "first\n")
    with pytest.raises(Boom):
        with atomic_path(target) as tmp:
            tmp.write_text("half of the second")
            raise Boom
    assert target.read_text() == "first\n"
    assert leftovers(target.parent) == []
    with atomic_text(target) as handle:
        handle.write("ä second\n")
    assert target.read_bytes() == "ä second\n".encode("utf-8")


def test_atomic_file_gets_the_permissions_of_a_new_file(tmp_path):
    old = os.umask(0o027)
    try:
        write_text_atomically(tmp_path / "a.txt", "x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a.txt").stat().st_mode) == 0o640  # not mkstemp's 0600


def test_atomic_folder_swaps_the_whole_folder(tmp_path):
    folder = tmp_path / "model"
    with atomic_folder(folder) as staging:
        (staging / "weights").write_text("v1")
    with pytest.raises(Boom):
        with atomic_folder(folder) as staging:
            (staging / "weights").write_text("v2")
            raise Boom
    assert (folder / "weights").read_text() == "v1" and leftovers(tmp_path) == []
    with atomic_folder(folder) as staging:
        (staging / "other").write_text("v3")
    assert sorted(p.name for p in folder.iterdir()) == ["other"] and leftovers(tmp_path) == []
    assert stat.S_IMODE(folder.stat().st_mode) & 0o055  # readable by others as a normal folder (umask 022)


def test_sigkill_during_a_write_leaves_the_previous_file(tmp_path):
    target = tmp_path / "out.txt"
    write_text_atomically(target, "complete\n")
    script = textwrap.dedent(f"""
        import os, signal, sys
        sys.path.insert(0, {str(REPO)!r})
        from dghc.pipeline.artifacts.atomic import atomic_text
        with atomic_text({str(target)!r}) as handle:
            handle.write("partial")
            handle.flush()
            os.kill(os.getpid(), signal.SIGKILL)
    """)
    process = subprocess.run([sys.executable, "-c", script], capture_output=True)
    assert process.returncode == -signal.SIGKILL
    assert target.read_text() == "complete\n"


# ------------------------------------------------------------------------------------------------ fingerprints


def test_canonical_json_is_sorted_compact_and_ascii():
    assert canonical_json({"b": 1, "a": [1, 2], "c": "Zürich"}) == '{"a":[1,2],"b":1,"c":"Z\\u00fcrich"}'
    assert sha256_json({"a": 1, "b": 2}) == sha256_json({"b": 2, "a": 1})
    assert sha256_json({"a": 1}) != sha256_json({"a": 1.5})


def test_sha256_file_matches_hashlib(tmp_path):
    import hashlib

    data = os.urandom(3 << 20)
    (tmp_path / "blob").write_bytes(data)
    assert sha256_file(tmp_path / "blob") == hashlib.sha256(data).hexdigest()


def test_differences_name_each_key():
    expected = {"model": "a", "dim": 256, "crop": (0, 1)}
    found = {"model": "b", "dim": 256, "crop": [0, 1]}  # a tuple equals the list a file gives back
    assert differences(expected, found) == ['model: expected "a", found "b"']
    assert differences({"m": 3}, {}) == ["m: expected 3, found nothing (the file does not record it)"]
    with pytest.raises(FingerprintMismatch, match=r"f\.h5 was made with other settings.*model.*\(do this\)"):
        require_match(expected, found, "f.h5", "do this")


# ------------------------------------------------------------------------------------------------ partial outputs


def test_partial_output_resumes_only_its_own_rows(tmp_path):
    out = tmp_path / "out.h5"
    partial = PartialOutput(out, {"settings": 1})
    assert partial.resume_point() == (0, "")
    partial.path.write_bytes(b"rows")
    partial.mark_done(5)
    assert json.loads(partial.record.read_text())["rows_done"] == 5

    rows, note = PartialOutput(out, {"settings": 1}).resume_point()
    assert rows == 5 and "resuming" in note

    rows, note = PartialOutput(out, {"settings": 2}).resume_point()
    assert rows == 0 and "other settings" in note
    assert not partial.path.exists() and not partial.record.exists()


def test_partial_output_never_trusts_a_damaged_record_or_work_file(tmp_path):
    out = tmp_path / "out.h5"
    partial = PartialOutput(out, {"k": "v"})
    partial.path.write_bytes(b"rows")
    partial.record.write_text("{not json")
    assert partial.resume_point()[0] == 0 and not partial.path.exists()

    partial.path.write_bytes(b"rows")
    partial.mark_done(3)

    def refuse(path: Path, rows: int) -> None:
        raise OSError("truncated")

    rows, note = partial.resume_point(refuse)
    assert rows == 0 and "damaged" in note and not partial.path.exists()

    partial.path.write_bytes(b"rows without a record")
    rows, note = partial.resume_point()
    assert rows == 0 and "no progress record" in note


def test_partial_output_publishes_the_work_file(tmp_path):
    out = tmp_path / "out.bin"
    out.write_bytes(b"old")
    partial = PartialOutput(out, {})
    partial.path.write_bytes(b"new")
    partial.mark_done(1)
    partial.publish()
    assert out.read_bytes() == b"new" and sorted(p.name for p in tmp_path.iterdir()) == ["out.bin"]


def test_differences_name_the_inner_key_of_a_nested_object():
    saved = {"params": {"seed": 1, "lr": 0.001, "epochs": 8}, "code": "x"}
    now = {"params": {"seed": 1, "lr": 0.01, "epochs": 8, "new": True}, "code": "x"}
    assert differences(saved, now) == ["params.lr: expected 0.001, found 0.01", "params.new: expected nothing, found true"]


CODE = '''"""A module."""
import math


def area(radius):
    """The disc's area."""
    return math.pi * radius ** 2  # pi r squared
'''


@pytest.mark.parametrize("edit, same", [
    (lambda text: text.replace("# pi r squared", "# the formula"), True),
    (lambda text: text.replace('"""The disc\'s area."""', '"""Area of a disc of that radius."""'), True),
    (lambda text: text.replace('"""A module."""\n', "# no docstring\n"), True),
    (lambda text: text.replace("def area", "\n\ndef area"), True),
    (lambda text: text.replace("radius ** 2", "radius ** 3"), False),
    (lambda text: text.replace("return math.pi", "return 2 * math.pi"), False),
])
def test_the_code_hash_ignores_comments_docstrings_and_layout_only(tmp_path, edit, same):
    """The training state's resume key hashes the model and training code: a comment-only edit must not make a
    saved state unusable, an edit of what runs must."""
    path = tmp_path / "geometry.py"
    path.write_text(CODE)
    before = code_sha256([path])
    path.write_text(edit(CODE))
    assert (code_sha256([path]) == before) is same
