"""sha256 of many files, read again only when a file changed: detect's and predict's checks of a whole image folder
(up to date? resume?) cost a ``stat`` per unchanged file on the driver, not a read of its bytes.

A database in the user's cache folder (sqlite: several processes may write it at once) keeps each file's sha256
with the stat it had when hashed: size, mtime_ns, ctime_ns, inode and device. An entry is used only when all five
still match. Same size, mtime and inode means same bytes is what make, rsync and git assume; ctime, which only the
kernel sets, also catches an edit whose mtime was put back (``os.utime``). A file changed less than ``RACY_NS`` before
it was hashed is not stored (git's "racily clean" rule: a file system's clock ticks coarsely, and a second write
in the same tick leaves the stat as it was). ``refresh=True`` (``--force``) or deleting the database hashes every file
again. The cache only saves time: a database that cannot be opened, read or written (damaged, locked too long, a
read-only folder) is replaced or passed over, and the files are hashed.

``DGHC_HASH_CACHE`` names another database file, or ``off`` for none (the tests and benchmarks keep theirs in the
repository: ``dghc.pipeline.core.offline``).
"""
from __future__ import annotations

import hashlib
import os
import sqlite3
import stat as modes
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterable, Sequence, TypeVar

from ..core.user_dirs import user_cache_dir

CACHE_ENV = "DGHC_HASH_CACHE"
CACHE_FILE = "file-hashes.sqlite"
RACY_NS = 2_000_000_000  # FAT's mtime ticks every 2 s, ext4's and NFS's every few ms to 1 s
KEEP_DAYS = 60  # an entry not used for this long is dropped (files of deleted folders, temporary copies)
TIMEOUT_S = 10.0  # how long to wait for another process's write before passing the cache over
CHUNK = 256  # paths per task of the thread pool and per query
SCHEMA = 1
# What makes a file "not readable" for detect (its image status says why); other errors are raised.
UNREADABLE: tuple[type[OSError], ...] = (FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError)

P = TypeVar("P", str, Path)
T = TypeVar("T")


def cache_file() -> Path | None:
    """The database file: ``$DGHC_HASH_CACHE``, else ``file-hashes.sqlite`` in the user's cache folder; None when
    the variable is ``off``."""
    value = os.environ.get(CACHE_ENV, "")
    if value.strip().lower() == "off":
        return None
    return Path(value) if value else user_cache_dir() / CACHE_FILE


def sha256_files(paths: Iterable[P], *, unreadable: tuple[type[OSError], ...] = UNREADABLE, refresh: bool = False,
                 threads: int | None = None) -> dict[P, str | None]:
    """sha256 (hex) of each file, as ``sha256_file`` gives it; None for a file that raises one of ``unreadable``
    (never stored). Unchanged files are taken from the cache, the others hashed in a thread pool (hashlib and
    file reads release the GIL); ``refresh`` hashes every file (and stores the new values)."""
    wanted = list(dict.fromkeys(paths))
    if not wanted:
        return {}
    started = time.time_ns()
    workers = threads or min(32, (os.cpu_count() or 1) + 4)
    keys = [os.fsencode(os.path.abspath(path)) for path in wanted]
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="sha256") as pool:
        stats = [stat for chunk in pool.map(_stat_all, _chunks(wanted)) for stat in chunk]
        database = cache_file()
        known = {} if refresh or database is None else _lookup(database, keys, stats)
        todo = [i for i in range(len(wanted)) if i not in known]
        hashed = [found for chunk in pool.map(lambda rows: [_hash(wanted[i], stats[i], unreadable) for i in rows],
                                                 _chunks(todo)) for found in chunk]
    result: dict[P, str | None] = {wanted[i]: digest for i, (digest, _) in known.items()}
    new_rows = []
    for i, (digest, stat) in zip(todo, hashed):
        result[wanted[i]] = digest
        if digest is not None and stat is not None and max(stat.st_mtime_ns, stat.st_ctime_ns) < started - RACY_NS:
            new_rows.append((keys[i], _signature(stat), digest))
    stale = [keys[i] for i, (_, seen) in known.items() if seen < _today()]
    if database is not None and (new_rows or stale):
        _store(database, new_rows, stale)
    return {path: result[path] for path in wanted}


def _chunks(items: Sequence[T]) -> list[list[T]]:
    return [list(items[start:start + CHUNK]) for start in range(0, len(items), CHUNK)]


