"""The address space a site owns, and what a tenant file may claim or name of it.

A segment becomes a connected route on the hypervisors, and a CIDR endpoint
opens the host firewall on one tenant's word. So an explicit ``network.cidr``
must lie in its zone's pool, at a size the site allows, clear of reserved,
ops and infrastructure ranges; a CIDR endpoint may only name addresses the site
does not own (another tenant is named by name, and must consent); and the
``internet`` keyword never covers the site's own ranges, whatever
``external.internet`` says. The site file's own ranges are checked the same way.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from ipaddress import IPv4Network

from tenancy.contract.errors import Location, SpecError
from tenancy.contract.loader import LoadedSite, LoadedTenant
from tenancy.contract.models import ZONES, ExternalNetworks, Site
from tenancy.contract.yamldoc import format_path
from tenancy.plan.flows import declared_rules, is_cidr


@dataclass(frozen=True)
class Owned:
    """A range the site owns: its network, what it is (for messages) and its site field."""

    net: IPv4Network
    what: str
    field: tuple[str | int, ...]


def _nets(cidrs: Iterable[str]) -> list[IPv4Network]:
    return [ipaddress.IPv4Network(c) for c in cidrs]


def _fixed(site: Site) -> list[Owned]:
    """The site's reserved, ops and infrastructure ranges: the one list of them."""
    owned = [
        Owned(n, "site reserved range", ("reserved", i)) for i, n in enumerate(_nets(site.reserved))
    ]
    owned += [
        Owned(n, "ops network", ("ops", "cidrs", i)) for i, n in enumerate(_nets(site.ops.cidrs))
    ]
    owned += [
        Owned(n, "infrastructure network", ("infrastructure", i))
        for i, n in enumerate(_nets(site.infrastructure))
    ]
    return owned


def owned_ranges(site: Site) -> list[Owned]:
    """Everything no tenant may name as a CIDR: pools, reserved, ops and infrastructure."""
    pools = [
        Owned(IPv4Network(getattr(site.address_pools, z)), f"{z} address pool", ("addressPools", z))
        for z in ZONES
    ]
    return pools + _fixed(site)


def segment_exclusions(site: Site) -> list[Owned]:
    """Everything no segment may take: reserved, ops, infrastructure and the client ranges."""
    clients = [
        Owned(n, f"site {z} client range", ("external", z, i))
        for z in ZONES
        for i, n in enumerate(_nets(getattr(site.external, z)))
    ]
    fixed = _fixed(site)
    reserved = [o for o in fixed if o.field[0] == "reserved"]
    return [*reserved, *clients, *(o for o in fixed if o.field[0] != "reserved")]


def client_ranges(site: Site) -> dict[str, list[IPv4Network]]:
    """Where the intranet's and extranet's clients are (outside the site, but not internet)."""
    return {z: _nets(getattr(site.external, z)) for z in ZONES}


def effective_internet(site: Site) -> list[str]:
    """``external.internet`` minus every range the site owns and every client range."""
    holes = [o.net for o in owned_ranges(site)]
    holes += [n for nets in client_ranges(site).values() for n in nets]
    holes = list(ipaddress.collapse_addresses(holes))
    out: list[IPv4Network] = []
    for net in _nets(site.external.internet):
        pieces = [net]
        for hole in holes:
            pieces = [q for p in pieces for q in _exclude(p, hole)]
        out += pieces
    return [str(n) for n in ipaddress.collapse_addresses(out)]


def _exclude(net: IPv4Network, hole: IPv4Network) -> list[IPv4Network]:
    if not net.overlaps(hole):
        return [net]
    if net.subnet_of(hole):
        return []
    return list(net.address_exclude(hole))


def effective_external(site: Site) -> ExternalNetworks:
    """The keyword endpoints' ranges as flows use them (``internet`` without the site)."""
    return site.external.model_copy(update={"internet": effective_internet(site)})


def cidr_classes(cidr: str, site: Site) -> set[str]:
    """Which keyword endpoints a CIDR endpoint outside the site stands for (zone rules)."""
    net = IPv4Network(cidr)
    classes: set[str] = set()
    covered: list[IPv4Network] = []
    for zone, nets in client_ranges(site).items():
        for client in nets:
            if net.overlaps(client):
                classes.add(zone)
                covered.append(client)
    rest = [net]
    for client in covered:
        rest = [q for p in rest for q in _exclude(p, client)]
    if rest:
        classes.add("internet")
    return classes


