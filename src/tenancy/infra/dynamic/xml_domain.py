"""libvirt domain XML: a VM with its disks and NICs (and one NIC alone, for hot updates).

``domain_problems`` catches what we can tell without libvirt, so a bad spec
fails in preview instead of at ``virDomainDefineXML``.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from tenancy.infra.dynamic.xml_common import check_mac, check_name, check_target, child, render
from tenancy.infra.dynamic.xml_storage import VOLUME_FORMATS

DOMAIN_TYPES = ("qemu", "kvm")
DISK_DEVICES = ("disk", "cdrom")
DISK_BUSES = ("virtio", "sata", "scsi", "ide")


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
    child(element, "mac", address=iface.mac)
    child(element, "source", network=iface.network)
    child(element, "model", type=iface.model)
    if iface.filter:
        ref = child(element, "filterref", filter=iface.filter)
        for name, value in iface.filter_parameters:
            child(ref, "parameter", name=name, value=value)
    return element


def interface_xml(iface: InterfaceDef) -> str:
    """One ``<interface>`` element, as ``virDomainUpdateDeviceFlags`` expects it."""
    return render(_interface_element(iface))


def domain_xml(spec: DomainDef) -> str:
    """The ``<domain>`` document for ``spec``.

    ACPI is on so ``shutdown`` reaches the guest; the serial console goes to a
    pty and, when ``console_log`` is set, also to that file (written by
    virtlogd); a virtio RNG keeps first boot from starving for entropy.
    """
    root = ET.Element("domain", type=spec.domain_type)
    child(root, "name", spec.name)
    if spec.uuid:
        child(root, "uuid", spec.uuid)
    child(root, "memory", str(spec.memory_mib), unit="MiB")
    child(root, "vcpu", str(spec.vcpus), placement="static")
    os_el = child(root, "os")
    child(os_el, "type", "hvm")
    if spec.kernel:
        child(os_el, "kernel", spec.kernel)
        if spec.initrd:
            child(os_el, "initrd", spec.initrd)
        if spec.cmdline:
            child(os_el, "cmdline", spec.cmdline)
    else:
        child(os_el, "boot", dev="hd")
    features = child(root, "features")
    child(features, "acpi")
    child(features, "apic")
    if spec.cpu_mode:
        child(root, "cpu", mode=spec.cpu_mode)
    child(root, "clock", offset="utc")
    child(root, "on_poweroff", "destroy")
    child(root, "on_reboot", "restart")
    child(root, "on_crash", "destroy")
    devices = child(root, "devices")
    for disk in spec.disks:
        disk_el = child(devices, "disk", type="file", device=disk.device)
        child(disk_el, "driver", name="qemu", type=disk.format)
        child(disk_el, "source", file=disk.path)
        child(disk_el, "target", dev=disk.target, bus=disk.bus)
        if disk.readonly:
            child(disk_el, "readonly")
    for iface in spec.interfaces:
        devices.append(_interface_element(iface))
    serial = child(devices, "serial", type="pty")
    if spec.console_log:
        child(serial, "log", file=spec.console_log, append="on")
    child(serial, "target", port="0")
    console = child(devices, "console", type="pty")
    child(console, "target", type="serial", port="0")
    rng = child(devices, "rng", model="virtio")
    child(rng, "backend", "/dev/urandom", model="random")
    child(devices, "memballoon", model="virtio")
    return render(root)
