"""Domain: a libvirt VM (define, autostart, start; graceful shutdown on delete)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, TypedDict

import libvirt
import pulumi
from pulumi.dynamic import CheckResult, CreateResult, ReadResult, Resource, UpdateResult

from tenancy.infra import libvirt_conn
from tenancy.infra.dynamic._base import (
    REQUIRED,
    LibvirtProvider,
    args_to_props,
    canonical,
    gone,
    is_known,
    prop_bool,
    prop_dict,
    prop_int,
    prop_list,
    prop_opt_str,
    prop_str,
)
from tenancy.infra.dynamic.domain_power import stop_gracefully
from tenancy.infra.dynamic.xml_domain import (
    DiskDef,
    DomainDef,
    InterfaceDef,
    domain_problems,
    domain_xml,
    filter_parameters,
    interface_xml,
)

DISK_DEFAULTS: dict[str, Any] = {
    "format": "qcow2",
    "readonly": False,
    "device": "disk",
    "bus": "virtio",
}
INTERFACE_DEFAULTS: dict[str, Any] = {"model": "virtio"}
# The parts of an interface that identify the NIC; the rest (filter, parameters)
# can be swapped on a running VM.
INTERFACE_IDENTITY = ("network", "mac", "model")
UNDEFINE_FLAGS = (
    libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE
    | libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA
    | libvirt.VIR_DOMAIN_UNDEFINE_CHECKPOINTS_METADATA
    | libvirt.VIR_DOMAIN_UNDEFINE_NVRAM
)


def _disk(item: Any) -> DiskDef:
    entry = {**DISK_DEFAULTS, **dict(item)}
    return DiskDef(
        path=prop_str(entry, "path"),
        target=prop_str(entry, "target"),
        format=prop_str(entry, "format"),
        readonly=prop_bool(entry, "readonly", False),
        device=prop_str(entry, "device"),
        bus=prop_str(entry, "bus"),
    )


def _interface(item: Any) -> InterfaceDef:
    entry = {**INTERFACE_DEFAULTS, **dict(item)}
    params = prop_dict(entry, "filter_parameters")
    return InterfaceDef(
        network=prop_str(entry, "network"),
        mac=prop_str(entry, "mac").lower(),
        model=prop_str(entry, "model"),
        filter=prop_opt_str(entry, "filter"),
        filter_parameters=filter_parameters(params),
    )


def domain_def(props: dict[str, Any], uuid: str | None = None) -> DomainDef:
    """The pure spec for a Domain property bag."""
    return DomainDef(
        name=prop_str(props, "name"),
        domain_type=prop_str(props, "domain_type"),
        memory_mib=prop_int(props, "memory_mib"),
        vcpus=prop_int(props, "vcpus"),
        disks=tuple(_disk(d) for d in prop_list(props, "disks")),
        interfaces=tuple(_interface(i) for i in prop_list(props, "interfaces")),
        kernel=prop_opt_str(props, "kernel"),
        initrd=prop_opt_str(props, "initrd"),
        cmdline=prop_opt_str(props, "cmdline"),
        console_log=prop_opt_str(props, "console_log"),
        cpu_mode=prop_opt_str(props, "cpu_mode"),
        uuid=uuid,
    )


def interfaces_swappable(old: list[Any], new: list[Any]) -> bool:
    """True when only filters/parameters differ, so the NICs can be updated live."""
    if len(old) != len(new):
        return False
    for before, after in zip(old, new, strict=True):
        if not isinstance(before, dict) or not isinstance(after, dict):
            return False
        b = {**INTERFACE_DEFAULTS, **before}
        a = {**INTERFACE_DEFAULTS, **after}
        if any(canonical(b.get(k)) != canonical(a.get(k)) for k in INTERFACE_IDENTITY):
            return False
        if not is_known(a):
            return False
    return True


class DomainProvider(LibvirtProvider):
    """Inputs: uri, name, domain_type (qemu|kvm), memory_mib, vcpus, kernel/initrd/cmdline
    (direct kernel boot; else boot from the first disk), disks [{path, target,
    format, readonly, device, bus}], interfaces [{network, mac, model, filter,
    filter_parameters}], console_log, cpu_mode, autostart, running,
    shutdown_timeout (seconds of graceful shutdown before destroy).

    Outputs: uuid. Replaced when the hardware changes (uri, name, domain_type,
    memory_mib, vcpus, kernel, initrd, cmdline, disks, console_log, cpu_mode,
    or an interface's network/MAC/model or the number of interfaces). Updated
    in place: autostart, running (start / graceful stop), shutdown_timeout and
    interface filters and their parameters (swapped live on a running VM).
    ``refresh`` records a stopped VM (running=false) and the autostart flag,
    so the next ``up`` starts it again.
    """

    kind: ClassVar[str] = "Domain"
    input_defaults: ClassVar[Mapping[str, Any]] = {
        "uri": REQUIRED,
        "name": REQUIRED,
        "domain_type": REQUIRED,
        "memory_mib": REQUIRED,
        "vcpus": 1,
        "kernel": None,
        "initrd": None,
        "cmdline": None,
        "disks": [],
        "interfaces": [],
        "console_log": None,
        "cpu_mode": None,
        "autostart": True,
        "running": True,
        "shutdown_timeout": 60,
    }
    replace_on: ClassVar[frozenset[str]] = frozenset(
        {
            "uri",
            "name",
            "domain_type",
            "memory_mib",
            "vcpus",
            "kernel",
            "initrd",
            "cmdline",
            "disks",
            "console_log",
            "cpu_mode",
        }
    )

    def check(self, olds: dict[str, Any], news: dict[str, Any]) -> CheckResult:
        result = super().check(olds, news)
        # Spell out nested defaults so that {"format": "qcow2"} and {} compare equal.
        inputs = result.inputs
        for key, defaults in (("disks", DISK_DEFAULTS), ("interfaces", INTERFACE_DEFAULTS)):
            items = inputs.get(key)
            if isinstance(items, list):
                inputs[key] = [
                    {**defaults, **item} if isinstance(item, dict) else item for item in items
                ]
        return result

    def validate(self, inputs: dict[str, Any]) -> list[tuple[str, str]]:
        try:
            spec = domain_def(inputs)
        except ValueError as exc:
            return [("", str(exc))]
        problems = [("", message) for message in domain_problems(spec)]
        if spec.console_log is not None and not spec.console_log.startswith("/"):
            problems.append(("console_log", "console_log must be an absolute path"))
        timeout = inputs.get("shutdown_timeout")
        if not isinstance(timeout, int | float) or timeout < 0:
            problems.append(("shutdown_timeout", "shutdown_timeout must be >= 0 seconds"))
        return problems

    def replacements(
        self, changed: list[str], olds: dict[str, Any], news: dict[str, Any]
    ) -> list[str]:
        replaces = super().replacements(changed, olds, news)
        if "interfaces" in changed and not interfaces_swappable(
            prop_list(olds, "interfaces"), prop_list(news, "interfaces")
        ):
            replaces.append("interfaces")
        return replaces

    def create(self, props: dict[str, Any]) -> CreateResult:
        spec = domain_def(props)
        uri = prop_str(props, "uri")
        conn = libvirt_conn.connect(uri)
        libvirt_conn.refuse_existing(conn.lookupByName, "domain", spec.name, uri)
        dom = conn.defineXML(domain_xml(spec))
        try:
            dom.setAutostart(1 if prop_bool(props, "autostart", True) else 0)
            if prop_bool(props, "running", True):
                dom.create()
        except libvirt.libvirtError:
            _remove(dom, 0)
            raise
        return CreateResult(spec.name, self.outputs(props, uuid=dom.UUIDString()))

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        conn = libvirt_conn.connect(prop_str(props, "uri"))
        dom = libvirt_conn.lookup(conn.lookupByName, id_)
        if dom is None:
            return gone()
        observed = dict(props)
        observed["running"] = bool(dom.isActive())
        observed["autostart"] = bool(dom.autostart())
        return ReadResult(id_, self.outputs(observed, uuid=dom.UUIDString()))

    def update(self, id_: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        uri = prop_str(news, "uri")
        conn = libvirt_conn.connect(uri)
        dom = conn.lookupByName(id_)
        old_ifaces = prop_list(olds, "interfaces")
        new_ifaces = prop_list(news, "interfaces")
        if canonical(old_ifaces) != canonical(new_ifaces):
            flags = libvirt.VIR_DOMAIN_AFFECT_CONFIG
            if dom.isActive():
                flags |= libvirt.VIR_DOMAIN_AFFECT_LIVE
            for before, after in zip(old_ifaces, new_ifaces, strict=True):
                if canonical(before) != canonical(after):
                    dom.updateDeviceFlags(interface_xml(_interface(after)), flags)
        dom.setAutostart(1 if prop_bool(news, "autostart", True) else 0)
        want_running = prop_bool(news, "running", True)
        if want_running and not dom.isActive():
            dom.create()
        elif not want_running and dom.isActive():
            stop_gracefully(dom, prop_int(news, "shutdown_timeout"))
        return UpdateResult(self.outputs(news, uuid=dom.UUIDString()))

    def delete(self, id_: str, props: dict[str, Any]) -> None:
        conn = libvirt_conn.connect(prop_str(props, "uri"))
        dom = libvirt_conn.lookup(conn.lookupByName, id_)
        if dom is not None:
            timeout = props.get("shutdown_timeout")
            _remove(dom, int(timeout) if isinstance(timeout, int | float) else 60)


def _remove(dom: Any, timeout: float) -> None:
    stop_gracefully(dom, timeout)
    try:
        dom.undefineFlags(UNDEFINE_FLAGS)
    except libvirt.libvirtError as exc:
        if not libvirt_conn.is_not_found(exc):
            raise


class DiskArgs(TypedDict, total=False):
    """A disk of a :class:`Domain`; ``path`` and ``target`` are required."""

    path: pulumi.Input[str]
    """File on the hypervisor, usually a Volume's or CloudInitDisk's ``path``."""
    target: pulumi.Input[str]
    """Guest device name: ``vda``, ``vdb``, ..."""
    format: pulumi.Input[str]
    """``qcow2`` (default) or ``raw`` (the seed ISO)."""
    readonly: pulumi.Input[bool]
    """Attach read-only (the seed ISO)."""
    device: pulumi.Input[str]
    """``disk`` (default) or ``cdrom``."""
    bus: pulumi.Input[str]
    """``virtio`` (default), ``sata``, ``scsi`` or ``ide``."""


class InterfaceArgs(TypedDict, total=False):
    """A NIC of a :class:`Domain`; ``network`` and ``mac`` are required."""

    network: pulumi.Input[str]
    """libvirt network name."""
    mac: pulumi.Input[str]
    """MAC address (lower case), derived deterministically by the plan."""
    model: pulumi.Input[str]
    """NIC model, ``virtio`` by default."""
    filter: pulumi.Input[str]
    """nwfilter name to attach (e.g. the tenant policy filter or ``clean-traffic``)."""
    filter_parameters: pulumi.Input[dict[str, str | list[str]]]
    """Filter parameters, e.g. ``{"IP": "10.30.2.10"}``; a list repeats the parameter."""


@dataclass(frozen=True)
class DomainArgs:
    """Inputs of a :class:`Domain`."""

    uri: pulumi.Input[str]
    """libvirt URI of the hypervisor."""
    name: pulumi.Input[str]
    """Domain name, unique on the hypervisor."""
    domain_type: pulumi.Input[str]
    """``kvm`` on real hypervisors, ``qemu`` (TCG) where KVM is unusable."""
    memory_mib: pulumi.Input[int]
    """Memory in MiB."""
    vcpus: pulumi.Input[int] = 1
    """Virtual CPUs."""
    disks: pulumi.Input[list[DiskArgs]] | None = None
    """Disks in boot order."""
    interfaces: pulumi.Input[list[InterfaceArgs]] | None = None
    """NICs in order (eth0, eth1, ...)."""
    kernel: pulumi.Input[str] | None = None
    """Kernel path on the hypervisor for direct kernel boot."""
    initrd: pulumi.Input[str] | None = None
    """Initrd path on the hypervisor (with kernel)."""
    cmdline: pulumi.Input[str] | None = None
    """Kernel command line (with kernel), e.g. ``root=/dev/vda rw console=ttyS0``."""
    console_log: pulumi.Input[str] | None = None
    """File on the hypervisor that receives the serial console (via virtlogd)."""
    cpu_mode: pulumi.Input[str] | None = None
    """``host-passthrough`` etc.; libvirt's default when omitted."""
    autostart: pulumi.Input[bool] = True
    """Start with libvirtd."""
    running: pulumi.Input[bool] = True
    """Desired power state."""
    shutdown_timeout: pulumi.Input[int] = 60
    """Seconds to wait for a graceful shutdown before destroying the VM."""


class Domain(Resource, module="tenancy", name="Domain"):
    """A libvirt domain (VM). The resource id is the domain name."""

    uri: pulumi.Output[str]
    name: pulumi.Output[str]
    domain_type: pulumi.Output[str]
    memory_mib: pulumi.Output[int]
    vcpus: pulumi.Output[int]
    disks: pulumi.Output[list[dict[str, Any]]]
    interfaces: pulumi.Output[list[dict[str, Any]]]
    kernel: pulumi.Output[str | None]
    initrd: pulumi.Output[str | None]
    cmdline: pulumi.Output[str | None]
    console_log: pulumi.Output[str | None]
    cpu_mode: pulumi.Output[str | None]
    autostart: pulumi.Output[bool]
    running: pulumi.Output[bool]
    shutdown_timeout: pulumi.Output[int]
    uuid: pulumi.Output[str]
    """libvirt's UUID of the domain."""

    def __init__(
        self,
        resource_name: str,
        args: DomainArgs,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        props = {**args_to_props(args), "uuid": None}
        super().__init__(DomainProvider(), resource_name, props, opts)
