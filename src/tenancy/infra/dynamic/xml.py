"""libvirt XML documents as pure functions of small frozen specs.

No libvirt and no Pulumi here: every function takes a spec and returns a
string (or parses bytes), so the documents are unit-tested without a
hypervisor (tests/unit/test_libvirt_xml.py). The dynamic providers convert
their Pulumi property bags into these specs and hand the XML to libvirt.
"""

from __future__ import annotations

import ipaddress
import re
import struct
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

# libvirt object names: we only generate DNS-label-like names (plus dots and
# underscores for volume file names), which also keeps paths and shell
# arguments free of surprises.
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
_MAC_RE = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")
_BRIDGE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,14}$")  # IFNAMSIZ - 1
_TARGET_RE = re.compile(r"^(vd|sd|hd)[a-z]{1,2}$")

DOMAIN_TYPES = ("qemu", "kvm")
VOLUME_FORMATS = ("qcow2", "raw")
DISK_DEVICES = ("disk", "cdrom")
DISK_BUSES = ("virtio", "sata", "scsi", "ide")
NWFILTER_CHAINS_FIXED = ("root", "mac", "stp", "vlan", "arp", "rarp", "ipv4", "ipv6")


def check_name(kind: str, name: str) -> str | None:
    """Return an error message when ``name`` is not a usable libvirt object name."""
    if not _NAME_RE.match(name):
        return (
            f"{kind} name {name!r} must start with a letter or digit and contain only "
            "letters, digits, '.', '_' or '-' (at most 100 characters)"
        )
    return None


def check_mac(mac: str) -> str | None:
    """Return an error message when ``mac`` is not a lower-case colon-separated MAC."""
    if not _MAC_RE.match(mac):
        return f"MAC address {mac!r} must be six lower-case hex pairs separated by ':'"
    if int(mac[:2], 16) & 1:
        return f"MAC address {mac!r} is a multicast address"
    return None


def check_bridge(bridge: str) -> str | None:
    """Return an error message when ``bridge`` is not a valid Linux interface name."""
    if not _BRIDGE_RE.match(bridge):
        return f"bridge name {bridge!r} must be 1-15 letters, digits, '_' or '-'"
    return None


def check_target(target: str) -> str | None:
    """Return an error message when ``target`` is not a disk target such as ``vda``."""
    if not _TARGET_RE.match(target):
        return f"disk target {target!r} must look like vda, vdb, sda"
    return None


def _tostring(root: ET.Element) -> str:
    ET.indent(root, space="  ")
    return ET.tostring(root, encoding="unicode") + "\n"


def _sub(parent: ET.Element, tag: str, text: str | None = None, **attrs: str) -> ET.Element:
    element = ET.SubElement(parent, tag, attrs)
    if text is not None:
        element.text = text
    return element


# --- storage pool -------------------------------------------------------------


@dataclass(frozen=True)
class PoolDef:
    """A directory storage pool."""

    name: str
    path: str


def pool_xml(spec: PoolDef) -> str:
    """The ``<pool type='dir'>`` document for ``spec``."""
    root = ET.Element("pool", type="dir")
    _sub(root, "name", spec.name)
    target = _sub(root, "target")
    _sub(target, "path", spec.path)
    return _tostring(root)


# --- storage volume -----------------------------------------------------------


@dataclass(frozen=True)
class VolumeDef:
    """A volume in a pool: plain, or a copy-on-write overlay on ``backing_path``."""

    name: str
    capacity: int  # bytes (virtual size)
    format: str = "qcow2"
    backing_path: str | None = None
    backing_format: str = "qcow2"


def volume_xml(spec: VolumeDef) -> str:
    """The ``<volume>`` document for ``spec`` (allocation 0: sparse)."""
    if spec.capacity <= 0:
        raise ValueError(f"volume {spec.name}: capacity must be positive, got {spec.capacity}")
    root = ET.Element("volume")
    _sub(root, "name", spec.name)
    _sub(root, "capacity", str(spec.capacity), unit="bytes")
    _sub(root, "allocation", "0", unit="bytes")
    target = _sub(root, "target")
    _sub(target, "format", type=spec.format)
    if spec.backing_path is not None:
        backing = _sub(root, "backingStore")
        _sub(backing, "path", spec.backing_path)
        _sub(backing, "format", type=spec.backing_format)
    return _tostring(root)


