"""Ansible variables of the security baseline, rendered from plan + site + catalogue + waivers.

The roles never read tenant YAML: everything they need arrives as inventory
variables (the interface is documented at the top of ``policies/playbook.yml``
and in each role's ``meta/argument_specs.yml``). This module renders them:

per tenant (group ``<tenant>``, because two values depend on the segment)
    ``tenancy_site_ops_cidrs``      the site's ``ops.cidrs`` plus the segment gateway
                                    (``<gateway>/32``): the hypervisor reaches its guests
                                    from the gateway address, and the controller of the
                                    local site *is* the hypervisor. The nwfilter of every
                                    segment lets the gateway reach SSH for the same reason.
    ``tenancy_site_ops_user``       the site's ``ops.user`` (the account Ansible logs in as)
    ``tenancy_site_ops_ssh_keys``   the site's operator public keys
                                    (:func:`tenancy.policy.ops_keys.ops_public_keys`):
                                    the baseline makes them the ops account's only keys,
                                    so a rotated key reaches existing VMs in place
    ``tenancy_site_ntp_servers``    the site's ``ntpServers``; when the site names none
                                    (the local site), the segment gateway: the hypervisor
                                    is the natural time source of its guests; it serves
                                    time on udp/123 (``tools/hypervisor.sh``, opened in the
                                    host table by ``render.firewall.guest_host_services``),
                                    and BASE-TIME-02 (site servers only) still holds.
    ``tenancy_site_dns_servers``    ``[]`` (sites declare no resolvers yet)
    ``tenancy_site_apt_proxy``      the site's ``packageMirror`` (cloud-init uses the same
                                    value as apt proxy), ``""`` when unset (local site)
    ``tenancy_site_apt_mirror``     ``""`` (keep the image's sources)
    ``tenancy_site_syslog_*``       no central syslog server is declared by sites yet:
                                    host ``""``; mlps-level3 tenants waive MLPS-LOG-01

per host
    ``tenancy_profiles``            the tenant's ``policies``
    ``tenancy_waived_controls``     active waivers (``policies/waivers/*.yaml``) for the host
    ``tenancy_controls``            the controls the host gets: its profiles resolved through
                                    ``extends``, waived ones removed, in catalogue order
                                    (:func:`selected_controls`: the only place this is
                                    computed; the playbook applies the list as given)
    ``tenancy_roles``               the roles implementing those controls, in catalogue order
    ``tenancy_firewall_rules``      the host's declared flows, one entry per peer CIDR and
                                    port: ``{direction, peer_cidr, proto, port, comment}``
                                    with ``port`` an int or ``"LOW-HIGH"``

The names and types are :mod:`tenancy.contract.host_vars` (:class:`SiteVars`,
:class:`PolicyVars`); this module decides the values.

Addresses handed to the in-guest firewall must be IP literals (nft would
resolve names at load time, and the role refuses them): a site whose NTP
servers or package proxy are names is an error here, before any host is touched.

Everything here is pure except :func:`load_policy_sources`, which reads the
catalogue and the waiver files.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any
from urllib.parse import urlsplit

from tenancy.contract.host_vars import HostVars, PolicyVars, SiteVars, parse_hosts
from tenancy.contract.models import Site
from tenancy.plan.model import MachinePlan, Plan, TenantPlan
from tenancy.policy.catalogue import Catalogue, Control
from tenancy.policy.catalogue_load import load_catalogue
from tenancy.policy.ops_keys import OpsKeys
from tenancy.policy.waivers import Waiver, load_governed_waivers, waived_control_ids
from tenancy.project import Project
from tenancy.render.inventory import firewall_rules_for, group_name, inventory

__all__ = [
    "PolicySources",
    "VariablesError",
    "firewall_rules",
    "host_addresses",
    "host_variables",
    "inventory_host_vars",
    "load_policy_sources",
    "policy_inventory",
    "selected_controls",
    "site_problems",
    "site_variables",
    "tenant_hosts",
]


class VariablesError(ValueError):
    """The variables cannot be rendered; ``errors`` has one line per problem."""

    def __init__(self, errors: list[str]) -> None:
        self.errors = errors
        super().__init__("\n".join(errors))


@dataclass(frozen=True)
class PolicySources:
    """The policy files of a project: the catalogue and every waiver."""

    catalogue: Catalogue
    waivers: tuple[Waiver, ...]


def load_policy_sources(project: Project) -> PolicySources:
    """Read the shipped catalogue (its roles traced) and the project's waivers, under its
    governance file (needed once there is a waiver file).

    Raises :class:`tenancy.policy.catalogue.CatalogueError` with located errors.
    """
    catalogue = load_catalogue(project.policies_dir / "catalogue.yaml", roles_dir=project.roles_dir)
    waiver_dir = project.waivers_dir
    waivers = (
        load_governed_waivers(waiver_dir, project.governance_file, catalogue=catalogue)
        if waiver_dir.is_dir()
        else []
    )
    return PolicySources(catalogue=catalogue, waivers=tuple(waivers))


# -- site --------------------------------------------------------------------------


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def site_problems(site: Site) -> list[str]:
    """What keeps the site's settings from reaching the roles (names instead of IPs)."""
    problems: list[str] = []
    for i, server in enumerate(site.ntp_servers):
        if not _is_ip(server):
            problems.append(
                f"site {site.name}: ntpServers[{i}] {server!r} is not an IP address; chrony "
                "(BASE-TIME-02) and the in-guest firewall (BASE-FW-04) need IP addresses"
            )
    if site.package_mirror:
        host = urlsplit(site.package_mirror).hostname or ""
        if not _is_ip(host):
            problems.append(
                f"site {site.name}: packageMirror {site.package_mirror!r} must name its host "
                "by IP address; the in-guest firewall (BASE-FW-04) opens egress to it"
            )
    return problems


