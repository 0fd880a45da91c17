"""Stopping a stage cleanly on SIGINT (Ctrl-C) and SIGTERM (what schedulers and `timeout` send).

Inside ``stop_signals()`` the first SIGINT or SIGTERM is recorded instead of killing the process; the stage looks
at ``StopRequest.check`` at its safe points (after a batch is on disk, after an optimizer step) and stops there
with ``Interrupted``: one line saying what was kept, and the exit code 128 + the signal (130, 143). With
``at_once`` (stages whose outputs are written whole, so that any moment is safe) the signal interrupts at once.
A second signal while stopping interrupts at once too.
"""
from __future__ import annotations

import contextlib
import signal
import threading
from typing import Iterator

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(BaseException):
    """A stage stopped on a signal; ``exit_code`` is 128 + the signal's number.

    A BaseException, like KeyboardInterrupt, so that no library's ``except Exception`` swallows it when the signal
    arrives in the middle of its code."""

    def __init__(self, message: str, signum: int) -> None:
        super().__init__(message)
        self.signum = signum
        self.exit_code = 128 + signum


class StopRequest:
    """The signal received so far, if any."""

    def __init__(self, stage: str) -> None:
        self.stage = stage
        self.signum: int | None = None

    @property
    def requested(self) -> bool:
        return self.signum is not None

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name if self.signum is not None else ""

    def check(self, kept: str) -> None:
        """At a safe point: stop if a signal came, saying what was ``kept``."""
        if self.signum is not None:
            raise Interrupted(f"{self.stage}: stopped by {self.name}; {kept}", self.signum)


@contextlib.contextmanager
def stop_signals(stage: str, *, at_once: bool = False, kept: str = "nothing was written (outputs are written "
                 "whole or not at all)") -> Iterator[StopRequest]:
    """Handle SIGINT and SIGTERM for the block (only in the main thread; elsewhere nothing is changed)."""
    request = StopRequest(stage)
    if threading.current_thread() is not threading.main_thread():
        yield request
        return

    def handle(signum: int, frame: object) -> None:
        if at_once or request.signum is not None:
            request.signum = request.signum or signum
            raise Interrupted(f"{stage}: stopped by {signal.Signals(signum).name}; {kept}", signum)
        request.signum = signum

    previous = {signum: signal.signal(signum, handle) for signum in SIGNALS}
    try:
        yield request
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
