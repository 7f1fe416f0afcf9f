"""Check of the host's commands: each one the scripts, libvirt or a journey calls.

A missing command is named with its Debian package, so the fix is one install away.
"""

from __future__ import annotations

from tenancy.doctor.common import FIX_HYPERVISOR, FIX_TEST_DEPS
from tenancy.doctor.model import Check, Facts

# (command, Debian package, needed for); all come with `make hypervisor-up`
TOOLS: tuple[tuple[str, str, str], ...] = (
    ("virsh", "libvirt-clients", "talking to libvirt"),
    ("qemu-system-x86_64", "qemu-system-x86", "running the VMs"),
    ("qemu-img", "qemu-utils", "disk images"),
    ("nft", "nftables", "the network guard and host firewalls"),
    ("dnsmasq", "dnsmasq-base", "DHCP/DNS of the tenant segments"),
    ("genisoimage", "genisoimage", "cloud-init seed images"),
    ("ssh", "openssh-client", "Ansible and the audit over SSH"),
    ("ssh-keygen", "openssh-client", "the ops SSH key (make state)"),
    ("ebtables", "ebtables", "libvirt nwfilter (anti-spoofing)"),
    ("ip", "iproute2", "bridges and the stand-in namespaces"),
    ("debootstrap", "debootstrap", "building the guest image"),
)
BROWSERS = ("chromium", "chromium-browser", "google-chrome")


def check_tools(facts: Facts) -> list[Check]:
    """Commands the setup scripts, libvirt and the journeys call, with their Debian package."""
    checks = []
    for tool, package, why in TOOLS:
        found = facts.which.get(tool)
        if found:
            checks.append(Check("tools", tool, "ok", f"{found} ({package})"))
        else:
            checks.append(
                Check(
                    "tools",
                    tool,
                    "fail",
                    f"not on PATH: install Debian package {package} ({why})",
                    FIX_HYPERVISOR,
                )
            )
    browser = next((facts.which[b] for b in BROWSERS if facts.which.get(b)), None)
    if browser:
        checks.append(Check("tools", "chromium", "ok", f"{browser} (chromium)"))
    else:
        checks.append(
            Check(
                "tools",
                "chromium",
                "warn",
                "not on PATH: Debian package chromium (only the audit report's browser tests)",
                FIX_TEST_DEPS,
            )
        )
    return checks
