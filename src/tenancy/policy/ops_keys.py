"""The site's operator public keys, read once for the seeds and for the baseline.

Keys come inline (``ops.sshKeys``) or from files (``ops.sshKeyFiles``, relative
to the project, e.g. the key ``make state`` generates). The baseline writes
exactly these keys for the ops account (BASE-SSH-09), so rotating a key is a
baseline run, not a new seed: a missing file is an error, never an empty list.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tenancy.contract.models import OpsSpec

__all__ = ["OpsKeyError", "OpsKeys", "ops_public_keys", "site_ops_keys"]


class OpsKeyError(ValueError):
    """A key file the site names is missing or holds no key."""


def ops_public_keys(root: Path, ops: OpsSpec) -> list[str]:
    """Inline keys, then each key file's content, in the site's order, duplicates dropped."""
    keys = [k.strip() for k in ops.ssh_keys]
    for name in ops.ssh_key_files:
        path = Path(name) if name.startswith("/") else root / name
        try:
            text = path.read_text(encoding="utf-8")
        except OSError:
            raise OpsKeyError(f"ops SSH key file {path} is missing (run `make state`)") from None
        found = [
            line.strip()
            for line in text.splitlines()
            if line.strip() and not line.lstrip().startswith("#")
        ]
        if not found:
            raise OpsKeyError(f"ops SSH key file {path} holds no key")
        keys.extend(found)
    return list(dict.fromkeys(keys))


@dataclass(frozen=True)
class OpsKeys:
    """The keys, or why there are none (reported only where a machine needs them)."""

    keys: tuple[str, ...]
    problem: str | None = None


def site_ops_keys(root: Path, ops: OpsSpec) -> OpsKeys:
    """:func:`ops_public_keys` with its error kept for the caller's error list."""
    try:
        return OpsKeys(tuple(ops_public_keys(root, ops)))
    except OpsKeyError as exc:
        return OpsKeys((), str(exc))
