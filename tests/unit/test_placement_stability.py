"""One tenant's edit never moves another tenant's machines (a move rebuilds a machine empty).

The site ``trio`` has three hosts; each of three tenants has one instance on each.
Hosts 01 and 02 have a 100 GiB pool, 03 has 200 GiB: when ``aa`` grows its disks,
keeping every machine in tenant order (the rule ``--approve-moves all`` restores)
would push ``cc``'s protected machines off 01 and 02. The ledger's recorded demand
per instance makes the grown ``aa`` machines the ones that move instead.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.support.cli import CliResult
from tests.support.problems import errors_of, find
from tests.support.project import tenant_doc, write_tenant

from tenancy.cli.errors import EXIT_INVALID, EXIT_OK, EXIT_USAGE
from tenancy.plan.ledger import ledger_path, read_ledger, write_ledger
from tenancy.plan.planner import PlanResult, plan_paths

SITE = "trio"
Hosts = dict[tuple[str, str], str]
Cli = Callable[..., CliResult]


def machines(name: str, disk: int, protect: bool = False) -> dict[str, Any]:
    machine = {"name": "m", "count": 3, "flavor": "small", "image": "debian-12", "diskGiB": disk}
    return tenant_doc(name, site=SITE, machines=[{**machine, "protect": protect}])


@pytest.fixture
def trio(project: Path) -> Path:
    """The project with site ``trio`` and tenants aa, bb, cc (cc protected) planned once,
    the ledger written."""
    data = yaml.safe_load((project / "stacks" / "Pulumi.dc-east.yaml").read_text())
    spec = data["config"]["tenancy:site"]
    spec["name"] = SITE
    for host, capacity in zip(spec["hosts"], (100, 100, 200), strict=True):
        host.update(vcpus=16, memoryGiB=64)
        host["pools"] = [{"name": "ssd", "capacityGiB": capacity, "path": "/srv/ssd"}]
    (project / "stacks" / f"Pulumi.{SITE}.yaml").write_text(yaml.safe_dump(data))
    write_tenant(project, machines("aa", 20))
    write_tenant(project, machines("bb", 30))
    write_tenant(project, machines("cc", 30, protect=True))
    first = plan(project)
    write_ledger(ledger_path(project / "stacks", SITE), first.ledgers[SITE])
    return project


def plan(root: Path, *approve: str) -> PlanResult:
    return plan_paths(root, sites=[SITE], approve_moves=frozenset(approve))


def hosts(result: PlanResult) -> Hosts:
    assert result.ok, [str(e) for e in result.problems.errors]
    return {(m.tenant, m.instance): m.host for m in result.plans[SITE].machines()}


def test_each_tenant_starts_with_one_instance_per_host(trio: Path) -> None:
    placed = hosts(plan(trio))
    for tenant in ("aa", "bb", "cc"):
        on = [placed[(tenant, f"m-{i}")] for i in (1, 2, 3)]
        assert on == ["kvm-east-01", "kvm-east-02", "kvm-east-03"]


def test_replanning_unchanged_inputs_moves_nothing_and_keeps_the_ledger(trio: Path) -> None:
    before = read_ledger(ledger_path(trio / "stacks", SITE), SITE)
    again = plan(trio)
    assert again.plans[SITE].moves == [] and again.ledgers[SITE] == before
    assert before.tenants["aa"].demands["m-1"] == "2 vCPU, 4096 MiB, @root 20 GiB"


def test_growing_one_tenants_disk_moves_no_other_tenants_machine(trio: Path) -> None:
    before = hosts(plan(trio))
    write_tenant(trio, machines("aa", 45))
    result = plan(trio)
    after = hosts(result)
    for key, host in before.items():
        if key[0] != "aa":
            assert after[key] == host, key
    moves = result.plans[SITE].moves
    assert [(m.tenant, m.instance, m.from_host, m.to_host) for m in moves] == [
        ("aa", "m-1", "kvm-east-01", "kvm-east-03"),
        ("aa", "m-2", "kvm-east-02", "kvm-east-03"),
    ]
    assert moves[0].why == "pool ssd 105 GiB > 100 GiB on kvm-east-01"
    assert not any(m.protect for m in moves)
    warnings = result.problems.warnings
    assert len(warnings) == 2 and {w.location.file for w in warnings} == {"tenants/aa.yaml"}
    warning = find(warnings, message="m-1 moves from host kvm-east-01 to kvm-east-03")
    assert warning.field == "spec.machines[0]" and warning.location.line >= 1
    assert str(warning) in result.plans[SITE].warnings
    # the new ledger records the grown demand, so the next plan keeps the new hosts
    assert result.ledgers[SITE].tenants["aa"].demands["m-1"].endswith("@root 45 GiB")
    assert result.ledgers[SITE].tenants["cc"].hosts["m-1"] == "kvm-east-01"


def test_the_old_rule_would_have_moved_the_protected_machines(trio: Path) -> None:
    """`--approve-moves all` keeps machines in tenant order: the grown aa stays, cc moves."""
    write_tenant(trio, machines("aa", 45))
    result = plan(trio, "all")
    moves = result.plans[SITE].moves
    assert {(m.tenant, m.instance) for m in moves} == {("cc", "m-1"), ("cc", "m-2")}
    assert all(m.protect for m in moves)
    assert hosts(result)[("aa", "m-1")] == "kvm-east-01"


def test_moving_a_protected_machine_is_refused_unless_approved(trio: Path) -> None:
    write_tenant(trio, machines("aa", 45, protect=True))
    refused = plan(trio)
    assert refused.plans == {} and refused.ledgers == {}
    errors = errors_of(refused)
    assert {e.location.file for e in errors} == {"tenants/aa.yaml"} and len(errors) == 2
    error = find(errors, message="m-1 is protected and would have to leave host kvm-east-01")
    assert error.field == "spec.machines[0]" and error.location.line >= 1
    assert error.expected == "a demand that fits kvm-east-01, or `--approve-moves aa/m-1`"
    assert error.found == "pool ssd 105 GiB > 100 GiB on kvm-east-01"
    # approving one of the two leaves the other refused
    (left,) = errors_of(plan(trio, "aa/m-1"))
    assert "m-2 is protected" in left.message
    approved = plan(trio, "aa/m-1", "aa/m-2")
    moves = approved.plans[SITE].moves
    assert [(m.instance, m.protect) for m in moves] == [("m-1", True), ("m-2", True)]
    assert "protected, move approved" in find(approved.problems.warnings, message="m-2").message


def test_a_changed_machine_that_still_fits_stays(trio: Path) -> None:
    before = hosts(plan(trio))
    write_tenant(trio, machines("aa", 40))  # 01: 20 + 30 + 40 = 90 of 100 GiB
    result = plan(trio)
    assert hosts(result) == before and result.plans[SITE].moves == []


def test_a_removed_host_moves_its_machines_and_refuses_protected_ones(trio: Path) -> None:
    stack = trio / "stacks" / f"Pulumi.{SITE}.yaml"
    data = yaml.safe_load(stack.read_text())
    data["config"]["tenancy:site"]["hosts"][2]["pools"][0]["capacityGiB"] = 400
    del data["config"]["tenancy:site"]["hosts"][0]
    stack.write_text(yaml.safe_dump(data))
    (error,) = errors_of(plan(trio))
    assert error.location.file == "tenants/cc.yaml"
    assert error.found == "host kvm-east-01 is no longer in the site"
    result = plan(trio, "cc/m-1")
    moves = result.plans[SITE].moves
    assert {(m.tenant, m.instance) for m in moves} == {("aa", "m-1"), ("bb", "m-1"), ("cc", "m-1")}
    assert {m.from_host for m in moves} == {"kvm-east-01"}
    assert {m.why for m in moves} == {"host kvm-east-01 is no longer in the site"}
    placed = hosts(result)
    assert all(m.to_host == placed[(m.tenant, m.instance)] != "kvm-east-01" for m in moves)


def test_old_ledger_without_fingerprints_keeps_every_placement(trio: Path) -> None:
    path = ledger_path(trio / "stacks", SITE)
    data = yaml.safe_load(path.read_text())
    for entry in data["tenants"].values():
        del entry["demands"]
    path.write_text(yaml.safe_dump(data))
    before = hosts(plan(trio))
    write_tenant(trio, machines("aa", 45))
    result = plan(trio)
    assert hosts(result) == before and result.plans[SITE].moves == []
    # the kept machines overfill 01 and 02: said at the host entries of the stack file
    over = result.problems.warnings
    assert [w.field for w in over] == ["hosts[0]", "hosts[1]"]
    assert {w.location.file for w in over} == {f"stacks/Pulumi.{SITE}.yaml"}
    assert over[0].found == "pool ssd 105 GiB > 100 GiB"
    assert "kvm-east-01 is over capacity" in over[0].message


def test_plan_reports_list_the_moves(trio: Path, cli: Cli) -> None:
    write_tenant(trio, machines("aa", 45))
    args = ("--root", trio, "plan", "--site", SITE)
    table = cli(*args)
    assert table.code == EXIT_OK
    assert "MOVES (" in table.out
    assert "  aa/m-1: kvm-east-01 -> kvm-east-03: pool ssd 105 GiB > 100 GiB" in table.out
    assert "m-1 moves from host kvm-east-01" in table.err
    markdown = cli(*args, "--format", "markdown").out
    assert "### Moves" in markdown
    row = "| kvm-east-01 | kvm-east-03 | pool ssd 105 GiB &gt; 100 GiB on kvm-east-01 | no |"
    assert row in markdown
    doc = json.loads(cli(*args, "--format", "json").out)
    assert [m["instance"] for m in doc["moves"]] == ["m-1", "m-2"]
    assert doc["moves"][0]["from_host"] == "kvm-east-01"


def test_reports_show_no_moves_block_without_moves(trio: Path, cli: Cli) -> None:
    args = ("--root", trio, "plan", "--site", SITE)
    assert "MOVES" not in cli(*args).out
    assert "### Moves" not in cli(*args, "--format", "markdown").out


def test_approve_moves_flag(trio: Path, cli: Cli) -> None:
    write_tenant(trio, machines("aa", 45, protect=True))
    args = ("--root", trio, "plan", "--site", SITE)
    refused = cli(*args)
    assert refused.code == EXIT_INVALID and "--approve-moves aa/m-1" in refused.err
    ok = cli(*args, "--approve-moves", "aa/m-1,aa/m-2")
    assert ok.code == EXIT_OK and "aa/m-2 (protected): kvm-east-02" in ok.out
    split = cli(*args, "--approve-moves", "aa/m-1", "--approve-moves", "aa/m-2")
    assert split.code == EXIT_OK
    assert cli(*args, "--approve-moves", "all").code == EXIT_OK
    bad = cli(*args, "--approve-moves", "aa-m-1")
    assert bad.code == EXIT_USAGE and "TENANT/INSTANCE" in bad.err


@pytest.mark.parametrize("verb", ["plan", "up", "preview"])
def test_help_explains_approve_moves(cli: Cli, verb: str) -> None:
    out = " ".join(cli(verb, "--help").out.split())
    assert "--approve-moves TENANT/INSTANCE,..." in out
    assert "a protected machine never moves" in out
