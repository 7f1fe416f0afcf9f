"""Safe YAML loading that remembers where every value came from.

Only plain YAML (safe_load semantics) is accepted. Anchors/aliases, explicit
tags, duplicate keys and oversized files are refused up front, so alias bombs
and object-construction tags never reach the models.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from tenancy.spec.errors import Location, SpecError

MAX_BYTES = 1 << 20  # 1 MiB: a tenant file is a page of YAML, not a data dump
MAX_NODES = 20_000
MAX_DEPTH = 32

PathKey = tuple[str | int, ...]

_STANDARD_TAGS = {
    "tag:yaml.org,2002:str",
    "tag:yaml.org,2002:int",
    "tag:yaml.org,2002:float",
    "tag:yaml.org,2002:bool",
    "tag:yaml.org,2002:null",
    "tag:yaml.org,2002:map",
    "tag:yaml.org,2002:seq",
}


class LoadError(Exception):
    """The file cannot be turned into a document; carries located errors."""

    def __init__(self, errors: list[SpecError]) -> None:
        super().__init__("; ".join(str(e) for e in errors))
        self.errors = errors


@dataclass
class Document:
    """A parsed YAML document plus the line/column of every value and key."""

    file: str
    data: Any
    positions: dict[PathKey, tuple[int, int]] = field(default_factory=dict)

    def locate(self, path: PathKey) -> Location:
        """Location of ``path``, or of its nearest ancestor that exists in the file."""
        probe = tuple(path)
        while probe:
            if probe in self.positions:
                line, col = self.positions[probe]
                return Location(self.file, line, col)
            probe = probe[:-1]
        line, col = self.positions.get((), (1, 1))
        return Location(self.file, line, col)


def format_path(path: PathKey) -> str:
    """``("spec", "machines", 0, "flavor")`` -> ``spec.machines[0].flavor``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


class _Loader(yaml.SafeLoader):
    """SafeLoader that refuses anchors before any alias is expanded."""


def _scalar(node: ScalarNode) -> Any:
    constructor = SafeConstructor()
    return constructor.construct_object(node, deep=True)


def load_text(text: str, file: str) -> Document:
    """Parse ``text``; raise LoadError with located errors on anything unsafe or malformed."""
    if len(text.encode("utf-8", errors="replace")) > MAX_BYTES:
        raise LoadError(
            [SpecError(Location(file, 1, 1), "", "file too large", f"at most {MAX_BYTES} bytes")]
        )
    try:
        root = yaml.compose(text, Loader=_Loader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        problem = exc.problem or exc.context or "malformed YAML"
        raise LoadError(
            [SpecError(Location(file, line, col), "", f"malformed YAML: {problem}")]
        ) from None
    except yaml.YAMLError as exc:
        raise LoadError([SpecError(Location(file, 1, 1), "", f"malformed YAML: {exc}")]) from None
    doc = Document(file=file, data=None)
    if root is None:
        raise LoadError(
            [SpecError(Location(file, 1, 1), "", "empty document", "a mapping", "nothing")]
        )
    errors: list[SpecError] = []
    counter = [0]
    doc.data = _convert(root, (), doc, errors, counter, set())
    if errors:
        raise LoadError(errors)
    return doc


def load_file(path: Path, display: str | None = None) -> Document:
    """Read and parse one YAML file; unreadable or non-UTF-8 files become located errors."""
    name = display or str(path)
    try:
        size = path.stat().st_size
        if size > MAX_BYTES:
            raise LoadError(
                [
                    SpecError(
                        Location(name, 1, 1),
                        "",
                        "file too large",
                        f"at most {MAX_BYTES} bytes",
                        f"{size} bytes",
                    )
                ]
            )
        raw = path.read_bytes()
    except OSError as exc:
        raise LoadError(
            [SpecError(Location(name), "", f"cannot read file: {exc.strerror}")]
        ) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise LoadError(
            [
                SpecError(
                    Location(name, 1, 1),
                    "",
                    "file is not UTF-8 text",
                    found=f"byte 0x{raw[exc.start]:02x} at offset {exc.start}",
                )
            ]
        ) from None
    return load_text(text, name)


def _convert(
    node: Node,
    path: PathKey,
    doc: Document,
    errors: list[SpecError],
    counter: list[int],
    anchors_seen: set[int],
) -> Any:
    counter[0] += 1
    loc = Location(doc.file, node.start_mark.line + 1, node.start_mark.column + 1)
    doc.positions[path] = (loc.line, loc.column)
    if counter[0] > MAX_NODES:
        if counter[0] == MAX_NODES + 1:
            errors.append(
                SpecError(
                    loc, format_path(path), "document has too many values", f"at most {MAX_NODES}"
                )
            )
        return None
    if len(path) > MAX_DEPTH:
        errors.append(
            SpecError(
                loc, format_path(path), "document nested too deeply", f"at most {MAX_DEPTH} levels"
            )
        )
        return None
    if id(node) in anchors_seen:
        errors.append(
            SpecError(
                loc,
                format_path(path),
                "YAML anchors and aliases are not allowed",
                "plain values",
                "an alias",
            )
        )
        return None
    anchors_seen.add(id(node))
    tag = node.tag or ""
    if tag not in _STANDARD_TAGS:
        errors.append(
            SpecError(
                loc, format_path(path), "YAML tags are not allowed", "a plain value", f"tag {tag}"
            )
        )
        return None
    if isinstance(node, ScalarNode):
        try:
            return _scalar(node)
        except (yaml.YAMLError, ValueError) as exc:
            errors.append(SpecError(loc, format_path(path), f"bad scalar: {exc}"))
            return None
    if isinstance(node, SequenceNode):
        return [
            _convert(item, (*path, i), doc, errors, counter, anchors_seen)
            for i, item in enumerate(node.value)
        ]
    if isinstance(node, MappingNode):
        result: dict[Any, Any] = {}
        first_seen: dict[Any, int] = {}
        for key_node, value_node in node.value:
            key_loc = Location(
                doc.file, key_node.start_mark.line + 1, key_node.start_mark.column + 1
            )
            if key_node.tag == "tag:yaml.org,2002:merge":
                errors.append(
                    SpecError(key_loc, format_path(path), "YAML merge keys are not allowed")
                )
                continue
            if not isinstance(key_node, ScalarNode):
                errors.append(
                    SpecError(
                        key_loc,
                        format_path(path),
                        "mapping keys must be plain text",
                        "a string key",
                        "a complex key",
                    )
                )
                continue
            key = _scalar(key_node)
            if not isinstance(key, str):
                key = str(key_node.value)
            if key in first_seen:
                errors.append(
                    SpecError(
                        key_loc,
                        format_path((*path, key)),
                        "duplicate key",
                        "each key once",
                        f"{key!r} again (first at line {first_seen[key]})",
                    )
                )
                continue
            first_seen[key] = key_loc.line
            doc.positions[(*path, key)] = (key_loc.line, key_loc.column)
            value = _convert(value_node, (*path, key), doc, errors, counter, anchors_seen)
            doc.positions[(*path, key)] = (key_loc.line, key_loc.column)
            result[key] = value
        doc.positions[path] = (loc.line, loc.column)
        return result
    errors.append(SpecError(loc, format_path(path), "unsupported YAML node"))
    return None
