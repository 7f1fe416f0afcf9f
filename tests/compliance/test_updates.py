"""Security updates (role tenancy_updates): BASE-UPD-01..02.

Settings are read as apt merges them (``apt-config dump``), whichever file of
/etc/apt/apt.conf.d sets them.
"""

from __future__ import annotations

import re
from typing import Any

from tenancy.compliance import control
from tenancy.compliance.applicability import HostInfo
from tenancy.compliance.expect import expect
from tenancy.compliance.facts import packages, run, units
from tenancy.compliance.items import Item


def _apt_config(host: Any) -> tuple[dict[str, str], dict[str, list[str]]]:
    """(scalar settings, list settings) of ``apt-config dump``."""
    out = run(host, "apt-config dump", sudo=False)
    scalars: dict[str, str] = {}
    lists: dict[str, list[str]] = {}
    for line in out.stdout.splitlines():
        m = re.match(r'^(\S+?)(::)?\s+"(.*)";$', line.strip())
        if not m:
            continue
        key, is_list, value = m.group(1), m.group(2), m.group(3)
        if is_list:
            lists.setdefault(key, []).append(value)
        else:
            scalars[key] = value
    return scalars, lists


@control(
    "BASE-UPD-01",
    items={
        "package": "unattended-upgrades",
        "APT::Periodic::Update-Package-Lists": "1",
        "APT::Periodic::Unattended-Upgrade": "1",
        "apt-daily.timer": "enabled",
        "apt-daily-upgrade.timer": "enabled",
        "Acquire::http::Proxy": "the site's packageMirror (none when it names none)",
    },
)
def unattended_upgrades_enabled(host: Any, item: Item, info: HostInfo) -> None:
    if item.name == "Acquire::http::Proxy":
        # a first-boot value (cloud-init's file) must not outlive a mirror change
        wanted = str(info.var("tenancy_site_apt_proxy", "") or "")
        scalars, _ = _apt_config(host)
        expect(item.name, scalars.get(item.name), wanted or None)
    elif item.name == "package":
        status = packages(host, [item.expected])[item.expected]
        expect("package unattended-upgrades", status, "installed")
    elif item.name.endswith(".timer"):
        unit = units(host, ["apt-daily.timer", "apt-daily-upgrade.timer"])[item.name]
        expect(f"{item.name} UnitFileState", unit.get("UnitFileState"), item.expected)
    else:
        scalars, _ = _apt_config(host)
        expect(item.name, scalars.get(item.name), item.expected)


def _security_only(origin: str) -> bool:
    text = origin.lower()
    return "security" in text


@control("BASE-UPD-02", items=["has-security-origin", "origins-pattern", "allowed-origins"])
def unattended_upgrades_security_only(host: Any, item: Item) -> None:
    _, lists = _apt_config(host)
    patterns = lists.get("Unattended-Upgrade::Origins-Pattern", [])
    allowed = lists.get("Unattended-Upgrade::Allowed-Origins", [])
    if item.name == "has-security-origin":
        assert any(_security_only(o) for o in [*patterns, *allowed]), (
            "unattended-upgrades has no Debian security origin"
        )
    elif item.name == "origins-pattern":
        others = [o for o in patterns if not _security_only(o)]
        assert not others, f"unattended-upgrades also installs from {others}"
    else:
        others = [o for o in allowed if not _security_only(o)]
        assert not others, f"unattended-upgrades also installs from {others}"
