"""Every name derived from tenant-supplied labels is unique on its site, and not too long.

The derived names join labels with '-' (Ansible groups with '_'), which the
labels contain themselves: tenant ``family`` with machine ``planning-app`` and
tenant ``family-planning`` with machine ``app`` both give the domain
``family-planning-app-1``, and with it the same volume files and Pulumi URNs;
tenant ``hr-web`` and tenant ``hr``'s role ``web`` both give group ``hr_web``.
Renaming the scheme would replace every running machine, so the names stay
and a collision is refused instead, at the later tenant's field, naming the
first one's (tenants already in the ledger come first, so a new file is the
one told to rename). One dict per namespace: linear in the names derived.

The names mirror how ``tenancy.infra`` builds them (its resources' names and
URN type chains, the libvirt objects and files it creates); a unit test runs
the program under Pulumi mocks and checks that each registered name is one
derived here.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass

from tenancy.contract.errors import Location, SpecError
from tenancy.contract.loader import LoadedSite, LoadedTenant
from tenancy.plan import names

HOST_NAME_MAX = 63
"""A DNS label: the guest's host name, also its libvirt domain name."""
LIBVIRT_NAME_MAX = 100
"""The object names the infra's libvirt providers accept (volume files included)."""

_RENAME = (
    "derived names unique on the site: tenant, machine, role and volume names are joined "
    "with '-' (Ansible groups with '_'); rename one of the two"
)


@dataclass(frozen=True)
class Owner:
    """The field a derived name comes from, in words for the error."""

    location: Location
    field: str
    what: str


@dataclass(frozen=True)
class Derived:
    namespace: str
    """What must be unique together: a libvirt object kind, a file, a URN type chain ..."""
    name: str
    owner: Owner


def derived_names(site: LoadedSite, name: str, tenant: LoadedTenant) -> Iterator[Derived]:
    """Every name the plan and the infra derive from one tenant of ``site``."""
    hosts = [h.name for h in site.model.hosts]
    whole = Owner(tenant.locate("metadata", "name"), "metadata.name", f"tenant {name!r}")
    yield Derived("Ansible group", names.group_name(name), whole)
    yield Derived("libvirt network", names.network_name(name), whole)
    yield Derived("Pulumi TenantHosting", name, whole)
    yield Derived("Pulumi TenantHosting$PolicyRun", f"{name}-policy", whole)
    for host in hosts:
        on_host = Owner(whole.location, whole.field, f"tenant {name!r} on host {host!r}")
        yield Derived("Pulumi TenantHosting$Segment", f"{name}-{host}-segment", on_host)
        yield Derived("Pulumi TenantHosting$Segment$Network", f"{name}-{host}-segment-net", on_host)
        yield Derived("Pulumi TenantHosting$FirewallPolicy", f"{name}-{host}-firewall", on_host)
    groups: set[str] = set()
    for i, machine in enumerate(tenant.model.spec.machines):
        at = ("spec", "machines", i)
        owner = Owner(
            tenant.locate(*at, "name"),
            f"spec.machines[{i}].name",
            f"machine {machine.name!r} of tenant {name!r}",
        )
        for instance in machine.instance_names():
            domain = names.domain_name(name, instance)
            yield from _machine_names(domain, owner)
            for j, vol in enumerate(machine.volumes):
                vol_owner = Owner(
                    tenant.locate(*at, "volumes", j, "name"),
                    f"spec.machines[{i}].volumes[{j}].name",
                    f"volume {vol.name!r} of {owner.what}",
                )
                yield from _volume_names(domain, vol.name, vol_owner)
        if machine.group in groups:
            continue
        groups.add(machine.group)
        field = "role" if machine.role else "name"
        group_owner = Owner(
            tenant.locate(*at, field),
            f"spec.machines[{i}].{field}",
            f"role {machine.group!r} of tenant {name!r}",
        )
        yield Derived("libvirt nwfilter", names.filter_name(name, machine.group), group_owner)
        yield Derived("Ansible group", names.group_name(name, machine.group), group_owner)
        for host in hosts:
            yield Derived(
                "Pulumi TenantHosting$FirewallPolicy$NwFilter",
                f"{name}-{host}-firewall-{machine.group}",
                Owner(group_owner.location, group_owner.field, f"{group_owner.what} on {host!r}"),
            )


