"""Each tenant's network segment (CIDR) and VLAN ID, stable across plans.

Explicit CIDRs and ledger entries are placed first, so a new allocation never
moves an existing one; only tenants without either get a fresh block from
their zone's address pool, and only new tenants get a fresh VLAN ID.
"""

from __future__ import annotations

import ipaddress

from tenancy.contract.errors import SpecError
from tenancy.contract.loader import LoadedTenant
from tenancy.contract.models import Site
from tenancy.plan import ipam
from tenancy.plan.ledger import Ledger
from tenancy.plan.site_ranges import segment_exclusions

#: An address interval of the conflict sweep: start, end, owner ("" = site), cidr.
_Span = tuple[int, int, str, str]


def site_ranges(site: Site) -> list[tuple[str, str]]:
    """Ranges no segment may take, with what each one is (for the error message)."""
    return [(str(o.net), o.what) for o in segment_exclusions(site)]


def check_recorded_zone(
    tenant: LoadedTenant, ledger: Ledger, site: Site, ledger_file: str
) -> list[SpecError]:
    """A tenant whose zone changed keeps no segment of its old zone's pool.

    The recorded segment stays put unless the operator releases it explicitly: the
    tenant's addresses all change, so every machine of it is rebuilt.
    """
    spec = tenant.model.spec
    entry = ledger.tenants.get(tenant.model.name)
    if entry is None or spec.network.cidr is not None:
        return []  # new, or explicit (check_segment_cidr confines explicit ones)
    pool = ipaddress.IPv4Network(getattr(site.address_pools, spec.zone))
    if ipaddress.IPv4Network(entry.cidr).subnet_of(pool):
        return []
    name = tenant.model.name
    return [
        SpecError(
            tenant.locate("spec", "zone"),
            "spec.zone",
            f"zone {spec.zone} does not hold the recorded segment {entry.cidr} ({ledger_file})",
            f"a release of the old segment: `tenancy plan --site {site.name} --write-ledger "
            f"--release {name}` allocates one in {pool} (every machine of {name} is rebuilt "
            "with new addresses)",
            spec.zone,
        )
    ]


def allocate_segments(
    site: Site, tenants: dict[str, LoadedTenant], ledger: Ledger, ledger_file: str
) -> tuple[dict[str, str], list[SpecError]]:
    """The segment of every tenant, and why some could not get one.

    A tenant whose recorded or explicit network overlaps a site range or another
    tenant's gets an error, and so does one whose zone's pool is full.
    """
    fixed = site_ranges(site)
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
    problems = segment_conflicts(tenants, segments, explicit, fixed, ledger_file)
    allocator = ipam.SegmentAllocator([c for c, _ in fixed])
    for cidr in segments.values():
        allocator.take(cidr)
    pools = site.address_pools
    for name, t in sorted(tenants.items()):
        if name in segments:
            continue
        pool = getattr(pools, t.model.spec.zone)
        new_cidr = allocator.allocate(pool, pools.segment_prefix)
        if new_cidr is None:
            problems.append(
                SpecError(
                    t.locate("spec", "zone"),
                    "spec.network.cidr",
                    f"address pool {pool} of zone {t.model.spec.zone} is full",
                    f"a free /{pools.segment_prefix}",
                )
            )
            continue
        segments[name] = new_cidr
    return segments, problems


def allocate_vlans(
    site: Site, tenants: dict[str, LoadedTenant], ledger: Ledger
) -> tuple[dict[str, int], list[SpecError]]:
    """The VLAN ID of every tenant: the recorded one, else the lowest free one of the range."""
    vlans: dict[str, int] = {n: ledger.tenants[n].vlan for n in tenants if n in ledger.tenants}
    used_vlans = set(vlans.values())
    problems: list[SpecError] = []
    lowest_free = site.vlan_range[0]  # only grows: IDs below it are all taken
    for name in sorted(tenants):
        if name in vlans:
            continue
        vid = ipam.allocate_vlan(lowest_free, site.vlan_range[1], used_vlans)
        if vid is None:
            problems.append(
                SpecError(
                    tenants[name].locate("spec"), "spec", "no VLAN ID left in the site's vlanRange"
                )
            )
            continue
        vlans[name] = vid
        used_vlans.add(vid)
        lowest_free = vid + 1
    return vlans, problems


def segment_conflicts(
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
    items: list[_Span] = []
    for owner, cidr in [*segments.items(), *(("", c) for c, _ in fixed)]:
        net = ipaddress.IPv4Network(cidr)
        items.append((int(net.network_address), int(net.broadcast_address), owner, cidr))
    what = dict(fixed)
    items.sort(key=lambda x: (x[0], -x[1], x[2]))
    errors: list[SpecError] = []
    cover: _Span | None = None
    for item in items:
        if cover is not None and item[0] <= cover[1]:
            if item[2] == "" or cover[2] == "":
                errors += _site_overlap(tenants, item, cover, explicit, what, ledger_file)
            else:
                errors += _tenant_overlap(tenants, item, cover, explicit, ledger_file)
        if cover is None or item[1] > cover[1]:
            cover = item
    return errors


def _site_overlap(
    tenants: dict[str, LoadedTenant],
    a: _Span,
    b: _Span,
    explicit: set[str],
    what: dict[str, str],
    ledger_file: str,
) -> list[SpecError]:
    """A recorded segment inside a site range (explicit ones: ``crosscheck.check_cidrs``)."""
    if a[2] == "" and b[2] == "":
        return []  # site ranges may overlap each other
    tenant, site_range = (b, a) if a[2] == "" else (a, b)
    if tenant[2] in explicit:
        return []
    return [
        SpecError(
            tenants[tenant[2]].locate("spec", "network", "cidr"),
            "spec.network.cidr",
            f"recorded segment {tenant[3]} ({ledger_file}) overlaps the "
            f"{what[site_range[3]]} {site_range[3]}",
            "a ledger entry free of reserved ranges; set spec.network.cidr",
            tenant[3],
        )
    ]


def _tenant_overlap(
    tenants: dict[str, LoadedTenant], a: _Span, b: _Span, explicit: set[str], ledger_file: str
) -> list[SpecError]:
    """Two tenants' segments overlap and at least one of them comes from the ledger."""
    if a[2] in explicit and b[2] in explicit:
        return []  # both explicit: crosscheck.check_cidrs reports it
    # the culprit asks for the network explicitly; the other holds it in the ledger
    if a[2] in explicit:
        culprit, holder = a, b
    elif b[2] in explicit:
        culprit, holder = b, a
    else:  # two ledger entries overlap: a hand-edited ledger
        culprit, holder = (a, b) if a[2] > b[2] else (b, a)
    return [
        SpecError(
            tenants[culprit[2]].locate("spec", "network", "cidr"),
            "spec.network.cidr",
            f"overlaps tenant {holder[2]}'s segment {holder[3]} (allocated in {ledger_file})",
            "a network no other tenant uses",
            culprit[3],
            related=(tenants[holder[2]].locate("metadata", "name"),),
        )
    ]
