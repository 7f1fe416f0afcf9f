"""The site's zone rules: which peers a tenant of each zone may exchange traffic with.

The government intranet is kept apart from the internet by policy, and the
extranet may reach into the intranet only where ops say so. Every flow a
tenant declares (ingress or egress) is checked against ``zoneRules`` of its
site for its own zone and the peer's class: a keyword endpoint, the zone of a
peer tenant, or the classes a CIDR endpoint falls into (an intranet or extranet
client range, else internet). A tenant-to-tenant flow is declared on both sides,
so both tenants' zone rules apply to it.
"""

from __future__ import annotations

from tenancy.contract.errors import SpecError
from tenancy.contract.loader import LoadedTenant
from tenancy.contract.models import KEYWORD_ENDPOINTS, Site
from tenancy.contract.types import PortRange, parse_port
from tenancy.plan.flows import declared_rules, is_cidr, split_ref
from tenancy.plan.site_ranges import cidr_classes


def _covered(port: PortRange, allowed: list[PortRange]) -> bool:
    """Whether ``allowed`` covers every port of ``port`` (ranges may add up)."""
    need = port.low
    for a in sorted(p for p in allowed if p.proto == port.proto):
        if a.low <= need <= a.high:
            need = a.high + 1
        if need > port.high:
            return True
    return need > port.high


def peer_classes(peer: str, tenants: dict[str, LoadedTenant], site: Site) -> set[str]:
    """The zone-rule classes of a declared peer (empty for an unknown tenant)."""
    if peer in KEYWORD_ENDPOINTS:
        return {peer}
    if is_cidr(peer):
        return cidr_classes(peer, site)
    other = tenants.get(split_ref(peer)[0])
    return {other.model.spec.zone} if other is not None else set()


def check_zone_rules(
    t: LoadedTenant, tenants: dict[str, LoadedTenant], site: Site
) -> list[SpecError]:
    """Located errors for every declared flow the site's zone rules do not allow."""
    zone = t.model.spec.zone
    errors: list[SpecError] = []
    for rule in declared_rules(t):
        direction, index, key, peer, ports = (
            rule.direction,
            rule.index,
            rule.peer_key,
            rule.peer,
            rule.ports,
        )
        for cls in sorted(peer_classes(peer, tenants, site)):
            allowed = site.zone_rules.allowed(zone, cls)
            if allowed == "any":
                continue
            field = f"spec.firewall.{direction}[{index}]"
            what = f"{cls} tenants" if cls != peer and not is_cidr(peer) else cls
            if allowed is None or not allowed:
                errors.append(
                    SpecError(
                        t.locate("spec", "firewall", direction, index, key),
                        f"{field}.{key}",
                        f"the site's zone rules allow {zone} tenants no traffic with {what}",
                        f"a peer that zoneRules.{zone} of site {site.name} allows",
                        peer,
                    )
                )
                continue
            permitted = [parse_port(p) for p in allowed]
            refused = [p for p in ports if not _covered(parse_port(p), permitted)]
            if refused:
                errors.append(
                    SpecError(
                        t.locate("spec", "firewall", direction, index, "ports"),
                        f"{field}.ports",
                        f"ports the site's zone rules do not allow between {zone} tenants "
                        f"and {what}",
                        f"ports within {', '.join(allowed)} (zoneRules.{zone}.{cls})",
                        ", ".join(refused),
                    )
                )
    return errors
