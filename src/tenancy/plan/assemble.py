"""Turn a site's allocations into plan records: tenants, machines, hosts, ledger entries.

Nothing is decided here any more: every choice (segment, VLAN, address, host,
bridge, MAC, rule) was made by an earlier step; this only copies them, with
what the contract says, into the shapes the infrastructure and the ledger read.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from tenancy.contract import crosscheck
from tenancy.contract.loader import LoadedSite, LoadedTenant
from tenancy.contract.models import Site
from tenancy.plan import ipam, names
from tenancy.plan.flows import Addressing
from tenancy.plan.ledger import SegmentEntry
from tenancy.plan.model import (
    HostUsage,
    MachinePlan,
    RulePlan,
    SegmentPlan,
    TenantPlan,
    VolumePlan,
)
from tenancy.plan.placement import HostState, fingerprint, storage_of


@dataclass(frozen=True)
class Allocation:
    """Every decision of a site's allocation steps, keyed by tenant (and instance)."""

    segments: dict[str, str]  # tenant -> CIDR
    vlans: dict[str, int]
    addresses: dict[str, dict[str, str]]  # tenant -> instance -> address
    hosts: dict[tuple[str, str], str]  # (tenant, instance) -> host
    bridges: dict[str, str]
    macs: dict[tuple[str, str], str]  # (tenant, instance) -> MAC


def tenant_addressing(
    tenants: dict[str, LoadedTenant],
    segments: dict[str, str],
    addresses: dict[str, dict[str, str]],
) -> dict[str, Addressing]:
    """Each tenant's segment and its groups' /32s: what the flow compiler resolves names to."""
    addressing: dict[str, Addressing] = {}
    for name, t in tenants.items():
        groups: dict[str, list[str]] = {}
        for m in t.model.spec.machines:
            groups.setdefault(m.group, []).extend(
                f"{addresses[name][i]}/32" for i in m.instance_names()
            )
        addressing[name] = Addressing(
            segments[name], {g: sorted(v, key=_ip_key) for g, v in groups.items()}
        )
    return addressing


def machine_plans(
    site: Site, name: str, tenant: LoadedTenant, alloc: Allocation
) -> list[MachinePlan]:
    """One record per instance of the tenant's machines, in the file's order."""
    hosts_by_name = {h.name: h for h in site.hosts}
    machines: list[MachinePlan] = []
    for m in tenant.model.spec.machines:
        flavor = site.flavors[m.flavor]
        volumes = [
            VolumePlan(name=v.name, size_gib=v.size_gib, pool=v.pool, backup=v.backup)
            for v in m.volumes
        ]
        for inst in m.instance_names():
            host = alloc.hosts[(name, inst)]
            machines.append(
                MachinePlan(
                    tenant=name,
                    instance=inst,
                    machine=m.name,
                    group=m.group,
                    domain=names.domain_name(name, inst),
                    host=host,
                    address=alloc.addresses[name][inst],
                    mac=alloc.macs[(name, inst)],
                    flavor=m.flavor,
                    vcpus=flavor.vcpus,
                    memory_mib=flavor.memory_mib,
                    image=m.image,
                    disk_gib=m.disk_gib,
                    root_pool=hosts_by_name[host].pools[0].name,
                    protect=m.protect,
                    volumes=volumes,
                )
            )
    return machines


def build_tenant_plan(
    site: LoadedSite,
    name: str,
    tenant: LoadedTenant,
    alloc: Allocation,
    rules: list[RulePlan],
) -> TenantPlan:
    """The tenant's plan: identity, segment, machines, rules, quota and usage."""
    machines = machine_plans(site.model, name, tenant, alloc)
    cidr = alloc.segments[name]
    grant = crosscheck.effective_grant(tenant, site)
    if grant.quota is None:  # pragma: no cover - check_grant refused the inputs
        raise ValueError(f"tenant {name}: no quota granted")
    usage = crosscheck.usage(tenant, site)
    usage["addresses"] = ipaddress.IPv4Network(cidr).num_addresses
    request = tenant.model.spec.quota_request
    asked = {} if request is None else request.model_dump(by_alias=True, exclude_none=True)
    meta = tenant.model.metadata
    return TenantPlan(
        name=name,
        display_name=meta.display_name,
        owner=meta.owner,
        zone=tenant.model.spec.zone,
        file=tenant.file,
        policies=list(tenant.model.spec.policies),
        segment=SegmentPlan(
            cidr=cidr,
            gateway=ipam.gateway(cidr),
            prefix=ipaddress.IPv4Network(cidr).prefixlen,
            vlan=alloc.vlans[name],
            bridge=alloc.bridges[name],
            network=names.network_name(name),
            hosts=sorted({mp.host for mp in machines}),
        ),
        machines=machines,
        rules=rules,
        quota=crosscheck.granted_limits(grant.quota, site),
        quota_source=grant.source,
        quota_request=asked,
        usage=usage,
    )


def ledger_entry(plan: TenantPlan) -> SegmentEntry:
    """What the ledger records of a tenant's plan, so the next plan keeps all of it."""
    return SegmentEntry(
        cidr=plan.segment.cidr,
        vlan=plan.segment.vlan,
        addresses={mp.instance: mp.address for mp in plan.machines},
        hosts={mp.instance: mp.host for mp in plan.machines},
        bridge=plan.segment.bridge,
        macs={mp.instance: mp.mac for mp in plan.machines},
        demands={mp.instance: demand_fingerprint(mp) for mp in plan.machines},
    )


def demand_fingerprint(mp: MachinePlan) -> str:
    """The instance's demand as placement computes it, so an unchanged one reads as such."""
    storage = storage_of(mp.disk_gib, ((v.pool, v.size_gib) for v in mp.volumes))
    return fingerprint(mp.vcpus, mp.memory_mib, storage)


def host_usage(site: Site, host_use: dict[str, HostState]) -> list[HostUsage]:
    """Capacity and use of every hypervisor after placement, by host name."""
    uris = {h.name: h.uri for h in site.hosts}
    return [
        HostUsage(
            name=h.name,
            uri=uris[h.name],
            vcpus_used=h.vcpus_used,
            vcpus_capacity=h.vcpus_capacity,
            memory_mib_used=h.memory_used,
            memory_mib_capacity=h.memory_capacity,
            pools={
                p: {"used_gib": h.pool_used.get(p, 0), "capacity_gib": c}
                for p, c in sorted(h.pool_capacity.items())
            },
        )
        for h in sorted(host_use.values(), key=lambda x: x.name)
    ]


def _ip_key(cidr: str) -> int:
    """Numeric order of addresses (10.0.0.9 before 10.0.0.10)."""
    return int(ipaddress.IPv4Network(cidr).network_address)
