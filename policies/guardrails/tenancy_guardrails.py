"""Tenancy guardrails: CrossGuard rules as plain functions ``(args, report_violation)``.

Importable without the engine: ``__main__.py`` wraps them into a PolicyPack, the unit
tests call them with hand-made arguments. This module names every rule and holds the
per-resource rules, the uplink rule and the quota rule; ``guardrails_zones`` holds the
zone-rule and range-ownership rules, ``guardrails_hostfw`` reads the firewall texts and
``guardrails_props`` the wrapped property values (a value unknown during preview reads
as :data:`UNKNOWN`; every rule says what it means for it: an unknown reference counts as
present, it is wired to a resource whose output is not known yet).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from guardrails_hostfw import (
    DEFAULT_DENY,
    Egress,
    HostFlow,
    declared_egress,
    host_flows,
    table_bridges,
)
from guardrails_props import (
    DOMAIN,
    GIB,
    HOST_FIREWALL,
    NETWORK,
    NWFILTER,
    TENANT_HOSTING,
    UNKNOWN,
    VOLUME,
    Net,
    ReportViolation,
    ResourceArgs,
    StackArgs,
    StackResource,
    as_number,
    get,
    items,
    missing,
    network_cidr,
    tenant_of,
)
from guardrails_zones import cidr_ownership, zone_rules_respected

__all__ = [
    "CIDR_OWNERSHIP",
    "DATA_VOLUME_PROTECTED",
    "DOMAIN",
    "DOMAIN_INTERFACES_FILTERED",
    "HOST_FIREWALL",
    "NETWORK",
    "NWFILTER",
    "RULES",
    "SEGMENT_UPLINK_DECLARED",
    "TENANT_HOSTING",
    "TENANT_WITHIN_QUOTA",
    "UNKNOWN",
    "VOLUME",
    "ZONE_RULES_RESPECTED",
    "Egress",
    "HostFlow",
    "cidr_ownership",
    "data_volume_protected",
    "declared_egress",
    "domain_interfaces_filtered",
    "host_flows",
    "segment_uplink_declared",
    "table_bridges",
    "tenant_within_quota",
    "zone_rules_respected",
]

# Names, descriptions (one sentence each) of the rules; __main__ uses them.
DOMAIN_INTERFACES_FILTERED = (
    "domain-interfaces-filtered",
    "Every network interface of a libvirt domain is behind an nwfilter.",
)
SEGMENT_UPLINK_DECLARED = (
    "segment-uplink-declared",
    "A tenant segment reaches the uplink only through egress flows its tenant declared.",
)
DATA_VOLUME_PROTECTED = (
    "data-volume-protected",
    "Tenant data volumes are protected against deletion and replacement.",
)
TENANT_WITHIN_QUOTA = (
    "tenant-within-quota",
    "The machines and segments of a tenant stay within the quota ops granted it, as the "
    "plan's grant in the policy config says (else the TenantHosting quota output).",
)
ZONE_RULES_RESPECTED = (
    "zone-rules-respected",
    "Every host-firewall flow between a tenant segment and a peer is one the site's zone "
    "rules allow for the tenant's zone.",
)
CIDR_OWNERSHIP = (
    "cidr-ownership",
    "Every tenant network uses the range the plan assigned it, inside its zone's address "
    "pool and clear of other tenants and of the site's reserved, ops and infrastructure ranges.",
)
RULES = (
    DOMAIN_INTERFACES_FILTERED,
    SEGMENT_UPLINK_DECLARED,
    DATA_VOLUME_PROTECTED,
    TENANT_WITHIN_QUOTA,
    ZONE_RULES_RESPECTED,
    CIDR_OWNERSHIP,
)
"""Every rule of the pack (``tenancy preview`` pins each one to mandatory in its config)."""


# --- (a) every interface filtered -------------------------------------------------------


def domain_interfaces_filtered(args: ResourceArgs, report_violation: ReportViolation) -> None:
    """A Domain's interface without ``filter`` talks unfiltered: no anti-spoofing, no deny."""
    if args.resource_type != DOMAIN:
        return
    interfaces = get(args.props, "interfaces")
    if interfaces is UNKNOWN:
        return  # the list itself is wired to an output: checked again at update time
    for index, nic in enumerate(items(interfaces)):
        if nic is UNKNOWN:
            continue
        if missing(get(nic, "filter")):
            where = get(nic, "mac") or get(nic, "network") or f"#{index}"
            report_violation(
                f"domain {get(args.props, 'name') or args.name}: interface {where} "
                "has no nwfilter ('filter' is missing); attach the tenant's filter",
                args.urn,
            )


# --- (c) data volumes protected ---------------------------------------------------------


def is_data_volume(props: Mapping[str, Any]) -> bool:
    """Capacity-only shape: neither an uploaded image (source) nor an overlay (backing)."""
    return missing(get(props, "source")) and missing(get(props, "backing_volume"))


