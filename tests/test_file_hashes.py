"""The cache of file hashes: a rerun of detect's or predict's up-to-date check over unchanged images reads none of
their bytes, a changed file is hashed again, the values are plain sha256, and a damaged, unwritable or shared
database never fails a run."""
from __future__ import annotations

import builtins
import hashlib
import os
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from dghc.pipeline.artifacts import file_hashes
from dghc.pipeline.artifacts.file_hashes import sha256_files
from dghc.pipeline.artifacts.fingerprint import sha256_json
from dghc.pipeline.detection.config import DetectConfig
from dghc.pipeline.detection.run import ImageItem, build_fingerprint
from dghc.pipeline.detection.sources import LoadedSources


@pytest.fixture
def database(tmp_path, monkeypatch) -> Path:
    """A database of this test's own; files written by the test count as old enough to be stored (the 2 s racy
    window has its own test)."""
    path = tmp_path / "cache" / "file-hashes.sqlite"
    monkeypatch.setenv(file_hashes.CACHE_ENV, str(path))
    monkeypatch.setattr(file_hashes, "RACY_NS", 0)
    return path


@pytest.fixture
def opened(monkeypatch) -> list[Path]:
    """Every file opened from now on (all threads), by absolute path."""
    seen: list[Path] = []
    real_open = builtins.open

    def counting_open(file, *args, **kwargs):
        if isinstance(file, (str, os.PathLike)):
            seen.append(Path(os.path.abspath(file)))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", counting_open)
    return seen


