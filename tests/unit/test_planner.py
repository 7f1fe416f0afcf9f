"""The planner: deterministic plans, a ledger that keeps every allocation, link names."""

from __future__ import annotations

import gc
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.support.cli import CliResult
from tests.support.problems import assert_located, errors_of, find
from tests.support.project import (
    EXAMPLE_TENANTS,
    copy_project,
    grant_quota,
    tenant_doc,
    write_tenant,
)

from tenancy.plan import names
from tenancy.plan.ledger import Ledger, SegmentEntry, ledger_path, read_ledger
from tenancy.plan.planner import plan_paths

Cli = Callable[..., CliResult]
SITES = ["local", "dc-east"]


def plan_json(cli: Cli, root: Path, site: str) -> str:
    result = cli("--root", root, "plan", "--site", site, "--format", "json")
    assert result.code == 0, result
    return result.out


def allocations(root: Path, site: str) -> dict[str, dict[str, Any]]:
    """Every tenant's cidr, vlan, addresses, hosts, bridge and MACs from a fresh plan."""
    result = plan_paths(root, sites=[site])
    assert result.ok, [str(e) for e in result.problems.errors]
    out = {}
    for t in result.plans[site].tenants:
        out[t.name] = {
            "cidr": t.segment.cidr,
            "vlan": t.segment.vlan,
            "bridge": t.segment.bridge,
            "addresses": {m.instance: m.address for m in t.machines},
            "hosts": {m.instance: m.host for m in t.machines},
            "macs": {m.instance: m.mac for m in t.machines},
        }
    return out


# --------------------------------------------------------------------------- determinism


@pytest.mark.parametrize("site", SITES)
def test_plan_json_is_byte_identical_across_runs(cli: Cli, project: Path, site: str) -> None:
    assert plan_json(cli, project, site) == plan_json(cli, project, site)


@pytest.mark.parametrize("site", SITES)
def test_plan_json_is_identical_at_another_path(cli: Cli, tmp_path: Path, site: str) -> None:
    first = copy_project(tmp_path / "one")
    second = copy_project(tmp_path / "somewhere" / "else" / "two")
    a, b = plan_json(cli, first, site), plan_json(cli, second, site)
    assert a == b
    assert str(tmp_path) not in a and "/tmp" not in a
    files = {t["file"] for t in json.loads(a)["tenants"]}
    assert all(f.startswith("tenants/") for f in files)


def test_plan_json_is_identical_across_processes(project: Path) -> None:
    """Two interpreters with different hash seeds: no set or dict order leaks into the plan."""
    outputs = []
    for seed in ("1", "2"):
        cmd = [sys.executable, "-m", "tenancy.cli", "--root", str(project), "plan"]
        proc = subprocess.run(
            [*cmd, "--site", "dc-east", "--format", "json"],
            capture_output=True,
            env={**os.environ, "PYTHONHASHSEED": seed},
            check=True,
        )
        outputs.append(proc.stdout)
    assert outputs[0] == outputs[1] and outputs[0].startswith(b"{")


