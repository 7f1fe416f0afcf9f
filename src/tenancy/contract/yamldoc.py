"""A parsed YAML document that remembers where every key and value was written.

This is what the located reader (:func:`tenancy.contract.yamlsource.load_file`)
hands over and what its callers keep: the tenant and site loaders, the ledger
and the policy catalogue. It holds data and positions only, no PyYAML, so
callers depend on the document, not on how it was parsed (:mod:`.yamlguard`
parses, :mod:`.yamltree` turns nodes into this).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from tenancy.contract.errors import Location, SpecError
from tenancy.contract.text import EXCERPT_CHARS, excerpt

PathKey = tuple[str | int, ...]

_ODD_KEY = re.compile(r"[.\[\]\"'\s]")


def format_path(path: PathKey, *, quote: bool = True) -> str:
    """``("spec", "machines", 0, "flavor")`` -> ``spec.machines[0].flavor``.

    Keys that would read ambiguously (empty, or holding '.', '[', ']', quotes or
    whitespace) are shown quoted, ``spec[""]``, so a field is never blank.
    ``quote=False`` writes every key as it is: the policy catalogue's messages
    show pydantic's own location parts (``profiles.Bad Name.[key]``) that way.
    """
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        elif len(part) > EXCERPT_CHARS or not part.isprintable():  # a hostile key: its start
            out += f"[{excerpt(part)}]"
        elif quote and (not part or _ODD_KEY.search(part)):
            out += "[" + json.dumps(part, ensure_ascii=False) + "]"
        else:
            out += f".{part}" if out else str(part)
    return out


@dataclass(frozen=True)
class DuplicateKey:
    """A key written twice in one mapping; the document keeps its first value.

    Kept as data, not as a message, because callers word it their own way: the
    tenant loader as a located :class:`SpecError` (:attr:`Document.problems`),
    the policy catalogue as one of its ``file:line: ...`` lines.
    """

    path: PathKey
    """The repeated key's path (its last part is the key)."""
    line: int
    column: int
    first_line: int
    """Line of the key's first, kept occurrence."""


@dataclass
class Document:
    """A parsed YAML document plus the line/column of every value and key.

    ``duplicates`` are problems that did not stop parsing (a duplicate key keeps
    its first value), so the document is still checked against the models and
    every error of the file is reported in one run.
    """

    file: str
    data: Any
    positions: dict[PathKey, tuple[int, int]] = field(default_factory=dict)
    """Where each path was written: a mapping entry's key, a sequence item, the root."""
    starts: dict[PathKey, tuple[int, int]] = field(default_factory=dict)
    """Where a mapping entry's value starts, for the entries whose value is not at
    the key's position (a block collection on the lines below its key)."""
    duplicates: list[DuplicateKey] = field(default_factory=list)

    def locate(self, path: PathKey) -> Location:
        """Location of ``path``'s key, or of its nearest ancestor that exists in the file."""
        return self._nearest(path, value=False)

    def locate_value(self, path: PathKey) -> Location:
        """Where the value at ``path`` (or its nearest existing ancestor's) starts.

        For a block collection that is the line of its first item, below the key:
        the policy catalogue points there, as it always has.
        """
        return self._nearest(path, value=True)

    def _nearest(self, path: PathKey, *, value: bool) -> Location:
        probe = tuple(path)
        while probe:
            where = (self.starts.get(probe) if value else None) or self.positions.get(probe)
            if where is not None:
                return Location(self.file, *where)
            probe = probe[:-1]
        line, col = self.positions.get((), (1, 1))
        return Location(self.file, line, col)

    @property
    def problems(self) -> list[SpecError]:
        """The non-fatal problems (duplicate keys) as located errors."""
        return [
            SpecError(
                Location(self.file, d.line, d.column),
                format_path(d.path),
                "duplicate key",
                "each key once",
                f"{excerpt(str(d.path[-1]))} again (first at line {d.first_line})",
            )
            for d in self.duplicates
        ]
