"""Every machine instance's address in its segment and its hypervisor host.

Both read the ledger first (recorded addresses and hosts are kept while they still
fit), so adding a machine or a tenant never renumbers or moves another one.
"""

from __future__ import annotations

from tenancy.contract.errors import SpecError
from tenancy.contract.loader import LoadedTenant
from tenancy.contract.models import Site
from tenancy.plan import ipam
from tenancy.plan.ledger import Ledger
from tenancy.plan.placement import Demand, HostState, place

Placements = dict[tuple[str, str], str]  # (tenant, instance) -> host


def allocate_addresses(
    tenants: dict[str, LoadedTenant], segments: dict[str, str], ledger: Ledger
) -> tuple[dict[str, dict[str, str]], list[SpecError]]:
    """Addresses per tenant and instance, and an error for each segment too small.

    Tenants without a segment (its allocation failed, already reported) get none.
    """
    addresses: dict[str, dict[str, str]] = {}
    problems: list[SpecError] = []
    for name, t in sorted(tenants.items()):
        if name not in segments:
            continue
        instances = [i for m in t.model.spec.machines for i in m.instance_names()]
        prev = ledger.tenants[name].addresses if name in ledger.tenants else {}
        got, missing = ipam.allocate_addresses(segments[name], instances, prev)
        if missing:
            problems.append(
                SpecError(
                    t.locate("spec", "network", "cidr"),
                    "spec.network.cidr",
                    f"segment {segments[name]} too small for {len(instances)} machines",
                    f"room for {len(instances)} addresses",
                )
            )
        addresses[name] = got
    return addresses, problems


def machine_demands(
    site: Site, tenants: dict[str, LoadedTenant], segments: dict[str, str]
) -> list[Demand]:
    """What every instance asks of a host (flavor, root disk, volumes per pool), in
    tenant order: the order placement considers them in."""
    demands: list[Demand] = []
    for name, t in sorted(tenants.items()):
        if name not in segments:
            continue
        for m in t.model.spec.machines:
            flavor = site.flavors[m.flavor]
            storage = {"@root": m.disk_gib}
            for vol in m.volumes:
                storage[vol.pool] = storage.get(vol.pool, 0) + vol.size_gib
            demands.extend(
                Demand(
                    key=(name, inst),
                    group=(name, m.group),
                    vcpus=flavor.vcpus,
                    memory_mib=flavor.memory_mib,
                    storage_gib=storage,
                )
                for inst in m.instance_names()
            )
    return demands


def place_machines(
    site: Site, tenants: dict[str, LoadedTenant], demands: list[Demand], ledger: Ledger
) -> tuple[Placements, dict[str, HostState], list[SpecError]]:
    """Hosts per instance (recorded ones kept), host usage, and an error per instance
    no host has room for (located at its machine entry)."""
    previous = {(t, i): h for t, e in ledger.tenants.items() for i, h in e.hosts.items()}
    placed, failed, host_use = place(site, demands, previous)
    problems: list[SpecError] = []
    for (tname, inst), reason in sorted(failed.items()):
        t = tenants[tname]
        idx = next(k for k, m in enumerate(t.model.spec.machines) if inst in m.instance_names())
        problems.append(
            SpecError(
                t.locate("spec", "machines", idx),
                f"spec.machines[{idx}]",
                f"no hypervisor of site {site.name} has room for {inst}",
                "capacity on some host",
                reason,
            )
        )
    return placed, host_use, problems
