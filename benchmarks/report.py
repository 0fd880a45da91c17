"""Write one benchmark's figures into its own section of BENCHMARKS.md (other sections are kept)."""
from __future__ import annotations

import os
import platform
import re
import sys
from datetime import datetime, timezone
from pathlib import Path

from dghc.pipeline.artifacts.atomic import write_text_atomically

BENCHMARKS_MD = Path(__file__).resolve().parents[1] / "BENCHMARKS.md"
HEADER = "# Benchmarks\n\nEach section is written by the script it names; rerun the command to refresh it.\n"


def machine_line() -> str:
    return f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"


def _section(name: str) -> re.Pattern[str]:
    """A section from its opening to its closing marker; group 1 is its body under the heading."""
    return re.compile(rf"<!-- bench:{re.escape(name)} -->\n## [^\n]*\n(.*?)<!-- /bench:{re.escape(name)} -->", re.S)


def update_section(name: str, body: str, command: str | None = None, path: Path | None = None) -> None:
    """Replace (or add) the section ``name`` of BENCHMARKS.md (or of ``path``) with ``body`` (markdown)."""
    path = path or BENCHMARKS_MD
    command = command or "python " + " ".join(sys.argv)
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    section = (f"<!-- bench:{name} -->\n## {name}\n\nCommand: `{command}`  \n"
               f"Measured {stamp} on {machine_line()}.\n\n{body.strip()}\n<!-- /bench:{name} -->")
    text = path.read_text() if path.exists() else HEADER
    pattern = _section(name)
    if pattern.search(text):
        text = pattern.sub(lambda _: section, text)
    else:
        text = text.rstrip() + "\n\n" + section + "\n"
    write_text_atomically(path, text)  # another benchmark may read it meanwhile
    print(section)


def _parts(name: str) -> tuple[str, str]:
    """The section's last run and its "### Previous run" part (each "" when absent)."""
    if not BENCHMARKS_MD.exists():
        return "", ""
    match = _section(name).search(BENCHMARKS_MD.read_text())
    if not match:
        return "", ""
    last, _, previous = match.group(1).partition("### Previous run")
    return last.strip(), ("### Previous run" + previous).strip() if previous else ""


def last_run(name: str) -> str:
    """The section's figures as its last run wrote them (command line included, the run before it left out), to
    keep beside the next run's; "" when the section does not exist."""
    return _parts(name)[0]


def kept_previous_run(name: str) -> str:
    """The section's "### Previous run" part as it stands: what a rewrite from stored runs keeps (it measured
    nothing new, so the last run does not become the previous one)."""
    return _parts(name)[1]
