"""Interrupt a running ``tenancy up`` like an operator's ^C and see what it leaves behind.

The wrapper, pulumi and its plugins share one process group; the interrupt goes to
the group once a resource operation has started, and every process still alive
after the wrapper exited is listed (and terminated after a grace period).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.sitecopy import SiteCopy


@dataclass
class Interrupted:
    """What happened to an interrupted ``tenancy up``."""

    returncode: int
    output: str
    trigger: str  # the output line after which the interrupt was sent
    seconds_to_exit: float
    survivors: list[str] = field(default_factory=list)  # processes left running after exit


def interrupt_up(copy: SiteCopy, marker: tuple[str, ...], timeout: float = 300) -> Interrupted:
    """Start ``tenancy up`` and send SIGINT to its process group (an operator's ^C) as soon
    as a line containing one of ``marker`` appears (a resource operation has started)."""
    proc = copy.start_up()
    assert proc.stdout is not None
    lines: list[str] = []
    trigger = ""
    start = time.monotonic()
    sent_at = 0.0
    for line in _lines(proc, timeout):
        lines.append(line)
        if not trigger and any(m in line for m in marker):
            trigger = line.rstrip()
            sent_at = time.monotonic()
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGINT)
    try:
        code = proc.wait(timeout=max(1.0, timeout - (time.monotonic() - start)))
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        code = proc.wait()
    seconds = time.monotonic() - (sent_at or start)
    output = "".join(lines)
    with copy.log.open("a") as fh:
        fh.write(output + f"[exit {code}]\n")
    return Interrupted(code, output, trigger, seconds, _reap_group(proc.pid))


def _group_members(pgid: int) -> dict[int, str]:
    """Live processes of process group ``pgid``: pid -> command line."""
    found: dict[int, str] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[2]) != pgid or fields[0] == "Z":
                continue
            pid = int(stat.parent.name)
            cmd = (stat.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except (OSError, IndexError, ValueError):
            continue
        found[pid] = cmd.strip()
    return found


def _reap_group(pgid: int, grace: float = 30) -> list[str]:
    """Processes of the interrupted run still alive when it exited (engine plugins,
    provider hosts): each is listed; those still alive after ``grace`` seconds are
    terminated by pid and marked so."""
    first = _group_members(pgid)
    survivors = dict(first)
    deadline = time.monotonic() + grace
    while survivors and time.monotonic() < deadline:
        time.sleep(1)
        survivors = {p: c for p, c in _group_members(pgid).items() if p in survivors}
    for pid in survivors:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    return [
        f"{pid} {cmd[:160]}" + (f" (terminated after {grace:.0f} s)" if pid in survivors else "")
        for pid, cmd in sorted(first.items())
    ]


def _lines(proc: subprocess.Popen[str], timeout: float) -> Iterator[str]:
    """The process's output lines; killed (group) when it runs past ``timeout``."""
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    for line in proc.stdout:
        yield line
        if time.monotonic() > deadline:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            break
