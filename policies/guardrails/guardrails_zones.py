"""The site's address plan, checked on what would be deployed: zone rules and range ownership.

Both rules read the site's side from their policy config, which ``tenancy preview`` and
``tenancy up`` write from the plan on every run (``tenancy.cli.guardrails``): each
tenant's zone and segment, the zone rules, the client ranges and the ranges the site
owns. Without that config they cannot tell one tenant from another, so they fail closed.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from guardrails_hostfw import HostFlow, host_flows
from guardrails_props import (
    HOST_FIREWALL,
    NETWORK,
    Net,
    ReportViolation,
    StackArgs,
    StackResource,
    config_net,
    get,
    network_cidr,
    tenant_of,
)

_PORT = re.compile(r"^(?P<lo>\d{1,5})(-(?P<hi>\d{1,5}))?/(?P<proto>tcp|udp)$")
SITE_CLASS = "site"
"""The class of the site's own addresses that no tenant holds: no zone rule opens them."""


@dataclass(frozen=True)
class Tenant:
    """A tenant as the plan placed it: its zone and its segment."""

    name: str
    zone: str
    cidr: Net


def config_tenants(config: Mapping[str, Any]) -> dict[str, Tenant] | None:
    """``tenants`` of a rule's config; None when the config holds none (not written by tenancy).

    An entry without a zone or a valid CIDR is left out: its networks then count as
    unassigned, which the rules report.
    """
    raw = config.get("tenants")
    if not isinstance(raw, Mapping):
        return None
    out: dict[str, Tenant] = {}
    for name, entry in raw.items():
        if not isinstance(entry, Mapping):
            continue
        zone, cidr = entry.get("zone"), config_net(entry.get("cidr"))
        if isinstance(zone, str) and cidr is not None:
            out[str(name)] = Tenant(str(name), zone, cidr)
    return out


def _ranges(raw: Any) -> list[tuple[Net, str]]:
    """``[{cidr, what}]`` of a rule's config as (network, what it is)."""
    out = []
    for entry in raw if isinstance(raw, list) else []:
        net = config_net(entry.get("cidr")) if isinstance(entry, Mapping) else None
        if net is not None:
            out.append((net, str(entry.get("what") or "site range")))
    return out


def _exclude(pieces: list[Net], hole: Net) -> list[Net]:
    out: list[Net] = []
    for piece in pieces:
        if not piece.overlaps(hole):
            out.append(piece)
        elif not piece.subnet_of(hole):
            out.extend(piece.address_exclude(hole))
    return out


def _no_config(rule: str, report_violation: ReportViolation) -> None:
    report_violation(
        f"no tenant zones and ranges in the {rule} policy config, so nothing can be "
        "checked: run the pack through `tenancy preview` or `tenancy up`, which write it"
    )


# --- zone-rules-respected -------------------------------------------------------------


def peer_classes(
    peer: Net,
    tenants: Mapping[str, Tenant],
    clients: Mapping[str, list[Net]],
    owned: list[tuple[Net, str]],
) -> set[tuple[str, str]]:
    """(zone-rule class, what) of every part of a flow's peer, as the planner classes them.

    A tenant segment is its tenant's zone; an intranet or extranet client range is that
    keyword; the site's own addresses outside every segment are :data:`SITE_CLASS`;
    everything else is internet.
    """
    found: set[tuple[str, str]] = set()
    rest = [peer]
    for t in tenants.values():
        if peer.overlaps(t.cidr):
            found.add((t.zone, f"tenant {t.name}"))
        rest = _exclude(rest, t.cidr)
    for zone, nets in sorted(clients.items()):
        for net in nets:
            if any(piece.overlaps(net) for piece in rest):
                found.add((zone, f"{zone} clients {net}"))
            rest = _exclude(rest, net)
    for net, what in owned:
        if any(piece.overlaps(net) for piece in rest):
            found.add((SITE_CLASS, f"{what} {net}"))
        rest = _exclude(rest, net)
    if rest:
        found.add(("internet", "internet"))
    return found


