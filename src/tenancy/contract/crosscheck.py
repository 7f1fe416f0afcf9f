"""Checks that need more than one document: site catalogues, references, overlaps, quotas."""

from __future__ import annotations

import ipaddress
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from pathlib import PurePosixPath

from tenancy.contract.errors import Location, SpecError
from tenancy.contract.loader import LoadedSite, LoadedTenant
from tenancy.contract.models import KEYWORD_ENDPOINTS, Quota

PortKey = tuple[str, ...]


@dataclass(frozen=True)
class Grant:
    """A tenant's quota and where ops wrote it (``None``: nobody granted one)."""

    quota: Quota | None
    source: str
    """``stacks/quotas.local.yaml`` or ``stacks/Pulumi.local.yaml defaultQuota``."""
    location: Location | None


def effective_grant(tenant: LoadedTenant, site: LoadedSite) -> Grant:
    """The grant of ``tenant``: its entry in the site's grants file, else the site default."""
    grants = site.grants
    name = tenant.model.name
    if grants is not None and name in grants.model.tenants:
        return Grant(grants.model.tenants[name], grants.file, grants.locate(name))
    default = site.model.default_quota
    where = site.locate("defaultQuota") if default is not None else None
    return Grant(default, f"{site.doc.file} defaultQuota", where)


def grants_file_for(site: LoadedSite) -> str:
    """The grants file of ``site`` as errors show it (next to its stack file)."""
    return str(PurePosixPath(site.doc.file).with_name(f"quotas.{site.model.name}.yaml"))


def segment_size(tenant: LoadedTenant, site: LoadedSite) -> int:
    """Addresses the tenant's segment takes from the pool: its own CIDR, else a site segment."""
    cidr = tenant.model.spec.network.cidr
    if cidr is not None:
        return ipaddress.IPv4Network(cidr).num_addresses
    return 1 << (32 - site.model.address_pools.segment_prefix)


def granted_limits(grant: Quota, site: LoadedSite) -> dict[str, int]:
    """The grant as the plan's numbers (an omitted address grant is one site segment)."""
    addresses = grant.addresses or 1 << (32 - site.model.address_pools.segment_prefix)
    return {
        "vcpus": grant.vcpus,
        "memoryGiB": grant.memory_gib,
        "storageGiB": grant.storage_gib,
        "machines": grant.machines,
        "addresses": addresses,
    }


