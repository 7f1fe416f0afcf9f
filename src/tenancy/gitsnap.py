"""The project's inputs as they were at a git revision, copied out as plain files.

``tenancy diff --base REF`` plans the base revision next to the working tree. Only
what planning reads is copied (``Pulumi.yaml``, ``tenants/*.yaml``, ``stacks/*.yaml``),
through git's object store: regular blobs only, so a symlink, a submodule or an
oversized blob of that revision is listed as refused and never read.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

MAX_BLOB = 2 << 20
"""Larger files are refused unread (the YAML reader's own limit is lower)."""
_SAFE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,254}")
_WANTED = (("tenants", (".yaml", ".yml")), ("stacks", (".yaml",)))
_TIMEOUT = 60.0


class SnapshotError(Exception):
    """The revision cannot be read (not a repository, unknown revision)."""


@dataclass
class Snapshot:
    commit: str
    files: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)


def _git(root: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        ["git", "-C", str(root), *args],
        capture_output=True,
        stdin=subprocess.DEVNULL,
        timeout=_TIMEOUT,
        check=False,
    )


def _kind(path: str) -> str:
    """``take`` a planning input, ``refuse`` one with an unusual name, ``skip`` the rest."""
    parts = PurePosixPath(path).parts
    if parts == ("Pulumi.yaml",):
        return "take"
    for folder, suffixes in _WANTED:
        if len(parts) >= 2 and parts[0] == folder and parts[-1].endswith(suffixes):
            return "take" if len(parts) == 2 and _SAFE.fullmatch(parts[1]) else "refuse"
    return "skip"


def snapshot(root: Path, ref: str, dest: Path) -> Snapshot:
    """Copy the planning inputs of revision ``ref`` of the repository at ``root`` to ``dest``."""
    if not ref or ref.startswith("-") or any(c in ref for c in "\0\n"):
        raise SnapshotError(f"not a revision: {ref!r}")
    found = _git(root, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}")
    commit = found.stdout.decode("ascii", "replace").strip()
    if found.returncode != 0 or not re.fullmatch(r"[0-9a-f]{40,64}", commit):
        raise SnapshotError(f"{root}: no commit {ref!r} in this repository")
    listing = _git(
        root, "ls-tree", "-r", "-z", "--full-tree", commit, "--", "Pulumi.yaml", "tenants", "stacks"
    )
    if listing.returncode != 0:
        raise SnapshotError(listing.stderr.decode("utf-8", "replace").strip())
    shot = Snapshot(commit)
    for entry in listing.stdout.split(b"\0"):
        if not entry:
            continue
        meta, _, raw = entry.partition(b"\t")
        mode, kind, sha = meta.decode("ascii", "replace").split(" ")
        path = raw.decode("utf-8", "replace")
        what = _kind(path)
        if kind == "commit" and path.startswith(("tenants/", "stacks/")):
            what = "refuse"  # a submodule where inputs live
        if what == "skip":
            continue
        size = _git(root, "cat-file", "-s", sha).stdout.strip() if kind == "blob" else b"0"
        if what == "refuse" or mode not in ("100644", "100755") or int(size) > MAX_BLOB:
            shot.refused.append(path)
            continue
        blob = _git(root, "cat-file", "blob", sha)
        target = dest / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(blob.stdout)
        shot.files.append(path)
    (dest / "tenants").mkdir(parents=True, exist_ok=True)
    (dest / "stacks").mkdir(parents=True, exist_ok=True)
    return shot
