"""Errors that carry enough context for a user to fix their input."""
from __future__ import annotations

from pathlib import Path


def first_line(err: BaseException) -> str:
    """The first line of an exception's message ("" when it has none): library errors can run to pages."""
    return (str(err).strip().splitlines() or [""])[0]


def failure_cause(err: BaseException) -> str:
    """What went wrong in a write or a read, in a few words ("No space left on device", "Permission denied")."""
    if isinstance(err, OSError) and err.strerror:
        return err.strerror
    return first_line(err)[:200] or type(err).__name__


class DghcError(Exception):
    """Base class of every error dghc reports to a user (the CLI prints these without a traceback)."""


class DataFormatError(DghcError):
    """Bad input in a data file: names the file, the line and how to fix it."""

    def __init__(self, path: str | Path, line: int | None, problem: str, fix: str | None = None) -> None:
        self.path = Path(path)
        self.line = line
        self.problem = problem
        self.fix = fix
        where = f"{self.path}" if line is None else f"{self.path}:{line}"
        message = f"{where}: {problem}"
        if fix:
            message += f" ({fix})"
        super().__init__(message)


class FingerprintMismatch(DghcError):
    """A cached file was made with other settings than the ones asked for now."""
