"""Network: an isolated tenant segment (``<forward mode='open'/>``, our bridge name)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, TypedDict

import libvirt
import pulumi
from pulumi.dynamic import CreateResult, ReadResult, Resource, UpdateResult

from tenancy.infra import libvirt_conn
from tenancy.infra.dynamic._base import (
    REQUIRED,
    LibvirtProvider,
    args_to_props,
    canonical,
    gone,
    prop_bool,
    prop_dict,
    prop_int,
    prop_list,
    prop_opt_str,
    prop_str,
)
from tenancy.infra.dynamic.xml_network import (
    DhcpHost,
    DhcpRange,
    NetworkDef,
    dhcp_host_xml,
    network_problems,
    network_xml,
    parse_dhcp_hosts,
)


def _dhcp_hosts(props: dict[str, Any]) -> tuple[DhcpHost, ...]:
    hosts = []
    for item in prop_list(props, "dhcp_hosts"):
        entry = dict(item)
        hosts.append(
            DhcpHost(
                mac=prop_str(entry, "mac").lower(),
                ip=prop_str(entry, "ip"),
                hostname=prop_opt_str(entry, "hostname"),
            )
        )
    return tuple(hosts)


def network_spec(props: dict[str, Any]) -> NetworkDef:
    """The pure spec for a Network property bag."""
    dhcp_range = prop_dict(props, "dhcp_range")
    return NetworkDef(
        name=prop_str(props, "name"),
        bridge=prop_str(props, "bridge"),
        address=prop_str(props, "address"),
        prefix=prop_int(props, "prefix"),
        dhcp_hosts=_dhcp_hosts(props),
        dhcp_range=(
            DhcpRange(prop_str(dhcp_range, "start"), prop_str(dhcp_range, "end"))
            if dhcp_range
            else None
        ),
        dns=prop_bool(props, "dns", False),
    )


def _has_dhcp(props: dict[str, Any]) -> bool:
    return bool(prop_list(props, "dhcp_hosts")) or bool(props.get("dhcp_range"))


def _hosts_as_props(hosts: tuple[DhcpHost, ...]) -> list[dict[str, str]]:
    out = []
    for host in hosts:
        entry = {"mac": host.mac, "ip": host.ip}
        if host.hostname:
            entry["hostname"] = host.hostname
        out.append(entry)
    return out


class NetworkProvider(LibvirtProvider):
    """Inputs: uri, name, bridge, address, prefix, dhcp_hosts [{mac, ip, hostname?}],
    dhcp_range {start, end} (optional), dns (default false), autostart (default true).

    Outputs: uuid, active. Replaced when uri, name, bridge, address, prefix,
    dhcp_range or dns change, or when DHCP is switched on or off (dnsmasq
    starts only with the network). DHCP reservations are edited live
    (``virNetworkUpdate``) while some DHCP stays; autostart in place; a network
    found stopped by ``refresh`` is started again.
    """

    kind: ClassVar[str] = "Network"
    input_defaults: ClassVar[Mapping[str, Any]] = {
        "uri": REQUIRED,
        "name": REQUIRED,
        "bridge": REQUIRED,
        "address": REQUIRED,
        "prefix": REQUIRED,
        "dhcp_hosts": [],
        "dhcp_range": None,
        "dns": False,
        "autostart": True,
    }
    replace_on: ClassVar[frozenset[str]] = frozenset(
        {"uri", "name", "bridge", "address", "prefix", "dhcp_range", "dns"}
    )

    def validate(self, inputs: dict[str, Any]) -> list[tuple[str, str]]:
        try:
            spec = network_spec(inputs)
        except ValueError as exc:
            return [("", str(exc))]
        return [("", message) for message in network_problems(spec)]

    def drift(self, olds: dict[str, Any]) -> list[str]:
        return ["active"] if olds.get("active") is False else []

    def replacements(
        self, changed: list[str], olds: dict[str, Any], news: dict[str, Any]
    ) -> list[str]:
        replaces = super().replacements(changed, olds, news)
        if "dhcp_hosts" in changed and _has_dhcp(olds) != _has_dhcp(news):
            replaces.append("dhcp_hosts")
        return replaces

    def create(self, props: dict[str, Any]) -> CreateResult:
        spec = network_spec(props)
        uri = prop_str(props, "uri")
        conn = libvirt_conn.connect(uri)
        libvirt_conn.refuse_existing(conn.networkLookupByName, "network", spec.name, uri)
        net = conn.networkDefineXML(network_xml(spec))
        try:
            net.setAutostart(1 if prop_bool(props, "autostart", True) else 0)
            net.create()
        except libvirt.libvirtError:
            _remove(net)
            raise
        return CreateResult(spec.name, self.outputs(props, uuid=net.UUIDString(), active=True))

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        conn = libvirt_conn.connect(prop_str(props, "uri"))
        net = libvirt_conn.lookup(conn.networkLookupByName, id_)
        if net is None:
            return gone()
        observed = dict(props)
        observed["autostart"] = bool(net.autostart())
        # Reservations are the part operators edit by hand (virsh net-update):
        # report what libvirt has, so refresh shows drift and up repairs it.
        observed["dhcp_hosts"] = _hosts_as_props(parse_dhcp_hosts(net.XMLDesc(0)))
        active = bool(net.isActive())
        return ReadResult(id_, self.outputs(observed, uuid=net.UUIDString(), active=active))

    def update(self, id_: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        uri = prop_str(news, "uri")
        conn = libvirt_conn.connect(uri)
        net = conn.networkLookupByName(id_)
        if not net.isActive():
            net.create()
        if canonical(olds.get("dhcp_hosts")) != canonical(news.get("dhcp_hosts")):
            _update_dhcp_hosts(net, _dhcp_hosts(news))
        net.setAutostart(1 if prop_bool(news, "autostart", True) else 0)
        return UpdateResult(self.outputs(news, uuid=net.UUIDString(), active=True))

    def delete(self, id_: str, props: dict[str, Any]) -> None:
        conn = libvirt_conn.connect(prop_str(props, "uri"))
        net = libvirt_conn.lookup(conn.networkLookupByName, id_)
        if net is not None:
            _remove(net)


def _update_dhcp_hosts(net: Any, wanted: tuple[DhcpHost, ...]) -> None:
    """Make the network's reservations equal ``wanted``, starting from what libvirt has."""
    flags = libvirt.VIR_NETWORK_UPDATE_AFFECT_CONFIG
    if net.isActive():
        flags |= libvirt.VIR_NETWORK_UPDATE_AFFECT_LIVE
    section = libvirt.VIR_NETWORK_SECTION_IP_DHCP_HOST
    live = parse_dhcp_hosts(net.XMLDesc(0))
    for host in live:
        if host not in wanted:
            net.update(
                libvirt.VIR_NETWORK_UPDATE_COMMAND_DELETE, section, -1, dhcp_host_xml(host), flags
            )
    kept = {host for host in live if host in wanted}
    for host in wanted:
        if host not in kept:
            net.update(
                libvirt.VIR_NETWORK_UPDATE_COMMAND_ADD_LAST, section, -1, dhcp_host_xml(host), flags
            )


