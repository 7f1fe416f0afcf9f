"""Safe YAML loading that remembers where every value came from.

Only plain YAML (safe_load semantics) is accepted. Anchors/aliases, explicit
tags, duplicate keys and oversized files are refused up front, so alias bombs
and object-construction tags never reach the models.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from yaml.composer import Composer, ComposerError
from yaml.constructor import SafeConstructor
from yaml.events import AliasEvent, CollectionStartEvent, ScalarEvent
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode
from yaml.reader import ReaderError
from yaml.resolver import Resolver

from tenancy.contract.errors import Location, SpecError

MAX_BYTES = 1 << 20  # 1 MiB: a tenant file is a page of YAML, not a data dump
MAX_NODES = 20_000
MAX_DEPTH = 32
_ALIAS_MESSAGE = "YAML anchors and aliases are not allowed"

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
    """A parsed YAML document plus the line/column of every value and key.

    ``problems`` holds errors that did not stop parsing (a duplicate key keeps its
    first value), so the document is still checked against the models and every
    error of the file is reported in one run.
    """

    file: str
    data: Any
    positions: dict[PathKey, tuple[int, int]] = field(default_factory=dict)
    problems: list[SpecError] = field(default_factory=list)

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
    """``("spec", "machines", 0, "flavor")`` -> ``spec.machines[0].flavor``.

    Keys that would read ambiguously (empty, or holding '.', '[', ']', quotes or
    whitespace) are shown quoted, ``spec[""]``, so a field is never blank.
    """
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        elif not part or _ODD_KEY.search(part):
            out += "[" + json.dumps(part, ensure_ascii=False) + "]"
        else:
            out += f".{part}" if out else str(part)
    return out


_ODD_KEY = re.compile(r"[.\[\]\"'\s]")


class _AliasNode(ScalarNode):
    """Stands where an alias (``*name``) was written; aliases are refused, never expanded."""


class _GuardedComposer(Composer):
    """Composer that never shares nodes, records explicit tags and bounds size and depth.

    An alias becomes an ``_AliasNode`` at the alias's own position (so the error points
    at the ``*name`` the author wrote), which makes alias bombs harmless: nothing is
    ever expanded. Depth and node count are checked while composing, before any
    oversized or deeply nested structure is built.
    """

    if TYPE_CHECKING:  # provided by the parser half of the loader

        def peek_event(self) -> Any: ...
        def get_event(self) -> Any: ...

    def __init__(self) -> None:
        super().__init__()
        self.explicit_tags: set[int] = set()
        self._depth = 0
        self._nodes = 0

    def compose_node(self, parent: Node | None, index: Any) -> Node | None:
        event: Any = self.peek_event()
        if isinstance(event, AliasEvent):
            alias: Any = self.get_event()
            return _AliasNode("alias", str(alias.anchor), alias.start_mark, alias.end_mark)
        self._nodes += 1
        if self._nodes > MAX_NODES:
            raise ComposerError(
                None, None, f"document has too many values (at most {MAX_NODES})", event.start_mark
            )
        if self._depth >= MAX_DEPTH:
            raise ComposerError(
                None,
                None,
                f"document nested too deeply (at most {MAX_DEPTH} levels)",
                event.start_mark,
            )
        explicit = isinstance(event, ScalarEvent | CollectionStartEvent) and event.tag not in (
            None,
            "!",
        )
        self._depth += 1
        try:
            node: Node | None = super().compose_node(parent, index)
        finally:
            self._depth -= 1
        if explicit:
            self.explicit_tags.add(id(node))
        return node


class _PyLoader(
    yaml.reader.Reader, yaml.scanner.Scanner, yaml.parser.Parser, _GuardedComposer, Resolver
):
    def __init__(self, stream: str) -> None:
        yaml.reader.Reader.__init__(self, stream)
        yaml.scanner.Scanner.__init__(self)
        yaml.parser.Parser.__init__(self)
        _GuardedComposer.__init__(self)
        Resolver.__init__(self)


_Loader: type[Any] = _PyLoader
try:  # libyaml scans and parses ~7x faster; composing stays in Python (the guards above)
    from yaml._yaml import CParser
except ImportError:  # pragma: no cover - PyYAML built without libyaml
    pass
else:

    class _CLoader(_GuardedComposer, CParser, Resolver):
        def __init__(self, stream: str) -> None:
            CParser.__init__(self, stream)
            _GuardedComposer.__init__(self)
            Resolver.__init__(self)

    _Loader = _CLoader


def _compose(text: str) -> tuple[Node | None, set[int]]:
    loader = _Loader(text)
    try:
        return loader.get_single_node(), loader.explicit_tags
    finally:
        loader.dispose()


def _reader_location(exc: ReaderError, text: str) -> tuple[int, int]:
    position = exc.position if isinstance(exc.position, int) else 0
    before = text[:position]
    return before.count("\n") + 1, position - (before.rfind("\n") + 1) + 1


def load_text(text: str, file: str) -> Document:
    """Parse ``text``; raise LoadError with located errors on anything unsafe or malformed."""
    size = len(text.encode("utf-8", errors="replace"))
    if size > MAX_BYTES:
        raise LoadError(
            [
                SpecError(
                    Location(file, 1, 1),
                    "",
                    "file too large",
                    f"at most {MAX_BYTES} bytes",
                    f"{size} bytes",
                )
            ]
        )
    try:
        root, explicit = _compose(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        problem = exc.problem or exc.context or "malformed YAML"
        if exc.problem and exc.context:
            problem = f"{exc.problem} ({exc.context})"
        raise LoadError(
            [SpecError(Location(file, line, col), "", f"malformed YAML: {problem}")]
        ) from None
    except ReaderError as exc:
        line, col = _reader_location(exc, text)
        char = exc.character
        code = ord(char) if isinstance(char, str) else int(char)
        shown = f"character #x{code:04x}"
        raise LoadError(
            [
                SpecError(
                    Location(file, line, col),
                    "",
                    "malformed YAML: character not allowed in YAML text",
                    "printable characters",
                    shown,
                )
            ]
        ) from None
    except yaml.YAMLError as exc:
        first = str(exc).splitlines()[0] if str(exc) else "malformed YAML"
        raise LoadError([SpecError(Location(file, 1, 1), "", f"malformed YAML: {first}")]) from None
    doc = Document(file=file, data=None)
    if root is None:
        raise LoadError(
            [SpecError(Location(file, 1, 1), "", "empty document", "a mapping", "nothing")]
        )
    errors: list[SpecError] = []
    ctx = _Context(doc, errors, explicit, SafeConstructor())
    doc.data = _convert(root, (), ctx)
    if errors:
        raise LoadError(_cap_aliases(errors))
    return doc


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


@dataclass
class _Context:
    doc: Document
    errors: list[SpecError]  # fatal: the document cannot be checked further
    explicit: set[int]  # ids of nodes whose tag was written in the file
    constructor: SafeConstructor


def _convert(node: Node, path: PathKey, ctx: _Context) -> Any:
    doc = ctx.doc
    loc = Location(doc.file, node.start_mark.line + 1, node.start_mark.column + 1)
    doc.positions[path] = (loc.line, loc.column)
    if isinstance(node, _AliasNode):
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
    if tag not in _STANDARD_TAGS:
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
        try:
            return ctx.constructor.construct_object(node, deep=True)
        except (yaml.YAMLError, ValueError, OverflowError) as exc:
            ctx.errors.append(SpecError(loc, format_path(path), f"bad scalar: {exc}"))
            return None
    if isinstance(node, SequenceNode):
        return [_convert(item, (*path, i), ctx) for i, item in enumerate(node.value)]
    if isinstance(node, MappingNode):
        result: dict[Any, Any] = {}
        first_seen: dict[Any, int] = {}
        for key_node, value_node in node.value:
            key_loc = Location(
                doc.file, key_node.start_mark.line + 1, key_node.start_mark.column + 1
            )
            if key_node.tag == "tag:yaml.org,2002:merge":
                ctx.errors.append(
                    SpecError(key_loc, format_path(path), "YAML merge keys are not allowed")
                )
                continue
            if isinstance(key_node, _AliasNode) or not isinstance(key_node, ScalarNode):
                ctx.errors.append(
                    SpecError(
                        key_loc,
                        format_path(path),
                        "mapping keys must be plain text",
                        "a string key",
                        "an alias" if isinstance(key_node, _AliasNode) else "a complex key",
                    )
                )
                continue
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
                continue
            key = str(key_node.value)  # keys are names: their text, never a typed value
            if key in first_seen:
                # not fatal: keep the first value and go on checking the rest of the file
                doc.problems.append(
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
            value = _convert(value_node, (*path, key), ctx)
            doc.positions[(*path, key)] = (key_loc.line, key_loc.column)
            result[key] = value
        doc.positions[path] = (loc.line, loc.column)
        return result
    ctx.errors.append(SpecError(loc, format_path(path), "unsupported YAML node"))
    return None
