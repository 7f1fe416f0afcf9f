"""Fact readers: what a host says (``sshd -T``, ``systemctl show``, ``dpkg-query``, ...).

Like testinfra's modules, each reader runs one command and returns plain
data, but answers are cached per host (many items of one check read the same
fact) and every answer, cached or not, is recorded as evidence of the test
that used it. Settings are read where they take effect, not only from the
files the roles write.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from tenancy.compliance.evidence import install_recorder, recorded, replay
from tenancy.compliance.host import Host, host_name

__all__ = [
    "Output",
    "Stat",
    "active_lines",
    "key_values",
    "packages",
    "read_file",
    "run",
    "sshd_config",
    "stat",
    "sysctls",
    "units",
]


@dataclass(frozen=True)
class Output:
    """What a command answered."""

    rc: int
    stdout: str
    stderr: str


_facts: dict[tuple[str, str, bool], tuple[Output, dict[str, Any] | None]] = {}


def run(host: Host, command: str, *, sudo: bool = True, cache: bool = True) -> Output:
    """Run ``command`` on ``host`` (as root by default), once per host when cached.

    A cached answer is still recorded as evidence of the current test.
    """
    key = (host_name(host), command, sudo)
    if cache and key in _facts:
        out, entry = _facts[key]
        if entry is not None:
            replay(entry)
        return out
    install_recorder(host)
    with recorded() as entries:
        if sudo:
            with host.sudo():
                result = host.run(command)
        else:
            result = host.run(command)
    out = Output(result.rc, result.stdout, result.stderr)
    if cache:
        _facts[key] = (out, entries[0] if entries else None)
    return out


def sshd_config(host: Host) -> dict[str, str]:
    """The effective sshd configuration (``sshd -T``), keys lower-case."""
    out = run(host, "/usr/sbin/sshd -T")
    assert out.rc == 0, f"sshd -T failed (rc {out.rc}): {out.stderr.strip()}"
    config: dict[str, str] = {}
    for line in out.stdout.splitlines():
        key, _, value = line.strip().partition(" ")
        if key:
            # repeated keywords (e.g. listenaddress) are joined
            config[key] = f"{config[key]} {value}" if key in config else value
    return config


@dataclass(frozen=True)
class Stat:
    """Owner, group, permission bits and file type of a path."""

    path: str
    owner: str
    group: str
    mode: int
    kind: str


def stat(host: Host, *paths: str) -> dict[str, Stat | None]:
    """Owner, group, mode and type of each path (None when it does not exist)."""
    command = "stat -c '%n|%U|%G|%a|%F' -- " + " ".join(shlex.quote(p) for p in paths)
    out = run(host, command)
    found: dict[str, Stat | None] = dict.fromkeys(paths)
    for line in out.stdout.splitlines():
        parts = line.split("|")
        if len(parts) == 5:
            found[parts[0]] = Stat(parts[0], parts[1], parts[2], int(parts[3], 8), parts[4])
    return found


def read_file(host: Host, path: str) -> str | None:
    """The content of ``path`` (read as root), or None when it cannot be read."""
    out = run(host, f"cat -- {shlex.quote(path)}")
    return out.stdout if out.rc == 0 else None


def active_lines(text: str | None, comment: str = "#") -> list[str]:
    """Lines without comments and blanks."""
    lines = []
    for raw in (text or "").splitlines():
        line = raw.split(comment, 1)[0].strip() if comment else raw.strip()
        if line:
            lines.append(line)
    return lines


def key_values(text: str | None, sep: str | None = "=") -> dict[str, str]:
    """``key = value`` (or whitespace-separated with ``sep=None``) lines; last one wins."""
    values: dict[str, str] = {}
    for line in active_lines(text):
        if sep is None:
            key, _, value = line.partition(" ")
        else:
            key, found, value = line.partition(sep)
            if not found:
                values[key.strip()] = ""
                continue
        values[key.strip()] = value.strip()
    return values


def units(host: Host, names: Sequence[str]) -> dict[str, dict[str, str]]:
    """``systemctl show`` properties of each unit (LoadState, ActiveState, UnitFileState...)."""
    command = (
        "systemctl show --no-pager -p Id,LoadState,ActiveState,SubState,UnitFileState -- "
        + " ".join(shlex.quote(n) for n in names)
    )
    out = run(host, command, sudo=False)
    blocks = out.stdout.strip().split("\n\n")
    return {name: key_values(block) for name, block in zip(names, blocks, strict=False)}


def packages(host: Host, names: Sequence[str]) -> dict[str, str]:
    """dpkg status of each package: ``installed``, ``config-files`` or ``absent``."""
    command = "dpkg-query -W -f='${Package} ${db:Status-Abbrev}\\n' -- " + " ".join(
        shlex.quote(n) for n in names
    )
    out = run(host, command, sudo=False)
    status = dict.fromkeys(names, "absent")
    for line in out.stdout.splitlines():
        name, _, abbrev = line.partition(" ")
        name = name.split(":")[0]
        if name in status:
            if abbrev.startswith("ii"):
                status[name] = "installed"
            elif abbrev.startswith("rc"):
                status[name] = "config-files"
    return status


def sysctls(host: Host, keys: Sequence[str]) -> dict[str, str]:
    """Current kernel parameters (``sysctl -e``: unknown keys are left out)."""
    out = run(host, "sysctl -e " + " ".join(keys))
    values: dict[str, str] = {}
    for line in out.stdout.splitlines():
        key, _, value = line.partition("=")
        values[key.strip()] = " ".join(value.split())
    return values
