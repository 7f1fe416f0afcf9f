"""What the user sees of pulumi's output: Python tracebacks folded to their last line.

A dynamic provider that fails (and a program that raises) reaches pulumi as
a Python traceback, which pulumi prints whole, frames and all. The operator
needs the last line only, the one that says what failed where and what to do
(:mod:`tenancy.infra.dynamic._errors` makes that line). :class:`TracebackFolder`
drops the frames and keeps the message, line by line as pulumi prints; the
complete output is kept in a log file by the caller.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_TRACEBACK = "Traceback (most recent call last):"
# the first line after the frames, at the traceback's own indent: "pkg.mod.Class: message"
_EXCEPTION_LINE = re.compile(r"^(?P<cls>[A-Za-z_][\w.]*)(?:: ?(?P<msg>.*))?$")
_PROVIDER_PREFIX = "tenancy: "


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


@dataclass
class TracebackFolder:
    """Feed pulumi's lines one at a time; get back the lines to show."""

    folded: int = 0
    """How many tracebacks were folded (the caller then points at the full log)."""
    _base: int | None = field(default=None, repr=False)
    _in_message: int | None = field(default=None, repr=False)

    def feed(self, line: str) -> list[str]:
        text = line.rstrip("\n")
        if self._base is not None:
            return self._inside(text)
        if self._in_message is not None:
            # continuation lines of a multi-line exception message keep its indent
            if text.strip() and _indent(text) >= self._in_message:
                return [text]
            self._in_message = None
        if text.endswith(_TRACEBACK):
            head = text[: -len(_TRACEBACK)]
            if head.strip() not in ("", "error:"):
                # an event line ("... creating failed error: Traceback ..."): the
                # diagnostics below repeat the error with its message
                return [head.rstrip() + " (details below)"]
            self._base = _indent(text)
            self.folded += 1
            return []
        return [text]

    def _inside(self, text: str) -> list[str]:
        assert self._base is not None
        base = self._base
        if not text.strip() or _indent(text) > base:
            return []  # a frame, a source line or a caret line
        match = _EXCEPTION_LINE.match(text.strip())
        self._base = None
        if match is None:
            return [text]  # not a traceback after all: show the line
        message = match.group("msg") or ""
        if message.startswith(_PROVIDER_PREFIX):
            message = message[len(_PROVIDER_PREFIX) :]
        self._in_message = base
        return [" " * base + "error: " + (message or match.group("cls"))]
