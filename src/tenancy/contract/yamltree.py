"""Node tree to plain data, recording where each key and value was written.

Only plain YAML becomes data: aliases, explicit non-standard tags, merge keys
and non-text keys are collected as located errors (fatal: the caller refuses
the file), a duplicate key as a :class:`~.yamldoc.DuplicateKey` (not fatal).
Keys are always their text, so ``1:`` and ``"1":`` are the same key.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import yaml
from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from tenancy.contract.errors import Location, SpecError
from tenancy.contract.yamldoc import Document, DuplicateKey, PathKey, format_path
from tenancy.contract.yamlguard import AliasNode

_ALIAS_MESSAGE = "YAML anchors and aliases are not allowed"

_STANDARD_TAGS = frozenset(
    {
        "tag:yaml.org,2002:str",
        "tag:yaml.org,2002:int",
        "tag:yaml.org,2002:float",
        "tag:yaml.org,2002:bool",
        "tag:yaml.org,2002:null",
        "tag:yaml.org,2002:map",
        "tag:yaml.org,2002:seq",
    }
)
_TIMESTAMP_TAG = "tag:yaml.org,2002:timestamp"

# Longest text converted to a number or date. Converting is not linear in the length
# (base 60 ``1:2:3`` is quadratic) and a huge integer cannot even be printed in an
# error message (Python's int/str digit limit), so longer text is refused unread.
# 32 characters hold any 64-bit integer or double in any YAML spelling, and stay far
# below Python's smallest digit limit (640), so that limit can never be reached.
MAX_NUMBER_CHARS = 32
MAX_TIMESTAMP_CHARS = 64  # 2027-03-31T12:00:00.123456789+01:00 is 35
_BOUNDED = {
    "tag:yaml.org,2002:int": (MAX_NUMBER_CHARS, "number too long", "digits"),
    "tag:yaml.org,2002:float": (MAX_NUMBER_CHARS, "number too long", "digits"),
    _TIMESTAMP_TAG: (MAX_TIMESTAMP_CHARS, "date too long", "characters"),
}
_MAX_SHOWN = 40  # characters of a refused scalar shown in its error


def to_document(
    root: Node, file: str, explicit: set[int], *, dates: bool = False
) -> tuple[Document, list[SpecError]]:
    """The document of ``root`` and the fatal errors found on the way.

    ``explicit`` holds the ids of nodes whose tag was written in the file. With
    ``dates``, YAML timestamps (``2027-03-31``) become ``date``/``datetime``
    objects (a waiver's expiry); otherwise they stay text, as a tenant file has
    no dates.
    """
    tags = _STANDARD_TAGS | {_TIMESTAMP_TAG} if dates else _STANDARD_TAGS
    ctx = _Context(Document(file=file, data=None), [], explicit, SafeConstructor(), tags)
    ctx.doc.data = _convert(root, (), ctx)
    return ctx.doc, _cap_aliases(ctx.errors)


@dataclass
class _Context:
    doc: Document
    errors: list[SpecError]  # fatal: the document cannot be checked further
    explicit: set[int]  # ids of nodes whose tag was written in the file
    constructor: SafeConstructor
    tags: frozenset[str]  # the tags constructed as values


def _cap_aliases(errors: list[SpecError], keep: int = 5) -> list[SpecError]:
    """An alias bomb has hundreds of aliases: name the first few, then count the rest."""
    aliases = [e for e in errors if e.message == _ALIAS_MESSAGE]
    if len(aliases) <= keep + 1:
        return errors
    rest = aliases[keep:]
    summary = SpecError(
        rest[0].location,
        rest[0].field,
        f"{len(rest)} more YAML aliases (anchors and aliases are not allowed)",
        "plain values",
    )
    dropped = {id(e) for e in rest}
    return [e for e in errors if id(e) not in dropped] + [summary]


def _convert(node: Node, path: PathKey, ctx: _Context) -> Any:
    doc = ctx.doc
    loc = Location(doc.file, node.start_mark.line + 1, node.start_mark.column + 1)
    doc.positions[path] = (loc.line, loc.column)
    if isinstance(node, AliasNode):
        ctx.errors.append(
            SpecError(
                loc,
                format_path(path),
                _ALIAS_MESSAGE,
                "plain values",
                f"alias *{node.value}",
            )
        )
        return None
    tag = node.tag or ""
    if tag not in ctx.tags:
        if id(node) in ctx.explicit or not isinstance(node, ScalarNode):
            ctx.errors.append(
                SpecError(
                    loc,
                    format_path(path),
                    "YAML tags are not allowed",
                    "a plain value",
                    f"tag {tag}",
                )
            )
            return None
        # an implicitly typed scalar we do not construct (a date, '=', '<<'): keep its text
        return str(node.value)
    if isinstance(node, ScalarNode):
        return _scalar(node, loc, path, ctx)
    if isinstance(node, SequenceNode):
        return [_convert(item, (*path, i), ctx) for i, item in enumerate(node.value)]
    if isinstance(node, MappingNode):
        return _convert_mapping(node, path, ctx)
    ctx.errors.append(SpecError(loc, format_path(path), "unsupported YAML node"))
    return None


def _scalar(node: ScalarNode, loc: Location, path: PathKey, ctx: _Context) -> Any:
    """A typed scalar's value; too long to convert, or not convertible: a located error."""
    text = str(node.value)
    bound = _BOUNDED.get(node.tag or "")
    if bound is not None and len(text) > bound[0]:
        limit, message, unit = bound
        ctx.errors.append(
            SpecError(loc, format_path(path), message, f"at most {limit} {unit}", _shown(text))
        )
        return None
    try:
        return ctx.constructor.construct_object(node, deep=True)
    except (yaml.YAMLError, ValueError, OverflowError, LookupError) as exc:
        # LookupError: PyYAML indexes the text (``!!int ""``, ``!!bool "maybe"``)
        kind = (node.tag or "").rsplit(":", 1)[-1]
        problem = f"not a YAML {kind}" if isinstance(exc, LookupError) else str(exc)
        ctx.errors.append(
            SpecError(loc, format_path(path), f"bad scalar: {problem[:200]}", found=_shown(text))
        )
        return None


def _shown(text: str) -> str:
    """How a refused scalar is named: its length and first characters, never all of it."""
    head = text if len(text) <= _MAX_SHOWN else text[:_MAX_SHOWN] + "…"
    return f"{len(text)} characters: {head!r}"


def _convert_mapping(node: MappingNode, path: PathKey, ctx: _Context) -> dict[str, Any]:
    doc = ctx.doc
    result: dict[str, Any] = {}
    first_seen: dict[str, int] = {}
    for key_node, value_node in node.value:
        key_loc = Location(doc.file, key_node.start_mark.line + 1, key_node.start_mark.column + 1)
        key = _key(key_node, key_loc, path, ctx)
        if key is None:
            continue
        if key in first_seen:
            # not fatal: keep the first value and go on checking the rest of the file
            doc.duplicates.append(
                DuplicateKey((*path, key), key_loc.line, key_loc.column, first_seen[key])
            )
            continue
        first_seen[key] = key_loc.line
        entry = (*path, key)
        result[key] = _convert(value_node, entry, ctx)
        value_at = doc.positions[entry]
        if value_at != (key_loc.line, key_loc.column):
            doc.starts[entry] = value_at
        doc.positions[entry] = (key_loc.line, key_loc.column)
    return result


def _key(key_node: Node, key_loc: Location, path: PathKey, ctx: _Context) -> str | None:
    """A mapping key's text, or None (and a located error) for a key that is not plain text."""
    if key_node.tag == "tag:yaml.org,2002:merge":
        ctx.errors.append(SpecError(key_loc, format_path(path), "YAML merge keys are not allowed"))
        return None
    if isinstance(key_node, AliasNode) or not isinstance(key_node, ScalarNode):
        ctx.errors.append(
            SpecError(
                key_loc,
                format_path(path),
                "mapping keys must be plain text",
                "a string key",
                "an alias" if isinstance(key_node, AliasNode) else "a complex key",
            )
        )
        return None
    if id(key_node) in ctx.explicit and key_node.tag not in _STANDARD_TAGS:
        ctx.errors.append(
            SpecError(
                key_loc,
                format_path(path),
                "YAML tags are not allowed",
                "a plain key",
                f"tag {key_node.tag}",
            )
        )
        return None
    return str(key_node.value)  # keys are names: their text, never a typed value
