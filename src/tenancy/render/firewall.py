"""Firewall artefacts from the plan: libvirt nwfilters per tenant/group, host nftables per host.

Two layers on purpose (measured): nftables on the host sees routed traffic
between segments and to the outside; nwfilter on each interface sees what
stays inside a segment and stops address spoofing.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from tenancy.contract.types import parse_port
from tenancy.plan.model import Plan, RulePlan, TenantPlan
from tenancy.render.env import render

OPS_PORTS = ("22/tcp",)


@dataclass(frozen=True)
class FilterRule:
    direction: str  # nwfilter: in = to the VM, out = from the VM
    priority: int
    proto: str
    peer_attr: str  # "src" for in, "dst" for out
    peer_ip: str
    peer_mask: int
    port_low: int
    port_high: int
    comment: str


def collapse(cidrs: Iterable[str]) -> list[ipaddress.IPv4Network]:
    """The fewest networks covering ``cidrs``, in address order.

    A peer group's instances sit on consecutive addresses: 64 of them are one /26,
    not 64 rules per port in every filter and host table.
    """
    return list(ipaddress.collapse_addresses(ipaddress.IPv4Network(c) for c in cidrs))


def _filter_rules(rule: RulePlan, priority: int) -> list[FilterRule]:
    out: list[FilterRule] = []
    nw_dir = "in" if rule.direction == "ingress" else "out"
    attr = "src" if rule.direction == "ingress" else "dst"
    peers = collapse(rule.peer_cidrs)
    for port in rule.ports:
        pr = parse_port(port)
        for net in peers:
            out.append(
                FilterRule(
                    nw_dir,
                    priority,
                    pr.proto,
                    attr,
                    str(net.network_address),
                    net.prefixlen,
                    pr.low,
                    pr.high,
                    f"{rule.direction} {rule.peer} {port}",
                )
            )
    return out


def nwfilter_rules(tenant: TenantPlan, group: str, ops_cidrs: list[str]) -> list[FilterRule]:
    """Everything a machine of ``group`` may send or receive besides established traffic."""
    rules: list[FilterRule] = []
    seg = ipaddress.IPv4Network(tenant.segment.cidr)
    for direction, attr in (("in", "src"), ("out", "dst")):
        rules.append(
            FilterRule(
                direction,
                200,
                "all",
                attr,
                str(seg.network_address),
                seg.prefixlen,
                0,
                0,
                f"inside segment {tenant.name}",
            )
        )
    for cidr in [f"{tenant.segment.gateway}/32", *ops_cidrs]:
        net = ipaddress.IPv4Network(cidr)
        for port in OPS_PORTS:
            pr = parse_port(port)
            rules.append(
                FilterRule(
                    "in",
                    250,
                    pr.proto,
                    "src",
                    str(net.network_address),
                    net.prefixlen,
                    pr.low,
                    pr.high,
                    f"ops {cidr} {port}",
                )
            )
    for rule in tenant.rules:
        if rule.local_group in (None, group):
            rules.extend(_filter_rules(rule, 300))
    unique = {
        (r.direction, r.proto, r.peer_ip, r.peer_mask, r.port_low, r.port_high): r for r in rules
    }
    return [unique[k] for k in sorted(unique)]


def render_nwfilter_body(tenant: TenantPlan, group: str, ops_cidrs: list[str]) -> str:
    """The rules inside ``<filter>`` for machines of ``tenant``/``group``."""
    return render(
        "libvirt/nwfilter.xml.j2",
        tenant=tenant.name,
        group=group,
        rules=nwfilter_rules(tenant, group, ops_cidrs),
    )


@dataclass(frozen=True)
class HostFlow:
    src: list[str]
    dst: list[str]
    proto: str
    ports: str
    comment: str


@dataclass(frozen=True)
class SegmentRef:
    tenant: str
    bridge: str
    cidr: str


@dataclass(frozen=True)
class HostService:
    proto: str
    port: int
    comment: str


def guest_host_services(ntp_servers: Sequence[str]) -> list[HostService]:
    """What tenants may reach on the hypervisor itself: nothing, except its time service
    when the site names no NTP servers (the guests then use the segment gateway, see
    :mod:`tenancy.policy.variables`; ``tools/hypervisor.sh`` serves it)."""
    if ntp_servers:
        return []
    return [HostService("udp", 123, "time for the guests (the site names no ntpServers)")]


def table_name(site: str) -> str:
    return "tenancy_" + site.replace("-", "_")


def host_flows(plan: Plan) -> list[HostFlow]:
    """Declared flows as the host's forward path sees them (each cross-tenant flow once).

    One rule per flow and protocol: its addresses and ports are nftables sets, the
    addresses collapsed to the fewest networks.
    """
    flows: dict[tuple[str, ...], HostFlow] = {}
    for tenant in plan.tenants:
        for rule in tenant.rules:
            if rule.peer_kind == "tenant" and rule.direction == "egress":
                continue  # the receiving tenant's ingress rule carries the same flow
            if rule.direction == "ingress":
                src, dst = rule.peer_cidrs, rule.local_cidrs
            else:
                src, dst = rule.local_cidrs, rule.peer_cidrs
            by_proto: dict[str, list[str]] = {}
            for port in rule.ports:
                pr = parse_port(port)
                text = str(pr.low) if pr.low == pr.high else f"{pr.low}-{pr.high}"
                by_proto.setdefault(pr.proto, []).append(text)
            for proto, ports in sorted(by_proto.items()):
                flow = HostFlow(
                    [str(n) for n in collapse(src)],
                    [str(n) for n in collapse(dst)],
                    proto,
                    "{ " + ", ".join(ports) + " }",
                    f"{tenant.name} {rule.direction} {rule.peer}",
                )
                flows[(flow.proto, flow.ports, *flow.src, "|", *flow.dst)] = flow
    return [flows[k] for k in sorted(flows)]


def render_host_nftables(
    plan: Plan, host: str, host_services: list[HostService] | None = None
) -> str:
    """The nftables table for one hypervisor: only segments present on it matter."""
    segments = [
        SegmentRef(t.name, t.segment.bridge, t.segment.cidr)
        for t in plan.tenants
        if host in t.segment.hosts
    ]
    return render(
        "nftables/site.nft.j2",
        site=plan.site,
        host=host,
        table=table_name(plan.site),
        bridges=sorted(s.bridge for s in segments),
        segments=segments,
        flows=host_flows(plan),
        host_services=host_services or [],
    )
