"""Expectations on values read from a host, and the assertion that says them in words.

A failed check must tell the auditor what was found and what was wanted
(``sshd permitrootlogin is 'yes', expected 'no'``): every expectation renders
itself with ``str()``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["Between", "Equals", "Expect", "OneOf", "SubsetOf", "expect"]


class Expect:
    """An expectation on a value read from a host; ``str()`` says it in words."""

    def ok(self, actual: Any) -> bool:  # pragma: no cover - abstract
        raise NotImplementedError


@dataclass(frozen=True)
class Equals(Expect):
    """The value, compared case-insensitively and without surrounding blanks."""

    value: Any

    def ok(self, actual: Any) -> bool:
        return _norm(actual) == _norm(self.value)

    def __str__(self) -> str:
        return repr(self.value)


@dataclass(frozen=True)
class OneOf(Expect):
    """Any of ``values`` (compared as :class:`Equals` does)."""

    values: tuple[Any, ...]

    def ok(self, actual: Any) -> bool:
        return _norm(actual) in {_norm(v) for v in self.values}

    def __str__(self) -> str:
        return "one of " + ", ".join(repr(v) for v in self.values)


@dataclass(frozen=True)
class Between(Expect):
    """An integer within ``low..high`` (inclusive; None = unbounded)."""

    low: int | None = None
    high: int | None = None

    def ok(self, actual: Any) -> bool:
        number = _int(actual)
        if number is None:
            return False
        return (self.low is None or number >= self.low) and (
            self.high is None or number <= self.high
        )

    def __str__(self) -> str:
        if self.low is not None and self.high is not None:
            return f"between {self.low} and {self.high}"
        if self.low is not None:
            return f"at least {self.low}"
        return f"at most {self.high}"


@dataclass(frozen=True)
class SubsetOf(Expect):
    """A comma-separated list whose every element is approved (and that is not empty)."""

    approved: tuple[str, ...]

    def ok(self, actual: Any) -> bool:
        got = [p for p in str(actual or "").split(",") if p]
        return bool(got) and all(p in self.approved for p in got)

    def __str__(self) -> str:
        return "only " + ",".join(self.approved)


def _norm(value: Any) -> str:
    return str(value).strip().lower() if value is not None else ""


def _int(value: Any) -> int | None:
    try:
        return int(str(value).strip())
    except (TypeError, ValueError):
        return None


def expect(what: str, actual: Any, expectation: Expect | Any) -> None:
    """Assert ``actual`` meets ``expectation`` (a plain value means Equals)."""
    __tracebackhide__ = True
    check = expectation if isinstance(expectation, Expect) else Equals(expectation)
    assert check.ok(actual), f"{what} is {actual!r}, expected {check}"
