"""Reading what the firewalls would load: the host nftables table and the nwfilter bodies.

The texts are those ``tenancy.render.firewall`` renders (``templates/nftables/site.nft.j2``
and ``templates/libvirt/nwfilter.xml.j2``); the rules check the texts themselves, so a
flow that reaches a firewall by any other way is seen too.
"""

from __future__ import annotations

import ipaddress
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass

from guardrails_props import Net

_FLOW = re.compile(
    r"ip saddr \{ (?P<src>[^}]*) \} ip daddr \{ (?P<dst>[^}]*) \} "
    r"(?P<proto>\w+) dport \{ (?P<ports>[^}]*) \}(?P<rest>.*)$"
)
_BRIDGES = re.compile(r"set tenant_bridges \{[^}]*elements = \{ (?P<elements>[^}]*) \}", re.S)
DEFAULT_DENY = re.compile(r"^\s*iifname @tenant_bridges\b.*\bdrop\b", re.M)


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
