"""What every libvirt XML document shares: the rules for its names, and how it is written.

The documents are pure functions of small frozen specs (no libvirt, no
Pulumi), so they are unit-tested without a hypervisor
(tests/unit/test_libvirt_xml.py); ``xml_storage``, ``xml_network`` and
``xml_domain`` build them, the dynamic providers hand them to libvirt.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

# libvirt object names: we only generate DNS-label-like names (plus dots and
# underscores for volume file names), which also keeps paths and shell
# arguments free of surprises.
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
_MAC_RE = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")
_BRIDGE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,14}$")  # IFNAMSIZ - 1
_TARGET_RE = re.compile(r"^(vd|sd|hd)[a-z]{1,2}$")


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


def render(root: ET.Element) -> str:
    """The indented document libvirt gets, newline-terminated (stable for diffs and tests)."""
    ET.indent(root, space="  ")
    return ET.tostring(root, encoding="unicode") + "\n"


def child(parent: ET.Element, tag: str, text: str | None = None, **attrs: str) -> ET.Element:
    """Append ``<tag attrs>text</tag>`` to ``parent``: one line per element in the builders."""
    element = ET.SubElement(parent, tag, attrs)
    if text is not None:
        element.text = text
    return element
