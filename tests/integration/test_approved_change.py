"""A protected machine resized through the reviewed path, on the real engine and libvirt.

On an isolated copy of the project (site ``it-approve``, one tenant, one protected
tiny TCG VM with a data volume; the baseline's controls waived: this test is about
what the engine may replace, not about hardening), kept in a git repository:

1. ``tenancy up`` creates the VM.
2. The tenant file asks for a bigger flavor. ``tenancy diff --base HEAD`` marks the
   machine as a restart that needs ``--approve``; its JSON is what the reviewers approve.
3. ``tenancy up --expect-diff approved.json`` without ``--approve``: refused, the
   domain keeps its memory.
4. ``tenancy up --expect-diff`` with a diff that announces nothing (taken before the
   edit), even with ``--approve``: refused, nothing applied.
5. ``tenancy up --expect-diff approved.json --approve <domain>``: applied; the domain
   has the new memory, the data volume is the same file (not rebuilt).
6. The guest image is rebuilt (a new recipe, in the copy's own image cache):
   ``tenancy up`` uploads the new version next to the old one and replaces
   nothing; the machine keeps its domain and its root disk's backing file.
7. ``tenancy up --roll-image <host>`` without ``--approve``: refused (protected);
   with ``--approve <domain>``: the machine is rebuilt on the new version and the
   old version, no longer used, is removed from the host.
8. ``tenancy destroy --approve <domain>`` leaves nothing of the site.
"""

from __future__ import annotations

import json
import subprocess
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import libvirt
import pytest
import yaml
from tests.support.git import git
from tests.support.site_fixture import site_copy_lifetime
from tests.support.sitecopy import SiteCopy
from tests.support.waivers import waive_baseline

from tenancy.project import Project

pytestmark = pytest.mark.integration

SITE = "it-approve"
TENANT = "it-approve"
DOMAIN = f"{TENANT}-db-1"
ENGINE_TIMEOUT = 3600.0
TENANT_DOC: dict[str, Any] = {
    "apiVersion": "tenancy/v1",
    "kind": "Tenant",
    "metadata": {"name": TENANT, "displayName": "审批 Approve", "owner": "approve@example.gov"},
    "spec": {
        "site": SITE,
        "zone": "intranet",
        "network": {"cidr": "10.30.205.0/24"},
        "machines": [
            {
                "name": "db",
                "flavor": "tiny",
                "image": "debian-12",
                "diskGiB": 4,
                "protect": True,
                "volumes": [{"name": "data", "sizeGiB": 1, "pool": "bulk"}],
            }
        ],
        "policies": ["baseline"],
    },
}


def in_git(site: SiteCopy) -> None:
    waive_baseline(site, [TENANT])
    git(site.root, "init", "-q", "-b", "main")
    git(site.root, "add", "-A")
    git(site.root, "commit", "-q", "-m", "base")


@pytest.fixture(scope="module")
def copy(libvirt_uri: str, pulumi_env: Any, guest_image: Any, standins: Any) -> Iterator[SiteCopy]:
    with site_copy_lifetime(
        libvirt_uri,
        SITE,
        {TENANT: TENANT_DOC},
        [TENANT],
        prepare=in_git,
        destroy_args=("--approve", DOMAIN),
    ) as site:
        yield site


def domain_memory_mib(uri: str) -> int:
    conn = libvirt.open(uri)
    try:
        return int(conn.lookupByName(DOMAIN).maxMemory()) // 1024
    finally:
        conn.close()


def data_volume_key(uri: str) -> str:
    conn = libvirt.open(uri)
    try:
        for pool in conn.listAllStoragePools():
            for vol in pool.listAllVolumes():
                if vol.name() == f"{DOMAIN}-data.qcow2":
                    return str(vol.key())
    finally:
        conn.close()
    raise AssertionError(f"no data volume {DOMAIN}-data")


def output(run: subprocess.CompletedProcess[str]) -> str:
    return run.stdout + run.stderr


