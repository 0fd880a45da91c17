"""Rewrite the docs' parameter tables from the stage declarations: ``python -m dghc.stages.param_tables``.

Each table sits between ``<!-- params:SECTION -->`` and ``<!-- /params:SECTION -->`` in one of ``DOCS`` (each
section in exactly one of them); tests/test_params.py fails when one is stale.
"""
from __future__ import annotations

import importlib
import re
import sys
from pathlib import Path

import click

from . import COMMANDS
from .options import params_table

REPO = Path(__file__).resolve().parents[1]
DOCS = [REPO / "README.md", REPO / "docs" / "STAGES.md", REPO / "docs" / "RUNNING.md"]


def configured_commands() -> dict[str, type]:
    """params.yaml section -> config class, for every command built from a config declaration."""
    found = {}
    commands: list[click.Command] = []
    for target in COMMANDS.values():
        module_name, attribute = target.split(":")
        commands.append(getattr(importlib.import_module(module_name), attribute))
    while commands:  # subcommands of groups too (`dghc experiments run`)
        command = commands.pop()
        if isinstance(command, click.Group):
            commands.extend(command.get_command(click.Context(command), name)
                            for name in command.list_commands(click.Context(command)))
        config_class = getattr(command.callback, "config_class", None)
        if config_class is not None:
            found[config_class.SECTION] = config_class
    return found


def block(section: str) -> re.Pattern[str]:
    return re.compile(rf"(<!-- params:{section} -->\n)(?:.*?\n)?(<!-- /params:{section} -->)", re.S)


def rewrite(texts: dict[Path, str]) -> dict[Path, str]:
    """The docs' texts with every section's table regenerated; each section must have one block in all of them."""
    texts = dict(texts)
    for section, config_class in configured_commands().items():
        holders = [path for path, text in texts.items() if block(section).search(text)]
        if len(holders) != 1:
            names = ", ".join(p.name for p in holders) or "none of " + ", ".join(p.name for p in texts)
            raise SystemExit(f"<!-- params:{section} --> ... <!-- /params:{section} --> must be in exactly one doc "
                             f"(found in {names})")
        path = holders[0]
        texts[path] = block(section).sub(
            lambda match: match.group(1) + params_table(config_class) + "\n" + match.group(2), texts[path])
    return texts


def main() -> None:
    old = {path: path.read_text(encoding="utf-8") for path in DOCS}
    new = rewrite(old)
    for path in DOCS:
        if new[path] != old[path]:
            path.write_text(new[path], encoding="utf-8")
            print(f"{path.relative_to(REPO)}: parameter tables rewritten")
    if new == old:
        print("parameter tables are current")


if __name__ == "__main__":
    sys.exit(main())
