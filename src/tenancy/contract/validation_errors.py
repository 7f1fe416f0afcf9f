"""pydantic's validation errors as located errors: field, what was expected, what was found.

One translation for every file kind (tenants, sites, grants, ledgers), so an
unknown key always lists the allowed ones and a pattern mismatch says the shape
in words.
"""

from __future__ import annotations

import re
import types
import typing
from typing import Any, get_args, get_origin

from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo

from tenancy.contract.errors import SpecError, describe
from tenancy.contract.text import excerpt
from tenancy.contract.types import PATTERN_HELP, TYPE_DESCRIPTIONS
from tenancy.contract.yamldoc import Document, PathKey, format_path

_MARKER = re.compile(
    r"(function-(after|before|wrap|plain)|constrained-[a-z]+|chain|nullable|union|tagged-union"
    r"|is-instance|lax-or-strict|json-or-python|default|literal|list|dict|str|int)\[.*\]\Z",
    re.S,
)


def pydantic_errors(
    exc: ValidationError, doc: Document, model: type[BaseModel], prefix: PathKey = ()
) -> list[SpecError]:
    """Translate pydantic errors into located errors naming field, expectation and finding."""
    out: list[SpecError] = []
    for err in exc.errors(include_url=False):
        loc: PathKey = tuple(err["loc"])
        # strip pydantic's internal markers (e.g. function-after[...]) from the path
        # (a key of the document may hold "[" too: only pydantic's own markers go)
        clean: PathKey = tuple(p for p in loc if not (isinstance(p, str) and _MARKER.match(p)))
        full = (*prefix, *clean)
        kind = err["type"]
        msg = str(err["msg"])
        found = describe(err.get("input"))
        if kind == "extra_forbidden":
            allowed = _allowed_keys(model, clean[:-1])
            out.append(
                SpecError(
                    doc.locate(full),
                    format_path(full),
                    "unknown key",
                    f"one of: {', '.join(allowed)}" if allowed else "no extra keys",
                    excerpt(str(clean[-1])) if clean else "",
                )
            )
            continue
        if kind == "missing":
            out.append(
                SpecError(
                    doc.locate(full),
                    format_path(full),
                    "required key is missing",
                    f"a value for {clean[-1]!r}" if clean else "a value",
                )
            )
            continue
        expected = msg
        for lead, article in (
            ("Input should be ", ""),
            ("Value error, ", ""),
            ("String should ", "a string that should "),
            ("List should ", "a list that should "),
            ("Dictionary should ", "a mapping that should "),
            ("Tuple should ", "a list that should "),
        ):
            if expected.startswith(lead):
                expected = article + expected[len(lead) :]
                break
        if kind == "string_pattern_mismatch":
            expected = _pattern_expectation(model, clean, err.get("ctx") or {}, expected)
        out.append(SpecError(doc.locate(full), format_path(full), "invalid value", expected, found))
    return out


def _unwrap(annotation: Any) -> list[Any]:
    """The model classes an annotation may hold (through Optional, list, dict, Annotated)."""
    origin = get_origin(annotation)
    if origin is typing.Annotated:
        return _unwrap(get_args(annotation)[0])
    if origin in (list, tuple, set, dict, typing.Union, types.UnionType):
        found: list[Any] = []
        for arg in get_args(annotation):
            found.extend(_unwrap(arg))
        return found
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return []


def _is_mapping(annotation: Any) -> bool:
    """Whether an annotation (through Optional/Annotated) is a dict of named entries."""
    origin = get_origin(annotation)
    if origin is typing.Annotated:
        return _is_mapping(get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        return any(_is_mapping(a) for a in get_args(annotation))
    return origin is dict


def _model_at(model: type[BaseModel], path: PathKey) -> type[BaseModel] | None:
    current: type[BaseModel] | None = model
    skip_key = False  # inside a dict field (flavors: {small: ...}) the next key is a name
    for part in path:
        if current is None:
            return None
        if isinstance(part, int):
            continue
        if skip_key:
            skip_key = False
            continue
        match = None
        for name, info in current.model_fields.items():
            if part in (name, info.alias):
                match = info
                break
        if match is None:
            return None
        candidates = _unwrap(match.annotation)
        current = candidates[0] if candidates else None
        skip_key = _is_mapping(match.annotation)
    return current


def _allowed_keys(model: type[BaseModel], path: PathKey) -> list[str]:
    target = _model_at(model, path)
    if target is None:
        return []
    return [info.alias or name for name, info in target.model_fields.items()]


def _pattern_expectation(
    model: type[BaseModel], path: PathKey, ctx: dict[str, Any], fallback: str
) -> str:
    """What a value must look like, in words, plus what the field is for."""
    shape = PATTERN_HELP.get(str(ctx.get("pattern", "")), "")
    purpose = _field_description(model, path)
    if purpose in TYPE_DESCRIPTIONS:  # the type's own description, nothing field-specific
        purpose = ""
    if shape and purpose:
        return f"{shape} ({purpose})"
    return shape or purpose or fallback


def _field_description(model: type[BaseModel], path: PathKey) -> str:
    item = bool(path) and isinstance(path[-1], int)  # an entry of a list field
    field_path = path[:-1] if item else path
    if not field_path or isinstance(field_path[-1], int):
        return ""
    parent = _model_at(model, field_path[:-1])
    if parent is None:
        return ""
    for name, info in parent.model_fields.items():
        if field_path[-1] in (name, info.alias):
            if not item:
                return info.description or ""
            for arg in get_args(info.annotation)[:1]:  # list[Annotated[str, Field(...)]]
                for meta in get_args(arg)[1:] if get_origin(arg) is typing.Annotated else ():
                    if isinstance(meta, FieldInfo) and meta.description:
                        return meta.description
            return ""
    return ""
