"""The one jinja2 environment: StrictUndefined, so a missing variable is an error, not a blank."""

from __future__ import annotations

import functools
from pathlib import Path

import jinja2

from tenancy.project import shipped
from tenancy.render import escape


def templates_dir() -> Path:
    """The shipped templates (package data: the same for every project of this install)."""
    return shipped("templates")


@functools.cache
def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(templates_dir())),
        undefined=jinja2.StrictUndefined,
        autoescape=jinja2.select_autoescape(["html.j2"], default_for_string=False),
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    # one filter per output format a reviewer reads (tenant text is hostile input)
    env.filters["md"] = escape.markdown
    env.filters["mdcode"] = escape.markdown_code
    env.filters["dotid"] = escape.dot_string
    env.filters["dotlines"] = lambda lines: escape.dot_string(*lines)
    env.filters["mermaid"] = escape.mermaid
    env.filters["yamlstr"] = escape.yaml_string
    return env


def render(template: str, **context: object) -> str:
    return environment().get_template(template).render(**context)
