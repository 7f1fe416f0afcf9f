"""Can a user reach a path: the Unix permission walk the image check needs.

QEMU runs as its own user, so a guest image readable by the operator can
still be out of QEMU's reach; this finds the component in the way.
"""

from __future__ import annotations

from pathlib import PurePosixPath

from tenancy.doctor.model import Facts, FileFact, UserFact


def _class_shift(f: FileFact, user: UserFact) -> int:
    if f.uid == user.uid:
        return 6
    if f.gid in user.gids:
        return 3
    return 0


def allowed(f: FileFact, user: UserFact, bits: int) -> bool:
    """Classic Unix permission check (owner, group, other; root passes; ACLs not considered)."""
    if user.uid == 0:
        return True
    return (f.mode >> _class_shift(f, user)) & bits == bits


def access_blocker(facts: Facts, path: str, user: UserFact, bits: int) -> tuple[str, str] | None:
    """The first component keeping ``user`` from ``bits`` on ``path``, with the chmod that helps.

    Walks the real path: every directory above needs search (x) permission.
    None means allowed.
    """
    f = facts.files.get(path)
    if f is None:
        return path, ""
    real = f.realpath or path
    for parent in reversed(PurePosixPath(real).parents):
        d = facts.files.get(str(parent))
        if d is None:
            return str(parent), ""
        if not allowed(d, user, 1):
            who = "ugo"[2 - _class_shift(d, user) // 3]
            return str(parent), f"chmod {who}+x {parent}"
    target = facts.files.get(real, f)
    if not allowed(target, user, bits):
        who = "ugo"[2 - _class_shift(target, user) // 3]
        perm = "".join(c for c, b in (("r", 4), ("w", 2), ("x", 1)) if bits & b)
        return real, f"chmod {who}+{perm} {real}"
    return None
