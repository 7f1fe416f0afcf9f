"""The ledger under concurrent pull requests: carried by the PR, checked, conflicting in git.

Everything runs the real `tenancy` entry point on a copy of the project; the git
test builds a real repository with two concurrent branches.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from tests.support.cli import CliResult
from tests.support.git import git
from tests.support.problems import errors_of, find
from tests.support.project import tenant_doc, write_tenant

from tenancy.cli.errors import EXIT_INVALID, EXIT_OK
from tenancy.plan.ledger import ledger_path, read_ledger
from tenancy.plan.planner import plan_paths

Cli = Callable[..., CliResult]
LEDGER = "stacks/ledger.local.yaml"


@pytest.fixture
def recorded(project: Path, cli: Cli) -> Path:
    """The project copy with its ledgers written, as a repository holds them."""
    for site in ("local", "dc-east"):
        assert cli("--root", project, "plan", "--site", site, "--write-ledger").code == EXIT_OK
    return project


def edit_ledger(project: Path, change: Callable[[dict[str, object]], None]) -> Path:
    path = project / LEDGER
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    change(data)
    path.write_text("---\n" + yaml.safe_dump(data, sort_keys=True), encoding="utf-8")
    return path


def line_of(path: Path, needle: str, after: str = "") -> int:
    lines = path.read_text(encoding="utf-8").splitlines()
    start = next(i for i, text in enumerate(lines) if after in text) if after else 0
    return next(i for i, text in enumerate(lines[start:], start + 1) if needle in text)


def test_a_vlan_recorded_twice_is_an_error_naming_both(recorded: Path) -> None:
    project = recorded

    def same_vlan(data: dict[str, object]) -> None:
        tenants = data["tenants"]
        assert isinstance(tenants, dict)
        tenants["tourism"]["vlan"] = tenants["hr"]["vlan"]
        data.pop("vlans")  # as a silent git merge of two branches would leave it

    path = edit_ledger(project, same_vlan)
    result = plan_paths(project)
    assert result.plans == {}
    error = find(errors_of(result, LEDGER), message="VLAN 100 is allocated twice")
    assert "tenant hr holds it too" in error.message
    assert error.field == "tenants.tourism.vlan"
    assert error.location.line == line_of(path, "vlan: 100", after="tourism:")
    assert [r.line for r in error.related] == [line_of(path, "vlan: 100", after="  hr:")]


def test_a_segment_recorded_twice_is_an_error(recorded: Path) -> None:
    project = recorded

    def overlap(data: dict[str, object]) -> None:
        tenants = data["tenants"]
        assert isinstance(tenants, dict)
        tenants["tourism"]["cidr"] = "10.30.0.0/25"
        data.pop("segments")

    edit_ledger(project, overlap)
    error = find(errors_of(plan_paths(project), LEDGER), field="tenants.tourism.cidr")
    assert "segment 10.30.0.0/25 is allocated twice: tenant hr" in error.message


def test_an_index_out_of_step_is_an_error(recorded: Path) -> None:
    project = recorded

    def stale_index(data: dict[str, object]) -> None:
        vlans = data["vlans"]
        assert isinstance(vlans, dict)
        vlans[100] = "tourism"

    path = edit_ledger(project, stale_index)
    error = find(errors_of(plan_paths(project), LEDGER), field="vlans")
    assert error.location.line == line_of(path, "vlans:")
    assert "disagrees" in error.message


def test_a_zone_change_needs_an_explicit_release(recorded: Path, cli: Cli) -> None:
    project = recorded
    path = write_tenant(project, tenant_doc("archive"))
    assert cli("--root", project, "plan", "--site", "local", "--write-ledger").code == EXIT_OK
    write_tenant(project, tenant_doc("archive", zone="extranet"))
    refused = plan_paths(project)
    error = find(errors_of(refused, "tenants/archive.yaml"), field="spec.zone")
    assert error.location.line == line_of(path, "zone: extranet")
    assert "10.30.1.0/24" in error.message and "--release archive" in error.expected
    released = cli(
        "--root",
        project,
        "plan",
        "--site",
        "local",
        "--release",
        "archive",
        "--write-ledger",
        "--format",
        "json",
    )
    assert released.code == EXIT_OK, released
    entry = read_ledger(ledger_path(project / "stacks", "local"), "local").tenants["archive"]
    assert entry.cidr.startswith("10.40.")  # re-allocated in the extranet pool
    assert entry.addresses["app-1"].startswith("10.40.")
    assert plan_paths(project).ok  # recorded now: no release needed any more


def test_check_ledger_fails_until_the_allocation_is_committed(recorded: Path, cli: Cli) -> None:
    project = recorded
    assert cli("--root", project, "plan", "--site", "local", "--check-ledger").code == EXIT_OK
    write_tenant(project, tenant_doc("archive"))
    stale = cli("--root", project, "plan", "--site", "local", "--check-ledger")
    assert stale.code == EXIT_INVALID
    assert "stacks/ledger.local.yaml: stale: run `tenancy plan --site local --write-ledger`" in (
        stale.err
    )
    assert "+  10.30.1.0/24: archive" in stale.err  # the diff shows the allocation
    assert cli("--root", project, "plan", "--site", "local", "--write-ledger").code == EXIT_OK
    assert cli("--root", project, "plan", "--site", "local", "--check-ledger").code == EXIT_OK


def test_a_pull_request_may_not_move_a_recorded_allocation(
    recorded: Path, cli: Cli, tmp_path: Path
) -> None:
    project = recorded
    base = tmp_path / "base-ledger.yaml"
    shutil.copy(project / LEDGER, base)

    def steal(data: dict[str, object]) -> None:
        tenants = data["tenants"]
        assert isinstance(tenants, dict)
        tenants["hr"]["addresses"]["portal-1"] = "10.30.0.99"

    edit_ledger(project, steal)
    assert cli("--root", project, "plan", "--site", "local", "--write-ledger").code == EXIT_OK
    result = cli(
        "--root", project, "plan", "--site", "local", "--check-ledger", "--base-ledger", base
    )
    assert result.code == EXIT_INVALID
    assert "changes the recorded address of portal-1 of tenant hr" in result.err
    assert f"{LEDGER}:" in result.err  # located in the pull request's ledger


def test_two_concurrent_allocations_conflict_in_git(recorded: Path, cli: Cli) -> None:
    project = recorded
    git(project, "init", "-q", "-b", "main")
    git(project, "add", "-A")
    git(project, "commit", "-q", "-m", "base")

    def branch(name: str, tenant: str) -> str:
        git(project, "checkout", "-q", "-b", name, "main")
        write_tenant(project, tenant_doc(tenant))
        assert cli("--root", project, "plan", "--site", "local", "--write-ledger").code == 0
        git(project, "add", "-A")
        git(project, "commit", "-q", "-m", f"add {tenant}")
        return read_ledger(project / LEDGER, "local").tenants[tenant].cidr

    first, second = branch("pr-1", "archive"), branch("pr-2", "museum")
    assert first == second == "10.30.1.0/24"  # both reviewers were shown the same segment
    git(project, "checkout", "-q", "main")
    git(project, "merge", "-q", "--no-ff", "pr-1", "-m", "merge pr-1")
    conflict = git(project, "merge", "--no-ff", "pr-2", "-m", "merge pr-2", check=False)
    assert conflict.returncode != 0
    assert f"CONFLICT (content): Merge conflict in {LEDGER}" in conflict.stdout
    git(project, "merge", "--abort")
    # pr-2 takes the base's ledger, allocates again, and now shows its real segment
    git(project, "checkout", "-q", "pr-2")
    assert git(project, "merge", "main", "-m", "update from main", check=False).returncode
    git(project, "checkout", "main", "--", LEDGER)  # the documented way out of the conflict
    assert cli("--root", project, "plan", "--site", "local", "--write-ledger").code == 0
    museum = read_ledger(project / LEDGER, "local").tenants["museum"].cidr
    assert museum == "10.30.2.0/24"
    git(project, "commit", "-q", "-am", "re-allocate museum")
    base = project / "base-ledger.yaml"
    base.write_text(git(project, "show", f"main:{LEDGER}").stdout, encoding="utf-8")
    gate = cli(
        "--root", project, "plan", "--site", "local", "--check-ledger", "--base-ledger", base
    )
    assert gate.code == EXIT_OK, gate.err
    git(project, "checkout", "-q", "main")
    git(project, "merge", "-q", "--no-ff", "pr-2", "-m", "merge pr-2")
    merged = read_ledger(project / LEDGER, "local")
    assert (merged.tenants["archive"].cidr, merged.tenants["museum"].cidr) == (first, museum)
