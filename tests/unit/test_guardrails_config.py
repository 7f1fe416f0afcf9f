"""``tenancy preview`` and ``tenancy up`` run the guardrails pack with a config from the plan.

The real CLI runs down to the engine's command line: only ``prepare_stack`` (which
asks pulumi about the stack) and the pulumi process itself are stood in for, so the
argv checked here is the one the engine would get.
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest
from tests.support.cli import CliResult
from tests.support.project import tenant_doc, write_tenant

from tenancy.cli.errors import EXIT_INVALID, EXIT_OK, EXIT_USAGE
from tenancy.cli.guardrails import RULES, pack_config
from tenancy.engine import PolicyPack, policy_pack_args
from tenancy.plan.planner import plan_paths
from tenancy.project import shipped

Cli = Callable[..., CliResult]
SHIPPED_PACK = shipped("policies") / "guardrails"


class FakePulumi:
    """Stands in for the pulumi process: records its argv, prints nothing, exits 0."""

    def __init__(self) -> None:
        self.argv: list[list[str]] = []

    def __call__(self, argv: list[str], **_: object) -> FakePulumi:
        self.argv.append(list(argv))
        self.stdout = io.StringIO("")
        return self

    def wait(self) -> int:
        return 0


@pytest.fixture
def engine(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> FakePulumi:
    state = tmp_path / "state"
    monkeypatch.setenv("TENANCY_STATE", str(state))
    for name in (
        "PULUMI_SKIP_CHECKPOINTS",
        "TENANCY_APPROVE",
        "TENANCY_APPROVE_MOVES",
        "TENANCY_ROLL_IMAGE",
    ):
        monkeypatch.setenv(name, "")  # recorded, then removed: the CLI's settings are undone
        monkeypatch.delenv(name)
    fake = FakePulumi()
    monkeypatch.setattr("tenancy.engine.prepare_stack", lambda root, site: state / "copy.yaml")
    monkeypatch.setattr("tenancy.engine.pulumi_binary", lambda: "pulumi")
    monkeypatch.setattr("tenancy.engine.subprocess.Popen", fake)
    monkeypatch.setattr("tenancy.cli.engine.stack_exists", lambda root, site: False)
    return fake


def option(argv: list[str], name: str) -> str:
    assert argv.count(name) == 1, argv
    return argv[argv.index(name) + 1]


@pytest.mark.parametrize("verb", ["preview", "up"])
def test_preview_and_up_run_the_shipped_pack_with_the_plans_config(
    cli: Cli, project: Path, engine: FakePulumi, tmp_path: Path, verb: str
) -> None:
    result = cli("--root", project, verb, "--site", "dc-east", "--approve", "finance-db-1")
    assert result.code == EXIT_OK, result
    (argv,) = engine.argv
    assert argv[:2] == ["pulumi", verb]
    assert Path(option(argv, "--policy-pack")) == SHIPPED_PACK
    assert (SHIPPED_PACK / "PulumiPolicy.yaml").is_file()
    config_file = Path(option(argv, "--policy-pack-config"))
    assert config_file == tmp_path / "state" / "policy-packs" / "guardrails.dc-east.json"
    config = json.loads(config_file.read_text(encoding="utf-8"))
    assert sorted(config) == sorted(RULES)
    assert {c["enforcementLevel"] for c in config.values()} == {"mandatory"}
    assert config["data-volume-protected"]["approved"] == ["finance-db-1"]
    plan = plan_paths(project, None, sites=["dc-east"])
    grants = {t.name: t.quota for t in plan.plans["dc-east"].tenants}
    assert config["tenant-within-quota"]["grants"] == grants
    assert "ceilings" not in config["tenant-within-quota"]
    zones = config["zone-rules-respected"]
    assert zones["tenants"]["finance"] == {"zone": "intranet", "cidr": "10.30.2.0/24"}
    assert zones["zoneRules"]["intranet"] == {
        "intranet": "any",
        "extranet": ["443/tcp", "8443/tcp"],
    }
    assert zones["clients"]["intranet"] == ["10.0.0.0/12"]
    owned = {o["what"] for o in zones["owned"]}
    assert {"intranet address pool", "site reserved range", "infrastructure network"} <= owned
    cidrs = config["cidr-ownership"]
    assert cidrs["tenants"] == zones["tenants"]
    assert cidrs["pools"] == {"intranet": "10.30.0.0/16", "extranet": "172.20.0.0/16"}
    assert {"cidr": "192.168.10.0/24", "what": "infrastructure network"} in cidrs["forbidden"]
    assert not [f for f in cidrs["forbidden"] if f["what"].endswith("address pool")]


@pytest.mark.parametrize("verb", ["refresh", "destroy"])
def test_refresh_and_destroy_run_no_pack(
    cli: Cli, project: Path, engine: FakePulumi, verb: str
) -> None:
    assert cli("--root", project, verb, "--site", "local").code == EXIT_OK
    (argv,) = engine.argv
    assert "--policy-pack" not in argv and "--policy-pack-config" not in argv


def test_the_pack_argument_pair_comes_before_extra_pulumi_arguments(
    cli: Cli, project: Path, engine: FakePulumi
) -> None:
    result = cli("--root", project, "preview", "--site", "local", "--", "--diff")
    assert result.code == EXIT_OK, result
    (argv,) = engine.argv
    assert argv.index("--policy-pack-config") < argv.index("--diff")


def test_stack_config_approvals_reach_the_pack(cli: Cli, project: Path, engine: FakePulumi) -> None:
    stack = project / "stacks" / "Pulumi.local.yaml"
    text = stack.read_text(encoding="utf-8")
    stack.write_text(
        text.replace("config:\n", "config:\n  tenancy:approve: [hr-portal-1]\n", 1), "utf-8"
    )
    assert cli("--root", project, "up", "--site", "local", "--approve", "x-app-1").code == 0
    config = json.loads(Path(option(engine.argv[0], "--policy-pack-config")).read_text())
    assert config["data-volume-protected"]["approved"] == ["hr-portal-1", "x-app-1"]


def test_operator_ceilings_are_added_and_nothing_else(
    cli: Cli, project: Path, engine: FakePulumi
) -> None:
    extra = project / "audit.yaml"
    extra.write_text(
        "tenant-within-quota:\n"
        "  ceilings:\n"
        "    hr: {vcpus: 1, memoryGiB: 2}\n"
        "data-volume-protected:\n"
        "  approved: [hr-db-1]\n",
        encoding="utf-8",
    )
    result = cli("--root", project, "preview", "--site", "local", "--guardrails-config", extra)
    assert result.code == EXIT_OK, result
    config = json.loads(Path(option(engine.argv[0], "--policy-pack-config")).read_text())
    assert config["tenant-within-quota"]["ceilings"] == {"hr": {"vcpus": 1.0, "memoryGiB": 2.0}}
    assert config["data-volume-protected"]["approved"] == ["hr-db-1"]
    assert "hr" in config["tenant-within-quota"]["grants"]  # the grant stays the plan's


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "cidr-ownership:\n  tenants: {}\n",
            "audit.yaml:1:1: error: cidr-ownership: not an operator setting of the guardrails",
        ),
        (
            "tenant-within-quota:\n  enforcementLevel: advisory\n",
            "audit.yaml:2:3: error: tenant-within-quota.enforcementLevel: set by the plan, "
            "not by an operator",
        ),
        (
            "tenant-within-quota:\n  grants: {hr: {vcpus: 99}}\n",
            "audit.yaml:2:3: error: tenant-within-quota.grants: set by the plan",
        ),
        (
            "tenant-within-quota:\n  ceilings:\n    hr: {vcpus: -1}\n",
            "audit.yaml:3:10: error: tenant-within-quota.ceilings.hr.vcpus: not a quota ceiling; "
            "expected one of vcpus, memoryGiB, storageGiB, machines, addresses with a number >= 0",
        ),
        (
            "data-volume-protected:\n  approved: hr-db-1\n",
            "audit.yaml:2:3: error: data-volume-protected.approved: approvals must be machine "
            "names",
        ),
    ],
)
def test_operator_file_problems_are_located_and_nothing_runs(
    cli: Cli, project: Path, engine: FakePulumi, text: str, expected: str
) -> None:
    extra = project / "audit.yaml"
    extra.write_text(text, encoding="utf-8")
    result = cli("--root", project, "up", "--site", "local", "--guardrails-config", extra)
    assert result.code == EXIT_INVALID, result
    assert expected in result.err, result.err
    assert "nothing applied: 1 error(s)" in result.err
    assert not engine.argv
    assert not (project / "stacks" / "ledger.local.yaml").exists()  # nothing written either


def test_missing_pulumi_policy_stops_before_the_engine(
    cli: Cli, project: Path, engine: FakePulumi, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("tenancy.cli.guardrails.importlib.util.find_spec", lambda name: None)
    result = cli("--root", project, "preview", "--site", "local")
    assert result.code == EXIT_USAGE, result
    assert "needs pulumi-policy" in result.err and not engine.argv


@pytest.mark.parametrize("verb", ["preview", "up"])
def test_help_says_the_pack_runs(cli: Cli, verb: str) -> None:
    result = cli(verb, "--help")
    text = " ".join(result.out.split())
    assert result.code == EXIT_OK
    assert "Runs the guardrails policy pack" in text and "fails the command" in text
    assert "--guardrails-config FILE" in text


def test_config_file_is_replaced_whole(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TENANCY_STATE", str(tmp_path / "state"))
    pack = PolicyPack(SHIPPED_PACK, {"cidr-ownership": {"enforcementLevel": "mandatory"}})
    args = policy_pack_args(tmp_path, "local", pack)
    again = policy_pack_args(tmp_path, "local", PolicyPack(SHIPPED_PACK, {"a": {}}))
    assert (
        args
        == again
        == [
            "--policy-pack",
            str(SHIPPED_PACK),
            "--policy-pack-config",
            str(tmp_path / "state" / "policy-packs" / "guardrails.local.json"),
        ]
    )
    written = Path(args[-1])
    assert json.loads(written.read_text(encoding="utf-8")) == {"a": {}}
    assert [p.name for p in written.parent.iterdir()] == [written.name]  # no partial left


def test_pack_config_carries_every_tenant_of_the_plan(project: Path) -> None:
    write_tenant(project, tenant_doc("it-extra"))
    result = plan_paths(project, None, sites=["local"])
    assert result.ok, result.problems.errors
    plan, site = result.plans["local"], result.sites["local"].model
    config = pack_config(plan, site)
    names = sorted(t.name for t in plan.tenants)
    assert "it-extra" in names
    for rule in ("zone-rules-respected", "cidr-ownership"):
        assert sorted(config[rule]["tenants"]) == names
    assert sorted(config["tenant-within-quota"]["grants"]) == names
    assert config["data-volume-protected"]["approved"] == []


@pytest.mark.parametrize("verb", ["preview", "up"])
def test_a_roll_names_a_host_of_the_site_and_reaches_the_program(
    cli: Cli, project: Path, engine: FakePulumi, verb: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    refused = cli("--root", project, verb, "--site", "local", "--roll-image", "kvm-9")
    assert refused.code == EXIT_USAGE and not engine.argv
    assert "--roll-image kvm-9: not a host of site local (hosts: local)" in refused.err
    seen: list[str] = []
    real = engine.__call__

    def record(argv: list[str], **kw: object) -> FakePulumi:
        seen.append(os.environ.get("TENANCY_ROLL_IMAGE", ""))
        return real(argv, **kw)

    monkeypatch.setattr("tenancy.engine.subprocess.Popen", record)
    assert cli("--root", project, verb, "--site", "local", "--roll-image", "local").code == 0
    assert seen == ["local"]
