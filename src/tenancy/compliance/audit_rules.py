"""``auditctl -l`` read by meaning: which paths and syscalls the kernel audits, under which key.

The kernel prints rules in its own normalised form (``-F path=``, ``-F
key=``, operands of ``-C`` swapped): comparing text would fail on a rule
that is there, so rules are parsed and matched field by field.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["AuditRule", "Syscalls", "Watch", "audit_rule_missing", "parse_audit_rules"]


@dataclass(frozen=True)
class AuditRule:
    """One rule of ``auditctl -l``, normalised."""

    text: str
    path: str | None  # -w PATH, -F path=PATH or -F dir=PATH
    perm: str  # -p / -F perm=
    arch: str | None
    syscalls: frozenset[str]
    key: str | None
    compare: frozenset[str]  # -C fields, operands sorted ("euid!=uid")


#: Options that set one field of a rule: ``-w PATH -p PERM -k KEY``.
_OPTIONS = {"-w": "path", "-p": "perm", "-k": "key"}
#: ``-F name=value`` fields kept, by the field they set (path and dir only with ``=``).
_FIELDS = {"path": "path", "dir": "path", "perm": "perm", "arch": "arch", "key": "key"}
#: Options followed by an argument.
_WITH_ARGUMENT = ("-w", "-p", "-k", "-S", "-C", "-F", "-a")


def parse_audit_rules(text: str) -> list[AuditRule]:
    """The rules of ``auditctl -l`` (other lines, e.g. "No rules", are left out)."""
    lines = (line.strip() for line in text.splitlines())
    return [_parse_rule(line) for line in lines if line.startswith("-")]


def _parse_rule(line: str) -> AuditRule:
    tokens = shlex.split(line)
    fields: dict[str, str | None] = {"path": None, "perm": "", "arch": None, "key": None}
    syscalls: set[str] = set()
    compare: set[str] = set()
    i = 0
    while i < len(tokens):
        opt = tokens[i]
        arg = tokens[i + 1] if i + 1 < len(tokens) else ""
        if opt in _OPTIONS:
            fields[_OPTIONS[opt]] = arg
        elif opt == "-S":
            syscalls.update(arg.split(","))
        elif opt == "-C":
            compare.add(_normalise_compare(arg))
        elif opt == "-F":
            name, op, value = re.split(r"(!=|>=|<=|=|>|<)", arg, maxsplit=1)
            if name in _FIELDS and (op == "=" or _FIELDS[name] != "path"):
                fields[_FIELDS[name]] = value
        i += 2 if opt in _WITH_ARGUMENT else 1
    path = fields["path"]
    return AuditRule(
        text=line,
        path=path.rstrip("/") if path and path != "/" else path,
        perm=fields["perm"] or "",
        arch=fields["arch"],
        syscalls=frozenset(syscalls),
        key=fields["key"],
        compare=frozenset(compare),
    )


def _normalise_compare(text: str) -> str:
    left, op, right = re.split(r"(!=|=)", text, maxsplit=1)
    return op.join(sorted([left, right]))


@dataclass(frozen=True)
class Watch:
    """Expected: writes/attribute changes (or executions) of ``path`` are audited under ``key``."""

    path: str
    perm: str
    key: str

    def __str__(self) -> str:
        return f"-w {self.path} -p {self.perm} -k {self.key}"


@dataclass(frozen=True)
class Syscalls:
    """Expected: the ``syscalls`` of ``arch`` are audited under ``key`` (one or more rules)."""

    arch: str
    syscalls: tuple[str, ...]
    key: str
    compare: str | None = None

    def __str__(self) -> str:
        extra = f" -C {self.compare}" if self.compare else ""
        return (
            f"-a always,exit -F arch={self.arch} -S {','.join(self.syscalls)}{extra} -k {self.key}"
        )


def audit_rule_missing(rules: Sequence[AuditRule], want: Watch | Syscalls) -> str | None:
    """None when ``rules`` cover ``want``; otherwise what is missing."""
    if isinstance(want, Watch):
        for r in rules:
            if (
                r.path == want.path.rstrip("/")
                and r.key == want.key
                and set(want.perm) <= set(r.perm)
            ):
                return None
        return f"no loaded rule {want}"
    candidates = [r for r in rules if r.key == want.key and r.arch == want.arch]
    if want.compare:
        needed = _normalise_compare(want.compare)
        candidates = [r for r in candidates if needed in r.compare]
    covered: set[str] = set().union(*(r.syscalls for r in candidates)) if candidates else set()
    missing = [s for s in want.syscalls if s not in covered]
    if missing:
        return f"no loaded rule audits {', '.join(missing)} (wanted {want})"
    return None
