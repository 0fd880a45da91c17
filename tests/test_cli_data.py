"""The ``dghc`` command line: ``data stats``, errors without tracebacks, ``--version`` and ``--help``."""
from __future__ import annotations

import re

import pytest
from click.testing import CliRunner

from dghc.cli import dghc
from dghc.pipeline import __version__
from tests.datasets import data_sets


def run(*args: str):
    return CliRunner().invoke(dghc, list(args), catch_exceptions=False)


@pytest.mark.parametrize("data", data_sets())
def test_data_stats_counts_posts_entities_repairs_and_images(data):
    facts = data.train
    result = run("data", "stats", str(data.split("train")))
    assert result.exit_code == 0, result.output
    out = result.output
    assert re.search(rf"posts:\s+{facts.posts}\b", out), out
    assert re.search(rf"entities \(B- tags\):\s+{facts.entities}\b", out), out
    assert re.search(rf"BIO repairs:\s+{facts.repairs} \(entities after repair: {facts.entities + facts.repairs}\)",
                     out), out
    for entity_type, count in facts.per_type.items():
        assert re.search(rf"{entity_type}\s+{count}\b", out), (entity_type, out)
    if facts.images is not None:
        assert re.search(rf"images present:\s+{facts.images} of {facts.posts} posts", out), out


@pytest.mark.parametrize("data", data_sets("twitter2015"))
def test_data_stats_reads_other_as_misc_unless_kept(data):
    out = run("data", "stats", str(data.split("train"))).output
    assert "OTHER" not in out
    kept = run("data", "stats", "--keep-other", str(data.split("train"))).output
    assert re.search(rf"OTHER\s+{data.train.per_type['MISC']}\b", kept) and "MISC" not in kept


def test_data_stats_several_files_and_images_present(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "1.jpg").write_bytes(b"\xff\xd8")
    a = tmp_path / "a.txt"
    a.write_text("IMGID:1\nJordan\tB-PER\n\nIMGID:2\nin\tO\nNew\tI-LOC\nYork\tI-LOC\n", encoding="utf-8")
    b = tmp_path / "b.txt"
    b.write_text("IMGID:3\nx\tO\n", encoding="utf-8")
    result = run("data", "stats", str(a), str(b))
    assert result.exit_code == 0
    first, second = result.output.split(str(b))
    assert re.search(r"posts:\s+2\b", first) and re.search(r"tokens:\s+4\b", first)
    assert re.search(r"entities \(B- tags\):\s+1\b", first)
    assert re.search(r"BIO repairs:\s+1 \(entities after repair: 2\)", first)
    assert re.search(r"images present:\s+1 of 2 posts", first)
    assert re.search(r"posts:\s+1\b", second)


def test_bad_file_gives_one_line_error_with_file_and_line(tmp_path):
    path = tmp_path / "bad.txt"
    path.write_text("IMGID:1\nhello\tO\nworld\tB-PERSON_\n\nIMGID:2\nx\tO\ny\n", encoding="utf-8")
    result = CliRunner().invoke(dghc, ["data", "stats", str(path)])
    assert result.exit_code != 0
    assert result.exception is None or isinstance(result.exception, SystemExit)
    message = result.stderr if result.stderr else result.output
    assert "Traceback" not in result.output and "Traceback" not in message
    lines = [line for line in message.splitlines() if line.strip()]
    assert len(lines) == 1, message
    assert lines[0].startswith("Error: ")
    assert f"{path}:7:" in lines[0] and "token line without a label" in lines[0]


def test_non_utf8_and_missing_file_errors(tmp_path):
    path = tmp_path / "latin1.txt"
    path.write_bytes(b"IMGID:1\nbonjour\tO\ncaf\xe9\tO\n")
    result = CliRunner().invoke(dghc, ["data", "stats", str(path)])
    assert result.exit_code != 0 and f"{path}:3:" in result.stderr and "UTF-8" in result.stderr
    missing = tmp_path / "missing.txt"
    result = CliRunner().invoke(dghc, ["data", "stats", str(missing)])
    assert result.exit_code != 0 and "file not found" in result.stderr and "Traceback" not in result.output


def test_version():
    result = run("--version")
    assert result.exit_code == 0
    assert __version__ in result.output and "dghc" in result.output


def test_help_lists_commands():
    result = run("--help")
    assert result.exit_code == 0
    assert "data" in result.output and "demo-data" in result.output
    assert run("-h").output == result.output
    stats_help = run("data", "stats", "--help").output
    assert "--images" in stats_help and "--keep-other" in stats_help


def test_data_stats_needs_a_file():
    result = CliRunner().invoke(dghc, ["data", "stats"])
    assert result.exit_code == 2 and "Missing argument" in result.stderr
