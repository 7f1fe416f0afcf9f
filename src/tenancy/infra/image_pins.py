"""Which base image each existing machine runs, read from its hypervisor.

A base image is versioned by its recipe (``base-<image>-<recipe>.qcow2``): a
machine keeps the version its root disk was built on, and only new machines
get the current one, so rebuilding the image replaces nothing. The truth is on
the host: the backing file of the machine's root overlay, and the kernel
command line of its domain. An operator rolls a host onto the current version
on purpose (``tenancy up --roll-image HOST``).
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import PurePosixPath

import libvirt

from tenancy.contract.models import Site
from tenancy.infra import libvirt_conn
from tenancy.plan.model import Plan

__all__ = ["BACKING_NAME", "ImagePin", "ImagePinError", "backing_version", "running_images"]

#: ``base-<image>-<recipe>.qcow2``, the recipe 16 hex digits.
BACKING_NAME = re.compile(r"^base-(?P<image>.+)-(?P<recipe>[0-9a-f]{16})\.qcow2$")


class ImagePinError(RuntimeError):
    """A hypervisor could not be asked (the message names it)."""


@dataclass(frozen=True)
class ImagePin:
    """The base image version an existing machine runs."""

    image: str
    recipe: str
    cmdline: str | None
    """The kernel command line its domain boots with (None: not defined)."""


def backing_version(volume_xml: str) -> tuple[str, str] | None:
    """``(image, recipe)`` of a root overlay's backing file, None when not a base image."""
    path = ET.fromstring(volume_xml).findtext("backingStore/path")
    match = BACKING_NAME.match(PurePosixPath(path).name) if path else None
    return (match["image"], match["recipe"]) if match else None


def _cmdline(domain_xml: str) -> str | None:
    return ET.fromstring(domain_xml).findtext("os/cmdline")


def running_images(plan: Plan, site: Site, skip_hosts: Iterable[str] = ()) -> dict[str, ImagePin]:
    """Each planned machine whose root disk exists on its host, with the version it runs.

    Machines on ``skip_hosts`` (a roll) and machines whose image name changed in
    the plan are left out: they get the current version.
    """
    skip = set(skip_hosts)
    pins: dict[str, ImagePin] = {}
    for host in site.hosts:
        machines = [m for m in plan.machines() if m.host == host.name]
        if host.name in skip or not machines:
            continue
        try:
            conn = libvirt_conn.connect(host.uri)
            for m in machines:
                pool = libvirt_conn.lookup(
                    conn.storagePoolLookupByName, f"tenancy-{plan.site}-{m.root_pool}"
                )
                if pool is None:
                    continue
                vol = libvirt_conn.lookup(pool.storageVolLookupByName, f"{m.domain}-root.qcow2")
                version = backing_version(vol.XMLDesc(0)) if vol is not None else None
                if version is None or version[0] != m.image:
                    continue
                dom = libvirt_conn.lookup(conn.lookupByName, m.domain)
                cmdline = _cmdline(dom.XMLDesc(0)) if dom is not None else None
                pins[m.domain] = ImagePin(version[0], version[1], cmdline)
        except (libvirt.libvirtError, libvirt_conn.LibvirtUnavailableError) as exc:
            raise ImagePinError(
                f"host {host.name} ({host.uri}): cannot read which image its machines run: "
                f"{libvirt_conn.error_message(exc)}"
            ) from None
    return pins