def parse_ports(specs: Iterable[Any]) -> list[tuple[str, int, int]]:
    """``443/tcp`` and ``8000-8080/tcp`` as (proto, low, high); other entries open nothing."""
    out = []
    for spec in specs:
        match = _PORT.match(spec) if isinstance(spec, str) else None
        if match:
            low = int(match["lo"])
            out.append((match["proto"], low, int(match["hi"] or low)))
    return out


def covered(proto: str, low: int, high: int, allowed: list[tuple[str, int, int]]) -> bool:
    """Whether the allowed ranges of ``proto`` cover every port of ``low``-``high``."""
    need = low
    for _, a_low, a_high in sorted(a for a in allowed if a[0] == proto):
        if a_low <= need <= a_high:
            need = a_high + 1
        if need > high:
            return True
    return need > high


@dataclass(frozen=True)
class ZoneView:
    """The zone-rules-respected config, read once: who is where and what each zone may do."""

    tenants: dict[str, Tenant]
    clients: dict[str, list[Net]]
    owned: list[tuple[Net, str]]
    rules: Mapping[str, Any]

    @classmethod
    def of(cls, config: Mapping[str, Any], tenants: dict[str, Tenant]) -> ZoneView:
        raw = config.get("clients")
        clients = {
            str(zone): [n for n in map(config_net, nets) if n is not None]
            for zone, nets in (raw.items() if isinstance(raw, Mapping) else [])
            if isinstance(nets, list)
        }
        rules = config.get("zoneRules")
        return cls(
            tenants,
            clients,
            _ranges(config.get("owned")),
            rules if isinstance(rules, Mapping) else {},
        )

    def allowed(self, zone: str, cls: str) -> Any:
        """``zoneRules[zone][cls]``: ``"any"``, a list of ports, or None (no traffic at all)."""
        per_zone = self.rules.get(zone)
        return per_zone.get(cls) if isinstance(per_zone, Mapping) else None

    def problems(
        self, flow: HostFlow, tenant: Tenant, peers: tuple[Net, ...], verb: str
    ) -> Iterable[str]:
        """What the zone rules of ``tenant`` refuse of ``flow`` towards ``peers``."""
        zone = tenant.zone
        for peer in peers:
            for cls, what in sorted(peer_classes(peer, self.tenants, self.clients, self.owned)):
                where = f"tenant {tenant.name} ({zone}) {verb} {peer} ({what})"
                if cls == SITE_CLASS:
                    yield f"{where}: site addresses outside every segment, opened by no zone rule"
                    continue
                allowed = self.allowed(zone, cls)
                if allowed == "any":
                    continue
                if not isinstance(allowed, list) or not allowed:
                    yield f"{where}: zoneRules.{zone} allows {zone} tenants no traffic with {cls}"
                    continue
                permitted = parse_ports(allowed)
                refused = [
                    f"{low}/{flow.proto}" if low == high else f"{low}-{high}/{flow.proto}"
                    for low, high in flow.ports
                    if not covered(flow.proto, low, high, permitted)
                ]
                if refused:
                    yield (
                        f"{where} on {', '.join(refused)}: zoneRules.{zone}.{cls} allows only "
                        + ", ".join(str(a) for a in allowed)
                    )


