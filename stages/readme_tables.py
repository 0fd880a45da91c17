"""Rewrite README.md's parameter tables from the stage declarations: ``python -m stages.readme_tables``.

Each table sits between ``<!-- params:SECTION -->`` and ``<!-- /params:SECTION -->``; tests/test_params.py
fails when one is stale.
"""
from __future__ import annotations

import re
import sys
from pathlib import Path

import click

from stages.options import params_table

README = Path(__file__).resolve().parents[1] / "README.md"


def configured_commands() -> dict[str, type]:
    """params.yaml section -> config class, for every command built from a config declaration."""
    from cli import dghc

    found = {}
    groups = [dghc]
    while groups:  # subcommands of groups too (`dghc experiments run`)
        group = groups.pop()
        for name in group.list_commands(click.Context(group)):
            command = group.get_command(click.Context(group), name)
            if isinstance(command, click.Group):
                groups.append(command)
            config_class = getattr(command.callback, "config_class", None)
            if config_class is not None:
                found[config_class.SECTION] = config_class
    return found


def rewrite(text: str) -> str:
    for section, config_class in configured_commands().items():
        pattern = re.compile(rf"(<!-- params:{section} -->\n)(?:.*?\n)?(<!-- /params:{section} -->)", re.S)
        if not pattern.search(text):
            raise SystemExit(f"README.md has no <!-- params:{section} --> ... <!-- /params:{section} --> block")
        text = pattern.sub(lambda match: match.group(1) + params_table(config_class) + "\n" + match.group(2), text)
    return text


def main() -> None:
    old = README.read_text(encoding="utf-8")
    new = rewrite(old)
    if new != old:
        README.write_text(new, encoding="utf-8")
        print("README.md: parameter tables rewritten")
    else:
        print("README.md: parameter tables are current")


if __name__ == "__main__":
    sys.exit(main())