# --------------------------------------------------------------------------- tenant checks


def check_segment_cidr(t: LoadedTenant, site: Site) -> list[SpecError]:
    """An explicit segment lies in its zone's pool, at an allowed size, clear of owned ranges."""
    cidr = t.model.spec.network.cidr
    if cidr is None:
        return []
    net = IPv4Network(cidr)
    zone = t.model.spec.zone
    where = t.locate("spec", "network", "cidr")
    field = "spec.network.cidr"
    errors: list[SpecError] = []
    pool = IPv4Network(getattr(site.address_pools, zone))
    if not net.subnet_of(pool):
        errors.append(
            SpecError(where, field, f"outside the {zone} address pool", f"a subnet of {pool}", cidr)
        )
    lo, hi = site.address_pools.prefix_range
    if not lo <= net.prefixlen <= hi:
        errors.append(
            SpecError(
                where, field, "segment size not allowed by the site", f"a /{lo} to /{hi}", cidr
            )
        )
    for owned in segment_exclusions(site):
        if net.overlaps(owned.net):
            errors.append(
                SpecError(
                    where,
                    field,
                    f"overlaps the {owned.what} {owned.net}",
                    "a network free of the site's reserved, client, ops and infrastructure ranges",
                    cidr,
                )
            )
    return errors


def check_cidr_endpoints(
    t: LoadedTenant, site: Site, segments: dict[str, IPv4Network]
) -> list[SpecError]:
    """CIDR endpoints name only addresses outside the site; a tenant is named by name.

    ``segments``: the known segments of the site's tenants (explicit and recorded), so
    the error can say which tenant a CIDR covers.
    """
    errors: list[SpecError] = []
    owned = owned_ranges(site)
    for rule in declared_rules(t):
        direction, index, key, peer = rule.direction, rule.index, rule.peer_key, rule.peer
        if not is_cidr(peer):
            continue
        net = IPv4Network(peer)
        hits = [o for o in owned if net.overlaps(o.net)]
        if not hits:
            continue
        covered = sorted(n for n, seg in segments.items() if net.overlaps(seg))
        if covered:
            expected = f"the tenant by name ({', '.join(covered)}): its side must allow the flow"
        else:
            expected = "an address range outside the site (tenants by name, or a keyword)"
        shown = ", ".join(f"{o.what} {o.net}" for o in hits[:3])
        errors.append(
            SpecError(
                t.locate("spec", "firewall", direction, index, key),
                f"spec.firewall.{direction}[{index}].{key}",
                f"a CIDR endpoint inside the site's own addresses ({shown})",
                expected,
                peer,
            )
        )
    return errors


# --------------------------------------------------------------------------- site file


def check_site_ranges(site: LoadedSite) -> list[SpecError]:
    """Pools clear of each other and of client ranges; ops and infrastructure outside the
    pools unless a reserved range holds them (no tenant can then be given their addresses)."""
    s = site.model
    errors: list[SpecError] = []
    pools = [o for o in owned_ranges(s) if o.what.endswith("address pool")]
    reserved = _nets(s.reserved)
    a, b = pools
    if a.net.overlaps(b.net):
        errors.append(_site_error(site, b, f"overlaps the {a.what} {a.net}", "disjoint pools"))
    for pool in pools:
        for zone, nets in client_ranges(s).items():
            for i, client in enumerate(nets):
                if pool.net.overlaps(client):
                    clash = Owned(client, f"{zone} client range", ("external", zone, i))
                    errors.append(
                        _site_error(
                            site,
                            clash,
                            f"overlaps the {pool.what} {pool.net}",
                            "client ranges outside the address pools",
                        )
                    )
    for owned in owned_ranges(s):
        if owned.what not in ("ops network", "infrastructure network"):
            continue
        for pool in pools:
            inside_reserved = any(owned.net.subnet_of(r) for r in reserved)
            if owned.net.overlaps(pool.net) and not inside_reserved:
                errors.append(
                    _site_error(
                        site,
                        owned,
                        f"overlaps the {pool.what} {pool.net}",
                        "a range outside the pools, or inside a reserved range",
                    )
                )
    return errors


def _site_error(site: LoadedSite, owned: Owned, message: str, expected: str) -> SpecError:
    location: Location = site.locate(*owned.field)
    return SpecError(
        location, format_path((*site.prefix, *owned.field)), message, expected, str(owned.net)
    )