def zone_rules_respected(args: StackArgs, report_violation: ReportViolation) -> None:
    """Every accept of every host table, from or to a tenant segment, against zoneRules.

    For each tenant the flow's other side is classed like the planner does
    (``tenancy.plan.zone_rules``): another (or the same) tenant's segment is that
    tenant's zone, a client range its keyword, the rest internet, and an address the
    site owns outside every segment is refused outright. The ports must lie within
    ``zoneRules[<tenant zone>][<class>]``. A ruleset unknown during preview cannot be
    checked and is a violation: the rule fails closed.
    """
    config = args.get_config()
    tenants = config_tenants(config)
    if tenants is None:
        _no_config("zone-rules-respected", report_violation)
        return
    view = ZoneView.of(config, tenants)
    for fw in args.resources:
        if fw.resource_type != HOST_FIREWALL:
            continue
        ruleset = get(fw.props, "ruleset")
        if not isinstance(ruleset, str):
            report_violation(
                f"host firewall {fw.name}: its ruleset is not known yet, so its flows cannot "
                "be checked against the site's zone rules",
                fw.urn,
            )
            continue
        seen: set[str] = set()
        for flow in host_flows(ruleset):
            for tenant in tenants.values():
                sides = []
                if any(src.overlaps(tenant.cidr) for src in flow.src):
                    sides.append((flow.dst, "sends to"))
                if any(dst.overlaps(tenant.cidr) for dst in flow.dst):
                    sides.append((flow.src, "receives from"))
                for peers, verb in sides:
                    for problem in view.problems(flow, tenant, peers, verb):
                        if problem not in seen:
                            seen.add(problem)
                            report_violation(f"{fw.name}: {problem}", fw.urn)


# --- cidr-ownership -------------------------------------------------------------------


def _tenant_networks(
    resources: Iterable[StackResource], report_violation: ReportViolation
) -> list[tuple[StackResource, str, Net]]:
    """(network, tenant, range) of every tenancy Network; the rest is reported here."""
    out = []
    for res in resources:
        if res.resource_type != NETWORK:
            continue
        name = get(res.props, "name") or res.name
        tenant, cidr = tenant_of(res), network_cidr(res.props)
        if tenant is None:
            report_violation(
                f"network {name} belongs to no tenant (no TenantHosting parent), so the plan "
                "assigned it no address range",
                res.urn,
            )
        elif cidr is None:
            report_violation(
                f"network {name} of tenant {tenant}: its address and prefix are not known "
                "yet, so its range cannot be checked",
                res.urn,
            )
        else:
            out.append((res, tenant, cidr))
    return out


def cidr_ownership(args: StackArgs, report_violation: ReportViolation) -> None:
    """Each tenant Network's range (gateway ``address``/``prefix``) against the plan's.

    It must equal the CIDR the plan assigned the tenant (config ``tenants``), lie inside
    the address pool of the tenant's zone (``pools``), overlap no other tenant's range
    (assigned or deployed) and none of the site's reserved, ops and infrastructure
    ranges (``forbidden``). A range not known during preview is a violation.
    """
    config = args.get_config()
    tenants = config_tenants(config)
    raw_pools = config.get("pools")
    pools = {
        str(zone): config_net(cidr)
        for zone, cidr in (raw_pools.items() if isinstance(raw_pools, Mapping) else [])
    }
    if tenants is None or not pools:
        _no_config("cidr-ownership", report_violation)
        return
    forbidden = _ranges(config.get("forbidden"))
    networks = _tenant_networks(args.resources, report_violation)
    held = {(t.name, t.cidr) for t in tenants.values()}
    held |= {(tenant, cidr) for _, tenant, cidr in networks}
    for res, tenant, cidr in networks:
        where = f"network {get(res.props, 'name') or res.name} of tenant {tenant}"
        assigned = tenants.get(tenant)
        if assigned is None:
            report_violation(f"{where}: the plan assigned tenant {tenant} no range", res.urn)
            continue
        if cidr != assigned.cidr:
            report_violation(
                f"{where} uses {cidr}, not the {assigned.cidr} the plan assigned", res.urn
            )
        pool = pools.get(assigned.zone)
        if pool is None:
            report_violation(f"{where}: no {assigned.zone} address pool in the config", res.urn)
        elif not cidr.subnet_of(pool):
            report_violation(
                f"{where}: {cidr} lies outside the {assigned.zone} address pool {pool}", res.urn
            )
        for net, what in forbidden:
            if cidr.overlaps(net):
                report_violation(f"{where}: {cidr} overlaps the {what} {net}", res.urn)
        for other, net in sorted(held, key=lambda h: (h[0], int(h[1].network_address))):
            if other != tenant and cidr.overlaps(net):
                report_violation(f"{where}: {cidr} overlaps tenant {other}'s range {net}", res.urn)
