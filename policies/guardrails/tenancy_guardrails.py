"""Tenancy guardrails: CrossGuard rules as plain functions ``(args, report_violation)``.

Importable without the engine: ``__main__.py`` wraps them into a PolicyPack, the unit
tests call them with hand-made arguments. Resource properties arrive wrapped by
pulumi-policy so that touching a value unknown during preview raises; the helpers
here read such values as :data:`UNKNOWN` instead, and every rule says what an unknown
value means for it (an unknown reference counts as present: it is wired to a resource
whose output is not known yet).
"""

from __future__ import annotations

import ipaddress
import re
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from pulumi_policy.proxy import UnknownValueError

__all__ = [
    "DATA_VOLUME_PROTECTED",
    "DOMAIN_INTERFACES_FILTERED",
    "SEGMENT_UPLINK_DECLARED",
    "TENANT_WITHIN_QUOTA",
    "data_volume_protected",
    "domain_interfaces_filtered",
    "segment_uplink_declared",
    "tenant_within_quota",
]

DYNAMIC = "pulumi-python:dynamic/tenancy:"
DOMAIN = DYNAMIC + "Domain"
NETWORK = DYNAMIC + "Network"
VOLUME = DYNAMIC + "Volume"
NWFILTER = DYNAMIC + "NwFilter"
HOST_FIREWALL = DYNAMIC + "HostFirewall"
TENANT_HOSTING = "tenancy:infra:TenantHosting"
GIB = 1024**3

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
    "The machines of a tenant stay within its vCPU, memory and storage quota.",
)


class _Unknown:
    def __repr__(self) -> str:
        return "UNKNOWN"


UNKNOWN: Any = _Unknown()
"""A value the engine does not know yet (preview)."""

ReportViolation = Callable[..., None]


class _Resource(Protocol):
    """What every rule reads of a resource, in a validation or in the whole stack."""

    @property
    def resource_type(self) -> str: ...

    @property
    def props(self) -> Mapping[str, Any]: ...

    @property
    def urn(self) -> str: ...

    @property
    def name(self) -> str: ...


class ResourceArgs(_Resource, Protocol):
    """What the rules read of ``pulumi_policy.ResourceValidationArgs``."""

    @property
    def opts(self) -> Any: ...

    def get_config(self) -> Mapping[str, Any]: ...


class StackResource(_Resource, Protocol):
    """What the rules read of ``pulumi_policy.PolicyResource``."""

    @property
    def parent(self) -> Any: ...


class StackArgs(Protocol):
    """What the rules read of ``pulumi_policy.StackValidationArgs``."""

    @property
    def resources(self) -> Iterable[StackResource]: ...

    def get_config(self) -> Mapping[str, Any]: ...


# --- reading wrapped properties ---------------------------------------------------------


def get(props: Any, key: str, default: Any = None) -> Any:
    """``props[key]``; ``default`` when absent, :data:`UNKNOWN` when not known yet."""
    if not isinstance(props, Mapping):
        return default
    try:
        return props[key]
    except KeyError:
        return default
    except UnknownValueError:
        return UNKNOWN


def items(seq: Any) -> Iterator[Any]:
    """The elements of a list property; unknown elements come out as :data:`UNKNOWN`."""
    if seq is None or seq is UNKNOWN or isinstance(seq, str | bytes | Mapping):
        return
    for index in range(len(seq)):
        try:
            yield seq[index]
        except UnknownValueError:
            yield UNKNOWN


def missing(value: Any) -> bool:
    """Absent or empty; an unknown value is present (it will be known at update time)."""
    return value is None or value == ""


def as_number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def tenant_of(resource: Any) -> str | None:
    """Name of the TenantHosting component a stack resource belongs to."""
    node = getattr(resource, "parent", None)
    while node is not None:
        if node.resource_type == TENANT_HOSTING:
            return str(node.name)
        node = getattr(node, "parent", None)
    return None


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
        "or name its machine in this rule's 'approved' config for an approved deletion",
        args.urn,
    )


# --- (d) tenant quota ------------------------------------------------------------------


@dataclass
class _Usage:
    vcpus: float = 0
    memory_mib: float = 0
    storage_bytes: float = 0
    unknown: tuple[str, ...] = ()