def data_volume_protected(args: ResourceArgs, report_violation: ReportViolation) -> None:
    """Config ``approved``: domain names whose data volumes may be unprotected (this run)."""
    if args.resource_type != VOLUME or not is_data_volume(args.props):
        return
    if bool(getattr(args.opts, "protect", False)):
        return
    name = get(args.props, "name") or args.name
    approved = [str(a) for a in (args.get_config().get("approved") or [])]
    if isinstance(name, str) and any(name.startswith(f"{a}-") for a in approved):
        return
    report_violation(
        f"data volume {name} is not protected: set protect=True (StorageVolume does), "
        "or approve its machine's deletion (`tenancy up --approve DOMAIN`, which puts it "
        "in this rule's 'approved' config)",
        args.urn,
    )


# --- (d) tenant quota ------------------------------------------------------------------


@dataclass
class _Usage:
    vcpus: float = 0
    memory_mib: float = 0
    storage_bytes: float = 0
    machines: int = 0
    addresses: float = 0  # the largest of the tenant's segments (one per host, all alike)
    unknown: tuple[str, ...] = ()

    def add(self, res: StackResource) -> None:
        """Count a Domain, a tenant Volume or a Network of the tenant."""
        if res.resource_type == NETWORK:
            cidr = network_cidr(res.props)
            if cidr is None:
                self.unknown = (*self.unknown, f"{res.name}.prefix")
            else:
                self.addresses = max(self.addresses, cidr.num_addresses)
            return
        if res.resource_type == DOMAIN:
            self.machines += 1
        fields = ("vcpus", "memory_mib") if res.resource_type == DOMAIN else ("capacity",)
        for key in fields:
            value = get(res.props, key)
            number = as_number(value)
            if number is None:
                if value is None and key == "capacity":
                    continue  # an overlay without capacity takes its base image's size
                self.unknown = (*self.unknown, f"{res.name}.{key}")
            elif key == "vcpus":
                self.vcpus += number
            elif key == "memory_mib":
                self.memory_mib += number
            else:
                self.storage_bytes += number

    def over(self, quota: Mapping[str, Any]) -> list[tuple[str, float, float]]:
        """(what, used, limit) of every limit of ``quota`` this usage exceeds."""
        limits = (
            ("vCPUs", self.vcpus, "vcpus"),
            ("memory GiB", self.memory_mib / 1024, "memoryGiB"),
            ("storage GiB", self.storage_bytes / GIB, "storageGiB"),
            ("machines", self.machines, "machines"),
            ("segment addresses", self.addresses, "addresses"),
        )
        out = []
        for what, used, key in limits:
            limit = as_number(get(quota, key))
            if limit is not None and used > limit:
                out.append((what, float(used), limit))
        return out


def _tenant_usage(
    resources: list[StackResource], report_violation: ReportViolation
) -> dict[str, _Usage]:
    usage = {str(r.name): _Usage() for r in resources if r.resource_type == TENANT_HOSTING}
    for res in resources:
        if res.resource_type not in (DOMAIN, VOLUME, NETWORK):
            continue
        if res.resource_type == VOLUME and not missing(get(res.props, "source")):
            continue  # base images are the site's, not the tenant's
        tenant = tenant_of(res)
        if tenant is None:
            if res.resource_type == DOMAIN:
                report_violation(
                    f"domain {res.name} belongs to no tenant (no TenantHosting parent), "
                    "so no quota accounts for it",
                    res.urn,
                )
            continue
        usage.setdefault(tenant, _Usage()).add(res)
    return usage


def tenant_within_quota(args: StackArgs, report_violation: ReportViolation) -> None:
    """Sum each tenant's Domains (vCPUs, memory, count), Volumes and segment size.

    The limit is what ops granted, never what the tenant file asks for: this rule's
    config ``grants`` (written from the plan's grant by ``tenancy preview``/``up``),
    else the TenantHosting component's ``quota`` output (the same grant, through the
    program). An auditor's ``ceilings`` in the config apply on top. A domain outside
    every tenant, a tenant without a visible grant and a value still unknown at
    preview are violations too: the rule fails closed.
    """
    config = args.get_config()
    grants, ceilings = config.get("grants") or {}, config.get("ceilings") or {}
    resources = list(args.resources)
    hosting = {str(r.name): r for r in resources if r.resource_type == TENANT_HOSTING}
    for tenant, use in sorted(_tenant_usage(resources, report_violation).items()):
        urn = hosting[tenant].urn if tenant in hosting else None
        grant, source = grants.get(tenant), "ops grant, policy config"
        if grant is None and tenant in hosting:
            grant, source = get(hosting[tenant].props, "quota"), "TenantHosting quota output"
        if not isinstance(grant, Mapping):
            report_violation(f"tenant {tenant}: no quota grant visible to the policy pack", urn)
            continue
        if use.unknown:
            report_violation(
                f"tenant {tenant}: cannot verify the quota, unknown during preview: "
                + ", ".join(use.unknown),
                urn,
            )
        limits = [(grant, source)]
        if isinstance(ceilings.get(tenant), Mapping):
            limits.append((ceilings[tenant], "auditor ceiling, policy config"))
        for quota, where in limits:
            for what, used, limit in use.over(quota):
                report_violation(
                    f"tenant {tenant} uses {used:g} {what}, over its quota of {limit:g} ({where})",
                    urn,
                )


