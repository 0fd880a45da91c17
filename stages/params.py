"""Stage parameters: a section of params.yaml, overridden by ``--set key=value`` and explicit options."""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Iterable, TypeVar

import yaml

from pipeline.core.errors import DghcError

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
    """Fill the click parameters that were not given on the command line from ``section`` of a params file.

    The one implementation every stage command uses (detect, extract, evaluate, report, demo-data). Keys are
    parameter names (``batch_size`` or ``batch-size``; arguments too, e.g. ``files``); a scalar given to a
    repeatable option or a many-valued argument counts as a one-item list. Unknown keys, a value of the wrong
    type and a boolean given to a non-boolean parameter are errors naming the file, the section and the key.
    A missing section gives nothing.
    """
    import click
    from click.core import ParameterSource

    if params_file is None:
        return
    values = load_section(params_file, section)
    options = {p.name: p for p in ctx.command.params if p.name and p.name not in ("params", "params_file")}
    unknown = [str(key) for key in values if str(key).replace("-", "_") not in options]
    if unknown:
        raise DghcError(f"{params_file}: unknown keys in section {section!r}: {', '.join(unknown)} "
                        f"(known: {', '.join(sorted(options))})")
    for key, value in values.items():
        name = str(key).replace("-", "_")
        param = options[name]
        many = param.multiple or getattr(param, "nargs", 1) == -1
        given = ctx.get_parameter_source(name) not in (ParameterSource.DEFAULT, None)
        if given and not (many and not ctx.params.get(name)):  # an empty FILES... argument is not "given"
            continue
        if many and value is not None and not isinstance(value, (list, tuple)):
            value = [value]
        items = value if many and value is not None else [value]
        if not isinstance(param.type, click.types.BoolParamType) and any(isinstance(v, bool) for v in items):
            raise DghcError(f"{params_file}: {section}.{key}: expected {param.type.name}, got a boolean "
                            f"({str(value).lower()})")
        try:
            ctx.params[name] = param.type_cast_value(ctx, value)
        except click.BadParameter as err:
            raise DghcError(f"{params_file}: {section}.{key}: {err.message}") from None
