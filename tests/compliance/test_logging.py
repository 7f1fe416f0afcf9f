"""Logging (role tenancy_logging): BASE-LOG-01..02, MLPS-LOG-01.

journald settings are read as systemd merges them (``systemd-analyze
cat-config``: the main file, then the drop-ins; the last value wins).
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from tenancy.compliance import control
from tenancy.compliance.applicability import HostInfo
from tenancy.compliance.expect import expect
from tenancy.compliance.facts import active_lines, key_values, packages, run, stat, units
from tenancy.compliance.items import Item


def _journald(host: Any) -> dict[str, str]:
    out = run(host, "systemd-analyze cat-config systemd/journald.conf", sudo=False)
    return key_values("\n".join(line for line in out.stdout.splitlines() if "=" in line))


def _rsyslog(host: Any) -> list[str]:
    out = run(host, "cat /etc/rsyslog.conf /etc/rsyslog.d/*.conf")
    return active_lines(out.stdout)


def _seconds(text: str | None) -> float:
    """A systemd time span (``6month``, ``180d``, ``1y``) in seconds; 0 when unset."""
    units_ = {
        "s": 1, "sec": 1, "min": 60, "m": 60, "h": 3600, "hr": 3600, "d": 86400, "day": 86400,
        "w": 604800, "week": 604800, "month": 2629800, "months": 2629800, "M": 2629800,
        "y": 31557600, "year": 31557600, "years": 31557600,
    }  # fmt: skip
    total = 0.0
    for number, unit in re.findall(r"(\d+)\s*([A-Za-z]*)", text or ""):
        total += int(number) * units_.get(unit or "s", units_.get(unit.lower(), 0))
    return total


SIX_MONTHS = 6 * 2629800


@control(
    "BASE-LOG-01",
    items={
        "Storage": "persistent",
        "Compress": "yes",
        "SystemMaxUse": None,
        "SystemKeepFree": None,
        "SystemMaxFileSize": None,
        "MaxRetentionSec": None,
        "Audit": "yes",
        "journal-directory": "/var/log/journal",
    },
)
def journald_persistent(host: Any, item: Item) -> None:
    if item.name == "journal-directory":
        found = stat(host, item.expected)[item.expected]
        assert found is not None and found.kind == "directory", (
            f"{item.expected} does not exist: the journal is not kept on disk"
        )
        return
    value = _journald(host).get(item.name)
    if item.name == "MaxRetentionSec":
        assert _seconds(value) >= SIX_MONTHS, (
            f"journald MaxRetentionSec is {value!r}, expected 6month or more"
        )
    elif item.expected is None:
        assert value, f"journald {item.name} is not set: the journal size is not bounded"
    else:
        expect(f"journald {item.name}", value, item.expected)


@control(
    "BASE-LOG-02",
    items=[
        "package",
        "service-enabled",
        "service-running",
        "forward-to-syslog",
        "file-create-mode",
    ],
)
def rsyslog_running(host: Any, item: Item) -> None:
    if item.name == "package":
        expect("package rsyslog", packages(host, ["rsyslog"])["rsyslog"], "installed")
    elif item.name.startswith("service-"):
        unit = units(host, ["rsyslog.service"])["rsyslog.service"]
        if item.name == "service-enabled":
            expect("rsyslog.service UnitFileState", unit.get("UnitFileState"), "enabled")
        else:
            expect("rsyslog.service ActiveState", unit.get("ActiveState"), "active")
    elif item.name == "forward-to-syslog":
        expect("journald ForwardToSyslog", _journald(host).get("ForwardToSyslog"), "yes")
    else:
        modes = [line.split()[1] for line in _rsyslog(host) if line.startswith("$FileCreateMode")]
        assert modes, "rsyslog sets no $FileCreateMode (new log files get 0644)"
        mode = int(modes[-1], 8)
        assert mode & 0o137 == 0, f"rsyslog $FileCreateMode is {modes[-1]}, expected 0640 or less"


@control("MLPS-LOG-01", items=["site-log-server", "forwarding-configured", "connected"])
def rsyslog_remote_forwarding(host: Any, item: Item, info: HostInfo) -> None:
    target = str(info.var("tenancy_site_syslog_host", "") or "")
    port = str(info.var("tenancy_site_syslog_port", 514))
    assert target, "the site declares no central log server (tenancy_site_syslog_host)"
    if item.name == "site-log-server":
        return
    if item.name == "forwarding-configured":
        text = "\n".join(_rsyslog(host))
        assert re.search(rf'target="{re.escape(target)}"', text) or f"@{target}" in text, (
            f"rsyslog does not forward to {target}"
        )
        return
    protocol = str(info.var("tenancy_site_syslog_protocol", "tcp"))
    if protocol != "tcp":
        pytest.skip("forwarding over UDP has no connection to show")
    out = run(host, f"ss -Htn state established '( dport = :{port} )' dst {target}", sudo=False)
    assert out.stdout.strip(), f"no established connection to {target}:{port}"