def _machine_names(domain: str, owner: Owner) -> Iterator[Derived]:
    yield Derived("libvirt domain and host name", domain, owner)
    yield Derived("volume file", f"{domain}-root.qcow2", owner)
    yield Derived("Pulumi TenantHosting$VirtualMachine", domain, owner)
    yield Derived("Pulumi TenantHosting$VirtualMachine$Volume", f"{domain}-root", owner)
    yield Derived("Pulumi TenantHosting$VirtualMachine$CloudInitDisk", f"{domain}-seed", owner)
    yield Derived("Pulumi TenantHosting$VirtualMachine$Domain", f"{domain}-domain", owner)


def _volume_names(domain: str, volume: str, owner: Owner) -> Iterator[Derived]:
    stem = f"{domain}-{volume}"
    yield Derived("volume file", f"{stem}.qcow2", owner)
    yield Derived("Pulumi TenantHosting$VirtualMachine$StorageVolume", stem, owner)
    yield Derived("Pulumi TenantHosting$VirtualMachine$StorageVolume$Volume", f"{stem}-vol", owner)


def check_derived_names(
    site: LoadedSite, tenants: Mapping[str, LoadedTenant], existing: Collection[str] = ()
) -> list[SpecError]:
    """Collisions and over-long names among the tenants of ``site`` (``existing`` first)."""
    order = sorted(tenants, key=lambda n: (n not in existing, n))
    images = sorted(site.model.images)
    seen: dict[tuple[str, str], Owner] = {}
    reported: set[tuple[Location, Location]] = set()
    near_images: set[Location] = set()
    problems: list[SpecError] = []
    for name in order:
        tenant = tenants[name]
        problems += _lengths(name, tenant)
        for d in derived_names(site, name, tenant):
            if d.namespace == "volume file":
                problems += _base_image(d, images, near_images)
            first = seen.setdefault((d.namespace, d.name), d.owner)
            if first is d.owner or (d.owner.location, first.location) in reported:
                continue
            reported.add((d.owner.location, first.location))
            problems.append(
                SpecError(
                    d.owner.location,
                    d.owner.field,
                    f"{d.namespace} {d.name!r} of {d.owner.what} is also that of {first.what}",
                    _RENAME,
                    repr(d.name),
                    related=(first.location,),
                )
            )
    return problems


def _lengths(name: str, tenant: LoadedTenant) -> list[SpecError]:
    """Host names within a DNS label, volume file names within libvirt's limit."""
    problems: list[SpecError] = []
    for i, machine in enumerate(tenant.model.spec.machines):
        longest = names.domain_name(name, f"{machine.name}-{machine.count}")
        if len(longest) > HOST_NAME_MAX:
            problems.append(
                SpecError(
                    tenant.locate("spec", "machines", i, "name"),
                    f"spec.machines[{i}].name",
                    "host name too long",
                    f"at most {HOST_NAME_MAX} characters for <tenant>-<machine>-<n> (the "
                    f"guest's host name and libvirt domain name); shorten the machine name "
                    f"by {len(longest) - HOST_NAME_MAX}",
                    f"{longest!r} ({len(longest)} characters)",
                )
            )
        for j, vol in enumerate(machine.volumes):
            file = f"{longest}-{vol.name}.qcow2"
            if len(file) > LIBVIRT_NAME_MAX:
                problems.append(
                    SpecError(
                        tenant.locate("spec", "machines", i, "volumes", j, "name"),
                        f"spec.machines[{i}].volumes[{j}].name",
                        "volume file name too long",
                        f"at most {LIBVIRT_NAME_MAX} characters for "
                        "<tenant>-<machine>-<n>-<volume>.qcow2 (a libvirt volume name); "
                        f"shorten the volume name by {len(file) - LIBVIRT_NAME_MAX}",
                        f"{file!r} ({len(file)} characters)",
                    )
                )
    return problems


def _base_image(d: Derived, images: list[str], flagged: set[Location]) -> list[SpecError]:
    """A tenant's volume file must not look like a base image's (``base-<image>-<recipe>``).

    The recipe is known only when the program runs, so the whole prefix is refused.
    """
    if not d.name.startswith("base-") or d.owner.location in flagged:
        return []
    for image in images:
        if d.name.startswith(f"base-{image}-"):
            flagged.add(d.owner.location)
            return [
                SpecError(
                    d.owner.location,
                    d.owner.field,
                    f"volume file {d.name!r} of {d.owner.what} may be the site's base image "
                    f"volume base-{image}-<recipe>.qcow2",
                    "volume files that do not start with 'base-<image>-' (the base images "
                    "live in the same storage pool)",
                    repr(d.name),
                )
            ]
    return []
