"""One run at a time per test site on this machine (a flock under ``/run/lock``)."""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def site_lock(
    site: str, timeout: float = 3600, directory: Path = Path("/run/lock")
) -> Iterator[float]:
    """Hold the machine-wide lock of a test site (yields the seconds waited for it).

    Two runs of the same site (a developer's and a CI clone's, say) share libvirt
    names, bridges and CIDRs: the second one's leftover sweep removes the first
    one's machines and each one's SSH reaches the other's VMs (seen: "Permission
    denied (publickey)" for 900 s). The lock makes the second run wait.
    """
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"tenancy-{site}.lock"
    start = time.monotonic()
    with path.open("a+") as fh:
        told = False
        while True:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                fh.seek(0)
                holder = fh.read().strip()
                if time.monotonic() - start > timeout:
                    raise AssertionError(
                        f"site {site} is busy: another run holds {path} ({holder})"
                    ) from None
                if not told:
                    print(f"\n[{site}] waiting for another run ({holder})", flush=True)
                    told = True
                time.sleep(10)
        fh.seek(0)
        fh.truncate()
        fh.write(f"pid {os.getpid()} since {time.strftime('%H:%M:%S')} in {Path.cwd()}\n")
        fh.flush()
        try:
            yield time.monotonic() - start
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
