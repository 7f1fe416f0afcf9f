"""The governance file and the rules it sets for waivers: lifetime, approvers, dates.

Every refusal is one ``file:line: field: expected ...; found ...`` line; the
line is where the offending value starts, checked here to the number.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

import pytest
from tests.support.project import REPO

from tenancy.policy import audit
from tenancy.policy.catalogue import CatalogueError
from tenancy.policy.governance import Governance, load_governance
from tenancy.policy.suite_policy import pytest_tenancy_policy
from tenancy.policy.variables import load_policy_sources
from tenancy.policy.waivers import load_governed_waivers, load_waivers
from tenancy.project import Project

TODAY = date(2026, 12, 3)
GOVERNANCE = """\
apiVersion: tenancy/v1
kind: Governance
teams:
  ops: "@example-gov/dc-ops"
  security: "@example-gov/security-office"
waivers:
  maxLifetimeDays: 180
  approvers: [security-office@example.gov]
"""


def _governance(tmp_path: Path, text: str = GOVERNANCE) -> Path:
    path = tmp_path / "governance.yaml"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def governance(tmp_path: Path) -> Governance:
    return load_governance(_governance(tmp_path))


def _waivers(tmp_path: Path, *entries: dict[str, str]) -> Path:
    """A waiver file whose entries start on lines 4, 10, 16 ... (six lines each)."""
    lines = ["apiVersion: tenancy/v1", "kind: WaiverList", "waivers:"]
    for entry in entries:
        fields = {
            "control": "BASE-SSH-08",
            "tenant": "finance",
            "justification": "Vendor agent needs a local forward until release 5.2.",
            "approved_by": "security-office@example.gov",
            "approved_on": "2026-10-01",
            "expires": "2027-03-30",
            **entry,
        }
        lines += [
            f"  - {k}: {v}" if i == 0 else f"    {k}: {v}"
            for i, (k, v) in enumerate(fields.items())
        ]
    path = tmp_path / "waivers" / "w.yaml"
    path.parent.mkdir(exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _refusals(path: Path, governance: Governance | None, today: date = TODAY) -> list[str]:
    with pytest.raises(CatalogueError) as exc:
        load_waivers(path, governance=governance, today=today)
    return exc.value.errors


# -- the governance file -------------------------------------------------------------


def test_the_repository_governance_file() -> None:
    gov = load_governance(Project.at(REPO).governance_file)
    assert gov.teams.ops == "@example-gov/dc-ops"
    assert gov.teams.security == "@example-gov/security-office"
    assert gov.waivers.max_lifetime_days == 180
    assert gov.waivers.approvers == ["security-office@example.gov"]
    assert Project.at(REPO).governance_file == REPO / "policies" / "governance.yaml"


@pytest.mark.parametrize(
    ("team", "line"),
    [
        ('"dc-ops"', 4),  # no @org/
        ('"@example-gov/dc ops"', 4),
        ('"@example-gov/dc-ops # and"', 4),
        ('"@example-gov/dc-ops\\n* @evil/x"', 4),
        ('"@-gov/dc-ops"', 4),
    ],
)
def test_team_handles_are_strict(tmp_path: Path, team: str, line: int) -> None:
    path = _governance(tmp_path, GOVERNANCE.replace('"@example-gov/dc-ops"', team))
    with pytest.raises(CatalogueError) as exc:
        load_governance(path)
    [error] = exc.value.errors
    assert error.startswith(f"{path}:{line}: teams.ops: String should match pattern")


def test_governance_keys_and_values_are_checked(tmp_path: Path) -> None:
    text = GOVERNANCE.replace("maxLifetimeDays: 180", "maxLifetimeDays: 0").replace(
        "approvers: [security-office@example.gov]", "approvers: []\n  approvedBy: x"
    )
    path = _governance(tmp_path, text)
    with pytest.raises(CatalogueError) as exc:
        load_governance(path)
    errors = exc.value.errors
    assert f"{path}:7: waivers.maxLifetimeDays: Input should be greater than or equal to 1" in (
        errors
    )
    assert any(
        e.startswith(f"{path}:8: waivers.approvers: List should have at least 1") for e in errors
    )
    assert any(e.startswith(f"{path}:9: waivers.approvedBy: Extra inputs") for e in errors)


def test_a_missing_governance_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(CatalogueError) as exc:
        load_governance(tmp_path / "policies" / "governance.yaml")
    [error] = exc.value.errors
    assert error.startswith(f"{tmp_path / 'policies' / 'governance.yaml'}: missing:")
    assert "no defaults" in error


# -- waivers under the governance ----------------------------------------------------


def test_180_days_are_accepted(tmp_path: Path, governance: Governance) -> None:
    path = _waivers(tmp_path, {"approved_on": "2026-10-01", "expires": "2027-03-30"})
    [waiver] = load_waivers(path, governance=governance, today=TODAY)
    assert (waiver.expires - waiver.approved_on).days == 180


def test_181_days_are_refused_at_expires(tmp_path: Path, governance: Governance) -> None:
    path = _waivers(tmp_path, {}, {"approved_on": "2026-10-01", "expires": "2027-03-31"})
    assert _refusals(path, governance) == [
        f"{path}:15: waivers[1].expires: expected at most 180 days after approved_on "
        f"({governance.file} waivers.maxLifetimeDays); found 2027-03-31, 181 days after "
        "2026-10-01"
    ]


def test_2099_is_refused(tmp_path: Path, governance: Governance) -> None:
    path = _waivers(tmp_path, {"approved_on": "2026-11-20", "expires": "2099-12-31"})
    [error] = _refusals(path, governance)
    assert error.startswith(f"{path}:9: waivers[0].expires: expected at most 180 days")
    assert "found 2099-12-31, 26704 days after 2026-11-20" in error


def test_unknown_approver_is_refused(tmp_path: Path, governance: Governance) -> None:
    path = _waivers(tmp_path, {}, {}, {"approved_by": "ciso@example.gov"})
    assert _refusals(path, governance) == [
        f"{path}:19: waivers[2].approved_by: expected one of {governance.file} "
        "waivers.approvers (security-office@example.gov); found 'ciso@example.gov'"
    ]


def test_any_approver_without_an_approver_list(tmp_path: Path) -> None:
    text = GOVERNANCE.replace("  approvers: [security-office@example.gov]\n", "")
    gov = load_governance(_governance(tmp_path, text))
    assert gov.waivers.approvers is None
    path = _waivers(tmp_path, {"approved_by": "ciso@example.gov"})
    assert [w.approved_by for w in load_waivers(path, governance=gov, today=TODAY)] == [
        "ciso@example.gov"
    ]


def test_expiry_before_approval_is_refused_without_governance_too(tmp_path: Path) -> None:
    path = _waivers(tmp_path, {"approved_on": "2026-11-20", "expires": "2026-11-19"})
    assert _refusals(path, None) == [
        f"{path}:9: waivers[0].expires: expected a day on or after approved_on (2026-11-20); "
        "found 2026-11-19"
    ]


def test_approval_in_the_future_is_refused(tmp_path: Path, governance: Governance) -> None:
    path = _waivers(tmp_path, {"approved_on": "2026-12-04", "expires": "2027-01-31"})
    assert _refusals(path, governance) == [
        f"{path}:8: waivers[0].approved_on: expected a day not after today (2026-12-03); "
        "found 2026-12-04: a waiver is recorded once it is approved"
    ]
    assert load_waivers(path, governance=governance, today=date(2026, 12, 4))


def test_approved_on_is_required_and_a_date(tmp_path: Path) -> None:
    path = _waivers(tmp_path, {"approved_on": '"2026-10-01"'})
    [error] = _refusals(path, None)
    assert error.startswith(f"{path}:8: waivers[0].approved_on: Input should be a valid date")
    text = path.read_text(encoding="utf-8").replace('    approved_on: "2026-10-01"\n', "")
    path.write_text(text, encoding="utf-8")
    [error] = _refusals(path, None)
    assert error == f"{path}:4: waivers[0].approved_on: Field required"


def test_every_problem_of_every_waiver_is_reported(tmp_path: Path, governance: Governance) -> None:
    path = _waivers(
        tmp_path,
        {"approved_by": "me@example.gov", "expires": "2099-01-01"},
        {"approved_on": "2027-01-01", "expires": "2027-02-01"},
    )
    errors = _refusals(path, governance)
    assert [e.split(": ")[0:2] for e in errors] == [
        [f"{path}:9", "waivers[0].expires"],
        [f"{path}:7", "waivers[0].approved_by"],
        [f"{path}:14", "waivers[1].approved_on"],
    ]


def test_the_example_waivers_meet_the_repository_governance() -> None:
    project = Project.at(REPO)
    waivers = load_governed_waivers(project.waivers_dir, project.governance_file, today=TODAY)
    assert {(w.control, w.approved_on, w.expires) for w in waivers} == {
        ("BASE-SSH-08", date(2026, 10, 15), date(2027, 3, 31)),
        ("MLPS-LOG-01", date(2026, 9, 1), date(2026, 12, 31)),
    }


# -- every path loads waivers under the project's governance ---------------------------


def _project_with_waiver(tmp_path: Path, **entry: str) -> Project:
    (tmp_path / "Pulumi.yaml").write_text("name: t\nruntime: python\n", encoding="utf-8")
    target = tmp_path / "policies"
    target.mkdir()
    _waivers(target, entry)
    return Project.at(tmp_path, env={"TENANCY_STATE": str(tmp_path / "state")})


def test_waivers_without_a_governance_file_stop_the_policy_sources(tmp_path: Path) -> None:
    project = _project_with_waiver(tmp_path)
    with pytest.raises(CatalogueError) as exc:
        load_policy_sources(project)
    assert exc.value.errors[0].startswith(f"{project.governance_file}: missing:")
    _governance(tmp_path / "policies")
    assert [w.control for w in load_policy_sources(project).waivers] == ["BASE-SSH-08"]


def test_the_policy_sources_apply_the_lifetime(tmp_path: Path) -> None:
    project = _project_with_waiver(tmp_path, expires="2099-12-31")
    _governance(tmp_path / "policies")
    with pytest.raises(CatalogueError, match=r"w\.yaml:9: waivers\[0\]\.expires: expected at most"):
        load_policy_sources(project)


def test_no_waiver_file_needs_no_governance_file(tmp_path: Path) -> None:
    (tmp_path / "waivers").mkdir()
    assert load_governed_waivers(tmp_path / "waivers", tmp_path / "none.yaml") == []
    assert load_governed_waivers(tmp_path / "absent", tmp_path / "none.yaml") == []


class _Config:
    """The two-method face of ``pytest.Config`` the suite's policy hook uses."""

    def __init__(self, **options: Any) -> None:
        self.options = options

    def getoption(self, name: str) -> Any:
        return self.options[name]


def test_the_suite_loads_waivers_under_the_governance(tmp_path: Path) -> None:
    project = _project_with_waiver(tmp_path, approved_by="ciso@example.gov")
    config = _Config(
        tenancy_catalogue=str(project.policies_dir / "catalogue.yaml"),
        tenancy_waivers=str(project.waivers_dir),
        tenancy_governance=str(project.governance_file),
        tenancy_today="2026-12-03",
    )
    with pytest.raises(pytest.UsageError, match=r"governance\.yaml: missing"):
        pytest_tenancy_policy(config)  # type: ignore[arg-type]
    _governance(tmp_path / "policies")
    with pytest.raises(pytest.UsageError, match=r"waivers\[0\]\.approved_by: expected one of"):
        pytest_tenancy_policy(config)  # type: ignore[arg-type]


def test_the_audit_hands_the_suite_the_project_governance(tmp_path: Path) -> None:
    project = Project.at(REPO)
    options = audit.AuditOptions(root=REPO, site="local")
    argv = audit._pytest_argv(options, project, tmp_path, tmp_path / "inv.yml", ["all"], 1)
    assert f"--tenancy-governance={project.governance_file}" in argv
    assert f"--tenancy-waivers={project.waivers_dir}" in argv
