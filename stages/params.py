"""Stage parameters: a section of params.yaml, overridden by ``--set key=value`` and explicit options."""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Iterable, TypeVar

import yaml

from pipeline.errors import DghcError

T = TypeVar("T")


def load_section(params_file: str | Path | None, section: str) -> dict[str, Any]:
    """The ``section`` mapping of a params YAML file ({} when no file is given)."""
    if params_file is None:
        return {}
    path = Path(params_file)
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError:
        raise DghcError(f"params file {path} not found") from None
    except yaml.YAMLError as err:
        raise DghcError(f"{path}: not valid YAML: {err}") from None
    if not isinstance(data, dict) or not isinstance(data.get(section, {}), dict):
        raise DghcError(f"{path}: section '{section}' must be a mapping of parameter names to values")
    return dict(data.get(section) or {})


def parse_overrides(items: Iterable[str]) -> dict[str, Any]:
    """``["epochs=3", "use_image=false"]`` -> ``{"epochs": 3, "use_image": False}`` (values read as YAML)."""
    result = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise DghcError(f"--set {item!r}: write KEY=VALUE, e.g. --set epochs=3")
        result[key.strip()] = yaml.safe_load(value)
    return result


def build_config(cls: type[T], section_values: dict, overrides: dict, origin: str) -> T:
    """Make a config dataclass, refusing unknown keys with the list of known ones."""
    fields = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    values = {**section_values, **overrides}
    unknown = sorted(set(values) - fields)
    if unknown:
        raise DghcError(f"{origin}: unknown parameter(s) {', '.join(unknown)}; known: {', '.join(sorted(fields))}")
    return cls(**values)


def apply_params(ctx, params_file: str | Path | None, section: str) -> None:
    """Fill the click options that were not given on the command line from ``section`` of a params file.

    Keys are option names (``batch_size`` or ``batch-size``); an unknown key or a value of the wrong type is
    an error naming the file, the section and the key.
    """
    import click
    from click.core import ParameterSource

    if params_file is None:
        return
    values = load_section(params_file, section)
    options = {p.name: p for p in ctx.command.params if p.name and p.name not in ("params", "params_file")}
    for key, value in values.items():
        name = str(key).replace("-", "_")
        if name not in options:
            raise DghcError(f"{params_file}: unknown key {key!r} in section {section!r} "
                            f"(known: {', '.join(sorted(options))})")
        given = ctx.get_parameter_source(name) not in (ParameterSource.DEFAULT, None)
        empty_argument = options[name].multiple or getattr(options[name], "nargs", 1) == -1
        if given and not (empty_argument and not ctx.params.get(name)):
            continue
        try:
            ctx.params[name] = options[name].type_cast_value(ctx, value) if value is not None else None
        except click.BadParameter as err:
            raise DghcError(f"{params_file}: {section}.{key}: {err.message}") from None
