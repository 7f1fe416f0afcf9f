"""Tenant-supplied text made inert for each output format a reviewer reads.

A display name (any Unicode, by contract) reaches the pull-request comment
(markdown), the Mermaid and Graphviz pictures and the terminal. Each format has
its own markup, and all of them are fooled by control, bidi and line-separator
characters: a carriage return or ``<!--`` could show a fake banner or hide later
lines. So every filter first makes those characters visible (``\\u202e``), then
neutralises the format's own markup. Letters of any script stay as they are.
"""

from __future__ import annotations

import json
import re

from tenancy.contract.text import is_invisible, plain

# CommonMark lets a backslash escape any ASCII punctuation; these make markup anywhere
_MD_SPECIAL = frozenset("\\`*_{}[]|~")
# HTML (comments, tags, entities) and GitHub's @mentions, as entities
_MD_ENTITIES = {"<": "&lt;", ">": "&gt;", "&": "&amp;", "@": "&#64;"}
# ... and these only at the start of a line: headings, lists, quotes, rules
_MD_LINE_START = re.compile(r"^([#+=-]|\d+[.)])")
# Mermaid labels: words, spaces and a little punctuation as they are, the rest as #NN;
_MERMAID_PLAIN = frozenset(" -_.,:/·×@+")


def terminal(value: object) -> str:
    """For a terminal: no escape sequence, carriage return or bidi control gets through."""
    return plain(value)


def markdown(value: object) -> str:
    """Inline markdown (headings, list items, table cells): shown as the same text."""
    out: list[str] = []
    for char in plain(value):
        if char in _MD_ENTITIES:
            out.append(_MD_ENTITIES[char])
        elif char in _MD_SPECIAL:
            out.append("\\" + char)
        else:
            out.append(char)
    text = "".join(out)
    start = _MD_LINE_START.match(text)
    if start:  # escape the one character that makes the line a heading or a list
        end = start.end()
        text = f"{text[: end - 1]}\\{text[end - 1 :]}"
    return text


def markdown_code(value: object) -> str:
    """Inline code: a backtick span longer than any backtick run inside it."""
    text = plain(value)
    longest = run = 0
    for char in text:
        run = run + 1 if char == "`" else 0
        longest = max(longest, run)
    marks = "`" * (longest + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{marks}{pad}{text}{pad}{marks}"


def mermaid(value: object) -> str:
    """Text inside a quoted Mermaid label (``["..."]``): entity codes for all markup."""
    return "".join(c if c.isalnum() or c in _MERMAID_PLAIN else f"#{ord(c)};" for c in plain(value))


def dot_string(*lines: object) -> str:
    """A quoted Graphviz string; several arguments become lines of one label."""
    parts = [plain(line).replace("\\", "\\\\").replace('"', '\\"') for line in lines]
    return '"' + "\\n".join(parts) + '"'


def yaml_string(value: object) -> str:
    """A double-quoted YAML scalar: JSON's quoting (valid YAML), invisible characters escaped."""
    quoted = json.dumps(str(value), ensure_ascii=False)
    return "".join(_yaml_escape(c) if is_invisible(c) else c for c in quoted)


def _yaml_escape(char: str) -> str:
    code = ord(char)
    return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"
