"""Located errors: every problem names the file, line, field, what was expected and found."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tenancy.contract.text import EXCERPT_CHARS, excerpt, plain


@dataclass(frozen=True, order=True)
class Location:
    """A place in an input file (1-based line and column)."""

    file: str
    line: int = 0
    column: int = 0

    def __str__(self) -> str:
        if self.line:
            return f"{self.file}:{self.line}:{self.column}"
        return self.file


@dataclass(frozen=True)
class SpecError:
    """One problem in the inputs; ``field`` is a dotted path such as ``spec.machines[0].flavor``."""

    location: Location
    field: str
    message: str
    expected: str = ""
    found: str = ""
    severity: str = "error"
    related: tuple[Location, ...] = ()

    def __str__(self) -> str:
        """One line for a terminal or a log: invisible characters of any part shown escaped."""
        text = f"{self.location}: {self.severity}: {self.field or '<document>'}: {self.message}"
        if self.expected:
            text += f"; expected {self.expected}"
        if self.found:
            text += f"; found {self.found}"
        for rel in self.related:
            text += f" (see {rel})"
        return plain(text)

    def as_dict(self) -> dict[str, Any]:
        return {
            "file": self.location.file,
            "line": self.location.line,
            "column": self.location.column,
            "field": self.field,
            "severity": self.severity,
            "message": self.message,
            "expected": self.expected,
            "found": self.found,
            "related": [str(r) for r in self.related],
        }


def describe(value: Any, limit: int = EXCERPT_CHARS) -> str:
    """A short, printable rendering of a found value for error messages."""
    if isinstance(value, bool):
        text = "true" if value else "false"
        return f"boolean {text}"
    if isinstance(value, str):
        return f"string {excerpt(value, limit)}"
    if value is None:
        return "null"
    if isinstance(value, dict):
        return "a mapping" if value else "an empty mapping"
    if isinstance(value, list):
        return f"a list of {len(value)}" if value else "an empty list"
    return plain(f"{type(value).__name__} {value!r}"[: limit + 20])


@dataclass
class ErrorList:
    """Collects errors and warnings from every file so one run reports them all."""

    items: list[SpecError] = field(default_factory=list)

    def add(self, error: SpecError) -> None:
        self.items.append(error)

    def extend(self, errors: list[SpecError]) -> None:
        self.items.extend(errors)

    @property
    def errors(self) -> list[SpecError]:
        return sorted((e for e in self.items if e.severity == "error"), key=_key)

    @property
    def warnings(self) -> list[SpecError]:
        return sorted((e for e in self.items if e.severity != "error"), key=_key)


def _key(e: SpecError) -> tuple[Location, str, str]:
    return (e.location, e.field, e.message)
