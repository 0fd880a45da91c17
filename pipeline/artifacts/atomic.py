"""Writing outputs so that a reader never sees half of one: write a temporary sibling, fsync, rename.

Every file and folder dghc writes goes through here. A temporary sibling (same folder, so the rename stays on
one file system) is written, given the permissions a new file gets from the umask (``mkstemp`` makes 0600),
flushed to disk, and renamed over the target; a failure at any point removes it and leaves the previous output
as it was. Our own because the package that did this (atomicwrites) is archived, and no kept one swaps folders.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator, TextIO

from ..core.errors import DghcError, failure_cause


@contextlib.contextmanager
def writing(path: str | Path, kept: str) -> Iterator[None]:
    """Turn a failed write (full disk, missing or read-only folder, a file that vanished) into one line naming
    ``path``, the cause, and what was ``kept``."""
    try:
        yield
    except DghcError:
        raise
    except (OSError, RuntimeError) as err:  # h5py reports some write failures as RuntimeError
        raise DghcError(f"cannot write {path}: {failure_cause(err)}; {kept}") from None


def current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _fsync_path(path: Path) -> None:
    """Flush a file's (or a folder's entries') data to disk."""
    flags = os.O_RDONLY | (os.O_DIRECTORY if path.is_dir() else 0)
    try:
        fd = os.open(path, flags)
    except OSError:  # a folder that cannot be opened for reading on this platform: nothing to flush
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems refuse fsync on folders
    finally:
        os.close(fd)


def publish(tmp: str | Path, path: str | Path) -> None:
    """Rename a finished temporary file over ``path``: normal permissions, data on disk first."""
    tmp, path = Path(tmp), Path(path)
    os.chmod(tmp, 0o666 & ~current_umask())
    _fsync_path(tmp)
    os.replace(tmp, path)
    _fsync_path(path.parent)


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary path beside ``path`` to write; renamed over ``path`` when the block ends without error.

    For writers that want a file name (h5py, PIL, safetensors); ``write_bytes_atomically`` and
    ``atomic_text`` cover the common cases.
    """
    path = Path(path)
    untouched = f"the previous {path.name}, if any, is untouched"
    with writing(path, untouched):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.close(fd)
    tmp = Path(name)
    try:
        with writing(path, untouched):
            yield tmp
            publish(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_bytes_atomically(path: str | Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text_atomically(path: str | Path, text: str) -> None:
    write_bytes_atomically(path, text.encode("utf-8"))


@contextlib.contextmanager
def atomic_text(path: str | Path) -> Iterator[TextIO]:
    """A UTF-8 text stream (LF endings) whose content replaces ``path`` only if the block completes."""
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8", newline="\n") as handle:
        yield handle


@contextlib.contextmanager
def atomic_folder(folder: str | Path) -> Iterator[Path]:
    """A staging folder beside ``folder`` to fill; it replaces ``folder`` when the block ends without error.

    The old folder is moved aside, the staging folder renamed into place, then the old one removed: a reader
    sees the old folder or the new one, and at worst, after a crash between the two renames, a
    ``.<name>.old`` beside no ``<name>``.
    """
    folder = Path(folder)
    with writing(folder, f"the previous {folder.name}, if any, is untouched"):
        folder.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}."))
    try:
        with writing(folder, f"the previous {folder.name}, if any, is untouched"):
            yield staging
            _swap_in(staging, folder)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _swap_in(staging: Path, folder: Path) -> None:
    """Replace ``folder`` by the finished ``staging`` folder (both in the same parent)."""
    os.chmod(staging, 0o777 & ~current_umask())  # mkdtemp makes 0700
    for item in staging.rglob("*"):
        if item.is_file():
            _fsync_path(item)
    if folder.exists():
        old = folder.with_name(f".{folder.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        folder.rename(old)
        staging.rename(folder)
        shutil.rmtree(old, ignore_errors=True)
    else:
        staging.rename(folder)
    _fsync_path(folder.parent)
