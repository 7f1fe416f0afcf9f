"""Reachability probes: which connections to try from outside a host, and what the plan says.

The loaded ruleset is only half the proof of BASE-FW-02..04: each declared
flow must really connect from a source inside its peer network, and a sample
of undeclared ones must not. Sources are the network-namespace stand-ins of
tools/standins.sh and other tenants' hosts of the inventory; the probes are
planned at collection (one item each) and run by
:class:`tenancy.compliance.probe_runner.ProbeRunner`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pytest

from tenancy.compliance.inventory import all_inventory_hosts, inventory_hosts
from tenancy.compliance.items import Item
from tenancy.compliance.network import contains, port_text
from tenancy.contract.host_vars import HostVars, parse_hosts

__all__ = [
    "UNDECLARED_PORT",
    "Endpoint",
    "Probe",
    "endpoint_in",
    "parse_standins",
    "plan_probes",
    "probe_items",
]


@dataclass(frozen=True)
class Endpoint:
    """A probe source or destination: a network-namespace stand-in or an inventory host."""

    label: str
    address: str
    kind: str  # "netns" | "host"

    def __str__(self) -> str:
        return self.label


@dataclass(frozen=True)
class Probe:
    """Connect from ``source`` to ``target`` on proto/port; ``allowed`` is what the plan says."""

    source: Endpoint
    target: Endpoint
    proto: str
    port: int
    allowed: bool
    reason: str

    def __str__(self) -> str:
        verdict = "reachable" if self.allowed else "blocked"
        return f"{self.source} -> {self.target} {self.port}/{self.proto} {verdict}"


def parse_standins(text: str) -> list[Endpoint]:
    """``tn-intranet=10.255.1.2,...`` -> endpoints; ``none`` or empty -> []."""
    if not text or text.strip().lower() == "none":
        return []
    out = []
    for part in text.split(","):
        name, _, address = part.strip().partition("=")
        if name and address:
            out.append(Endpoint(name, address, "netns"))
    return out


def endpoint_in(
    network: str, standins: Sequence[Endpoint], hosts: Mapping[str, HostVars], exclude: str
) -> Endpoint | None:
    """A stand-in, else an inventory host other than ``exclude``, with an address in ``network``."""
    for s in standins:
        if contains(network, s.address):
            return s
    for name, hv in sorted(hosts.items()):
        address = hv.address or ""
        if name != exclude and address and contains(network, address):
            return Endpoint(name, address, "host")
    return None


def _allowed_from(rules: Sequence[Mapping[str, Any]], direction: str, address: str) -> set[str]:
    """``proto/port`` strings the rules open towards/from ``address``."""
    out = set()
    for r in rules:
        if r.get("direction") == direction and contains(str(r.get("peer_cidr", "")), address):
            out.add(f"{r.get('proto')}/{port_text(r.get('port'))}")
    return out


def _opens(opened: set[str], proto: str, port: int) -> bool:
    for spec in opened:
        p, _, ports = spec.partition("/")
        low, _, high = ports.partition("-")
        if p == proto and int(low) <= port <= int(high or low):
            return True
    return False


#: A port no baseline rule opens, probed when a host declares no flow of its own.
UNDECLARED_PORT = 8080


def plan_probes(
    target_name: str,
    target_vars: HostVars,
    standins: Sequence[Endpoint],
    hosts: Mapping[str, HostVars],
    other_tenant_sources: int = 2,
) -> dict[str, list[Probe]]:
    """The reachability probes of one host, by control.

    BASE-FW-02: every declared ingress flow from a source inside its peer
    network is reachable; from each stand-in and from one host of up to
    ``other_tenant_sources`` other tenants, a port the host serves to others
    (or :data:`UNDECLARED_PORT`) is not, unless declared for that source.
    BASE-FW-03: SSH is blocked from every stand-in and other-tenant source
    outside the operations networks. BASE-FW-04: every declared egress flow to
    a destination inside its peer network is reachable; a sample of other
    destinations (each stand-in on 443, or :data:`UNDECLARED_PORT`) is not.
    """
    target = Endpoint(target_name, target_vars.address_or(target_name), "host")
    rules = target_vars.policy.firewall_rules
    tenant = target_vars.tenant
    ops = list(target_vars.site.ops_cidrs)
    probes: dict[str, list[Probe]] = {"BASE-FW-02": [], "BASE-FW-03": [], "BASE-FW-04": []}

    for r in rules:
        proto, port = str(r.get("proto")), int(port_text(r.get("port")).split("-")[0])
        peer = str(r.get("peer_cidr"))
        source = endpoint_in(peer, standins, hosts, exclude=target_name)
        if source is None:
            continue
        if r.get("direction") == "ingress":
            probes["BASE-FW-02"].append(
                Probe(source, target, proto, port, True, f"declared: {r.get('comment', peer)}")
            )
        elif r.get("direction") == "egress":
            probes["BASE-FW-04"].append(
                Probe(target, source, proto, port, True, f"declared: {r.get('comment', peer)}")
            )

    others: list[Endpoint] = []
    seen_tenants: set[str] = set()
    for name, hv in sorted(hosts.items()):
        other = hv.tenant
        if name == target_name or other == tenant or other in seen_tenants or not other:
            continue
        if len(seen_tenants) >= other_tenant_sources:
            break
        seen_tenants.add(other)
        others.append(Endpoint(name, hv.address_or(name), "host"))

    served = sorted(
        {
            int(port_text(r.get("port")).split("-")[0])
            for r in rules
            if r.get("direction") == "ingress" and r.get("proto") == "tcp"
        }
    )
    for source in [*standins, *others]:
        opened = _allowed_from(rules, "ingress", source.address)
        candidates = [p for p in [*served, UNDECLARED_PORT] if not _opens(opened, "tcp", p)]
        if candidates:
            probes["BASE-FW-02"].append(
                Probe(source, target, "tcp", candidates[0], False, "not declared for this source")
            )
        if not any(contains(c, source.address) for c in ops) and not _opens(opened, "tcp", 22):
            probes["BASE-FW-03"].append(
                Probe(source, target, "tcp", 22, False, "SSH only from the operations networks")
            )
    for dest in standins:
        opened = _allowed_from(rules, "egress", dest.address)
        port = next(p for p in (443, UNDECLARED_PORT, 8081) if not _opens(opened, "tcp", p))
        probes["BASE-FW-04"].append(
            Probe(target, dest, "tcp", port, False, "not declared for this destination")
        )
    return probes


def probe_items(config: pytest.Config, control: str) -> list[Item]:
    """Per-host reachability items of ``control`` for the selected inventory hosts."""
    if config.getoption("tenancy_no_probes"):
        return []
    standins = parse_standins(config.getoption("tenancy_standins"))
    every = parse_hosts(all_inventory_hosts(config))
    out = []
    for name, hv in parse_hosts(inventory_hosts(config)).items():
        for p in plan_probes(name, hv, standins, every).get(control, []):
            verdict = "reach" if p.allowed else "block"
            source = p.source.label if p.target.label == name else p.target.label
            direction = "from" if p.target.label == name else "to"
            out.append(
                Item(control, f"{verdict}-{p.proto}-{p.port}-{direction}-{source}", p, host=name)
            )
    return out
