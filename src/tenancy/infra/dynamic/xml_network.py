"""libvirt network XML: isolated tenant segments with DHCP, and the nwfilters on their NICs.

``network_problems`` catches what libvirt would reject or silently
misbehave on before any document reaches it.
"""

from __future__ import annotations

import ipaddress
import xml.etree.ElementTree as ET
from dataclasses import dataclass

from tenancy.infra.dynamic.xml_common import check_bridge, check_mac, check_name, child, render

NWFILTER_CHAINS_FIXED = ("root", "mac", "stp", "vlan", "arp", "rarp", "ipv4", "ipv6")


# --- network ------------------------------------------------------------------


@dataclass(frozen=True)
class DhcpHost:
    """A DHCP reservation: this MAC always gets this address."""

    mac: str
    ip: str
    hostname: str | None = None


@dataclass(frozen=True)
class DhcpRange:
    """A dynamic DHCP range (optional: reservations work without one)."""

    start: str
    end: str


@dataclass(frozen=True)
class NetworkDef:
    """An isolated tenant segment: ``<forward mode='open'/>`` on our own bridge."""

    name: str
    bridge: str
    address: str  # the host's (gateway) address on the bridge
    prefix: int
    dhcp_hosts: tuple[DhcpHost, ...] = ()
    dhcp_range: DhcpRange | None = None
    dns: bool = False
    uuid: str | None = None


def network_problems(spec: NetworkDef) -> list[str]:
    """Everything wrong with ``spec`` that libvirt would reject or silently misbehave on."""
    problems: list[str] = []
    for message in (check_name("network", spec.name), check_bridge(spec.bridge)):
        if message:
            problems.append(message)
    try:
        iface = ipaddress.IPv4Interface(f"{spec.address}/{spec.prefix}")
    except ValueError as exc:
        return [*problems, f"address/prefix {spec.address}/{spec.prefix}: {exc}"]
    net = iface.network
    if iface.ip in (net.network_address, net.broadcast_address):
        problems.append(f"gateway {iface.ip} is the network or broadcast address of {net}")
    seen_macs: set[str] = set()
    seen_ips: set[str] = set()
    for host in spec.dhcp_hosts:
        message = check_mac(host.mac)
        if message:
            problems.append(message)
        if host.mac in seen_macs:
            problems.append(f"DHCP host MAC {host.mac} appears twice")
        if host.ip in seen_ips:
            problems.append(f"DHCP host address {host.ip} appears twice")
        seen_macs.add(host.mac)
        seen_ips.add(host.ip)
        try:
            ip = ipaddress.IPv4Address(host.ip)
        except ValueError as exc:
            problems.append(f"DHCP host address {host.ip!r}: {exc}")
            continue
        if ip not in net or ip in (net.network_address, net.broadcast_address, iface.ip):
            problems.append(f"DHCP host address {ip} is not a usable host address of {net}")
    if spec.dhcp_range is not None:
        for bound in (spec.dhcp_range.start, spec.dhcp_range.end):
            try:
                if ipaddress.IPv4Address(bound) not in net:
                    problems.append(f"DHCP range bound {bound} is outside {net}")
            except ValueError as exc:
                problems.append(f"DHCP range bound {bound!r}: {exc}")
    return problems


def dhcp_host_xml(host: DhcpHost) -> str:
    """One ``<host>`` element, as ``virNetworkUpdate`` expects it."""
    attrs = {"mac": host.mac, "ip": host.ip}
    if host.hostname:
        attrs["name"] = host.hostname
    return ET.tostring(ET.Element("host", attrs), encoding="unicode")


def parse_dhcp_hosts(network_document: str) -> tuple[DhcpHost, ...]:
    """The DHCP reservations of the first IPv4 ``<ip>`` in a ``<network>`` document."""
    root = ET.fromstring(network_document)
    for ip in root.findall("ip"):
        if ip.get("family", "ipv4") != "ipv4":
            continue
        return tuple(
            DhcpHost(
                mac=host.get("mac", "").lower(), ip=host.get("ip", ""), hostname=host.get("name")
            )
            for host in ip.findall("dhcp/host")
        )
    return ()


def network_xml(spec: NetworkDef) -> str:
    """The ``<network>`` document for ``spec``.

    ``mode='open'``: libvirt adds no firewall rules of its own (our nftables
    table and nwfilter do the filtering) but still runs DHCP. DNS is off unless
    asked for, so dnsmasq never forwards queries off the host.
    """
    root = ET.Element("network")
    child(root, "name", spec.name)
    if spec.uuid:
        child(root, "uuid", spec.uuid)
    child(root, "forward", mode="open")
    child(root, "bridge", name=spec.bridge, stp="on", delay="0")
    if not spec.dns:
        child(root, "dns", enable="no")
    ip = child(root, "ip", address=spec.address, prefix=str(spec.prefix))
    if spec.dhcp_hosts or spec.dhcp_range is not None:
        dhcp = child(ip, "dhcp")
        if spec.dhcp_range is not None:
            child(dhcp, "range", start=spec.dhcp_range.start, end=spec.dhcp_range.end)
        for host in spec.dhcp_hosts:
            dhcp.append(ET.fromstring(dhcp_host_xml(host)))
    return render(root)


# --- nwfilter -----------------------------------------------------------------


@dataclass(frozen=True)
class NwFilterDef:
    """A named filter: ``body`` is the XML inside ``<filter>`` (rules and filterrefs)."""

    name: str
    body: str
    chain: str = "root"
    priority: int | None = None
    uuid: str | None = None


def nwfilter_body_elements(body: str) -> list[ET.Element]:
    """Parse the inner XML of a filter; raises ``ValueError`` naming the problem."""
    try:
        wrapper = ET.fromstring(f"<filter>{body}</filter>")
    except ET.ParseError as exc:
        raise ValueError(f"nwfilter body is not well-formed XML: {exc}") from exc
    elements = list(wrapper)
    for element in elements:
        if element.tag not in ("rule", "filterref"):
            raise ValueError(
                f"nwfilter body may only contain <rule> and <filterref>, found <{element.tag}>"
            )
    return elements


def nwfilter_xml(spec: NwFilterDef) -> str:
    """The ``<filter>`` document for ``spec`` (with the uuid when redefining)."""
    attrs = {"name": spec.name, "chain": spec.chain}
    if spec.priority is not None:
        attrs["priority"] = str(spec.priority)
    root = ET.Element("filter", attrs)
    if spec.uuid:
        child(root, "uuid", spec.uuid)
    root.extend(nwfilter_body_elements(spec.body))
    return render(root)
