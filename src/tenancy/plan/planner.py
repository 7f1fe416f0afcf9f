"""From validated documents to a Plan: the one place that sequences the pure planners."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from pathlib import Path

from tenancy.contract import crosscheck
from tenancy.contract.errors import ErrorList, Location, SpecError
from tenancy.contract.loader import (
    LoadedSite,
    LoadedTenant,
    display_path,
    load_site,
    load_tenants,
    site_file,
    tenant_files,
)
from tenancy.gcpause import cyclic_gc_paused
from tenancy.plan import ipam, names
from tenancy.plan.flows import Addressing, compile_flows
from tenancy.plan.ledger import Ledger, SegmentEntry, ledger_path, load_ledger
from tenancy.plan.model import (
    HostUsage,
    MachinePlan,
    Plan,
    SegmentPlan,
    TenantPlan,
    VolumePlan,
)
from tenancy.plan.placement import Demand, place


@dataclass
class PlanResult:
    """Either a plan (and the ledger it implies) or the errors that prevent one."""

    problems: ErrorList = field(default_factory=ErrorList)
    plans: dict[str, Plan] = field(default_factory=dict)
    ledgers: dict[str, Ledger] = field(default_factory=dict)
    sites: dict[str, LoadedSite] = field(default_factory=dict)
    """The validated site of every plan: callers never load it again."""
    tenant_count: int = 0  # valid tenant files
    file_count: int = 0  # tenant files read

    @property
    def ok(self) -> bool:
        return not self.problems.errors


def plan_site(
    site: LoadedSite,
    tenants: dict[str, LoadedTenant],
    ledger: Ledger,
    ledger_file: str = "the ledger",
) -> tuple[Plan | None, Ledger | None, list[SpecError]]:
    """Plan one site; ``tenants`` are the tenants of this site only (already cross-checked)."""
    s = site.model
    problems: list[SpecError] = []
    fixed: list[tuple[str, str]] = [(c, "site reserved range") for c in s.reserved]
    for kw in ("intranet", "extranet"):
        fixed += [(c, f"site {kw} client range") for c in getattr(s.external, kw)]
    segments: dict[str, str] = {}
    explicit: set[str] = set()
    # explicit CIDRs and ledger entries first, so new allocations never move them
    for name, t in sorted(tenants.items()):
        cidr = t.model.spec.network.cidr
        if cidr is not None:
            segments[name] = cidr
            explicit.add(name)
        elif name in ledger.tenants:
            segments[name] = ledger.tenants[name].cidr
    problems += _segment_conflicts(tenants, segments, explicit, fixed, ledger_file)
    allocator = ipam.SegmentAllocator([c for c, _ in fixed])
    for cidr in segments.values():
        allocator.take(cidr)
    for name, t in sorted(tenants.items()):
        if name in segments:
            continue
        pool = getattr(s.address_pools, t.model.spec.zone)
        new_cidr = allocator.allocate(pool, s.address_pools.segment_prefix)
        if new_cidr is None:
            problems.append(
                SpecError(
                    t.locate("spec", "zone"),
                    "spec.network.cidr",
                    f"address pool {pool} of zone {t.model.spec.zone} is full",
                    f"a free /{s.address_pools.segment_prefix}",
                )
            )
            continue
        segments[name] = new_cidr

    vlans: dict[str, int] = {n: ledger.tenants[n].vlan for n in tenants if n in ledger.tenants}
    used_vlans = set(vlans.values())
    lowest_free = s.vlan_range[0]  # only grows: IDs below it are all taken
    for name in sorted(tenants):
        if name not in vlans:
            vid = ipam.allocate_vlan(lowest_free, s.vlan_range[1], used_vlans)
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
            used_vlans.add(vid)
            lowest_free = vid + 1

    addresses: dict[str, dict[str, str]] = {}
    demands: list[Demand] = []
    for name, t in sorted(tenants.items()):
        instances = [i for m in t.model.spec.machines for i in m.instance_names()]
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
        for m in t.model.spec.machines:
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
        idx = next(k for k, m in enumerate(t.model.spec.machines) if inst in m.instance_names())
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
        for m in t.model.spec.machines:
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
    bridges, macs = _link_names(s.name, tenants, ledger)
    for name, t in sorted(tenants.items()):
        machines: list[MachinePlan] = []
        for m in t.model.spec.machines:
            flavor = s.flavors[m.flavor]
            for inst in m.instance_names():
                host = placed[(name, inst)]
                mac = macs[(name, inst)]
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
                display_name=t.model.metadata.display_name,
                owner=t.model.metadata.owner,
                zone=t.model.spec.zone,
                file=t.file,
                policies=list(t.model.spec.policies),
                segment=SegmentPlan(
                    cidr=cidr,
                    gateway=ipam.gateway(cidr),
                    prefix=ipaddress.IPv4Network(cidr).prefixlen,
                    vlan=vlans[name],
                    bridge=bridges[name],
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
            bridge=bridges[name],
            macs={mp.instance: mp.mac for mp in machines},
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


def _link_names(
    site: str, tenants: dict[str, LoadedTenant], ledger: Ledger
) -> tuple[dict[str, str], dict[tuple[str, str], str]]:
    """Bridge names per tenant and MAC addresses per instance, unique on the site.

    Names recorded in the ledger are kept first; new ones are derived from a hash and
    salted on a collision. So adding or removing a tenant never renames another's
    bridge or changes another machine's MAC, even when two hashes collide.
    """
    bridges: dict[str, str] = {}
    macs: dict[tuple[str, str], str] = {}
    used_bridges: set[str] = set()
    used_macs: set[str] = set()
    instances = {
        name: [i for m in t.model.spec.machines for i in m.instance_names()]
        for name, t in sorted(tenants.items())
    }
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
    for name, insts in instances.items():
        if name not in bridges:
            salt = 0
            bridge = names.bridge_name(site, name)
            while bridge in used_bridges:
                salt += 1
                bridge = names.bridge_name(site, name, salt)
            bridges[name] = bridge
            used_bridges.add(bridge)
        for inst in insts:
            if (name, inst) in macs:
                continue
            salt = 0
            mac = names.mac_address(site, name, inst)
            while mac in used_macs:
                salt += 1
                mac = names.mac_address(site, name, inst, salt)
            macs[(name, inst)] = mac
            used_macs.add(mac)
    return bridges, macs


def _segment_conflicts(
    tenants: dict[str, LoadedTenant],
    segments: dict[str, str],
    explicit: set[str],
    fixed: list[tuple[str, str]],
    ledger_file: str,
) -> list[SpecError]:
    """Overlaps that involve a ledger allocation (explicit-only ones are cross-checked).

    A sweep over address intervals (n log n): the error goes to the tenant whose
    file asks for the conflicting network, never to the tenant that merely holds
    its recorded allocation.
    """
    items: list[tuple[int, int, str, str]] = []  # start, end, owner ("" = site), cidr
    for owner, cidr in [*((n, c) for n, c in segments.items()), *(("", c) for c, _ in fixed)]:
        net = ipaddress.IPv4Network(cidr)
        items.append((int(net.network_address), int(net.broadcast_address), owner, cidr))
    what = {c: w for c, w in fixed}
    items.sort(key=lambda x: (x[0], -x[1], x[2]))
    errors: list[SpecError] = []
    cover: tuple[int, int, str, str] | None = None
    for item in items:
        if cover is not None and item[0] <= cover[1]:
            a, b = item, cover
            if a[2] == "" and b[2] == "":
                pass  # site ranges may overlap each other
            elif a[2] == "" or b[2] == "":
                tenant, site_range = (b, a) if a[2] == "" else (a, b)
                if tenant[2] not in explicit:  # explicit ones: crosscheck.check_cidrs
                    errors.append(
                        SpecError(
                            tenants[tenant[2]].locate("spec", "network", "cidr"),
                            "spec.network.cidr",
                            f"recorded segment {tenant[3]} ({ledger_file}) overlaps the "
                            f"{what[site_range[3]]} {site_range[3]}",
                            "a ledger entry free of reserved ranges; set spec.network.cidr",
                            tenant[3],
                        )
                    )
            elif not (a[2] in explicit and b[2] in explicit):
                # the culprit asks for the network explicitly; the other holds it in the ledger
                if a[2] in explicit:
                    culprit, holder = a, b
                elif b[2] in explicit:
                    culprit, holder = b, a
                else:  # two ledger entries overlap: a hand-edited ledger
                    culprit, holder = (a, b) if a[2] > b[2] else (b, a)
                errors.append(
                    SpecError(
                        tenants[culprit[2]].locate("spec", "network", "cidr"),
                        "spec.network.cidr",
                        f"overlaps tenant {holder[2]}'s segment {holder[3]} "
                        f"(allocated in {ledger_file})",
                        "a network no other tenant uses",
                        culprit[3],
                        related=(tenants[holder[2]].locate("metadata", "name"),),
                    )
                )
        if cover is None or item[1] > cover[1]:
            cover = item
    return errors


def _ip_key(cidr: str) -> int:
    return int(ipaddress.IPv4Network(cidr).network_address)


def _loc(e: SpecError) -> Location:
    return e.location


def plan_paths(
    root: Path,
    tenant_paths: list[Path] | None = None,
    sites: list[str] | None = None,
    *,
    context: bool = True,
) -> PlanResult:
    """Load and check every tenant under ``tenant_paths`` and plan every site involved.

    ``sites`` limits planning to those sites (their stack files must exist). Nothing is
    planned when any input is invalid. With ``context`` (the default) the other tenant
    files of ``root/tenants`` are loaded too, so a single file's references to other
    tenants resolve; a named file replaces the project's file of the same name.
    """
    with cyclic_gc_paused():
        return _plan_paths(root, tenant_paths, sites, context)


def _plan_paths(
    root: Path, tenant_paths: list[Path] | None, sites: list[str] | None, context: bool
) -> PlanResult:
    result = PlanResult()
    paths = tenant_paths or [root / "tenants"]
    files, errors = tenant_files(paths)
    context_dir = root / "tenants"
    if context and context_dir.is_dir() and context_dir not in paths:
        named = {f.resolve() for f in files}
        stems = {_stem(f) for f in files}
        extra, _ = tenant_files([context_dir])
        files += [f for f in extra if f.resolve() not in named and _stem(f) not in stems]
    result.problems.extend(errors)
    result.file_count = len(files)
    loaded, errors = load_tenants(files, root)
    result.problems.extend(errors)
    result.tenant_count = len(loaded)
    by_name: dict[str, LoadedTenant] = {}
    for t in loaded:
        if t.model.name in by_name:
            first = by_name[t.model.name]
            result.problems.add(
                SpecError(
                    t.locate("metadata", "name"),
                    "metadata.name",
                    "duplicate tenant name",
                    "unique tenant names",
                    repr(t.model.name),
                    related=(first.locate("metadata", "name"),),
                )
            )
            continue
        by_name[t.model.name] = t
    stacks = root / "stacks"
    wanted = set(sites) if sites else {t.model.spec.site for t in by_name.values()}
    loaded_sites: dict[str, LoadedSite] = {}
    ledgers: dict[str, tuple[Ledger, str]] = {}
    for site_name in sorted(wanted | {t.model.spec.site for t in by_name.values()}):
        path = site_file(stacks, site_name)
        if not path.is_file():
            for t in by_name.values():
                if t.model.spec.site == site_name:
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
                result.problems.add(
                    SpecError(
                        Location(display_path(path, root)),
                        "",
                        f"no such stack file for site {site_name!r}",
                        f"one of: {', '.join(known_sites(stacks)) or '(no stacks)'}",
                    )
                )
            continue
        site, errs = load_site(path, site_name, root)
        result.problems.extend(errs)
        if site is None:
            continue
        loaded_sites[site_name] = site
        lpath = ledger_path(stacks, site_name)
        ledger, errs = load_ledger(lpath, site_name, display_path(lpath, root))
        result.problems.extend(errs)
        if ledger is not None:
            ledgers[site_name] = (ledger, display_path(lpath, root))
    for t in by_name.values():
        site = loaded_sites.get(t.model.spec.site)
        if site is not None:
            result.problems.extend(crosscheck.check_against_site(t, site))
    result.problems.extend(crosscheck.check_references(by_name))
    for site_name, site in sorted(loaded_sites.items()):
        on_site = {n: t for n, t in by_name.items() if t.model.spec.site == site_name}
        result.problems.extend(crosscheck.check_cidrs(on_site, site))
    if result.problems.errors:
        return result
    for site_name in sorted(wanted):
        site = loaded_sites[site_name]
        on_site = {n: t for n, t in by_name.items() if t.model.spec.site == site_name}
        ledger, ledger_file = ledgers[site_name]
        plan, new_ledger, problems = plan_site(site, on_site, ledger, ledger_file)
        result.problems.extend(problems)
        if plan is not None and new_ledger is not None:
            result.plans[site_name] = plan
            result.ledgers[site_name] = new_ledger
            result.sites[site_name] = site
    if result.problems.errors:
        result.plans.clear()
        result.ledgers.clear()
        result.sites.clear()
    return result


def known_sites(stacks: Path) -> list[str]:
    """Site names with a stack file under ``stacks``."""
    if not stacks.is_dir():
        return []
    return sorted(
        p.name[len("Pulumi.") : -len(".yaml")] for p in stacks.glob("Pulumi.*.yaml") if p.is_file()
    )


def _stem(path: Path) -> str:
    return path.name.rsplit(".", 1)[0]