def usage(tenant: LoadedTenant, site: LoadedSite) -> dict[str, int]:
    """vCPUs, memory (GiB, rounded up), storage (GiB), instances and segment addresses."""
    vcpus = memory_mib = storage = machines = 0
    for m in tenant.model.spec.machines:
        machines += m.count
        flavor = site.model.flavors.get(m.flavor)
        if flavor is None:
            continue
        vcpus += flavor.vcpus * m.count
        memory_mib += flavor.memory_mib * m.count
        storage += (m.disk_gib + sum(v.size_gib for v in m.volumes)) * m.count
    return {
        "vcpus": vcpus,
        "memoryGiB": -(-memory_mib // 1024),
        "storageGiB": storage,
        "machines": machines,
        "addresses": segment_size(tenant, site),
    }


def _catalogue_lookups(
    tenant: LoadedTenant, site: LoadedSite
) -> Iterator[tuple[tuple[str | int, ...], str, str, Collection[str], str]]:
    """(path, what, name, known names, expected) of every catalogue name a tenant uses."""
    s = site.model
    for i, m in enumerate(tenant.model.spec.machines):
        base = ("spec", "machines", i)
        yield (
            (*base, "flavor"),
            "flavor",
            m.flavor,
            s.flavors,
            (f"one of {', '.join(sorted(s.flavors))} (site {s.name})"),
        )
        yield (
            (*base, "image"),
            "image",
            m.image,
            s.images,
            (f"one of {', '.join(sorted(s.images))} (site {s.name})"),
        )
        for k, vol in enumerate(m.volumes):
            vpath = (*base, "volumes", k)
            yield (
                (*vpath, "pool"),
                "storage pool",
                vol.pool,
                s.pool_set,
                (f"one of {', '.join(sorted(s.pool_names()))}"),
            )
            yield (
                (*vpath, "backup"),
                "backup schedule",
                vol.backup,
                s.backup_schedules,
                (f"one of {', '.join(s.backup_schedules)}"),
            )


def _field(path: tuple[str | int, ...]) -> str:
    """``("spec", "machines", 0, "flavor")`` -> ``spec.machines[0].flavor``."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out


def check_against_site(tenant: LoadedTenant, site: LoadedSite) -> list[SpecError]:
    """Flavors, images, pools and backup schedules exist; quota holds."""
    errors = [
        SpecError(tenant.locate(*path), _field(path), f"unknown {what}", expected, repr(name))
        for path, what, name, known, expected in _catalogue_lookups(tenant, site)
        if name not in known
    ]
    return errors + check_grant(tenant, site)


def check_grant(tenant: LoadedTenant, site: LoadedSite) -> list[SpecError]:
    """The tenant's machines and segment fit the quota ops granted it (never its own request)."""
    grant = effective_grant(tenant, site)
    if grant.quota is None:
        return [
            SpecError(
                tenant.locate("metadata", "name"),
                "metadata.name",
                "no quota is granted to this tenant",
                f"an entry tenants.{tenant.model.name} in "
                f"{grants_file_for(site)} (ops grant it) or a defaultQuota in {site.doc.file}",
                repr(tenant.model.name),
            )
        ]
    used = usage(tenant, site)
    related = (grant.location,) if grant.location is not None else ()
    errors: list[SpecError] = []
    for key, limit in granted_limits(grant.quota, site).items():
        if used[key] <= limit:
            continue
        if key == "addresses":
            explicit = tenant.model.spec.network.cidr is not None
            where: tuple[str | int, ...] = ("spec", "network", "cidr") if explicit else ("spec",)
        else:
            where = ("spec", "machines")
        errors.append(
            SpecError(
                tenant.locate(*where),
                _field(where),
                f"{key} over the quota ops granted",
                f"at most {limit} {key} (granted in {grant.source})",
                f"{used[key]} requested",
                related=related,
            )
        )
    return errors


def check_references(tenants: dict[str, LoadedTenant]) -> list[SpecError]:
    """Flow endpoints name existing tenants and groups, on the same site."""
    errors: list[SpecError] = []
    for name, t in sorted(tenants.items()):
        fw = t.model.spec.firewall
        own_groups = t.model.groups()
        rules = [("ingress", i, r.source, r.to) for i, r in enumerate(fw.ingress)]
        rules += [("egress", i, r.to, r.source) for i, r in enumerate(fw.egress)]
        for direction, i, peer, local_group in rules:
            peer_key = "from" if direction == "ingress" else "to"
            local_key = "to" if direction == "ingress" else "from"
            field = f"spec.firewall.{direction}[{i}]"
            path = ("spec", "firewall", direction, i)
            if local_group is not None and local_group not in own_groups:
                errors.append(
                    SpecError(
                        t.locate(*path, local_key),
                        f"{field}.{local_key}",
                        "unknown machine group of this tenant",
                        f"one of {', '.join(sorted(own_groups)) or '(no machines)'}",
                        repr(local_group),
                    )
                )
            if peer in KEYWORD_ENDPOINTS or (peer[0].isdigit() and "/" in peer):
                continue
            other_name, _, group = peer.partition("/")
            other = tenants.get(other_name)
            if other_name == name:
                errors.append(
                    SpecError(
                        t.locate(*path, peer_key),
                        f"{field}.{peer_key}",
                        "a tenant's own machines share a segment; no rule needed",
                        "another tenant, a keyword or a CIDR",
                        repr(peer),
                    )
                )
            elif other is None:
                errors.append(
                    SpecError(
                        t.locate(*path, peer_key),
                        f"{field}.{peer_key}",
                        "unknown tenant",
                        f"a tenant file in tenants/, or {', '.join(KEYWORD_ENDPOINTS)} or a CIDR",
                        repr(other_name),
                    )
                )
            elif other.model.spec.site != t.model.spec.site:
                errors.append(
                    SpecError(
                        t.locate(*path, peer_key),
                        f"{field}.{peer_key}",
                        "flows across sites are not supported",
                        f"a tenant on site {t.model.spec.site}",
                        f"{other_name} on site {other.model.spec.site}",
                        related=(other.locate("spec", "site"),),
                    )
                )
            elif group and group not in other.model.groups():
                errors.append(
                    SpecError(
                        t.locate(*path, peer_key),
                        f"{field}.{peer_key}",
                        f"unknown machine group of tenant {other_name}",
                        f"one of {', '.join(sorted(other.model.groups()))}",
                        repr(group),
                        related=(other.locate("spec", "machines"),),
                    )
                )
    return errors


def check_cidrs(tenants: dict[str, LoadedTenant], site: LoadedSite) -> list[SpecError]:
    """Explicit tenant CIDRs do not overlap each other.

    (Their place in the site's address space, their size and the site's own ranges are
    checked per tenant by ``tenancy.plan.site_ranges.check_segment_cidr``.) Overlaps are
    found by one sweep over address intervals sorted by start (n log n, not every pair);
    the tenant whose name sorts later gets the error.
    """
    errors: list[SpecError] = []
    spans: list[tuple[int, int, str, str]] = []  # start, end, tenant, cidr
    for name, t in sorted(tenants.items()):
        cidr = t.model.spec.network.cidr
        if cidr is None:
            continue
        net = ipaddress.IPv4Network(cidr)
        spans.append((int(net.network_address), int(net.broadcast_address), name, cidr))
    spans.sort(key=lambda x: (x[0], -x[1], x[2]))
    cover: tuple[int, int, str, str] | None = None
    for span in spans:
        if cover is not None and span[0] <= cover[1]:
            culprit, holder = (span, cover) if span[2] > cover[2] else (cover, span)
            errors.append(
                SpecError(
                    tenants[culprit[2]].locate("spec", "network", "cidr"),
                    "spec.network.cidr",
                    f"overlaps tenant {holder[2]}'s network {holder[3]}",
                    "a network no other tenant uses",
                    culprit[3],
                    related=(tenants[holder[2]].locate("spec", "network", "cidr"),),
                )
            )
        if cover is None or span[1] > cover[1]:
            cover = span
    return errors
