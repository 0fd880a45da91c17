"""The Jinja2 environment of dghc's HTML pages (the report and the paper's table): one configuration for both."""
from __future__ import annotations

import jinja2

from .console import points


def template_environment(package: str) -> jinja2.Environment:
    """Templates from ``package``'s ``templates/`` folder; autoescaped (post text is user input), and an undefined
    name is an error instead of an empty string. ``|points`` shows a score in F1 points, like every output."""
    environment = jinja2.Environment(loader=jinja2.PackageLoader(package, "templates"), autoescape=True,
                                     trim_blocks=True, lstrip_blocks=True, undefined=jinja2.StrictUndefined)
    environment.filters["points"] = points
    return environment
