"""Two concurrent pull requests: what their reviewers were shown is what ``tenancy up`` builds.

On an isolated copy of the project kept in git (site ``it-prs``; the baseline's
controls waived: this test is about allocation, not hardening):

1. Two branches off ``main`` each add a tenant and commit their allocation
   (``tenancy plan --write-ledger``); ``tenancy diff --base main`` on each (the
   pull-request comment) shows both the same segment.
2. The first merges; the second's ledger now conflicts in git. Its department
   takes main's ledger, allocates again, and its new diff shows another segment.
3. After both merged, ``tenancy up`` on main: each tenant's libvirt network and
   machine have exactly the segment and address its reviewers were shown.
4. ``tenancy destroy`` leaves nothing of the site.
"""

from __future__ import annotations

import ipaddress
import json
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from typing import Any

import libvirt
import pytest
from tests.support.git import git
from tests.support.site_fixture import site_copy_lifetime
from tests.support.sitecopy import SiteCopy
from tests.support.waivers import waive_baseline

pytestmark = pytest.mark.integration

SITE = "it-prs"
TENANTS = ("it-prs-a", "it-prs-b")
LEDGER = f"stacks/ledger.{SITE}.yaml"
ENGINE_TIMEOUT = 3600.0


def tenant_doc(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "tenancy/v1",
        "kind": "Tenant",
        "metadata": {"name": name, "displayName": name, "owner": f"{name}@example.gov"},
        "spec": {
            "site": SITE,
            "zone": "intranet",
            "machines": [{"name": "app", "flavor": "tiny", "image": "debian-12", "diskGiB": 4}],
            "policies": ["baseline"],
        },
    }


def in_git(site: SiteCopy) -> None:
    """The copy as a repository whose main branch holds the site, its ledger and a waiver."""
    (site.root / ".gitignore").write_text(".tenancy/\ncommands.log\n", encoding="utf-8")
    (site.root / "tenants" / ".gitkeep").touch()  # the folder outlives a branch switch
    # one waiver file for the site (granted on the base: both tenants come later)
    waive_baseline(site, list(TENANTS))
    git(site.root, "init", "-q", "-b", "main")
    ok = site.tenancy("plan", "--site", SITE, "--write-ledger")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    git(site.root, "add", "-A")
    git(site.root, "commit", "-q", "-m", "base")


@pytest.fixture(scope="module")
def copy(libvirt_uri: str, pulumi_env: Any, guest_image: Any, standins: Any) -> Iterator[SiteCopy]:
    with site_copy_lifetime(libvirt_uri, SITE, {}, TENANTS, prepare=in_git) as site:
        yield site


def add_tenant(copy: SiteCopy, name: str) -> None:
    """What a department's pull request holds: its file and its allocation."""
    git(copy.root, "checkout", "-q", "-B", f"pr-{name}", "main")
    copy.write_tenant(name, tenant_doc(name))
    allocated = copy.tenancy("plan", "--site", SITE, "--write-ledger")
    assert allocated.returncode == 0, allocated.stdout + allocated.stderr
    git(copy.root, "add", "-A")
    git(copy.root, "commit", "-q", "-m", f"add {name}")


def shown(copy: SiteCopy, name: str) -> tuple[str, str]:
    """(segment, address) of tenant ``name`` in the pull request's diff against main."""
    run = copy.tenancy("diff", "--site", SITE, "--base", "main", "--format", "json")
    assert run.returncode == 0, run.stdout + run.stderr
    diff = json.loads(run.stdout)
    (tenant,) = [t for t in diff["tenants"] if t["name"] == name]
    plan = json.loads(copy.tenancy("plan", "--site", SITE, "--format", "json").stdout)
    (machine,) = [m for t in plan["tenants"] if t["name"] == name for m in t["machines"]]
    return str(tenant["segment"]), str(machine["address"])


def built(uri: str, copy: SiteCopy, name: str) -> tuple[str, str]:
    """(segment, address) of tenant ``name`` as libvirt has them after ``up``."""
    plan = json.loads(copy.tenancy("plan", "--site", SITE, "--format", "json").stdout)
    (tenant,) = [t for t in plan["tenants"] if t["name"] == name]
    conn = libvirt.open(uri)
    try:
        net = ET.fromstring(conn.networkLookupByName(tenant["segment"]["network"]).XMLDesc(0))
        ip = net.find("ip")
        assert ip is not None, tenant["segment"]["network"]
        segment = ipaddress.ip_interface(f"{ip.get('address')}/{ip.get('prefix')}").network
        dom = ET.fromstring(conn.lookupByName(f"{name}-app-1").XMLDesc(0))
        param = dom.find("devices/interface/filterref/parameter[@name='IP']")
        assert param is not None, f"{name}-app-1 has no IP filter parameter"
        return str(segment), str(param.get("value"))
    finally:
        conn.close()


def test_what_the_reviewers_saw_is_what_up_builds(
    copy: SiteCopy, libvirt_uri: str, step_timer: Any
) -> None:
    a, b = TENANTS
    with step_timer.step("1 two pull requests, each with its allocation"):
        add_tenant(copy, a)
        shown_a = shown(copy, a)
        add_tenant(copy, b)
        first_b = shown(copy, b)
    assert shown_a[0] == first_b[0], "both branches were allocated from the same base"

    with step_timer.step("2 the first merges, the second conflicts and re-allocates"):
        git(copy.root, "checkout", "-q", "main")
        git(copy.root, "merge", "--no-ff", "-q", f"pr-{a}", "-m", f"Merge pr-{a}")
        git(copy.root, "checkout", "-q", f"pr-{b}")
        conflict = git(copy.root, "merge", "main", "-m", "update", check=False)
        assert conflict.returncode != 0 and f"Merge conflict in {LEDGER}" in conflict.stdout
        git(copy.root, "checkout", "main", "--", LEDGER)
        again = copy.tenancy("plan", "--site", SITE, "--write-ledger")
        assert again.returncode == 0, again.stdout + again.stderr
        git(copy.root, "add", "-A")
        git(copy.root, "commit", "-q", "-m", f"{b}: re-allocated")
        shown_b = shown(copy, b)
        git(copy.root, "checkout", "-q", "main")
        git(copy.root, "merge", "--no-ff", "-q", f"pr-{b}", "-m", f"Merge pr-{b}")
    assert shown_b[0] != shown_a[0], (shown_a, shown_b)
    print(f"\n[{SITE}] shown to reviewers: {a} {shown_a}, {b} {shown_b} (first {first_b})")

    with step_timer.step("3 up on main"):
        up = copy.tenancy("up", "--site", SITE, timeout=ENGINE_TIMEOUT)
        assert up.returncode == 0, (up.stdout + up.stderr)[-5000:]
    assert git(copy.root, "status", "--porcelain").stdout.strip() == "", "up changed the ledger"
    got = {name: built(libvirt_uri, copy, name) for name in TENANTS}
    print(f"[{SITE}] built by up: {got}")
    assert got == {a: shown_a, b: shown_b}
