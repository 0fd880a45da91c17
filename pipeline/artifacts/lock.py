"""One run per output: a lock beside the output that a second run finds taken at once.

``<out>.lock`` is locked with ``filelock`` (an OS lock, which the system releases when its holder dies, even by
SIGKILL); ``<out>.lock.json`` says who holds it (pid, host, start time, command) for the message a second run
prints. A holder that died leaves its ``.lock.json`` behind: the next run takes the lock over and says so.
"""
from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
import time
from pathlib import Path
from typing import Callable, Iterator

from filelock import FileLock, Timeout

from ..core.errors import DghcError
from .atomic import write_text_atomically

# Set in the environment of the processes a run starts itself (dghc train --processes N): their parent holds
# the locks of the run.
HELD_BY_PARENT = "DGHC_OUTPUT_LOCKS_HELD"


class OutputBusy(DghcError):
    """Another run is writing the same output."""


def _holder_text(info: dict) -> str:
    started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(info.get("started", 0)))
    return f"pid {info.get('pid')} on {info.get('host')}, started {started}"


def _running(info: dict) -> bool:
    if info.get("host") != socket.gethostname():
        return True  # another machine's process: it cannot be checked from here
    try:
        os.kill(int(info.get("pid", -1)), 0)
    except (ProcessLookupError, ValueError, TypeError):
        return False
    except PermissionError:
        return True
    return True


def _read(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


@contextlib.contextmanager
def output_lock(*outputs: str | Path, note: Callable[[str], None] = lambda message: None) -> Iterator[None]:
    """Hold the locks of ``outputs`` for the duration of the block; refuse at once if another run holds one."""
    if os.environ.get(HELD_BY_PARENT):
        yield
        return
    with contextlib.ExitStack() as stack:
        for output in outputs:
            stack.enter_context(_one_lock(Path(output), note))
        yield


@contextlib.contextmanager
def _one_lock(output: Path, note: Callable[[str], None]) -> Iterator[None]:
    lock_path = output.with_name(output.name + ".lock")
    info_path = output.with_name(output.name + ".lock.json")
    # folders this run creates for the lock: removed again at the end if the run left nothing in them (a run that
    # fails before writing leaves no empty cache/ behind)
    created = [folder for folder in [lock_path.parent, *lock_path.parent.parents] if not folder.exists()]
    try:
        lock_path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        blocker = next((parent for parent in output.parents if parent.exists() and not parent.is_dir()), None)
        cause = f"{blocker} is a file, not a folder" if blocker is not None else err.strerror
        raise DghcError(f"cannot create the folder of {output}: {cause}") from None
    lock = FileLock(str(lock_path), timeout=0)
    try:
        lock.acquire()
    except Timeout:
        holder = _read(info_path)
        who = _holder_text(holder) if holder else "a process that has not said who it is yet"
        raise OutputBusy(f"{output} is being written by another dghc run ({who}): wait for it to end, or stop "
                         "it; this run changed nothing") from None
    except OSError as err:
        raise DghcError(f"cannot lock {output} ({lock_path}: {err.strerror})") from None
    try:
        previous = _read(info_path)
        if previous is not None and not _running(previous):
            note(f"note: took over the lock of {output} left by a run that ended without releasing it "
                 f"({_holder_text(previous)})")
        write_text_atomically(info_path, json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                                     "started": time.time(), "command": sys.argv[:8]}) + "\n")
        yield
    finally:
        with contextlib.suppress(OSError):
            info_path.unlink()
        with contextlib.suppress(OSError):
            lock_path.unlink()  # removed while held: a run that opens it later locks a new file
        lock.release()
        for folder in created:  # deepest first; one that holds anything stops the walk
            try:
                folder.rmdir()
            except OSError:
                break
