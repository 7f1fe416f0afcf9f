"""Can this controller reach the guests, now and after hardening? Checked before a run.

A run against VMs that are still booting fails on every host, and a firewall
(BASE-FW-03) that admits SSH only from the site's ops networks would shut out
a controller outside them for good. So a run first waits until every host
answers SSH and cloud-init is done (:func:`wait_for_ssh`, the error naming
each silent host), then refuses when this machine's source address lies
outside a host's ops networks (:func:`lockout_problems`). Which key to use is
decided here too (:func:`private_key_for`).
"""

from __future__ import annotations

import ipaddress
import json
import os
import subprocess
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tenancy.contract.host_vars import SITE_OPS_CIDRS, HostVars
from tenancy.process import run_captured
from tenancy.ssh import SshOptions

__all__ = [
    "READY_PROBE",
    "SshWaitError",
    "controller_source",
    "lockout_problems",
    "private_key_for",
    "wait_for_ssh",
]

#: Probe a host is "ready" with: SSH works and cloud-init (if any) has finished.
READY_PROBE = "test ! -e /var/lib/cloud/instance || test -e /var/lib/cloud/instance/boot-finished"
#: Seconds one probe may take to connect.
PROBE_CONNECT_TIMEOUT = 10


def private_key_for(root: Path, key_files: Iterable[str]) -> Path | None:
    """The private half of the site's first ops public key file that has one on disk.

    ``TENANCY_OPS_SSH_KEY`` overrides; None means ssh's defaults (agent, ~/.ssh).
    """
    override = os.environ.get("TENANCY_OPS_SSH_KEY")
    if override:
        return Path(override)
    for name in key_files:
        public = Path(name) if name.startswith("/") else root / name
        if public.suffix == ".pub":
            private = public.with_suffix("")
            if private.is_file():
                return private
    return None


# -- readiness -----------------------------------------------------------------------


class SshWaitError(RuntimeError):
    """Some hosts did not answer SSH in time; ``pending`` maps them to their last error."""

    def __init__(self, pending: dict[str, str], timeout: float) -> None:
        self.pending = pending
        lines = [f"  {host}: {error or 'no answer'}" for host, error in sorted(pending.items())]
        head = f"{len(pending)} host(s) did not answer SSH within {timeout:.0f} s:"
        super().__init__("\n".join([head, *lines]))


def _ssh_argv(address: str, user: str, private_key: Path | None, command: str) -> list[str]:
    options = SshOptions(private_key=private_key, connect_timeout=PROBE_CONNECT_TIMEOUT)
    return options.argv(user, address, command)


def _probe(address: str, user: str, private_key: Path | None, command: str) -> tuple[int, str]:
    try:
        done = run_captured(_ssh_argv(address, user, private_key, command), 60)
    except subprocess.TimeoutExpired:
        return 255, "ssh timed out after 60 s"
    except OSError as exc:
        return 255, f"cannot run ssh: {exc}"
    if done.returncode == 0:
        return 0, ""
    error = (done.stderr or "").strip().splitlines()
    if done.returncode != 255 and not error:
        return done.returncode, "SSH answers; cloud-init has not finished yet"
    return done.returncode, (error[-1] if error else f"ssh exit {done.returncode}")


def wait_for_ssh(
    hosts: Mapping[str, str],
    user: str,
    private_key: Path | None,
    timeout: float,
    interval: float = 5.0,
    probe: str = READY_PROBE,
) -> dict[str, float]:
    """Wait until every host (name -> address) answers SSH and cloud-init is done.

    Returns the seconds each host took; raises :class:`SshWaitError` naming the
    hosts that never answered (with their last error) once ``timeout`` passes.
    """
    start = time.monotonic()
    deadline = start + timeout
    pending = dict(hosts)
    errors: dict[str, str] = {}
    ready: dict[str, float] = {}
    if not pending:
        return ready
    with ThreadPoolExecutor(max_workers=min(16, len(pending))) as pool:
        while pending:
            futures = {
                name: pool.submit(_probe, address, user, private_key, probe)
                for name, address in pending.items()
            }
            for name, future in futures.items():
                rc, error = future.result()
                if rc == 0:
                    ready[name] = round(time.monotonic() - start, 1)
                    pending.pop(name)
                    errors.pop(name, None)
                else:
                    errors[name] = error
            if not pending:
                break
            if time.monotonic() + interval > deadline:
                raise SshWaitError({h: errors.get(h, "") for h in pending}, timeout)
            time.sleep(interval)
    return ready


# -- lock-out guard ------------------------------------------------------------------


def controller_source(address: str) -> tuple[str, str] | None:
    """(source address, interface) this machine uses to reach ``address``; None if unknown."""
    try:
        done = run_captured(["ip", "-j", "route", "get", address], 10)
        routes = json.loads(done.stdout or "[]") if done.returncode == 0 else []
    except (OSError, subprocess.TimeoutExpired, ValueError):
        return None
    if not routes or not routes[0].get("prefsrc"):
        return None
    return str(routes[0]["prefsrc"]), str(routes[0].get("dev", "?"))


def lockout_problems(
    hosts: Mapping[str, HostVars],
    source_of: Callable[[str], tuple[str, str] | None] = controller_source,
) -> list[str]:
    """Hosts whose firewall (BASE-FW-03) would shut this controller out of SSH.

    A host is a problem when the address this machine reaches it from lies
    outside its site's ops networks and BASE-FW-03 is not waived for it.
    """
    problems: list[str] = []
    for name, hv in sorted(hosts.items()):
        if "BASE-FW-03" in hv.policy.waived_controls:
            continue
        found = source_of(hv.address_or(name))
        if found is None:
            continue
        source, dev = found
        cidrs = list(hv.site.ops_cidrs)
        try:
            inside = any(
                ipaddress.ip_address(source) in ipaddress.ip_network(c, strict=False) for c in cidrs
            )
        except ValueError:
            inside = False
        if not inside:
            problems.append(
                f"{name}: this controller reaches {hv.address} from {source} "
                f"(via {dev}), outside {SITE_OPS_CIDRS} {cidrs}: BASE-FW-03 would "
                "lock it out of SSH (is the tenant's segment up? add the controller's "
                "network to the site's ops.cidrs)"
            )
    return problems