QCOW2_MAGIC = b"QFI\xfb"


def image_format(header: bytes) -> str:
    """``qcow2`` when ``header`` (the first bytes of a file) is a qcow2 header, else ``raw``."""
    return "qcow2" if header[:4] == QCOW2_MAGIC else "raw"


def qcow2_virtual_size(header: bytes) -> int:
    """The virtual size in bytes recorded in a qcow2 header (needs the first 32 bytes)."""
    if len(header) < 32 or header[:4] != QCOW2_MAGIC:
        raise ValueError("not a qcow2 header")
    (size,) = struct.unpack(">Q", header[24:32])
    return int(size)


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
    _sub(root, "name", spec.name)
    if spec.uuid:
        _sub(root, "uuid", spec.uuid)
    _sub(root, "forward", mode="open")
    _sub(root, "bridge", name=spec.bridge, stp="on", delay="0")
    if not spec.dns:
        _sub(root, "dns", enable="no")
    ip = _sub(root, "ip", address=spec.address, prefix=str(spec.prefix))
    if spec.dhcp_hosts or spec.dhcp_range is not None:
        dhcp = _sub(ip, "dhcp")
        if spec.dhcp_range is not None:
            _sub(dhcp, "range", start=spec.dhcp_range.start, end=spec.dhcp_range.end)
        for host in spec.dhcp_hosts:
            dhcp.append(ET.fromstring(dhcp_host_xml(host)))
    return _tostring(root)


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
        _sub(root, "uuid", spec.uuid)
    root.extend(nwfilter_body_elements(spec.body))
    return _tostring(root)


# --- domain -------------------------------------------------------------------


@dataclass(frozen=True)
class DiskDef:
    """A disk backed by a file on the hypervisor (usually a volume's path)."""

    path: str
    target: str
    format: str = "qcow2"
    readonly: bool = False
    device: str = "disk"
    bus: str = "virtio"


@dataclass(frozen=True)
class InterfaceDef:
    """A NIC on a libvirt network, optionally behind an nwfilter with parameters."""

    network: str
    mac: str
    model: str = "virtio"
    filter: str | None = None
    filter_parameters: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class DomainDef:
    """A VM definition. ``kernel`` set means direct kernel boot, else boot from disk."""

    name: str
    domain_type: str
    memory_mib: int
    vcpus: int
    disks: tuple[DiskDef, ...] = ()
    interfaces: tuple[InterfaceDef, ...] = ()
    kernel: str | None = None
    initrd: str | None = None
    cmdline: str | None = None
    console_log: str | None = None
    cpu_mode: str | None = None
    uuid: str | None = None


def filter_parameters(params: Mapping[str, str | Sequence[str]]) -> tuple[tuple[str, str], ...]:
    """Flatten ``{"IP": ["10.0.0.5", "10.0.0.6"]}`` into ordered (name, value) pairs."""
    pairs: list[tuple[str, str]] = []
    for name in sorted(params):
        value = params[name]
        if isinstance(value, str):
            pairs.append((name, value))
        else:
            pairs.extend((name, str(item)) for item in value)
    return tuple(pairs)


