"""Checks of the hypervisor host: KVM or emulation as the site expects, and the network guard.

Both decide whether VMs may run here at all: domains of a kvm site do not
start without KVM, and no VM runs without the nftables guard.
"""

from __future__ import annotations

from tenancy.doctor.access import allowed
from tenancy.doctor.common import FIX_HYPERVISOR, QEMU_USER, first_line
from tenancy.doctor.model import Check, Facts, Status

KVM = "/dev/kvm"
GUARD_TABLES = ("inet tenancy_guard", "bridge tenancy_guard")


def check_acceleration(facts: Facts) -> list[Check]:
    """KVM or TCG, against what the site's domainType asks for."""
    kvm = facts.files.get(KVM)
    user = facts.users.get(QEMU_USER)
    usable = kvm is not None and kvm.kind == "char" and user is not None and allowed(kvm, user, 6)
    if kvm is None:
        state = f"no {KVM}: software emulation (TCG) only"
    elif usable:
        state = f"{KVM} usable by {QEMU_USER}"
    else:
        owner = f"uid {kvm.uid} gid {kvm.gid} mode {kvm.mode:04o}"
        state = f"{KVM} exists but {QEMU_USER} cannot open it ({owner})"
    site = facts.site
    if site is None or not site.local_hosts:
        where = "" if site is None else f" (site {site.name} has no host on this machine)"
        status: Status = "warn" if kvm is not None and not usable else "info"
        fix = FIX_HYPERVISOR if status == "warn" else None
        return [Check("hypervisor", "acceleration", status, state + where, fix)]
    expects = f"site {site.name} expects domainType: {site.domain_type}"
    if site.domain_type == "kvm":
        if usable:
            return [Check("hypervisor", "acceleration", "ok", f"{state}; {expects}")]
        fix = (
            FIX_HYPERVISOR
            if kvm is not None
            else f"sed -i 's/domainType: kvm/domainType: qemu/' stacks/Pulumi.{site.name}.yaml"
        )
        return [
            Check(
                "hypervisor",
                "acceleration",
                "fail",
                f"{state}; {expects}: its domains cannot start",
                fix,
            )
        ]
    if kvm is not None and not usable:
        return [
            Check(
                "hypervisor",
                "acceleration",
                "warn",
                f"{state}; {expects} (TCG), but libvirt re-probes QEMU on every call "
                "(`virsh define` hangs for minutes)",
                FIX_HYPERVISOR,
            )
        ]
    slow = "VMs boot slowly under emulation (minutes to SSH)"
    return [Check("hypervisor", "acceleration", "info", f"{state}; {expects} (TCG): {slow}")]


def check_guard(facts: Facts) -> list[Check]:
    """The nftables guard keeps every guest packet on this machine; never run VMs without it."""
    result = facts.nft_tables
    if result is None:
        return [Check("hypervisor", "guard", "fail", "nft is not on PATH", FIX_HYPERVISOR)]
    if not result.ok:
        err = first_line(result.stderr) or f"exit {result.returncode}"
        return [
            Check("hypervisor", "guard", "fail", f"`nft list tables` failed: {err}", FIX_HYPERVISOR)
        ]
    tables = {line.strip().removeprefix("table ").strip() for line in result.stdout.splitlines()}
    missing = [t for t in GUARD_TABLES if t not in tables]
    if GUARD_TABLES[0] in missing:
        return [
            Check(
                "hypervisor",
                "guard",
                "fail",
                f"nft table {GUARD_TABLES[0]} not loaded: guest traffic could reach the uplink",
                FIX_HYPERVISOR,
            )
        ]
    if missing:
        return [
            Check(
                "hypervisor",
                "guard",
                "warn",
                f"nft table {missing[0]} not loaded (the inet table is)",
                FIX_HYPERVISOR,
            )
        ]
    return [Check("hypervisor", "guard", "ok", "nft tables " + ", ".join(GUARD_TABLES) + " loaded")]
