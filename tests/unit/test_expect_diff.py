"""``tenancy up --expect-diff``: nothing is applied beyond what the reviewers approved.

The approved diff is a real ``tenancy diff`` of the example site (finance's
protected database resized); the stack's preview is stood in for with the JSON
``pulumi preview --json`` prints, and the CLI runs down to the engine's argv.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.support.cli import CliResult

from tenancy.cli.approved import preview_steps, unexpected
from tenancy.cli.errors import EXIT_INVALID, EXIT_OK
from tenancy.plan.plan_diff import PlanDiff, diff_plans
from tenancy.plan.planner import plan_paths
from tenancy.render import diff_report
from tenancy.render.cloud_init import seed_identities

Cli = Callable[..., CliResult]
STACK = "urn:pulumi:dc-east::tenancy::tenancy:infra:TenantHosting$tenancy:infra:VirtualMachine$"


def urn(name: str, kind: str = "pulumi-python:dynamic:Resource") -> str:
    return f"{STACK}{kind}::{name}"


def preview(*steps: tuple[str, str]) -> str:
    doc = {"steps": [{"op": op, "urn": u} for op, u in steps], "changeSummary": {}}
    return "Previewing update (dc-east):\n" + json.dumps(doc, indent=2) + "\n"


@pytest.fixture
def resized(project: Path) -> PlanDiff:
    """finance-db-1 (protected) from flavor db to large: a restart, approved as such."""
    base = plan_paths(project, sites=["dc-east"])
    (project / "stacks" / "ledger.dc-east.yaml").write_text(base.ledgers["dc-east"].dump())
    path = project / "tenants" / "finance.yaml"
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    next(m for m in doc["spec"]["machines"] if m["name"] == "db")["flavor"] = "large"
    path.write_text("---\n" + yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")
    head = plan_paths(project, sites=["dc-east"])
    site = "dc-east"
    return diff_plans(
        base.plans[site],
        head.plans[site],
        seed_identities(base.plans[site], base.sites[site].model),
        seed_identities(head.plans[site], head.sites[site].model),
    )


DOMAINS = {"finance-db-1", "finance-app-1", "finance-app-2"}


def test_the_approved_restart_passes(resized: PlanDiff) -> None:
    steps = preview_steps(preview(("replace", urn("finance-db-1-domain")), ("same", urn("x"))))
    assert unexpected(steps, resized, DOMAINS) == []


def test_a_root_disk_or_data_volume_the_diff_does_not_announce_is_refused(
    resized: PlanDiff,
) -> None:
    steps = preview_steps(
        preview(
            ("replace", urn("finance-db-1-domain")),
            ("replace", urn("finance-db-1-root")),  # e.g. a rebuilt guest image
            ("delete", urn("finance-db-1-data-vol")),
            ("replace", urn("finance-app-1-seed")),
            ("replace", urn("tnfinance-22bd", "pulumi-python:dynamic:Resource")),  # a network
        )
    )
    assert unexpected(steps, resized, DOMAINS) == [
        "finance-app-1: replace of its seed (the approved diff says nothing)",
        "finance-db-1: delete of its data volume data (the approved diff says restart)",
        "finance-db-1: replace of its root (the approved diff says restart)",
    ]


class FakePulumi:
    """The pulumi process: prints ``preview_json`` for a preview, nothing otherwise."""

    def __init__(self, preview_json: str) -> None:
        self.preview_json = preview_json
        self.argv: list[list[str]] = []
        self.protected: list[tuple[list[str], bool]] = []

    def __call__(self, argv: list[str], **_: Any) -> FakePulumi:
        self.argv.append(list(argv))
        self.stdout = io.StringIO(self.preview_json if argv[1] == "preview" else "")
        return self

    def wait(self) -> int:
        return 0


def fake_engine(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, text: str) -> FakePulumi:
    state = tmp_path / "state"
    monkeypatch.setenv("TENANCY_STATE", str(state))
    for name in ("PULUMI_SKIP_CHECKPOINTS", "TENANCY_APPROVE", "TENANCY_APPROVE_MOVES"):
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)
    fake = FakePulumi(text)
    monkeypatch.setattr("tenancy.engine.prepare_stack", lambda root, site: state / "copy.yaml")
    monkeypatch.setattr("tenancy.engine.pulumi_binary", lambda: "pulumi")
    monkeypatch.setattr("tenancy.engine.subprocess.Popen", fake)
    # the stack exists: the approved machines' flags are lifted in its state first
    monkeypatch.setattr("tenancy.cli.engine.stack_exists", lambda root, site: True)
    monkeypatch.setattr(
        "tenancy.cli.engine.unprotect_approved",
        lambda root, site, approve: [f"urn:{d}-domain" for d in approve],
    )
    monkeypatch.setattr(
        "tenancy.cli.engine.set_protection",
        lambda root, site, urns, protect: fake.protected.append((list(urns), protect)),
    )
    return fake


@pytest.mark.parametrize(
    ("steps", "code", "verbs"),
    [
        ([("replace", "finance-db-1-domain")], EXIT_OK, ["preview", "up"]),
        ([("replace", "finance-db-1-root")], EXIT_INVALID, ["preview"]),
    ],
)
def test_up_applies_only_after_the_preview_matches(
    cli: Cli,
    project: Path,
    resized: PlanDiff,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    steps: list[tuple[str, str]],
    code: int,
    verbs: list[str],
) -> None:
    approved = tmp_path / "approved.json"
    approved.write_text(diff_report.to_json(resized), encoding="utf-8")
    fake = fake_engine(monkeypatch, tmp_path, preview(*((op, urn(n)) for op, n in steps)))
    result = cli(
        "--root",
        project,
        "up",
        "--site",
        "dc-east",
        "--approve",
        "finance-db-1",
        "--expect-diff",
        approved,
    )
    assert result.code == code, result
    assert [argv[1] for argv in fake.argv] == verbs
    assert "--json" in fake.argv[0]
    assert "approved: protection lifted from 1 resource(s)" in result.err
    if code == EXIT_INVALID:
        assert "not approved: finance-db-1: replace of its root" in result.err
        assert "nothing applied" in result.err
        # nothing applied: the flags lifted for the run are put back
        assert fake.protected == [(["urn:finance-db-1-domain"], True)]
    else:
        assert fake.protected == []