# --- (b) uplink only through declared egress --------------------------------------------

# Bridge names the plan derives (tenancy.plan.names.bridge_name): tn<tenant[:8]>-<4 hex>.
PLAN_BRIDGE = re.compile(r"^tn[a-z0-9]{1,8}-[0-9a-f]{4}$")
# Forward modes that keep libvirt out of the forwarding path (it adds no rules of its own).
QUIET_MODES = frozenset({"open", "none", "isolated"})


def _forward_mode(props: Mapping[str, Any]) -> tuple[Any, Any]:
    """(mode, device) from whatever forward inputs a Network carries (ours carry none)."""
    mode: Any = None
    dev: Any = None
    forward = get(props, "forward")
    if isinstance(forward, str) or forward is UNKNOWN:
        mode = forward
    elif isinstance(forward, Mapping):
        mode, dev = get(forward, "mode"), get(forward, "dev")
    mode = get(props, "forward_mode", mode)
    dev = get(props, "forward_dev", dev)
    return mode, dev


def segment_uplink_declared(args: StackArgs, report_violation: ReportViolation) -> None:
    """Open mode on a plan bridge, under the host table's default deny, declared exits only.

    For every tenancy Network: (1) no forward mode other than open/none and no forward
    device: nat/route/bridge make libvirt forward to the uplink with rules of its own,
    whatever was declared; (2) the bridge has the plan's form (tn<name>-<hex>): any
    other name (virbr0, br0, an uplink) would put guests on a bridge we do not own;
    (3) the hypervisor's HostFirewall (same uri) lists the bridge in its tenant set and
    ends in the default deny, else the forward chain's ``policy accept`` lets the
    segment out; (4) every host-table accept from the segment to an address outside
    the site's segments matches an egress the owning tenant's nwfilters declare.
    """
    resources = list(args.resources)
    firewalls: dict[str, list[StackResource]] = {}
    egress: dict[str | None, list[Egress]] = {}
    segments: list[Net] = []
    networks: list[tuple[StackResource, Net | None]] = []
    for res in resources:
        if res.resource_type == HOST_FIREWALL:
            firewalls.setdefault(str(get(res.props, "uri")), []).append(res)
        elif res.resource_type == NWFILTER:
            body = get(res.props, "body")
            if isinstance(body, str):
                egress.setdefault(tenant_of(res), []).extend(declared_egress(body))
        elif res.resource_type == NETWORK:
            cidr = network_cidr(res.props)
            if cidr is not None:
                segments.append(cidr)
            networks.append((res, cidr))
    for net, cidr in networks:
        props, name = net.props, get(net.props, "name") or net.name
        tenant = tenant_of(net)
        mode, dev = _forward_mode(props)
        if mode is UNKNOWN or (isinstance(mode, str) and mode and mode not in QUIET_MODES):
            report_violation(
                f"network {name} forwards in mode {mode!r}: libvirt would forward to the "
                "uplink with its own rules, bypassing the declared egress; use open mode",
                net.urn,
            )
        if not missing(dev):
            report_violation(
                f"network {name} forwards through device {dev!r} (the uplink)", net.urn
            )
        bridge = get(props, "bridge")
        if bridge is UNKNOWN or not isinstance(bridge, str) or not PLAN_BRIDGE.match(bridge):
            report_violation(
                f"network {name} uses bridge {bridge!r}, not a plan bridge (tn<tenant>-<hex>): "
                "an existing bridge may be the uplink",
                net.urn,
            )
        tables = firewalls.get(str(get(props, "uri")), [])
        if not tables:
            report_violation(
                f"network {name}: no host firewall on {get(props, 'uri')}, so nothing "
                "stops the segment's traffic from leaving the host",
                net.urn,
            )
        declared = egress.get(tenant, []) if tenant is not None else []
        for fw in tables:
            ruleset = get(fw.props, "ruleset")
            if not isinstance(ruleset, str):
                continue  # unknown until update: the HostFirewall provider checks it then
            if isinstance(bridge, str) and bridge not in table_bridges(ruleset):
                report_violation(
                    f"network {name}: bridge {bridge} is not in the tenant_bridges set of "
                    f"{fw.name}, so its traffic is forwarded by the chain's policy accept",
                    net.urn,
                )
            if not DEFAULT_DENY.search(ruleset):
                report_violation(
                    f"network {name}: {fw.name} has no default deny from tenant bridges",
                    net.urn,
                )
            if cidr is None:
                continue
            for flow in host_flows(ruleset):
                if not any(src.overlaps(cidr) for src in flow.src):
                    continue
                for dst in flow.dst:
                    if any(dst.subnet_of(seg) for seg in segments):
                        continue  # stays on the site: the peer tenant's ingress governs it
                    for low, high in flow.ports:
                        if not any(e.covers(dst, flow.proto, low, high) for e in declared):
                            report_violation(
                                f"network {name}: {fw.name} forwards {cidr} to {dst} "
                                f"{flow.proto}/{low}-{high} on the uplink, but tenant "
                                f"{tenant or '(none)'} declares no such egress",
                                net.urn,
                            )
