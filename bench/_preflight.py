"""Why a benchmark cannot run on this machine, asked before it starts anything.

A benchmark that lacks its engine, hypervisor, guest image or privileges must say so
and report "not run" (exit 2), never fail half-way through a bring-up or print a
ratio it did not measure.
"""

from __future__ import annotations

import os
import shutil
import subprocess

from tenancy.project import Project

URI = "qemu:///system"


def engine_blocker() -> str | None:
    """The Pulumi CLI from ``make engine`` must be on PATH (``source tools/env.sh``)."""
    if not os.environ.get("PULUMI_PREFIX") or shutil.which("pulumi") is None:
        return "pulumi CLI not on PATH (make engine; source tools/env.sh)"
    return None


def libvirt_blocker(uri: str = URI) -> str | None:
    """The hypervisor must answer (``make hypervisor-up``); a 30 s probe with virsh."""
    virsh = shutil.which("virsh")
    if virsh is None:
        return "virsh not found (make hypervisor-up)"
    try:
        probe = subprocess.run(
            [virsh, "-c", uri, "uri"], capture_output=True, text=True, timeout=30, check=False
        )
    except subprocess.TimeoutExpired:
        return f"libvirt at {uri} does not answer within 30 s (make hypervisor-up)"
    if probe.returncode != 0:
        return (
            f"libvirt at {uri} does not answer (make hypervisor-up): {probe.stderr.strip()[:200]}"
        )
    return None


def guest_image_blocker() -> str | None:
    """VMs boot from the image ``tools/guest-image.sh`` builds (``make image``)."""
    if not Project.find().guest_image_info.is_file():
        return "no guest image (make image)"
    return None


def vm_blocker() -> str | None:
    """Everything a benchmark that boots VMs needs: root, engine, hypervisor, image."""
    if os.geteuid() != 0:
        return "needs root (libvirt system pools and networks, network namespaces)"
    return engine_blocker() or libvirt_blocker() or guest_image_blocker()