def images(folder: Path, count: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index in range(count):
        path = folder / f"img-{index:03d}.jpg"
        path.write_bytes(f"image {index} ".encode() * (50 + index))
        paths.append(path)
    return paths


def plain(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def detect_fingerprint(items: list[ImageItem], **config) -> dict:
    return build_fingerprint(DetectConfig(files=[], grounding=None, **config), items, LoadedSources())


def test_values_are_plain_sha256_and_a_file_that_cannot_be_read_is_none(tmp_path, database):
    paths = images(tmp_path / "images", 3)
    folder, missing = tmp_path / "images", tmp_path / "images" / "missing.jpg"
    for _ in range(2):  # hashed, then from the cache
        found = sha256_files([*paths, missing, folder, paths[0]])
        assert found == {**{path: plain(path) for path in paths}, missing: None, folder: None}
    assert sha256_files([]) == {}
    with pytest.raises(IsADirectoryError):  # predict's model files: any error is raised
        sha256_files([folder], unreadable=())


def test_a_rerun_of_detects_fingerprint_over_unchanged_images_reads_no_image(tmp_path, database, opened):
    paths = images(tmp_path / "images", 40)
    items = [ImageItem(path.stem, path, []) for path in paths] + [ImageItem("gone", tmp_path / "gone.jpg", [])]
    first = detect_fingerprint(items)
    assert sorted(set(opened) & set(paths)) == paths
    # byte-identical to the fingerprint before the cache: detections files made then stay up to date
    expected = sha256_json([[path.stem, plain(path)] for path in paths] + [["gone", None]])
    assert first["images_sha256"] == expected
    opened.clear()
    assert detect_fingerprint(items) == first
    assert not set(opened) & set(paths), "a rerun over unchanged images must not read them"


def test_changing_one_image_hashes_only_it_again_and_changes_the_fingerprint(tmp_path, database, opened):
    paths = images(tmp_path / "images", 10)
    items = [ImageItem(path.stem, path, []) for path in paths]
    before = detect_fingerprint(items)
    time.sleep(0.05)  # a clock tick of the file system: the edit gets another mtime/ctime
    paths[3].write_bytes(b"another picture")
    opened.clear()
    after = detect_fingerprint(items)
    assert set(opened) & set(paths) == {paths[3]}
    assert after["images_sha256"] != before["images_sha256"]
    assert after["images_sha256"] == sha256_json([[path.stem, plain(path)] for path in paths])


def test_force_hashes_every_image_again(tmp_path, database, opened):
    paths = images(tmp_path / "images", 5)
    items = [ImageItem(path.stem, path, []) for path in paths]
    first = detect_fingerprint(items)
    opened.clear()
    assert detect_fingerprint(items, force=True) == first
    assert sorted(set(opened) & set(paths)) == paths


def test_an_edit_whose_mtime_was_put_back_is_seen(tmp_path, database):
    """Same size, mtime set back with os.utime: the ctime (which only the kernel sets) still differs."""
    path = images(tmp_path / "images", 1)[0]
    old = os.stat(path)
    assert sha256_files([path])[path] == plain(path)
    time.sleep(0.05)
    path.write_bytes(bytes(reversed(path.read_bytes())))
    os.utime(path, ns=(old.st_atime_ns, old.st_mtime_ns))
    assert (os.stat(path).st_size, os.stat(path).st_mtime_ns) == (old.st_size, old.st_mtime_ns)
    assert sha256_files([path])[path] == plain(path)


def test_a_file_changed_in_the_last_seconds_is_not_stored(tmp_path, database, monkeypatch, opened):
    """A second write in the same clock tick would leave the stat unchanged: such a file is hashed every time
    until it is older than the racy window."""
    monkeypatch.setattr(file_hashes, "RACY_NS", 2_000_000_000)
    path = images(tmp_path / "images", 1)[0]
    sha256_files([path])
    path.write_bytes(path.read_bytes().upper())  # same size, likely the same tick
    opened.clear()
    assert sha256_files([path])[path] == plain(path)
    assert path in opened


def test_a_damaged_database_is_replaced(tmp_path, database, opened):
    paths = images(tmp_path / "images", 4)
    database.parent.mkdir(parents=True)
    database.write_bytes(b"not a database at all " * 100)
    assert sha256_files(paths) == {path: plain(path) for path in paths}
    with sqlite3.connect(database) as connection:
        assert connection.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert connection.execute("SELECT count(*) FROM files").fetchone() == (4,)
    opened.clear()
    assert sha256_files(paths) == {path: plain(path) for path in paths}
    assert not set(opened) & set(paths)


@pytest.mark.parametrize("where", ["under a file", "off"])
def test_no_usable_database_means_hashing_every_time(tmp_path, monkeypatch, where):
    paths = images(tmp_path / "images", 3)
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    monkeypatch.setenv(file_hashes.CACHE_ENV, str(blocker / "hashes.sqlite") if where != "off" else "off")
    for _ in range(2):
        assert sha256_files(paths) == {path: plain(path) for path in paths}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file", "images"]


def test_several_processes_writing_at_once_keep_every_entry(tmp_path, database, opened):
    """Parallel detect runs, test workers: each process hashes its own files and some shared ones into the same
    database at the same time."""
    shared = images(tmp_path / "shared", 20)
    own = [images(tmp_path / f"own-{k}", 150) for k in range(4)]
    script = textwrap.dedent("""
        import sys
        from pathlib import Path
        from dghc.pipeline.artifacts import file_hashes
        file_hashes.RACY_NS = 0
        folders = [Path(arg) for arg in sys.argv[1:]]
        for _ in range(3):
            file_hashes.sha256_files(sorted(p for folder in folders for p in folder.iterdir()), threads=2)
    """)
    runs = [subprocess.Popen([sys.executable, "-c", script, str(tmp_path / "shared"), str(paths[0].parent)],
                             env={**os.environ, file_hashes.CACHE_ENV: str(database)}) for paths in own]
    assert [run.wait(timeout=300) for run in runs] == [0] * len(runs)
    with sqlite3.connect(database) as connection:
        assert connection.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert connection.execute("SELECT count(*) FROM files").fetchone() == (20 + 4 * 150,)
    every = shared + [path for paths in own for path in paths]
    assert sha256_files(every) == {path: plain(path) for path in every}
    assert not set(opened) & set(every)


def test_a_rerun_of_predicts_run_key_reads_no_image_and_no_model_file(tmp_path, database, opened):
    from dghc.pipeline.prediction.config import PredictConfig
    from dghc.pipeline.prediction.inputs import InputPost
    from dghc.pipeline.scale.predict import run_key

    model = tmp_path / "model"
    (model / "sub").mkdir(parents=True)
    (model / "model.safetensors").write_bytes(b"weights" * 1000)
    (model / "sub" / "config.json").write_text("{}")
    paths = images(tmp_path / "images", 6)
    posts = [InputPost(f"p{i}", "a post", [], path, i) for i, path in enumerate(paths)]
    posts += [InputPost("none", "no image", [], None, 7), InputPost("gone", "x", [], tmp_path / "gone.jpg", 8)]
    config = PredictConfig(model_dir=model)
    key = run_key(config, posts)
    # the key before the cache: shards written then still count as finished
    files = {"model.safetensors": plain(model / "model.safetensors"), "sub/config.json": plain(model / "sub" / "config.json")}
    expected = sha256_json({"posts": [[p.post_id, p.text, p.words, str(p.image),
                                       plain(p.image) if p.image is not None and p.image.is_file() else None]
                                      for p in posts],
                            "model": files, "precision": config.precision, "batch_size": config.batch_size,
                            "clip_model": config.clip_model, "detector_weights": config.detector_weights,
                            "grounding_weights": config.grounding_weights})
    assert key == expected
    opened.clear()
    assert run_key(config, posts) == key
    assert not set(opened) & {*paths, model / "model.safetensors", model / "sub" / "config.json"}
