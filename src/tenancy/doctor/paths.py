"""Where the doctor looks: the paths tools/env.sh derives (its defaults when unset).

The checks and the gatherer compute paths from the same facts here, so a
check never judges a file the gatherer did not stat.
"""

from __future__ import annotations

from pathlib import PurePosixPath
from urllib.parse import unquote, urlparse

from tenancy.doctor.model import Facts

IMAGE_FILES = ("debian-12.qcow2", "vmlinuz", "initrd.img", "build-info.json")


def state_dir(facts: Facts) -> str:
    """Per-clone state (TENANCY_STATE, default <root>/.tenancy), as tools/env.sh sets it."""
    return facts.env.get("TENANCY_STATE") or f"{facts.root}/.tenancy"


def cache_dir(facts: Facts) -> str:
    """Shared toolchains and images (TENANCY_CACHE, default $XDG_CACHE_HOME/tenancy)."""
    if facts.env.get("TENANCY_CACHE"):
        return facts.env["TENANCY_CACHE"]
    xdg = facts.env.get("XDG_CACHE_HOME") or f"{facts.env.get('HOME', '/root')}/.cache"
    return f"{xdg}/tenancy"


def image_dir(facts: Facts) -> str:
    return f"{cache_dir(facts)}/images/current"


def passphrase_file(facts: Facts) -> str | None:
    """The passphrase file pulumi reads; None when PULUMI_CONFIG_PASSPHRASE is set instead."""
    if "PULUMI_CONFIG_PASSPHRASE" in facts.env:
        return None
    return facts.env.get("PULUMI_CONFIG_PASSPHRASE_FILE") or f"{state_dir(facts)}/passphrase"


def backend_url(facts: Facts) -> str:
    return facts.env.get("PULUMI_BACKEND_URL") or f"file://{state_dir(facts)}/pulumi"


def backend_dir(facts: Facts) -> str | None:
    """The directory of a file:// backend (``~`` is the home directory), else None."""
    url = backend_url(facts)
    if not url.startswith("file://"):
        return None
    raw = unquote(urlparse(url).netloc + urlparse(url).path)
    if raw.startswith("~"):
        raw = facts.env.get("HOME", "/root") + raw[1:]
    return raw


def ssh_key(facts: Facts) -> str:
    return f"{state_dir(facts)}/ssh/ops_ed25519"


def show(facts: Facts, path: str) -> str:
    """A path as the operator types it in the project directory (relative inside the root)."""
    root = facts.root.rstrip("/") + "/"
    return path[len(root) :] if path.startswith(root) else path


def image_paths(facts: Facts) -> list[str]:
    """The files the guest image journey needs: the built image, plus plan-named qcow2 files."""
    paths = [f"{image_dir(facts)}/{name}" for name in IMAGE_FILES]
    for source in facts.site.image_sources if facts.site else ():
        if source.startswith("/"):
            parent = str(PurePosixPath(source).parent)
            paths += [source, f"{parent}/vmlinuz", f"{parent}/initrd.img"]
    return paths