def site_variables(site: Site, tenant: TenantPlan, ops_keys: Sequence[str]) -> SiteVars:
    """The ``tenancy_site_*`` variables for the machines of ``tenant`` (see the module doc)."""
    gateway = tenant.segment.gateway
    return SiteVars(
        ops_cidrs=tuple(dict.fromkeys([*site.ops.cidrs, f"{gateway}/32"])),
        ops_user=site.ops.user,
        ops_ssh_keys=tuple(ops_keys),
        ntp_servers=tuple(site.ntp_servers) or (gateway,),
        dns_servers=(),
        apt_proxy=site.package_mirror or "",
        apt_mirror="",
        syslog_host="",
        syslog_port=514,
        syslog_protocol="tcp",
    )


# -- hosts -------------------------------------------------------------------------


def _port(text: Any) -> int | str:
    """``"443"`` -> ``443``; ``"8000-8080"`` stays a range string (the role's interface)."""
    value = str(text).strip()
    low, sep, high = value.partition("-")
    if not sep:
        return int(low)
    if int(low) == int(high):
        return int(low)
    return f"{int(low)}-{int(high)}"


def firewall_rules(tenant: TenantPlan, group: str) -> list[dict[str, Any]]:
    """The declared flows of ``group``'s machines in the shape tenancy_firewall expects.

    One entry per (direction, peer CIDR, protocol, port), duplicates removed,
    in the planner's order.
    """
    seen: set[tuple[str, str, str, str]] = set()
    out: list[dict[str, Any]] = []
    for entry in firewall_rules_for(tenant, group):
        port = _port(entry["port"])
        key = (entry["direction"], entry["peer_cidr"], entry["proto"], str(port))
        if key in seen:
            continue
        seen.add(key)
        out.append(
            {
                "direction": entry["direction"],
                "peer_cidr": entry["peer_cidr"],
                "proto": entry["proto"],
                "port": port,
                "comment": str(entry["comment"]).replace('"', "'")[:100],
            }
        )
    return out


def selected_controls(
    catalogue: Catalogue, profiles: Sequence[str], waived: Iterable[str]
) -> list[Control]:
    """The controls a host gets: its profiles resolved through ``extends``, waived ones removed.

    In catalogue order. The one place the selection is computed: the playbook
    applies it as given, so its ``extends`` depth is not the playbook's concern.
    Unknown profile names are a ``KeyError`` (:meth:`Catalogue.controls_for`).
    """
    removed = set(waived)
    return [c for c in catalogue.controls_for(profiles) if c.id not in removed]