def test_plan_from_another_working_directory(
    cli: Cli, project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    expected = plan_json(cli, project, "dc-east")
    monkeypatch.chdir(project / "tenants")  # the project is found from Pulumi.yaml upwards
    result = cli("plan", "--site", "dc-east", "--format", "json")
    assert result.code == 0 and result.out == expected


def test_plan_digest_is_stable(project: Path) -> None:
    a = plan_paths(project).plans["dc-east"]
    b = plan_paths(project).plans["dc-east"]
    assert a.digest() == b.digest() and len(a.digest()) == 64


def test_plan_contents(project: Path) -> None:
    plan = plan_paths(project, sites=["dc-east"]).plans["dc-east"]
    assert [t.name for t in plan.tenants] == [
        "culture-tourism-portal",
        "family-planning",
        "finance",
    ]
    finance = next(t for t in plan.tenants if t.name == "finance")
    assert finance.segment.cidr == "10.30.2.0/24"  # explicit
    assert (finance.segment.gateway, finance.segment.prefix) == ("10.30.2.1", 24)
    assert finance.file == "tenants/finance.yaml"
    # the grant ops wrote in stacks/quotas.dc-east.yaml, not the tenant's request
    assert finance.quota == {
        "vcpus": 32,
        "memoryGiB": 96,
        "storageGiB": 1500,
        "machines": 4,
        "addresses": 256,
    }
    assert finance.quota_source == "stacks/quotas.dc-east.yaml"
    assert finance.quota_request["vcpus"] == 32
    assert finance.usage == {
        "vcpus": 12,
        "memoryGiB": 40,
        "storageGiB": 580,
        "machines": 3,
        "addresses": 256,
    }
    db = next(m for m in finance.machines if m.machine == "db")
    assert (db.domain, db.group, db.protect, db.address) == (
        "finance-db-1",
        "db",
        True,
        "10.30.2.12",
    )
    assert db.root_pool == "ssd"
    assert [v.model_dump() for v in db.volumes] == [
        {"name": "data", "size_gib": 500, "pool": "bulk", "backup": "daily"}
    ]
    fp = next(t for t in plan.tenants if t.name == "family-planning")
    assert fp.segment.cidr == "10.30.1.0/24"  # 10.30.0.0/24 is reserved
    portal = next(t for t in plan.tenants if t.name == "culture-tourism-portal")
    assert portal.segment.cidr == "172.20.0.0/24"  # extranet pool
    assert [m.address for m in portal.machines] == ["172.20.0.10", "172.20.0.11", "172.20.0.12"]
    assert sorted(t.segment.vlan for t in plan.tenants) == [100, 101, 102]
    usage = {h.name: h for h in plan.hosts}
    assert sum(h.vcpus_used for h in usage.values()) == sum(m.vcpus for m in plan.machines())
    assert usage["kvm-east-01"].pools["ssd"]["capacity_gib"] == 4000


# --------------------------------------------------------------------------- ledger


@pytest.mark.parametrize("site", SITES)
def test_adding_a_tenant_that_sorts_first_moves_nothing(cli: Cli, project: Path, site: str) -> None:
    written = cli("--root", project, "plan", "--site", site, "--write-ledger")
    assert written.code == 0 and "updated" in written.err
    ledger = read_ledger(ledger_path(project / "stacks", site), site)
    before = allocations(project, site)
    assert set(ledger.tenants) == set(before)
    for name, entry in ledger.tenants.items():
        assert entry.cidr == before[name]["cidr"] and entry.vlan == before[name]["vlan"]
        assert entry.addresses == before[name]["addresses"]
        assert entry.hosts == before[name]["hosts"]
        assert entry.bridge == before[name]["bridge"] and entry.macs == before[name]["macs"]

    zone = "extranet" if site == "dc-east" else "intranet"
    doc = tenant_doc(
        "aa",  # sorts before every example tenant
        site=site,
        zone=zone,
        machines=[{"name": "web", "count": 2, "flavor": "small", "image": "debian-12"}],
    )
    write_tenant(project, doc)
    after = allocations(project, site)
    assert set(after) == {*before, "aa"}
    for name, alloc in before.items():
        assert after[name] == alloc, name
    # the newcomer got fresh, non-overlapping allocations
    assert after["aa"]["vlan"] not in {a["vlan"] for a in before.values()}
    assert after["aa"]["cidr"] not in {a["cidr"] for a in before.values()}

    # without the ledger the newcomer would have taken an existing tenant's allocation
    ledger_path(project / "stacks", site).unlink()
    fresh = allocations(project, site)
    assert any(fresh[n]["vlan"] != a["vlan"] for n, a in before.items())


def test_write_ledger_twice_is_unchanged(cli: Cli, project: Path) -> None:
    assert "updated" in cli("--root", project, "plan", "--site", "local", "--write-ledger").err
    assert "unchanged" in cli("--root", project, "plan", "--site", "local", "--write-ledger").err
    text = ledger_path(project / "stacks", "local").read_text(encoding="utf-8")
    assert text.startswith("# Allocation ledger")
    assert str(project) not in text


def test_removing_a_tenant_never_renumbers_another(cli: Cli, project: Path) -> None:
    cli("--root", project, "plan", "--site", "dc-east", "--write-ledger")
    before = allocations(project, "dc-east")
    (project / "tenants" / "culture-tourism-portal.yaml").unlink()
    family = project / "tenants" / "family-planning.yaml"
    family.unlink()  # finance's ingress from family-planning becomes a one-sided warning...
    finance = project / "tenants" / "finance.yaml"
    finance.write_text(
        finance.read_text(encoding="utf-8").replace(
            '      - {from: family-planning/app, to: web, ports: ["8443/tcp"]}\n', ""
        ),
        encoding="utf-8",
    )
    after = allocations(project, "dc-east")
    assert set(after) == {"finance"}
    assert after["finance"] == before["finance"]
    # and a tenant added later reuses nothing that is still allocated
    write_tenant(project, tenant_doc("aa", site="dc-east"))
    again = allocations(project, "dc-east")
    assert again["finance"] == before["finance"]


def test_old_ledger_without_link_names_still_loads(project: Path) -> None:
    stacks = project / "stacks"
    entry = SegmentEntry(cidr="10.30.77.0/24", vlan=777, addresses={"portal-1": "10.30.77.42"})
    text = Ledger(site="local", tenants={"hr": entry}).dump()
    data = yaml.safe_load(text)
    for value in data["tenants"].values():
        value.pop("bridge", None)
        value.pop("macs", None)
    ledger_path(stacks, "local").write_text(yaml.safe_dump(data), encoding="utf-8")
    hr = allocations(project, "local")["hr"]
    assert (hr["cidr"], hr["vlan"], hr["addresses"]) == (
        "10.30.77.0/24",
        777,
        {"portal-1": "10.30.77.42"},
    )
    assert hr["bridge"] == names.bridge_name("local", "hr")


@pytest.mark.parametrize(
    ("text", "field", "message"),
    [
        ("site: local\ntenants: [\n", "", "malformed YAML"),
        ("site: local\ntenants:\n  hr: {cidr: 10.30.0.0/24, vlan: abc}\n", "tenants.hr.vlan", ""),
        ("site: dc-east\n", "site", "ledger belongs to another site"),
        ("site: local\ncolour: red\n", "colour", "unknown key"),
        ("site: local\nsite: local\n", "site", "duplicate key"),
        ("- a\n", "", "a ledger must be a mapping"),
        ("site: local\ntenants:\n  hr: {cidr: x, vlan: 1, macs: {a: zz}}\n", "macs.a", ""),
    ],
)
def test_broken_ledger_is_a_located_error(
    project: Path, text: str, field: str, message: str
) -> None:
    path = ledger_path(project / "stacks", "local")
    path.write_text(text, encoding="utf-8")
    result = plan_paths(project)
    assert result.plans == {}
    errors = errors_of(result, "stacks/ledger.local.yaml")
    assert errors, [str(e) for e in result.problems.errors]
    error = find(errors, field=field, message=message)
    assert_located(error)


def test_explicit_cidr_over_a_ledger_allocation_blames_the_newcomer(
    cli: Cli, project: Path
) -> None:
    cli("--root", project, "plan", "--site", "dc-east", "--write-ledger")
    # family-planning holds 10.30.1.0/24 in the ledger; a new tenant asks for part of it
    path = write_tenant(project, tenant_doc("aa", site="dc-east", network={"cidr": "10.30.1.0/25"}))
    result = plan_paths(project)
    assert result.plans == {}
    (error,) = result.problems.errors
    assert error.location.file == "tenants/aa.yaml"
    assert error.location.line == next(
        i for i, line in enumerate(path.read_text().splitlines(), 1) if "cidr:" in line
    )
    assert error.field == "spec.network.cidr"
    assert error.message == (
        "overlaps tenant family-planning's segment 10.30.1.0/24 "
        "(allocated in stacks/ledger.dc-east.yaml)"
    )
    assert error.related[0].file == "tenants/family-planning.yaml"


def test_ledger_entry_over_a_new_reserved_range(cli: Cli, project: Path) -> None:
    cli("--root", project, "plan", "--site", "local", "--write-ledger")
    stack = project / "stacks" / "Pulumi.local.yaml"
    stack.write_text(
        stack.read_text(encoding="utf-8").replace(
            "reserved: [10.30.255.0/24]", "reserved: [10.30.255.0/24, 10.30.0.0/24]"
        ),
        encoding="utf-8",
    )
    result = plan_paths(project)
    error = find(errors_of(result, "tenants/hr.yaml"), message="recorded segment 10.30.0.0/24")
    assert "site reserved range 10.30.0.0/24" in error.message


# --------------------------------------------------------------------------- pools, VLANs


def edit_stack(root: Path, site: str, old: str, new: str) -> None:
    stack = root / "stacks" / f"Pulumi.{site}.yaml"
    text = stack.read_text(encoding="utf-8")
    assert old in text
    stack.write_text(text.replace(old, new), encoding="utf-8")


def test_address_pool_full(project: Path) -> None:
    edit_stack(project, "local", "intranet: 10.30.0.0/16", "intranet: 10.30.0.0/24")
    write_tenant(project, tenant_doc("zz"))
    result = plan_paths(project)
    error = find(errors_of(result, "tenants/zz.yaml"), message="address pool 10.30.0.0/24")
    assert error.message == "address pool 10.30.0.0/24 of zone intranet is full"
    assert error.expected == "a free /24"
    assert result.plans == {}


def test_vlan_range_exhausted(project: Path) -> None:
    edit_stack(
        project,
        "local",
        "reserved: [10.30.255.0/24]",
        "reserved: [10.30.255.0/24]\n    vlanRange: [200, 201]",
    )
    write_tenant(project, tenant_doc("zz"))
    result = plan_paths(project)
    error = find(errors_of(result, "tenants/zz.yaml"), message="no VLAN ID left")
    assert error.field == "spec"


def test_vlan_range_is_used(project: Path) -> None:
    edit_stack(
        project,
        "local",
        "reserved: [10.30.255.0/24]",
        "reserved: [10.30.255.0/24]\n    vlanRange: [200, 300]",
    )
    plan = plan_paths(project).plans["local"]
    assert [t.segment.vlan for t in plan.tenants] == [200, 201]


def test_segment_too_small_for_its_machines(project: Path) -> None:
    doc = tenant_doc(
        "aa",
        network={"cidr": "10.30.9.0/28"},
        machines=[{"name": "w", "count": 6, "flavor": "tiny", "image": "debian-12", "diskGiB": 3}],
    )
    grant_quota(project, "local", "aa", vcpus=8, memoryGiB=8, storageGiB=60, addresses=16)
    write_tenant(project, doc)
    error = find(errors_of(plan_paths(project)), message="too small for 6 machines")
    assert error.message == "segment 10.30.9.0/28 too small for 6 machines"
    assert error.location.file == "tenants/aa.yaml"


def test_no_partial_plan_when_another_site_is_invalid(project: Path) -> None:
    write_tenant(
        project, tenant_doc("aa", machines=[{"name": "x", "flavor": "nope", "image": "debian-12"}])
    )
    result = plan_paths(project, sites=["dc-east"])
    assert not result.ok and result.plans == {} and result.ledgers == {}


def test_unknown_site_requested(project: Path) -> None:
    result = plan_paths(project, sites=["dc-west"])
    error = find(result.problems.errors, message="no such stack file for site 'dc-west'")
    assert error.location.file == "stacks/Pulumi.dc-west.yaml"
    assert error.expected == "one of: dc-east, local"


# --------------------------------------------------------------------------- link names


def test_macs_are_unique_and_local(project: Path) -> None:
    for site in SITES:
        macs = [m.mac for m in plan_paths(project).plans[site].machines()]
        assert len(macs) == len(set(macs))
        assert all(re.fullmatch(r"52:54:00(:[0-9a-f]{2}){3}", mac) for mac in macs)


def test_bridge_names_fit_linux_interface_names(project: Path) -> None:
    long_name = "a" + "-b" * 15  # 31 characters
    write_tenant(project, tenant_doc(long_name))
    result = plan_paths(project)
    assert result.ok, [str(e) for e in result.problems.errors]
    bridges = [t.segment.bridge for p in result.plans.values() for t in p.tenants]
    assert all(len(b) <= 15 and re.fullmatch(r"[a-z0-9-]+", b) for b in bridges)
    assert len(bridges) == len(set(bridges))
    assert names.bridge_name("local", long_name) != names.bridge_name("local", long_name, 1)


def test_mac_collisions_are_salted_and_stable(
    cli: Cli, project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = names.mac_address

    def colliding(site: str, tenant: str, instance: str, salt: int = 0) -> str:
        return "52:54:00:00:00:01" if salt == 0 else real(site, tenant, instance, salt)

    monkeypatch.setattr(names, "mac_address", colliding)
    cli("--root", project, "plan", "--site", "dc-east", "--write-ledger")
    before = allocations(project, "dc-east")
    macs = [mac for a in before.values() for mac in a["macs"].values()]
    assert len(macs) == len(set(macs)) and "52:54:00:00:00:01" in macs
    write_tenant(project, tenant_doc("aa", site="dc-east"))  # sorts first, wants ...:01 too
    after = allocations(project, "dc-east")
    for name, alloc in before.items():
        assert after[name]["macs"] == alloc["macs"]
    assert after["aa"]["macs"]["app-1"] != "52:54:00:00:00:01"


def test_bridge_collisions_are_salted_and_stable(
    cli: Cli, project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = names.bridge_name

    def colliding(site: str, tenant: str, salt: int = 0) -> str:
        return "tnsame-0000" if salt == 0 else real(site, tenant, salt)

    monkeypatch.setattr(names, "bridge_name", colliding)
    cli("--root", project, "plan", "--site", "dc-east", "--write-ledger")
    before = allocations(project, "dc-east")
    bridges = [a["bridge"] for a in before.values()]
    assert len(set(bridges)) == len(bridges) == 3
    write_tenant(project, tenant_doc("aa", site="dc-east"))
    after = allocations(project, "dc-east")
    assert all(after[n]["bridge"] == a["bridge"] for n, a in before.items())
    assert after["aa"]["bridge"] not in bridges


def test_names() -> None:
    assert names.network_name("hr") == "tenancy-hr"
    assert names.domain_name("hr", "portal-1") == "hr-portal-1"
    assert names.filter_name("hr", "web") == "tenancy-hr-web"
    assert names.mac_address("s", "t", "i") == names.mac_address("s", "t", "i")
    assert names.mac_address("s", "t", "i") != names.mac_address("s", "t", "i", 1)
    assert names.bridge_name("local", "culture-tourism-portal").startswith("tnculturet-")


def test_examples_are_unchanged_by_planning(project: Path) -> None:
    before = {n: (project / "tenants" / f"{n}.yaml").read_bytes() for n in EXAMPLE_TENANTS}
    plan_paths(project)
    assert before == {n: (project / "tenants" / f"{n}.yaml").read_bytes() for n in EXAMPLE_TENANTS}
    assert not list((project / "stacks").glob("ledger.*"))  # planning alone writes nothing


def test_copy_project_leaves_the_repository_alone(tmp_path: Path) -> None:
    root = copy_project(tmp_path / "p")
    shutil.rmtree(root / "tenants")
    assert (Path(__file__).resolve().parents[2] / "tenants" / "hr.yaml").exists()


@pytest.mark.parametrize("enabled", [True, False])
def test_plan_paths_restores_the_garbage_collector(project: Path, enabled: bool) -> None:
    was = gc.isenabled()
    try:
        (gc.enable if enabled else gc.disable)()
        plan_paths(project)
        assert gc.isenabled() is enabled
        write_tenant(project, "a: [\n", name="broken")
        assert not plan_paths(project).ok
        assert gc.isenabled() is enabled
    finally:
        (gc.enable if was else gc.disable)()
