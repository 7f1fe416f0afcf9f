"""A ceiling on the firewall rules a tenant's declarations expand into.

A declared rule becomes, in the nwfilter of every machine group it applies to, one
rule per port and per peer address block: 256 rules of 64 ports towards a group of
thousands of machines is hundreds of thousands of rules and many megabytes of XML
on every hypervisor. The count is estimated from the declarations alone, before
addresses are allocated or anything is built, so a hostile file costs nothing to
refuse. It is an upper bound: a peer group counts one block per machine (rendering
may merge consecutive addresses), a two-sided flow counts this side's ports.

Every distinct port of a rule counts at least once (a rule without a local group
counts once per group, and once for a tenant without machines), so the reader
refuses, while composing, a file whose rules list more distinct ports than the
budget (``tenancy.contract.yamlguard``): that file could only pass here with another
error (an unknown peer tenant or group counts nothing).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from tenancy.contract.errors import SpecError
from tenancy.contract.loader import LoadedSite, LoadedTenant
from tenancy.contract.models import KEYWORD_ENDPOINTS
from tenancy.contract.yamlguard import TENANT_RULE_BUDGET
from tenancy.plan.flows import declared_rules, is_cidr, split_ref
from tenancy.plan.site_ranges import effective_external

TENANT_BUDGET = TENANT_RULE_BUDGET
"""Rules one tenant's nwfilters may hold: a hundred times what a real tenant declares
(2,000; defined beside the reader, which refuses the files over it that it can tell)."""
SITE_BUDGET = 50_000
"""Rules of all tenants of one site together."""
_RELATED = 5  # other large tenants named beside a site budget error


@dataclass(frozen=True)
class RuleCount:
    """A tenant's estimated rule count and the declaration that contributes most."""

    total: int
    largest: int
    largest_field: str


def group_sizes(tenant: LoadedTenant) -> dict[str, int]:
    """Machines per group (the /32 blocks a peer ``tenant/group`` stands for)."""
    sizes: dict[str, int] = {}
    for m in tenant.model.spec.machines:
        sizes[m.group] = sizes.get(m.group, 0) + m.count
    return sizes


def keyword_blocks(site: LoadedSite) -> dict[str, int]:
    """Address blocks of each keyword endpoint as flows use them (``internet`` without the
    site's own ranges: ``0.0.0.0/0`` minus a few pools is dozens of blocks)."""
    external = effective_external(site.model)
    return {k: len(getattr(external, k)) for k in KEYWORD_ENDPOINTS}


def peer_blocks(
    peer: str,
    tenants: Mapping[str, LoadedTenant],
    site: LoadedSite,
    keywords: Mapping[str, int] | None = None,
) -> int:
    """Address blocks a rule's peer endpoint expands into."""
    if peer in KEYWORD_ENDPOINTS:
        return (keywords or keyword_blocks(site))[peer]
    if is_cidr(peer):
        return 1
    name, group = split_ref(peer)
    other = tenants.get(name)
    if other is None:
        return 0  # an unknown tenant is reported by the reference checks
    if group is None:
        return 1  # the peer's whole segment
    return group_sizes(other).get(group, 0)


def count_rules(
    tenant: LoadedTenant,
    tenants: Mapping[str, LoadedTenant],
    site: LoadedSite,
    keywords: Mapping[str, int] | None = None,
) -> RuleCount:
    """Sum over the tenant's rules of ports x peer blocks x local groups it applies to.

    A rule without a local group applies to every group, and counts once without any
    machines: its ports are declared all the same (the reader's bound relies on it).
    """
    groups = max(1, len(group_sizes(tenant)))
    keywords = keywords or keyword_blocks(site)
    total, largest, largest_field = 0, 0, "spec.firewall"
    for rule in declared_rules(tenant):
        field, peer, local, ports = rule.field, rule.peer, rule.local_group, rule.ports
        count = (
            len(set(ports)) * peer_blocks(peer, tenants, site, keywords) * (1 if local else groups)
        )
        total += count
        if count > largest:
            largest, largest_field = count, field
    return RuleCount(total, largest, largest_field)


def check_rule_budget(
    tenants: Mapping[str, LoadedTenant],
    site: LoadedSite,
    *,
    tenant_budget: int = TENANT_BUDGET,
    site_budget: int = SITE_BUDGET,
) -> list[SpecError]:
    """Errors for the tenants of ``site`` over their budget, and for the site over its own.

    ``tenants`` are all tenants (peers on other sites still count); only those of
    ``site`` are checked. Errors point at each tenant's ``spec.firewall``.
    """
    name = site.model.name
    keywords = keyword_blocks(site)
    counts = {
        n: count_rules(t, tenants, site, keywords)
        for n, t in sorted(tenants.items())
        if t.model.spec.site == name
    }
    errors = [
        SpecError(
            tenants[n].locate("spec", "firewall"),
            "spec.firewall",
            f"firewall expands into {c.total} rules",
            f"at most {tenant_budget} rules per tenant (ports x peer addresses x groups)",
            f"{c.total} rules, {c.largest} of them from {c.largest_field}",
        )
        for n, c in counts.items()
        if c.total > tenant_budget
    ]
    site_total = sum(c.total for c in counts.values())
    if site_total > site_budget:
        errors.append(_site_error(name, site_total, site_budget, tenants, counts.items()))
    return errors


def _site_error(
    site: str,
    total: int,
    budget: int,
    tenants: Mapping[str, LoadedTenant],
    counts: Iterable[tuple[str, RuleCount]],
) -> SpecError:
    """One error at the largest contributor, the next largest ones named beside it."""
    ranked = sorted(counts, key=lambda item: (-item[1].total, item[0]))
    (top, top_count), rest = ranked[0], ranked[1 : 1 + _RELATED]
    return SpecError(
        tenants[top].locate("spec", "firewall"),
        "spec.firewall",
        f"the tenants of site {site} expand into {total} firewall rules",
        f"at most {budget} rules per site",
        f"{top_count.total} rules from this tenant, the largest",
        related=tuple(tenants[n].locate("spec", "firewall") for n, _ in rest),
    )
