"""A resumable output: the unfinished work file ``<out>.partial`` and its progress record ``<out>.partial.json``.

A stage that writes its output row by row (detect, extract) fills the work file in batches. After each batch has
reached the work file, the record is rewritten (atomically) with the number of rows done and the *resume key*:
everything the rows depend on (settings, model and input hashes, batch size). A rerun with the same key
continues after the rows done; with another key, or with a work file that no longer opens, it starts over.
The record is written after the rows, so it never claims rows the work file lacks.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, Mapping

from ..core.errors import DghcError
from .atomic import publish, write_text_atomically
from .fingerprint import normalise

RECORD_FORMAT = "dghc-partial/1"


class PartialOutput:
    """The work file and progress record of ``out``; ``path`` is the work file the stage writes."""

    def __init__(self, out: str | Path, resume_key: Mapping[str, Any]) -> None:
        self.out = Path(out)
        self.path = self.out.with_name(self.out.name + ".partial")
        self.record = self.out.with_name(self.out.name + ".partial.json")
        self.resume_key = normalise(dict(resume_key))

    def resume_point(self, check: Callable[[Path, int], None] | None = None, *,
                     restart: bool = True) -> tuple[int, str]:
        """Rows done by an interrupted run with the same resume key, and a note for the user.

        ``check(work_file, rows_done)`` may raise (any exception) to say the work file cannot be trusted. When
        nothing can be resumed, the stale work file and record are removed and 0 is returned; with ``restart``
        False that is refused instead (``--no-restart``), and the files are left as they are.
        """
        if not self.path.exists():
            self.record.unlink(missing_ok=True)
            return 0, ""
        note = f"the unfinished file {self.path.name} was made with other settings or inputs; starting over"
        try:
            record = json.loads(self.record.read_text(encoding="utf-8"))
            rows = int(record["rows_done"])
            if record.get("format") == RECORD_FORMAT and record.get("resume_key") == self.resume_key and rows >= 0:
                if check is not None:
                    check(self.path, rows)
                if rows:
                    return rows, f"resuming {self.path.name} after {rows} rows done"
                note = ""
        except FileNotFoundError:
            note = f"the unfinished file {self.path.name} has no progress record; starting over"
        except Exception as err:  # a damaged record or work file: never trusted, whatever the error type
            note = f"the unfinished file {self.path.name} is damaged ({type(err).__name__}); starting over"
        if not restart and note:
            raise DghcError(f"{self.path}: {note.replace('; starting over', '')}, and --no-restart was given: "
                            "delete it, or rerun without --no-restart to start over")
        self.discard()
        return 0, note

    def mark_done(self, rows_done: int) -> None:
        """Record that the first ``rows_done`` rows are in the work file (call after they were flushed)."""
        write_text_atomically(self.record, json.dumps(
            {"format": RECORD_FORMAT, "resume_key": self.resume_key, "rows_done": int(rows_done)},
            sort_keys=True) + "\n")

    def publish(self) -> None:
        """The finished work file becomes the output."""
        publish(self.path, self.out)
        self.record.unlink(missing_ok=True)

    def discard(self) -> None:
        self.path.unlink(missing_ok=True)
        self.record.unlink(missing_ok=True)