def host_variables(
    tenant: TenantPlan, machine: MachinePlan, sources: PolicySources, today: date
) -> PolicyVars:
    """The host's profiles, waived controls, selected controls and roles, and declared flows."""
    waived = waived_control_ids(
        sources.waivers, tenant=tenant.name, host=machine.domain, today=today
    )
    controls = selected_controls(sources.catalogue, tenant.policies, waived)
    return PolicyVars(
        profiles=tuple(tenant.policies),
        waived_controls=tuple(waived),
        controls=tuple(c.id for c in controls),
        roles=tuple(dict.fromkeys(c.implements.role for c in controls)),
        firewall_rules=tuple(firewall_rules(tenant, machine.group)),
    )


def _profile_problems(tenant: TenantPlan, catalogue: Catalogue) -> list[str]:
    known = ", ".join(sorted(catalogue.profiles))
    return [
        f"{tenant.file}: tenant {tenant.name}: policies: unknown profile {name!r} "
        f"(policies/catalogue.yaml has: {known})"
        for name in tenant.policies
        if name not in catalogue.profiles
    ] + ([f"{tenant.file}: tenant {tenant.name}: policies: empty"] if not tenant.policies else [])


def policy_inventory(
    plan: Plan,
    site: Site,
    sources: PolicySources,
    today: date,
    tenants: Iterable[str] | None = None,
    *,
    ops_keys: OpsKeys,
    check_site: bool = True,
) -> dict[str, Any]:
    """The YAML-ready inventory a policy run uses: ``tenancy inventory`` plus the policy variables.

    Groups and host names are those of :func:`tenancy.render.inventory.inventory`
    (``all.children.<tenant>.children.<tenant>_<group>.hosts.<domain>``);
    ``tenants`` limits it to those tenants (default: all of the plan); ``ops_keys``
    are the site's operator public keys (none is an error: the baseline would lock
    the operators out).
    Raises :class:`VariablesError` naming every problem; ``check_site=False``
    leaves :func:`site_problems` to the caller (the PolicyRun reports them when
    it runs, so a site's hardening settings cannot block its VMs' preview).
    """
    wanted = None if tenants is None else list(dict.fromkeys(tenants))
    by_name = {t.name: t for t in plan.tenants}
    errors = site_problems(site) if check_site else []
    if wanted is not None:
        errors += [
            f"tenant {name!r} is not planned on site {plan.site} "
            f"(planned: {', '.join(sorted(by_name)) or 'none'})"
            for name in wanted
            if name not in by_name
        ]
    selected = [t for t in plan.tenants if wanted is None or t.name in wanted]
    for t in selected:
        errors += _profile_problems(t, sources.catalogue)
    if not ops_keys.keys and any(t.machines for t in selected):
        errors.append(
            ops_keys.problem
            or f"site {site.name}: no ops SSH key (ops.sshKeys or ops.sshKeyFiles); the "
            "baseline makes the site's keys the only ones of the ops account (BASE-SSH-09)"
        )
    if errors:
        raise VariablesError(errors)

    base = inventory(plan, site.ops.user)
    children: dict[str, Any] = {}
    for t in selected:
        group = base["all"]["children"][group_name(t.name)]
        group["vars"].update(site_variables(site, t, ops_keys.keys).to_inventory())
        for role_group in group["children"].values():
            for domain, hostvars in role_group["hosts"].items():
                machine = next(m for m in t.machines if m.domain == domain)
                hostvars.update(host_variables(t, machine, sources, today).to_inventory())
        children[group_name(t.name)] = group
    base["all"]["children"] = children
    return base


def tenant_hosts(inv: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Every host of a (policy) inventory with its merged variables: all < tenant < group < host."""
    out: dict[str, dict[str, Any]] = {}
    top = inv.get("all", {})
    top_vars = dict(top.get("vars") or {})
    for tenant_group in (top.get("children") or {}).values():
        tenant_vars = {**top_vars, **(tenant_group.get("vars") or {})}
        for role_group in (tenant_group.get("children") or {}).values():
            group_vars = {**tenant_vars, **(role_group.get("vars") or {})}
            for host, hostvars in (role_group.get("hosts") or {}).items():
                out[host] = {**group_vars, **(hostvars or {})}
    return out


def inventory_host_vars(inv: Mapping[str, Any]) -> dict[str, HostVars]:
    """Every host of a (policy) inventory with its merged variables read back, typed."""
    return parse_hosts(tenant_hosts(inv))


def host_addresses(inv: Mapping[str, Any]) -> dict[str, str]:
    """Host name -> the address Ansible connects to, in host name order (what a run waits for)."""
    return {name: hv.address_or(name) for name, hv in sorted(inventory_host_vars(inv).items())}
