"""The doctor's checks in order: pure functions from :class:`Facts` to :class:`Check` verdicts.

Each check says what is wrong and the one command that repairs it, so a
failed ``make demo`` points at ``make image`` instead of a libvirt stack
trace. The checks live in one module per group (``environment``,
``toolchain``, ``host_tools``, ``libvirtd``, ``hypervisor``, ``image``,
``state``, ``resources``, ``network``); this registry runs them in the
order of the README's setup steps, lists every path they look up (for the
gatherer) and summarises their verdicts. It is also the one name the
gatherer and the tests address them by (``checks.TOOLS``,
``checks.check_disk``), hence the re-exports in ``__all__``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from pathlib import PurePosixPath

from tenancy.doctor.access import access_blocker
from tenancy.doctor.common import QEMU_USER
from tenancy.doctor.environment import check_environment, check_site
from tenancy.doctor.host_tools import BROWSERS, TOOLS, check_tools
from tenancy.doctor.hypervisor import KVM, check_acceleration, check_guard
from tenancy.doctor.image import check_image
from tenancy.doctor.libvirtd import (
    DAEMONS,
    STATE_DIRS,
    TUN,
    check_daemons,
    check_libvirt,
    check_state_dirs,
)
from tenancy.doctor.model import Check, Facts
from tenancy.doctor.network import STANDINS, check_standins, check_time_service
from tenancy.doctor.paths import (
    IMAGE_FILES,
    backend_dir,
    image_dir,
    image_paths,
    passphrase_file,
    ssh_key,
)
from tenancy.doctor.resources import (
    DATA_GROWTH_FRACTION,
    DISK_RESERVE_GIB,
    IMAGE_BUILD_GIB,
    ROOT_GROWTH_GIB,
    check_disk,
    check_memory,
    disk_needs,
    disk_paths,
)
from tenancy.doctor.state import check_state
from tenancy.doctor.toolchain import ENGINE_SHIMS, PYTHON_MODULES, check_engine, check_python

__all__ = [
    "BROWSERS",
    "CHECKS",
    "DAEMONS",
    "DATA_GROWTH_FRACTION",
    "DISK_RESERVE_GIB",
    "ENGINE_SHIMS",
    "IMAGE_BUILD_GIB",
    "IMAGE_FILES",
    "KVM",
    "PYTHON_MODULES",
    "QEMU_USER",
    "ROOT_GROWTH_GIB",
    "STANDINS",
    "STATE_DIRS",
    "TOOLS",
    "TUN",
    "access_blocker",
    "backend_dir",
    "check_acceleration",
    "check_daemons",
    "check_disk",
    "check_engine",
    "check_environment",
    "check_guard",
    "check_image",
    "check_libvirt",
    "check_memory",
    "check_python",
    "check_site",
    "check_standins",
    "check_state",
    "check_state_dirs",
    "check_time_service",
    "check_tools",
    "counts",
    "disk_needs",
    "disk_paths",
    "failed",
    "fixes",
    "image_dir",
    "passphrase_file",
    "run_checks",
    "wanted_paths",
]

CHECKS: tuple[Callable[[Facts], list[Check]], ...] = (
    check_environment,
    check_site,
    check_python,
    check_engine,
    check_tools,
    check_daemons,
    check_libvirt,
    check_state_dirs,
    check_acceleration,
    check_guard,
    check_image,
    check_state,
    check_memory,
    check_disk,
    check_standins,
    check_time_service,
)


def wanted_paths(facts: Facts) -> list[str]:
    """Every path the checks look up, so the gatherer can stat exactly these (and ancestors)."""
    paths = [d for d, _ in STATE_DIRS]
    paths += [TUN, KVM, image_dir(facts), *image_paths(facts), ssh_key(facts)]
    passphrase = passphrase_file(facts)
    if passphrase:
        paths.append(passphrase)
    backend = backend_dir(facts)
    if backend:
        paths.append(backend)
    pulumi = facts.which.get("pulumi")
    if pulumi:
        parent = str(PurePosixPath(pulumi).parent)
        paths += [f"{parent}/{shim}" for shim in ENGINE_SHIMS]
    prefix = facts.env.get("PULUMI_PREFIX")
    if prefix:
        paths.append(f"{prefix}/bin/pulumi")
    paths += [f"/run/netns/{ns}" for ns in STANDINS]
    if facts.site:
        paths += facts.site.ssh_key_files
    return list(dict.fromkeys(paths))


def run_checks(facts: Facts) -> list[Check]:
    """Every check, in the order of the setup steps (so the first fix is the one to run first)."""
    return [c for check in CHECKS for c in check(facts)]


def failed(checks: Iterable[Check]) -> bool:
    return any(c.status == "fail" for c in checks)


def fixes(checks: Iterable[Check]) -> list[str]:
    """The distinct fix commands of failed and warned checks, first one first."""
    return list(
        dict.fromkeys(c.fix for c in checks if c.fix and c.status in ("fail", "warn")).keys()
    )


def counts(checks: Iterable[Check]) -> Mapping[str, int]:
    out = {"ok": 0, "warn": 0, "fail": 0, "info": 0}
    for c in checks:
        out[c.status] += 1
    return out