def _stat_all(paths: list[P]) -> list[os.stat_result | None]:
    """The stat of each regular file; None for anything else (missing, a folder, ...): hashed uncached, which
    raises what reading it raises."""
    stats: list[os.stat_result | None] = []
    for path in paths:
        try:
            stat = os.stat(path)
        except (OSError, ValueError):
            stat = None
        stats.append(stat if stat is not None and modes.S_ISREG(stat.st_mode) else None)
    return stats


def _hash(path: str | Path, before: os.stat_result | None,
          unreadable: tuple[type[OSError], ...]) -> tuple[str | None, os.stat_result | None]:
    """The file's sha256 and the stat to store it under: None when the file changed while it was read."""
    try:
        with open(path, "rb") as handle:
            digest = hashlib.file_digest(handle, "sha256").hexdigest()
            after = os.fstat(handle.fileno())
    except unreadable:
        return None, None
    same = before is not None and _signature(before) == _signature(after)
    return digest, after if same else None


def _signature(stat: os.stat_result) -> str:
    """What must not change for a stored hash to hold (as text: an inode may not fit sqlite's signed integers)."""
    return f"{stat.st_size}:{stat.st_mtime_ns}:{stat.st_ctime_ns}:{stat.st_ino}:{stat.st_dev}"


def _today() -> int:
    return int(time.time() // 86400)


def _connect(database: Path) -> sqlite3.Connection:
    """The open database, its table created; a file that is not one of ours (damaged, another program's) is
    replaced. sqlite's OperationalError (locked, read-only, no space) is raised to the caller."""
    for attempt in (1, 2):
        database.parent.mkdir(parents=True, exist_ok=True)
        connection = sqlite3.connect(database, timeout=TIMEOUT_S, isolation_level=None)
        try:
            version = connection.execute("PRAGMA user_version").fetchone()[0]
            if version not in (0, SCHEMA):
                raise sqlite3.DatabaseError(f"schema {version}")
            connection.execute("CREATE TABLE IF NOT EXISTS files (path BLOB PRIMARY KEY, stat TEXT NOT NULL, "
                               "sha256 TEXT NOT NULL, seen INTEGER NOT NULL) WITHOUT ROWID")
            connection.execute("CREATE INDEX IF NOT EXISTS files_seen ON files (seen)")
            if version == 0:
                connection.execute(f"PRAGMA user_version = {SCHEMA}")
            connection.execute("SELECT count(*) FROM files WHERE path = x''").fetchone()
            return connection
        except sqlite3.OperationalError:
            connection.close()
            raise
        except sqlite3.DatabaseError:  # "file is not a database", "malformed": start a new one
            connection.close()
            if attempt == 2:
                raise
            for suffix in ("", "-journal", "-wal", "-shm"):
                Path(f"{database}{suffix}").unlink(missing_ok=True)
    raise AssertionError("unreachable")


def _lookup(database: Path, keys: list[bytes], stats: list[os.stat_result | None]) -> dict[int, tuple[str, int]]:
    """Index -> (sha256, day last used) of the files whose stored stat equals their stat now."""
    candidates = [i for i, stat in enumerate(stats) if stat is not None]
    found: dict[int, tuple[str, int]] = {}
    try:
        connection = _connect(database)
        try:
            for chunk in _chunks(candidates):
                rows = connection.execute(f"SELECT path, stat, sha256, seen FROM files WHERE path IN "
                                          f"({','.join('?' * len(chunk))})", [keys[i] for i in chunk]).fetchall()
                stored = {path: (stat, digest, seen) for path, stat, digest, seen in rows}
                for i in chunk:
                    entry = stored.get(keys[i])
                    if entry is not None and entry[0] == _signature(stats[i]):  # type: ignore[arg-type]
                        found[i] = (entry[1], entry[2])
        finally:
            connection.close()
    except (sqlite3.Error, OSError):  # no cache this time: every file is hashed
        return {}
    return found


def _store(database: Path, rows: list[tuple[bytes, str, str]], used: list[bytes]) -> None:
    """Write the new hashes, mark the entries used today, drop those unused for ``KEEP_DAYS``: one transaction,
    or nothing when the database cannot be written."""
    today = _today()
    try:
        connection = _connect(database)
        try:
            connection.execute("BEGIN IMMEDIATE")
            connection.executemany("INSERT OR REPLACE INTO files (path, stat, sha256, seen) VALUES (?, ?, ?, ?)",
                                   [(*row, today) for row in rows])
            connection.executemany("UPDATE files SET seen = ? WHERE path = ?", [(today, key) for key in used])
            connection.execute("DELETE FROM files WHERE seen < ?", (today - KEEP_DAYS,))
            connection.execute("COMMIT")
        finally:
            connection.close()
    except (sqlite3.Error, OSError):
        pass
