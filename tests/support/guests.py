"""SSH into a site copy's guests as the ops user, and wait until a guest answers.

The option list is the project's own (:class:`tenancy.ssh.SshOptions`), so the
tests reach guests exactly as ``tenancy`` does; only the copy's ops key is offered.
"""

from __future__ import annotations

import subprocess
import time

from tenancy.ssh import SshOptions
from tests.support.sitecopy import SiteCopy

#: The account the site's ops key logs in to (``ops.user`` of the local site).
OPS_USER = "ops"
#: Seconds for SSH's own connection set-up (TCG guests on two shared cores are slow).
CONNECT_TIMEOUT = 15


def ssh_argv(copy: SiteCopy, address: str, command: str) -> list[str]:
    """``ssh <options> -i <copy's key> ops@address command``."""
    options = SshOptions(private_key=copy.key, connect_timeout=CONNECT_TIMEOUT)
    return options.argv(OPS_USER, address, command)


def ssh(
    copy: SiteCopy,
    address: str,
    command: str,
    timeout: float = 60,
    attempts: int = 3,
    stdin: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """``ssh ops@address command`` with the copy's ops key (``stdin`` fed to it).

    SSH's own failures (exit 255: e.g. "timed out during banner exchange" when the
    two shared cores run many TCG guests) are retried ``attempts`` times; the
    command's result is returned as is.
    """
    argv = ssh_argv(copy, address, command)
    result = subprocess.CompletedProcess(argv, 255, "", "not attempted")
    for attempt in range(attempts):
        if attempt:
            time.sleep(5)
        try:
            result = subprocess.run(
                argv, input=stdin, capture_output=True, text=True, timeout=timeout, check=False
            )
        except subprocess.TimeoutExpired:
            result = subprocess.CompletedProcess(argv, 255, "", f"timeout after {timeout} s")
        if result.returncode != 255:
            break
    return result


def wait_for_ssh(copy: SiteCopy, address: str, timeout: float) -> float:
    """Seconds until ``ssh ops@address true`` works; AssertionError after ``timeout``."""
    start = time.monotonic()
    last = ""
    while time.monotonic() - start < timeout:
        result = ssh(copy, address, "true", timeout=30, attempts=1)
        if result.returncode == 0:
            return time.monotonic() - start
        last = (result.stderr or "").strip()
        time.sleep(3)
    raise AssertionError(f"no SSH to ops@{address} within {timeout:.0f} s; last error: {last}")
