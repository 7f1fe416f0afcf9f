"""Evidence: every command a check runs on a host, with its output, kept with its test.

An auditor must be able to see what was run and what it answered, not only
the verdict. Every ``host.run`` (testinfra modules included) is recorded
while a test runs (:func:`evidence_scope`); commands the auditor's machine
runs itself (probes from stand-ins) are recorded with :func:`record`.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from tenancy.compliance.host import Host, host_name

__all__ = ["EVIDENCE_LIMIT", "evidence_scope", "install_recorder", "record", "recorded", "replay"]

#: Largest stdout/stderr kept per command in the evidence (characters).
EVIDENCE_LIMIT = 12000

Entry = dict[str, Any]

_evidence: list[Entry] | None = None  # the running test's evidence; None outside a test


@contextlib.contextmanager
def evidence_scope() -> Iterator[list[Entry]]:
    """Collect every command run on any host while the block runs (one test)."""
    global _evidence
    collected: list[Entry] = []
    previous, _evidence = _evidence, collected
    try:
        yield collected
    finally:
        _evidence = previous


@contextlib.contextmanager
def recorded() -> Iterator[list[Entry]]:
    """The entries the running test gains while the block runs (none outside a test)."""
    start = len(_evidence) if _evidence is not None else 0
    found: list[Entry] = []
    try:
        yield found
    finally:
        if _evidence is not None:
            found.extend(_evidence[start:])


def replay(entry: Mapping[str, Any]) -> None:
    """Record a cached command again, for the running test, marked ``cached``."""
    if _evidence is not None:
        _evidence.append({**entry, "cached": True})


def _clip(text: str) -> str:
    if len(text) <= EVIDENCE_LIMIT:
        return text
    return text[:EVIDENCE_LIMIT] + f"\n[... {len(text) - EVIDENCE_LIMIT} more characters]"


def record(
    where: str,
    command: str,
    rc: int,
    stdout: str,
    stderr: str,
    *,
    sudo: bool = False,
    seconds: float = 0.0,
    cached: bool = False,
) -> Entry:
    """Add one command to the current test's evidence (no-op outside a test)."""
    entry = {
        "where": where,
        "command": command,
        "sudo": sudo,
        "rc": rc,
        "stdout": _clip(stdout),
        "stderr": _clip(stderr),
        "seconds": round(seconds, 3),
        "cached": cached,
    }
    if _evidence is not None:
        _evidence.append(entry)
    return entry


class _RecordingRun:
    """``host.run``, recording each command (``sudo`` when run under ``host.sudo()``)."""

    def __init__(self, host: Host, original: Callable[..., Any]) -> None:
        self.host = host
        self.original = original
        self.where = host_name(host)

    def _sudo_active(self) -> bool:
        # host.sudo() swaps backend.get_command for the duration of the block
        backend = self.host.backend
        return bool(backend.sudo) or "get_command" in vars(backend)

    def __call__(self, command: str, *args: str, **kwargs: Any) -> Any:
        text = self.host.backend.quote(command, *args) if args else command
        sudo = self._sudo_active()
        start = time.monotonic()
        result = self.original(command, *args, **kwargs)
        record(
            self.where,
            text,
            result.rc,
            result.stdout,
            result.stderr,
            sudo=sudo,
            seconds=time.monotonic() - start,
        )
        return result


def install_recorder(host: Host) -> None:
    """Record every ``host.run`` (testinfra modules included) as evidence; idempotent."""
    if not isinstance(host.run, _RecordingRun):
        host.run = _RecordingRun(host, host.run)
