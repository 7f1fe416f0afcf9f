"""Bridge names per tenant and MAC addresses per instance, unique on a site.

Names recorded in the ledger are kept first; new ones are derived from a hash and
salted on a collision. So adding or removing a tenant never renames another's
bridge or changes another machine's MAC, even when two hashes collide.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from tenancy.contract.loader import LoadedTenant
from tenancy.plan import names
from tenancy.plan.ledger import Ledger

Bridges = dict[str, str]  # tenant -> bridge
Macs = dict[tuple[str, str], str]  # (tenant, instance) -> MAC


def link_names(site: str, tenants: dict[str, LoadedTenant], ledger: Ledger) -> tuple[Bridges, Macs]:
    """Every tenant's bridge and every instance's MAC: recorded ones first, then new ones."""
    instances = {
        name: [i for m in t.model.spec.machines for i in m.instance_names()]
        for name, t in sorted(tenants.items())
    }
    bridges, macs = _recorded(instances, ledger)
    used_bridges = set(bridges.values())
    used_macs = set(macs.values())
    for name, insts in instances.items():
        if name not in bridges:
            bridges[name] = _unused(partial(names.bridge_name, site, name), used_bridges)
        for inst in insts:
            if (name, inst) not in macs:
                macs[(name, inst)] = _unused(
                    partial(names.mac_address, site, name, inst), used_macs
                )
    return bridges, macs


def _recorded(instances: dict[str, list[str]], ledger: Ledger) -> tuple[Bridges, Macs]:
    """The ledger's bridges and MACs of these instances; a duplicate is dropped (renamed)."""
    bridges: Bridges = {}
    macs: Macs = {}
    used_bridges: set[str] = set()
    used_macs: set[str] = set()
    for name, insts in instances.items():
        entry = ledger.tenants.get(name)
        if entry is None:
            continue
        if entry.bridge and entry.bridge not in used_bridges:
            bridges[name] = entry.bridge
            used_bridges.add(entry.bridge)
        for inst in insts:
            mac = entry.macs.get(inst)
            if mac and mac not in used_macs:
                macs[(name, inst)] = mac
                used_macs.add(mac)
    return bridges, macs


def _unused(derive: Callable[[int], str], used: set[str]) -> str:
    """``derive(salt)`` for the first salt (0, 1, ...) whose name is not ``used``; records it."""
    salt = 0
    name = derive(salt)
    while name in used:
        salt += 1
        name = derive(salt)
    used.add(name)
    return name