def domain_problems(spec: DomainDef) -> list[str]:
    """Everything wrong with ``spec`` that we can tell without libvirt."""
    problems: list[str] = []
    message = check_name("domain", spec.name)
    if message:
        problems.append(message)
    if spec.domain_type not in DOMAIN_TYPES:
        problems.append(f"domain type {spec.domain_type!r} must be one of {DOMAIN_TYPES}")
    if spec.memory_mib < 64:
        problems.append(f"memory_mib {spec.memory_mib} is below 64 MiB")
    if spec.vcpus < 1:
        problems.append(f"vcpus {spec.vcpus} must be at least 1")
    if (spec.initrd or spec.cmdline) and not spec.kernel:
        problems.append("initrd and cmdline need a kernel (direct kernel boot)")
    targets: set[str] = set()
    for disk in spec.disks:
        for message in (check_target(disk.target),):
            if message:
                problems.append(message)
        if disk.target in targets:
            problems.append(f"disk target {disk.target} is used twice")
        targets.add(disk.target)
        if disk.format not in VOLUME_FORMATS:
            problems.append(f"disk {disk.target}: format must be one of {VOLUME_FORMATS}")
        if disk.device not in DISK_DEVICES:
            problems.append(f"disk {disk.target}: device must be one of {DISK_DEVICES}")
        if disk.bus not in DISK_BUSES:
            problems.append(f"disk {disk.target}: bus must be one of {DISK_BUSES}")
    macs: set[str] = set()
    for iface in spec.interfaces:
        message = check_mac(iface.mac)
        if message:
            problems.append(message)
        if iface.mac in macs:
            problems.append(f"interface MAC {iface.mac} is used twice")
        macs.add(iface.mac)
        if iface.filter_parameters and not iface.filter:
            problems.append(f"interface {iface.mac}: filter parameters need a filter")
    return problems


def _interface_element(iface: InterfaceDef) -> ET.Element:
    element = ET.Element("interface", type="network")
    _sub(element, "mac", address=iface.mac)
    _sub(element, "source", network=iface.network)
    _sub(element, "model", type=iface.model)
    if iface.filter:
        ref = _sub(element, "filterref", filter=iface.filter)
        for name, value in iface.filter_parameters:
            _sub(ref, "parameter", name=name, value=value)
    return element


def interface_xml(iface: InterfaceDef) -> str:
    """One ``<interface>`` element, as ``virDomainUpdateDeviceFlags`` expects it."""
    return _tostring(_interface_element(iface))


def domain_xml(spec: DomainDef) -> str:
    """The ``<domain>`` document for ``spec``.

    ACPI is on so ``shutdown`` reaches the guest; the serial console goes to a
    pty and, when ``console_log`` is set, also to that file (written by
    virtlogd); a virtio RNG keeps first boot from starving for entropy.
    """
    root = ET.Element("domain", type=spec.domain_type)
    _sub(root, "name", spec.name)
    if spec.uuid:
        _sub(root, "uuid", spec.uuid)
    _sub(root, "memory", str(spec.memory_mib), unit="MiB")
    _sub(root, "vcpu", str(spec.vcpus), placement="static")
    os_el = _sub(root, "os")
    _sub(os_el, "type", "hvm")
    if spec.kernel:
        _sub(os_el, "kernel", spec.kernel)
        if spec.initrd:
            _sub(os_el, "initrd", spec.initrd)
        if spec.cmdline:
            _sub(os_el, "cmdline", spec.cmdline)
    else:
        _sub(os_el, "boot", dev="hd")
    features = _sub(root, "features")
    _sub(features, "acpi")
    _sub(features, "apic")
    if spec.cpu_mode:
        _sub(root, "cpu", mode=spec.cpu_mode)
    _sub(root, "clock", offset="utc")
    _sub(root, "on_poweroff", "destroy")
    _sub(root, "on_reboot", "restart")
    _sub(root, "on_crash", "destroy")
    devices = _sub(root, "devices")
    for disk in spec.disks:
        disk_el = _sub(devices, "disk", type="file", device=disk.device)
        _sub(disk_el, "driver", name="qemu", type=disk.format)
        _sub(disk_el, "source", file=disk.path)
        _sub(disk_el, "target", dev=disk.target, bus=disk.bus)
        if disk.readonly:
            _sub(disk_el, "readonly")
    for iface in spec.interfaces:
        devices.append(_interface_element(iface))
    serial = _sub(devices, "serial", type="pty")
    if spec.console_log:
        _sub(serial, "log", file=spec.console_log, append="on")
    _sub(serial, "target", port="0")
    console = _sub(devices, "console", type="pty")
    _sub(console, "target", type="serial", port="0")
    rng = _sub(devices, "rng", model="virtio")
    _sub(rng, "backend", "/dev/urandom", model="random")
    _sub(devices, "memballoon", model="virtio")
    return _tostring(root)
