"""Unneeded services and legacy clients (role tenancy_services): BASE-SVC-01..02."""

from __future__ import annotations

from typing import Any

from tenancy.compliance import control
from tenancy.compliance.facts import packages, units
from tenancy.compliance.items import Item

UNNEEDED_UNITS = [
    "avahi-daemon.service",
    "avahi-daemon.socket",
    "cups.service",
    "cups.socket",
    "cups-browsed.service",
    "rpcbind.service",
    "rpcbind.socket",
    "nfs-server.service",
    "rsync.service",
    "snmpd.service",
    "tftpd-hpa.service",
    "xinetd.service",
    "ModemManager.service",
    "bluetooth.service",
]

LEGACY_CLIENTS = ["nis", "rsh-client", "talk", "telnet", "inetutils-telnet"]


@control("BASE-SVC-01", items=UNNEEDED_UNITS)
def unneeded_services_masked(host: Any, item: Item) -> None:
    unit = units(host, UNNEEDED_UNITS)[item.name]
    state, load = unit.get("ActiveState"), unit.get("LoadState")
    assert state in ("inactive", "failed", None), f"{item.name} is {state}"
    assert load in ("masked", "not-found"), f"{item.name} is installed and {load}, expected masked"


@control("BASE-SVC-02", items=LEGACY_CLIENTS)
def legacy_clients_absent(host: Any, item: Item) -> None:
    status = packages(host, LEGACY_CLIENTS)[item.name]
    assert status != "installed", f"package {item.name} is installed"
