"""What a probe's output proves: a connection result, or why the probe did not happen.

Evidence must never claim what did not happen: an answer that is no
connection result (SSH to the source failed, ``nc`` missing, a message not
understood) is ``untestable: <why>``, never read as "blocked".
"""

from __future__ import annotations

import re

from tenancy.compliance.facts import Output

__all__ = ["PROBE_PROTOCOLS", "connect_result", "nc_result", "source_problem", "why"]

#: Protocols a probe can test: a TCP connection, a UDP datagram.
PROBE_PROTOCOLS = ("tcp", "udp")
#: What the network answered, as :func:`connect_result` reads the stand-in's output.
_CONNECT_RESULTS = ("open", "refused", "timeout", "unreachable", "sent")


def why(out: Output) -> str:
    """The last line a failed command said (stderr first), or its exit code."""
    lines = out.stderr.strip().splitlines() or out.stdout.strip().splitlines()
    return lines[-1] if lines else f"exit {out.rc}"


def source_problem(out: Output) -> str | None:
    """Why a probe command ending in ``echo rc=$?`` did not run on its source, or None.

    No ``rc=`` line: the command never ran (SSH to the source failed); rc 127:
    nc is not installed there. Either way nothing was sent, so nothing is proven.
    """
    before, found, after = out.stdout.rpartition("rc=")
    if not found:
        return f"untestable: the probe did not run on the source ({why(out)})"
    if after.strip() == "127" or "not found" in before.lower():
        return "untestable: nc is not installed on the source"
    return None


def nc_result(out: Output) -> str:
    """``nc -zv ... 2>&1; echo rc=$?`` on a probe source -> ``open``, ``refused``,
    ``timeout`` or ``unreachable``; ``untestable: ...`` when nc did not run or
    said something else (an answer not understood is no evidence of a block)."""
    problem = source_problem(out)
    if problem is not None:
        return problem
    said = out.stdout.rpartition("rc=")[0]
    text = said.lower()
    if "succeeded" in text or any(re.search(r"\bopen$", x.strip()) for x in text.splitlines()):
        return "open"
    if "refused" in text:
        return "refused"
    if "timed out" in text or "operation now in progress" in text:
        return "timeout"
    if "no route to host" in text or "unreachable" in text:
        return "unreachable"
    shown = " ".join(said.split())[:200] or "no output"
    return f"untestable: nc's answer is not a connection result ({shown})"


def connect_result(out: Output) -> str:
    """The stand-in's connect script output -> its result; ``untestable: ...`` when the
    script did not run (namespace missing, no python3) or failed on the auditor's side."""
    lines = out.stdout.strip().splitlines()
    last = lines[-1].strip() if lines else ""
    if out.rc == 0 and last.partition(":")[0] in _CONNECT_RESULTS:
        return last
    return f"untestable: the probe did not run from the stand-in ({why(out)})"