def _remove(net: Any) -> None:
    for step in ("destroy", "undefine"):
        try:
            if step == "destroy" and not net.isActive():
                continue
            getattr(net, step)()
        except libvirt.libvirtError as exc:
            if not libvirt_conn.is_not_found(exc):
                raise


class DhcpHostArgs(TypedDict, total=False):
    """A DHCP reservation of a :class:`Network`."""

    mac: pulumi.Input[str]
    ip: pulumi.Input[str]
    hostname: pulumi.Input[str]


class DhcpRangeArgs(TypedDict):
    """A dynamic DHCP range of a :class:`Network`."""

    start: pulumi.Input[str]
    end: pulumi.Input[str]


@dataclass(frozen=True)
class NetworkArgs:
    """Inputs of a :class:`Network`."""

    uri: pulumi.Input[str]
    """libvirt URI of the hypervisor."""
    name: pulumi.Input[str]
    """Network name, unique on the hypervisor."""
    bridge: pulumi.Input[str]
    """Linux bridge name (at most 15 characters), e.g. ``tn-finance``."""
    address: pulumi.Input[str]
    """The host's address on the bridge (the segment's gateway), e.g. ``10.30.2.1``."""
    prefix: pulumi.Input[int]
    """Prefix length of the segment, e.g. ``24``."""
    dhcp_hosts: pulumi.Input[list[DhcpHostArgs]] | None = None
    """DHCP reservations; without ``dhcp_range`` only these MACs get a lease."""
    dhcp_range: pulumi.Input[DhcpRangeArgs] | None = None
    """Optional dynamic range."""
    dns: pulumi.Input[bool] = False
    """Run libvirt's DNS (dnsmasq) on the segment; off by default."""
    autostart: pulumi.Input[bool] = True
    """Start the network with libvirtd."""


class Network(Resource, module="tenancy", name="Network"):
    """A libvirt network in ``open`` forward mode. The resource id is the network name."""

    uri: pulumi.Output[str]
    name: pulumi.Output[str]
    bridge: pulumi.Output[str]
    address: pulumi.Output[str]
    prefix: pulumi.Output[int]
    dhcp_hosts: pulumi.Output[list[dict[str, str]]]
    dhcp_range: pulumi.Output[dict[str, str] | None]
    dns: pulumi.Output[bool]
    autostart: pulumi.Output[bool]
    uuid: pulumi.Output[str]
    """libvirt's UUID of the network."""
    active: pulumi.Output[bool]
    """Whether the network was running when last created, updated or refreshed."""

    def __init__(
        self,
        resource_name: str,
        args: NetworkArgs,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        props = {**args_to_props(args), "uuid": None, "active": None}
        super().__init__(NetworkProvider(), resource_name, props, opts)