def tenant_within_quota(args: StackArgs, report_violation: ReportViolation) -> None:
    """Sum Domain vCPUs/memory and Volume capacities per TenantHosting against its quota.

    The quota is the TenantHosting component's ``quota`` output (the planned quota),
    unless this rule's config ``quotas`` names one for the tenant (an auditor's ceiling).
    A domain outside every tenant, a tenant without a visible quota and a value still
    unknown at preview are violations too: the rule fails closed.
    """
    config_quotas = args.get_config().get("quotas") or {}
    tenants: dict[str, StackResource] = {}
    usage: dict[str, _Usage] = {}
    for res in args.resources:
        if res.resource_type == TENANT_HOSTING:
            tenants[str(res.name)] = res
            usage.setdefault(str(res.name), _Usage())
    for res in args.resources:
        if res.resource_type not in (DOMAIN, VOLUME):
            continue
        tenant = tenant_of(res)
        if tenant is None:
            if res.resource_type == DOMAIN:
                report_violation(
                    f"domain {res.name} belongs to no tenant (no TenantHosting parent), "
                    "so no quota accounts for it",
                    res.urn,
                )
            continue
        use = usage.setdefault(tenant, _Usage())
        fields = ("vcpus", "memory_mib") if res.resource_type == DOMAIN else ("capacity",)
        if res.resource_type == VOLUME and not missing(get(res.props, "source")):
            continue  # base images are the site's, not the tenant's
        for key in fields:
            value = get(res.props, key)
            number = as_number(value)
            if number is None:
                if value is None and key == "capacity":
                    continue  # an overlay without capacity takes its base image's size
                use.unknown = (*use.unknown, f"{res.name}.{key}")
                continue
            if key == "vcpus":
                use.vcpus += number
            elif key == "memory_mib":
                use.memory_mib += number
            else:
                use.storage_bytes += number
    for tenant, use in sorted(usage.items()):
        quota = config_quotas.get(tenant)
        source = "policy config"
        if quota is None and tenant in tenants:
            quota = get(tenants[tenant].props, "quota")
            source = "TenantHosting quota output"
        urn = tenants[tenant].urn if tenant in tenants else None
        if not isinstance(quota, Mapping):
            report_violation(f"tenant {tenant}: no quota visible to the policy pack", urn)
            continue
        if use.unknown:
            report_violation(
                f"tenant {tenant}: cannot verify the quota, unknown during preview: "
                + ", ".join(use.unknown),
                urn,
            )
        limits = (
            ("vCPUs", use.vcpus, as_number(get(quota, "vcpus"))),
            ("memory GiB", use.memory_mib / 1024, as_number(get(quota, "memoryGiB"))),
            ("storage GiB", use.storage_bytes / GIB, as_number(get(quota, "storageGiB"))),
        )
        for what, used, limit in limits:
            if limit is not None and used > limit:
                report_violation(
                    f"tenant {tenant} uses {used:g} {what}, over its quota of {limit:g} ({source})",
                    urn,
                )


# --- (b) uplink only through declared egress --------------------------------------------

# Bridge names the plan derives (tenancy.plan.names.bridge_name): tn<tenant[:8]>-<4 hex>.
PLAN_BRIDGE = re.compile(r"^tn[a-z0-9]{1,8}-[0-9a-f]{4}$")
# Forward modes that keep libvirt out of the forwarding path (it adds no rules of its own).
QUIET_MODES = frozenset({"open", "none", "isolated"})
_FLOW = re.compile(
    r"ip saddr \{ (?P<src>[^}]*) \} ip daddr \{ (?P<dst>[^}]*) \} "
    r"(?P<proto>\w+) dport \{ (?P<ports>[^}]*) \}(?P<rest>.*)$"
)
_BRIDGES = re.compile(r"set tenant_bridges \{[^}]*elements = \{ (?P<elements>[^}]*) \}", re.S)
_DEFAULT_DENY = re.compile(r"^\s*iifname @tenant_bridges\b.*\bdrop\b", re.M)

Net = ipaddress.IPv4Network


@dataclass(frozen=True)
class HostFlow:
    """An ``accept`` of the host table: sources, destinations, protocol and port ranges."""

    src: tuple[Net, ...]
    dst: tuple[Net, ...]
    proto: str
    ports: tuple[tuple[int, int], ...]
    line: str


def _nets(text: str) -> tuple[Net, ...]:
    out = []
    for part in text.split(","):
        part = part.strip()
        if part:
            out.append(ipaddress.IPv4Network(part, strict=False))
    return tuple(out)


def _ports(text: str) -> tuple[tuple[int, int], ...]:
    out = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        low, _, high = part.partition("-")
        out.append((int(low), int(high or low)))
    return tuple(out)


def host_flows(ruleset: str) -> list[HostFlow]:
    """The declared-flow accepts of a host table rendered by tenancy.render.firewall."""
    flows = []
    for line in ruleset.splitlines():
        match = _FLOW.search(line.strip())
        if match and re.search(r"\baccept\b", match["rest"]):
            flows.append(
                HostFlow(
                    _nets(match["src"]),
                    _nets(match["dst"]),
                    match["proto"],
                    _ports(match["ports"]),
                    line.strip(),
                )
            )
    return flows


def table_bridges(ruleset: str) -> set[str]:
    match = _BRIDGES.search(ruleset)
    if match is None:
        return set()
    return {b.strip().strip('"') for b in match["elements"].split(",") if b.strip()}


@dataclass(frozen=True)
class Egress:
    """One egress a tenant declared, as its nwfilter carries it (direction out)."""

    peer: Net
    proto: str
    low: int
    high: int

    def covers(self, dst: Net, proto: str, low: int, high: int) -> bool:
        proto_ok = self.proto in ("all", proto)
        ports_ok = (self.low, self.high) == (0, 0) or (self.low <= low and high <= self.high)
        return proto_ok and ports_ok and dst.subnet_of(self.peer)


def declared_egress(body: str) -> list[Egress]:
    """The ``direction='out'`` accepts of an nwfilter body (rules by tenancy.render)."""
    try:
        root = ET.fromstring(f"<filter>{body}</filter>")
    except ET.ParseError:
        return []
    out = []
    for rule in root.iter("rule"):
        if rule.get("action") != "accept" or rule.get("direction") != "out":
            continue
        for match in rule:
            ip, mask = match.get("dstipaddr"), match.get("dstipmask")
            if ip is None:
                continue
            low = int(match.get("dstportstart", 0))
            high = int(match.get("dstportend", low))
            peer = ipaddress.IPv4Network(f"{ip}/{mask or 32}", strict=False)
            out.append(Egress(peer, match.tag, low, high))
    return out


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
            cidr: Net | None = None
            address, prefix = get(res.props, "address"), as_number(get(res.props, "prefix"))
            if isinstance(address, str) and prefix is not None:
                cidr = ipaddress.IPv4Network(f"{address}/{int(prefix)}", strict=False)
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
            if not _DEFAULT_DENY.search(ruleset):
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
