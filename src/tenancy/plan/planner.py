"""From validated documents to a Plan: the one place that sequences the pure planners."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from pathlib import Path

from tenancy.plan import ipam, names
from tenancy.plan.flows import Addressing, compile_flows
from tenancy.plan.ledger import Ledger, SegmentEntry, ledger_path, read_ledger
from tenancy.plan.model import (
    HostUsage,
    MachinePlan,
    Plan,
    SegmentPlan,
    TenantPlan,
    VolumePlan,
)
from tenancy.plan.placement import Demand, place
from tenancy.spec import crosscheck
from tenancy.spec.errors import ErrorList, Location, SpecError
from tenancy.spec.loader import (
    LoadedSite,
    LoadedTenant,
    display_path,
    load_site,
    load_tenants,
    site_file,
)


@dataclass
class PlanResult:
    """Either a plan (and the ledger it implies) or the errors that prevent one."""

    problems: ErrorList = field(default_factory=ErrorList)
    plans: dict[str, Plan] = field(default_factory=dict)
    ledgers: dict[str, Ledger] = field(default_factory=dict)
    tenant_count: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems.errors


def plan_site(
    site: LoadedSite,
    tenants: dict[str, LoadedTenant],
    ledger: Ledger,
) -> tuple[Plan | None, Ledger | None, list[SpecError]]:
    """Plan one site; ``tenants`` are the tenants of this site only (already cross-checked)."""
    s = site.spec
    problems: list[SpecError] = []
    taken: list[str] = list(s.reserved)
    for kw in ("intranet", "extranet"):
        taken += list(getattr(s.external, kw))
    segments: dict[str, str] = {}
    # explicit CIDRs and ledger entries first, so new allocations never move them
    for name, t in sorted(tenants.items()):
        explicit = t.spec.spec.network.cidr
        if explicit is not None:
            segments[name] = explicit
        elif name in ledger.tenants:
            segments[name] = ledger.tenants[name].cidr
    for name in sorted(segments):
        if any(
            ipaddress.IPv4Network(segments[name]).overlaps(ipaddress.IPv4Network(o))
            for other, o in segments.items()
            if other < name
        ):
            problems.append(
                SpecError(
                    tenants[name].locate("spec", "network"),
                    "spec.network.cidr",
                    "segment overlaps another tenant's ledger allocation",
                    "a free network",
                    segments[name],
                )
            )
    taken += list(segments.values())
    for name, t in sorted(tenants.items()):
        if name in segments:
            continue
        pool = getattr(s.address_pools, t.spec.spec.zone)
        cidr = ipam.allocate_segment(pool, s.address_pools.segment_prefix, taken)
        if cidr is None:
            problems.append(
                SpecError(
                    t.locate("spec", "zone"),
                    "spec.network.cidr",
                    f"address pool {pool} of zone {t.spec.spec.zone} is full",
                    f"a free /{s.address_pools.segment_prefix}",
                )
            )
            continue
        segments[name] = cidr
        taken.append(cidr)

    vlans: dict[str, int] = {n: ledger.tenants[n].vlan for n in tenants if n in ledger.tenants}
    for name in sorted(tenants):
        if name not in vlans:
            vid = ipam.allocate_vlan(*s.vlan_range, set(vlans.values()))
            if vid is None:
                problems.append(
                    SpecError(
                        tenants[name].locate("spec"),
                        "spec",
                        "no VLAN ID left in the site's vlanRange",
                    )
                )
                continue
            vlans[name] = vid

    addresses: dict[str, dict[str, str]] = {}
    demands: list[Demand] = []
    for name, t in sorted(tenants.items()):
        instances = [i for m in t.spec.spec.machines for i in m.instance_names()]
        if name not in segments:
            continue
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
        for m in t.spec.spec.machines:
            flavor = s.flavors[m.flavor]
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

    previous = {(t, i): h for t, e in ledger.tenants.items() for i, h in e.hosts.items()}
    placed, failed, host_use = place(s, demands, previous)
    for (tname, inst), reason in sorted(failed.items()):
        t = tenants[tname]
        idx = next(k for k, m in enumerate(t.spec.spec.machines) if inst in m.instance_names())
        problems.append(
            SpecError(
                t.locate("spec", "machines", idx),
                f"spec.machines[{idx}]",
                f"no hypervisor of site {s.name} has room for {inst}",
                "capacity on some host",
                reason,
            )
        )
    if problems:
        return None, None, problems

    addressing: dict[str, Addressing] = {}
    for name, t in tenants.items():
        groups: dict[str, list[str]] = {}
        for m in t.spec.spec.machines:
            groups.setdefault(m.group, []).extend(
                f"{addresses[name][i]}/32" for i in m.instance_names()
            )
        addressing[name] = Addressing(
            segments[name], {g: sorted(v, key=_ip_key) for g, v in groups.items()}
        )
    rules, flow_problems = compile_flows(tenants, addressing, s.external)

    hosts_by_name = {h.name: h for h in s.hosts}
    tenant_plans: list[TenantPlan] = []
    new_ledger = Ledger(site=s.name)
    used_macs: set[str] = set()
    for name, t in sorted(tenants.items()):
        machines: list[MachinePlan] = []
        for m in t.spec.spec.machines:
            flavor = s.flavors[m.flavor]
            for inst in m.instance_names():
                host = placed[(name, inst)]
                salt = 0
                mac = names.mac_address(s.name, name, inst)
                while mac in used_macs:
                    salt += 1
                    mac = names.mac_address(s.name, name, inst, salt)
                used_macs.add(mac)
                machines.append(
                    MachinePlan(
                        tenant=name,
                        instance=inst,
                        machine=m.name,
                        group=m.group,
                        domain=names.domain_name(name, inst),
                        host=host,
                        address=addresses[name][inst],
                        mac=mac,
                        flavor=m.flavor,
                        vcpus=flavor.vcpus,
                        memory_mib=flavor.memory_mib,
                        image=m.image,
                        disk_gib=m.disk_gib,
                        root_pool=hosts_by_name[host].pools[0].name,
                        protect=m.protect,
                        volumes=[
                            VolumePlan(
                                name=v.name, size_gib=v.size_gib, pool=v.pool, backup=v.backup
                            )
                            for v in m.volumes
                        ],
                    )
                )
        cidr = segments[name]
        quota = crosscheck.effective_quota(t, site)
        tenant_plans.append(
            TenantPlan(
                name=name,
                display_name=t.spec.metadata.display_name,
                owner=t.spec.metadata.owner,
                zone=t.spec.spec.zone,
                file=t.file,
                policies=list(t.spec.spec.policies),
                segment=SegmentPlan(
                    cidr=cidr,
                    gateway=ipam.gateway(cidr),
                    prefix=ipaddress.IPv4Network(cidr).prefixlen,
                    vlan=vlans[name],
                    bridge=names.bridge_name(s.name, name),
                    network=names.network_name(name),
                    hosts=sorted({mp.host for mp in machines}),
                ),
                machines=machines,
                rules=rules[name],
                quota={
                    "vcpus": quota.vcpus,
                    "memoryGiB": quota.memory_gib,
                    "storageGiB": quota.storage_gib,
                },
                usage=crosscheck.usage(t, site),
            )
        )
        new_ledger.tenants[name] = SegmentEntry(
            cidr=cidr,
            vlan=vlans[name],
            addresses={mp.instance: mp.address for mp in machines},
            hosts={mp.instance: mp.host for mp in machines},
        )
    usage = [
        HostUsage(
            name=h.name,
            uri=hosts_by_name[h.name].uri,
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
    plan = Plan(
        site=s.name,
        domain_type=s.domain_type,
        tenants=tenant_plans,
        hosts=usage,
        warnings=[str(p) for p in sorted(flow_problems, key=_loc)],
    )
    return plan, new_ledger, flow_problems


def _ip_key(cidr: str) -> int:
    return int(ipaddress.IPv4Network(cidr).network_address)


def _loc(e: SpecError) -> Location:
    return e.location


def plan_paths(
    root: Path,
    tenant_paths: list[Path] | None = None,
    sites: list[str] | None = None,
) -> PlanResult:
    """Load and check every tenant under ``tenant_paths`` and plan every site involved.

    ``sites`` limits planning to those sites (their stack files must exist). Nothing is
    planned when any input is invalid.
    """
    result = PlanResult()
    paths = tenant_paths or [root / "tenants"]
    loaded, errors = load_tenants(paths, root)
    result.problems.extend(errors)
    result.tenant_count = len(loaded)
    by_name: dict[str, LoadedTenant] = {}
    for t in loaded:
        if t.spec.name in by_name:
            first = by_name[t.spec.name]
            result.problems.add(
                SpecError(
                    t.locate("metadata", "name"),
                    "metadata.name",
                    "duplicate tenant name",
                    "unique tenant names",
                    repr(t.spec.name),
                    related=(first.locate("metadata", "name"),),
                )
            )
            continue
        by_name[t.spec.name] = t
    stacks = root / "stacks"
    wanted = set(sites) if sites else {t.spec.spec.site for t in by_name.values()}
    loaded_sites: dict[str, LoadedSite] = {}
    for site_name in sorted(wanted | {t.spec.spec.site for t in by_name.values()}):
        path = site_file(stacks, site_name)
        if not path.exists():
            for t in by_name.values():
                if t.spec.spec.site == site_name:
                    result.problems.add(
                        SpecError(
                            t.locate("spec", "site"),
                            "spec.site",
                            "unknown site",
                            f"a stack file {display_path(path, root)}",
                            repr(site_name),
                        )
                    )
            if site_name in (sites or []):
                result.problems.add(SpecError(Location(str(path)), "", "no such stack file"))
            continue
        site, errs = load_site(path, site_name, root)
        result.problems.extend(errs)
        if site is not None:
            loaded_sites[site_name] = site
    for t in by_name.values():
        site = loaded_sites.get(t.spec.spec.site)
        if site is not None:
            result.problems.extend(crosscheck.check_against_site(t, site))
    result.problems.extend(crosscheck.check_references(by_name))
    for site_name, site in sorted(loaded_sites.items()):
        on_site = {n: t for n, t in by_name.items() if t.spec.spec.site == site_name}
        result.problems.extend(crosscheck.check_cidrs(on_site, site))
    if result.problems.errors:
        return result
    for site_name in sorted(wanted):
        site = loaded_sites[site_name]
        on_site = {n: t for n, t in by_name.items() if t.spec.spec.site == site_name}
        ledger = read_ledger(ledger_path(stacks, site_name), site_name)
        plan, new_ledger, problems = plan_site(site, on_site, ledger)
        result.problems.extend(problems)
        if plan is not None and new_ledger is not None:
            result.plans[site_name] = plan
            result.ledgers[site_name] = new_ledger
    if result.problems.errors:
        result.plans.clear()
        result.ledgers.clear()
    return result
