"""Errors that carry enough context for a user to fix their input."""
from __future__ import annotations

from pathlib import Path


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