def test_a_protected_resize_goes_through_approval(
    copy: SiteCopy, libvirt_uri: str, step_timer: Any, tmp_path: Path
) -> None:
    with step_timer.step("1 up (create)"):
        created = copy.tenancy("up", "--site", SITE, timeout=ENGINE_TIMEOUT)
        assert created.returncode == 0, output(created)[-5000:]
    assert domain_memory_mib(libvirt_uri) == 512
    volume = data_volume_key(libvirt_uri)
    git(copy.root, "add", "-A")
    git(copy.root, "commit", "-q", "-m", "applied")

    empty = tmp_path / "empty.json"
    with step_timer.step("2 diff (nothing yet)"):
        run = copy.tenancy("diff", "--site", SITE, "--base", "HEAD", "--format", "json")
        assert run.returncode == 0, output(run)
        empty.write_text(run.stdout, encoding="utf-8")
    assert json.loads(run.stdout)["machines"] == []

    path = copy.root / "tenants" / f"{TENANT}.yaml"
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    doc["spec"]["machines"][0]["flavor"] = "small"
    path.write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")
    approved = tmp_path / "approved.json"
    with step_timer.step("2 diff (resize)"):
        run = copy.tenancy("diff", "--site", SITE, "--base", "HEAD", "--format", "json")
        assert run.returncode == 0, output(run)
        approved.write_text(run.stdout, encoding="utf-8")
        md = copy.tenancy("diff", "--site", SITE, "--base", "HEAD", "--format", "markdown")
    diff = json.loads(run.stdout)
    assert [(m["domain"], m["change"], m["protected"]) for m in diff["machines"]] == [
        (DOMAIN, "restart", True)
    ]
    assert diff["approvals"] == [DOMAIN]
    assert f"| `{DOMAIN}` | **restart** ⚠ needs `--approve` |" in md.stdout

    with step_timer.step("3 up without --approve (refused)"):
        refused = copy.tenancy("up", "--site", SITE, "--expect-diff", str(approved))
    assert refused.returncode != 0, output(refused)[-4000:]
    assert "protect" in output(refused), output(refused)[-4000:]
    assert domain_memory_mib(libvirt_uri) == 512

    with step_timer.step("4 up with a diff that announces nothing (refused)"):
        unannounced = copy.tenancy(
            "up", "--site", SITE, "--approve", DOMAIN, "--expect-diff", str(empty)
        )
    text = output(unannounced)
    assert unannounced.returncode == 1, text[-4000:]
    assert f"not approved: {DOMAIN}: replace of its domain" in text, text[-4000:]
    assert "nothing applied" in text
    assert domain_memory_mib(libvirt_uri) == 512

    evidence = step_timer.report.with_suffix(".refusals.txt")
    evidence.parent.mkdir(parents=True, exist_ok=True)
    evidence.write_text(
        "## 3 up --expect-diff approved.json (no --approve)\n"
        + output(refused)[-3000:]
        + "\n## 4 up --approve --expect-diff empty.json\n"
        + text[-3000:],
        encoding="utf-8",
    )
    with step_timer.step("5 up with the approved diff and --approve"):
        applied = copy.tenancy(
            "up",
            "--site",
            SITE,
            "--approve",
            DOMAIN,
            "--expect-diff",
            str(approved),
            timeout=ENGINE_TIMEOUT,
        )
    text = output(applied)
    assert applied.returncode == 0, text[-5000:]
    assert "the preview matches the approved diff" in text
    assert domain_memory_mib(libvirt_uri) == 768
    assert data_volume_key(libvirt_uri) == volume  # the same volume, not rebuilt

    image_versions(copy, libvirt_uri, step_timer)
    assert data_volume_key(libvirt_uri) == volume  # a roll rebuilds the root disk only


NEW_RECIPE = "feedfacefeedface"


def root_backing(uri: str) -> str:
    """The file name of the machine's root overlay's backing file."""
    conn = libvirt.open(uri)
    try:
        for pool in conn.listAllStoragePools():
            for vol in pool.listAllVolumes():
                if vol.name() == f"{DOMAIN}-root.qcow2":
                    path = ET.fromstring(vol.XMLDesc(0)).findtext("backingStore/path") or ""
                    return Path(path).name
    finally:
        conn.close()
    raise AssertionError(f"no root volume {DOMAIN}-root")


def base_volumes(uri: str) -> set[str]:
    conn = libvirt.open(uri)
    try:
        return {
            vol.name()
            for pool in conn.listAllStoragePools()
            if pool.name().startswith(f"tenancy-{SITE}-")
            for vol in pool.listAllVolumes()
            if vol.name().startswith("base-")
        }
    finally:
        conn.close()


def domain_uuid(uri: str) -> str:
    conn = libvirt.open(uri)
    try:
        return str(conn.lookupByName(DOMAIN).UUIDString())
    finally:
        conn.close()


def rebuild_image(copy: SiteCopy) -> str:
    """A new image version for the copy only: its own cache, the same files, a new recipe."""
    main = Project.at(copy.main_root)
    info = json.loads(main.guest_image_info.read_text(encoding="utf-8"))
    old = str(info["recipe"])
    info["recipe"] = NEW_RECIPE
    cache = copy.state / "cache"
    target = cache / "images" / "current" / "build-info.json"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(info), encoding="utf-8")
    copy.env_overrides["TENANCY_CACHE"] = str(cache)
    return old


def image_versions(copy: SiteCopy, libvirt_uri: str, step_timer: Any) -> None:
    """Steps 6 and 7: a rebuilt image replaces nothing until an operator rolls the host."""
    uuid = domain_uuid(libvirt_uri)
    old = rebuild_image(copy)
    assert root_backing(libvirt_uri) == f"base-debian-12-{old}.qcow2"
    with step_timer.step("6 up after an image rebuild (nothing replaced)"):
        # no --approve: had it wanted to rebuild the protected machine, it would refuse
        kept = copy.tenancy("up", "--site", SITE, timeout=ENGINE_TIMEOUT)
    assert kept.returncode == 0, output(kept)[-5000:]
    assert domain_uuid(libvirt_uri) == uuid, "a rebuilt image replaced the machine"
    assert root_backing(libvirt_uri) == f"base-debian-12-{old}.qcow2"
    assert {f"base-debian-12-{old}.qcow2", f"base-debian-12-{NEW_RECIPE}.qcow2"} <= base_volumes(
        libvirt_uri
    )
    host = json.loads(copy.tenancy("plan", "--site", SITE, "--format", "json").stdout)["tenants"][
        0
    ]["machines"][0]["host"]
    with step_timer.step("7 up --roll-image without --approve (refused)"):
        refused = copy.tenancy("up", "--site", SITE, "--roll-image", host)
    assert refused.returncode != 0 and "protect" in output(refused), output(refused)[-4000:]
    assert domain_uuid(libvirt_uri) == uuid
    with step_timer.step("7 up --roll-image --approve (rebuilt on the new version)"):
        rolled = copy.tenancy(
            "up", "--site", SITE, "--roll-image", host, "--approve", DOMAIN, timeout=ENGINE_TIMEOUT
        )
    assert rolled.returncode == 0, output(rolled)[-5000:]
    assert domain_uuid(libvirt_uri) != uuid
    assert root_backing(libvirt_uri) == f"base-debian-12-{NEW_RECIPE}.qcow2"
    assert not [v for v in base_volumes(libvirt_uri) if old in v], base_volumes(libvirt_uri)
