"""libvirt storage XML: directory pools, volumes (plain or overlays), and qcow2 headers.

The header helpers let the volume provider tell a qcow2 base image from a
raw one and read its virtual size without qemu-img.
"""

from __future__ import annotations

import struct
import xml.etree.ElementTree as ET
from dataclasses import dataclass

from tenancy.infra.dynamic.xml_common import child, render

VOLUME_FORMATS = ("qcow2", "raw")


# --- storage pool -------------------------------------------------------------


@dataclass(frozen=True)
class PoolDef:
    """A directory storage pool."""

    name: str
    path: str


def pool_xml(spec: PoolDef) -> str:
    """The ``<pool type='dir'>`` document for ``spec``."""
    root = ET.Element("pool", type="dir")
    child(root, "name", spec.name)
    target = child(root, "target")
    child(target, "path", spec.path)
    return render(root)


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
    child(root, "name", spec.name)
    child(root, "capacity", str(spec.capacity), unit="bytes")
    child(root, "allocation", "0", unit="bytes")
    target = child(root, "target")
    child(target, "format", type=spec.format)
    if spec.backing_path is not None:
        backing = child(root, "backingStore")
        child(backing, "path", spec.backing_path)
        child(backing, "format", type=spec.backing_format)
    return render(root)


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
