"""Check of the guest image: built, and readable by the user QEMU runs as.

Without it ``make demo`` fails in libvirt; this points at ``make image``
or at the one chmod that lets QEMU read it.
"""

from __future__ import annotations

from tenancy.doctor.access import access_blocker
from tenancy.doctor.common import FIX_HYPERVISOR, FIX_IMAGE, QEMU_USER
from tenancy.doctor.model import Check, Facts
from tenancy.doctor.paths import IMAGE_FILES, image_dir, image_paths, show


def check_image(facts: Facts) -> list[Check]:
    """The guest image tools/guest-image.sh builds, readable by the user QEMU runs as."""
    paths = image_paths(facts)
    missing = [p for p in paths if p not in facts.files]
    if missing:
        names = ", ".join(show(facts, p) for p in missing)
        return [Check("image", "guest image", "fail", f"missing: {names}", FIX_IMAGE)]
    current = facts.files[image_dir(facts)]
    where = current.realpath or image_dir(facts)
    checks = [Check("image", "guest image", "ok", f"{where}: " + ", ".join(IMAGE_FILES))]
    user = facts.users.get(QEMU_USER)
    if user is None:
        checks.append(
            Check(
                "image",
                f"readable by {QEMU_USER}",
                "fail",
                f"no user {QEMU_USER} (libvirt's QEMU driver is not installed)",
                FIX_HYPERVISOR,
            )
        )
        return checks
    for path in paths:
        blocked = access_blocker(facts, path, user, 4)
        if blocked is not None:
            where_blocked, fix = blocked
            real = facts.files[path].realpath or path
            verb = "read" if where_blocked == real else "traverse"
            checks.append(
                Check(
                    "image",
                    f"readable by {QEMU_USER}",
                    "fail",
                    f"{path}: {QEMU_USER} cannot {verb} {where_blocked}",
                    fix or FIX_IMAGE,
                )
            )
            return checks
    checks.append(Check("image", f"readable by {QEMU_USER}", "ok", f"{where} and its files"))
    return checks
