"""Lynis, the audit's independent cross-check: ``lynis audit system`` on each host, its index.

Our own checks are what passes or fails an audit; Lynis is a second,
independent opinion an auditor can compare with. It runs over the same SSH
options as the suite (:class:`tenancy.ssh.SshOptions`), stopped by the guest
itself after a timeout, and its report file is kept next to its output.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tenancy.contract.host_vars import HostVars
from tenancy.process import run_captured
from tenancy.ssh import SshOptions

__all__ = ["LYNIS_TIMEOUT", "lynis_command", "lynis_index", "parse_lynis_report"]

#: Lynis under software emulation takes 10-30 minutes per guest.
LYNIS_TIMEOUT = 3600.0


def parse_lynis_report(text: str) -> dict[str, str]:
    """``key=value`` lines of /var/log/lynis-report.dat (list keys ``x[]`` are left out)."""
    values: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and not key.endswith("[]") and not line.startswith("#"):
            values[key.strip()] = value.strip()
    return values


def _ssh(
    ssh: SshOptions, name: str, host_vars: Mapping[str, Any], command: str, timeout: float
) -> tuple[int, str, str]:
    hv = HostVars.from_inventory(host_vars)
    argv = ssh.argv(hv.user, hv.address_or(name), command)
    try:
        done = run_captured(argv, timeout)
    except subprocess.TimeoutExpired:
        return 124, "", f"timed out after {timeout:.0f} s"
    return done.returncode, done.stdout, done.stderr


def lynis_command(timeout: float) -> str:
    """Lynis, stopped by the guest itself after ``timeout`` seconds, then its report file."""
    return (
        f"sudo timeout {int(timeout)} lynis audit system --quick --no-colors; rc=$?; "
        "echo '=== /var/log/lynis-report.dat'; sudo cat /var/log/lynis-report.dat; exit $rc"
    )


def lynis_index(
    name: str,
    host_vars: Mapping[str, Any],
    logs: Path,
    ssh: SshOptions,
    timeout: float = LYNIS_TIMEOUT,
) -> dict[str, Any]:
    """Run Lynis on one host; its hardening index, version and the log file name."""
    start = time.monotonic()
    rc, out, err = _ssh(ssh, name, host_vars, lynis_command(timeout), timeout + 60)
    log = logs / f"{name}.log"
    log.write_text(out + ("\n--- stderr ---\n" + err if err else ""), encoding="utf-8")
    report = parse_lynis_report(out.partition("=== /var/log/lynis-report.dat")[2])
    index = report.get("hardening_index")
    return {
        "hardening_index": int(index) if index and index.isdigit() else None,
        "version": report.get("lynis_version"),
        "tests_performed": report.get("lynis_tests_done"),
        "rc": rc,
        "seconds": round(time.monotonic() - start, 1),
        "log": f"lynis/{log.name}",
        "error": None if index else (err.strip().splitlines() or [f"exit {rc}"])[-1],
    }
