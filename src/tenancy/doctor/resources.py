"""Checks of capacity: memory and disk for the VMs the site plans on this machine.

They count only machines that are not running yet, so a half-built site
is judged by what it still needs, not by what it already holds.
"""

from __future__ import annotations

from tenancy.doctor.model import Check, Facts, MachineNeed
from tenancy.doctor.paths import image_dir, image_paths, show

GIB = 1 << 30

# resource rule (see check_memory / check_disk)
QEMU_OVERHEAD_MIB = 128
MEMORY_HEADROOM_MIB = 1024
DISK_RESERVE_GIB = 4.0
ROOT_GROWTH_GIB = 1.0
DATA_GROWTH_FRACTION = 0.05
BASE_IMAGE_FALLBACK_GIB = 1.0
IMAGE_BUILD_GIB = 5.0


def disk_paths(facts: Facts) -> list[str]:
    """Directories whose filesystem must hold the image and this machine's pools."""
    paths = [image_dir(facts)]
    if facts.site:
        local = set(facts.site.local_hosts)
        paths += sorted({p for (host, _), p in facts.site.pool_paths.items() if host in local})
    return paths


def pending_machines(facts: Facts) -> list[MachineNeed]:
    """Planned machines on this machine's hosts that are not running yet (they still need room)."""
    site = facts.site
    if site is None:
        return []
    local = set(site.local_hosts)
    running = facts.running_domains or frozenset()
    return [m for m in site.machines if m.host in local and m.domain not in running]


def check_memory(facts: Facts) -> list[Check]:
    """MemAvailable must cover every planned VM that is not running yet.

    Rule: each pending VM needs its flavor's memory plus QEMU_OVERHEAD_MIB
    (QEMU/TCG's own buffers); below that sum the check fails, and within
    MEMORY_HEADROOM_MIB of it (Pulumi, Ansible and the audit run beside the
    VMs) it warns. VMs already running are left out: MemAvailable already
    excludes their memory.
    """
    site = facts.site
    if site is None:
        return []
    avail_kib = facts.meminfo_kib.get("MemAvailable")
    if avail_kib is None:
        return [Check("resources", "memory", "warn", "MemAvailable unknown (/proc/meminfo)")]
    avail = avail_kib // 1024
    pending = pending_machines(facts)
    if not pending:
        return [
            Check(
                "resources",
                "memory",
                "ok",
                f"{avail} MiB available; no machine of site {site.name} waits to start here",
            )
        ]
    need = sum(m.memory_mib + QEMU_OVERHEAD_MIB for m in pending)
    what = (
        f"{avail} MiB available, {len(pending)} VM(s) of site {site.name} need {need} MiB "
        f"(flavor memory + {QEMU_OVERHEAD_MIB} MiB QEMU overhead each)"
    )
    if avail < need:
        return [
            Check(
                "resources",
                "memory",
                "fail",
                f"not enough memory: {what}",
                f"free {need - avail} MiB (stop other VMs: virsh -c qemu:///system list), "
                f"or plan fewer or smaller machines for site {site.name}",
            )
        ]
    if avail < need + MEMORY_HEADROOM_MIB:
        return [
            Check(
                "resources",
                "memory",
                "warn",
                f"tight: {what}; less than {MEMORY_HEADROOM_MIB} MiB left for Pulumi and Ansible",
            )
        ]
    return [Check("resources", "memory", "ok", what)]


def disk_needs(facts: Facts) -> dict[str, float]:
    """GiB each directory's filesystem must still take (before the reserve); see check_disk."""
    needs: dict[str, float] = {}
    image = image_dir(facts)
    image_present = all(p in facts.files for p in image_paths(facts))
    needs[image] = 0.0 if image_present else IMAGE_BUILD_GIB
    site = facts.site
    if site is None:
        return needs
    base = sum(facts.files[p].size for p in image_paths(facts)[:3] if p in facts.files)
    base_gib = base / GIB if image_present else BASE_IMAGE_FALLBACK_GIB
    hosts_with_base: set[str] = set()
    for m in pending_machines(facts):
        root_path = site.pool_paths.get((m.host, m.root_pool))
        if root_path is None:
            continue
        grow = min(float(m.disk_gib), ROOT_GROWTH_GIB)
        if m.host not in hosts_with_base:
            hosts_with_base.add(m.host)
            grow += base_gib
        needs[root_path] = needs.get(root_path, 0.0) + grow
        for pool, size_gib in m.volumes:
            path = site.pool_paths.get((m.host, pool))
            if path is not None:
                needs[path] = needs.get(path, 0.0) + size_gib * DATA_GROWTH_FRACTION
    return needs


def check_disk(facts: Facts) -> list[Check]:
    """Each filesystem holding the image or a local pool keeps DISK_RESERVE_GIB free after growth.

    Rule, per filesystem (directories on one device are summed): the reserve
    (DISK_RESERVE_GIB) plus, for the pending machines placed there, one copy
    of the base image (qcow2 + kernel + initrd) per host in its first pool,
    each root overlay's likely growth (ROOT_GROWTH_GIB, at most its diskGiB:
    cloud-init, the baseline and logs write about that much) and
    DATA_GROWTH_FRACTION of every data volume (filesystem metadata; volumes
    are sparse qcow2). When the image is not built yet, its directory also
    needs IMAGE_BUILD_GIB for the build. Below that the check fails.
    """
    needs = disk_needs(facts)
    by_device: dict[int, tuple[list[str], float, int, str]] = {}
    unknown: list[str] = []
    for path in disk_paths(facts):
        disk = facts.disks.get(path)
        if disk is None:
            unknown.append(path)
            continue
        paths, need, free_bytes, at = by_device.get(
            disk.device, ([], 0.0, disk.free_bytes, disk.measured_at)
        )
        by_device[disk.device] = ([*paths, path], need + needs.get(path, 0.0), free_bytes, at)
    checks: list[Check] = []
    for paths, need, free_bytes, at in by_device.values():
        free = float(free_bytes) / GIB
        total = need + DISK_RESERVE_GIB
        names = ", ".join(show(facts, p) for p in paths)
        what = (
            f"{free:.1f} GiB free for {names}; needs {total:.1f} GiB "
            f"({need:.1f} GiB images and planned disks + {DISK_RESERVE_GIB:.0f} GiB reserve)"
        )
        if free < total:
            checks.append(
                Check(
                    "resources",
                    "disk",
                    "fail",
                    f"not enough disk on {at}: {what}",
                    f"free {total - free:.1f} GiB on the filesystem of {at} (df -h {at})",
                )
            )
        else:
            checks.append(Check("resources", "disk", "ok", f"{at}: {what}"))
    for path in unknown:
        checks.append(Check("resources", "disk", "warn", f"{path}: free space unknown"))
    return checks
