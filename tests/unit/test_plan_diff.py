"""``tenancy diff``: two plans compared, every change classified as the infrastructure does it.

Base and head are real plans of project copies (the committed example tenants and
sites); the CLI test runs ``tenancy diff --base`` on a real git repository.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from tests.support.cli import CliResult
from tests.support.git import git
from tests.support.project import copy_project, edit_site, grant_quota, tenant_doc, write_tenant

from tenancy.cli.errors import EXIT_OK
from tenancy.plan.plan_diff import PlanDiff, diff_plans, site_setting_changes
from tenancy.plan.planner import plan_paths
from tenancy.render import diff_report
from tenancy.render.cloud_init import seed_identities

Cli = Callable[..., CliResult]
LOCAL_OPS = {"user": "ops", "sshKeyFiles": [".tenancy/ssh/ops_ed25519.pub"], "cidrs": []}
Edit = Callable[[Path], None]


def diff_after(tmp_path: Path, site: str, edit: Edit) -> PlanDiff:
    """The diff of ``edit`` on a project copy whose ledger records the base."""
    root = copy_project(tmp_path / "p")
    base = plan_paths(root, sites=[site])
    assert base.ok
    (root / "stacks" / f"ledger.{site}.yaml").write_text(base.ledgers[site].dump(), "utf-8")
    edit(root)
    head = plan_paths(root, sites=[site])
    assert head.ok, [str(e) for e in head.problems.errors]
    return diff_plans(
        base.plans[site],
        head.plans[site],
        seed_identities(base.plans[site], base.sites[site].model),
        seed_identities(head.plans[site], head.sites[site].model),
        settings=site_setting_changes(base.sites[site].model, head.sites[site].model),
    )


def edit_tenant(name: str, change: Callable[[dict[str, object]], None]) -> Edit:
    def apply(root: Path) -> None:
        path = root / "tenants" / f"{name}.yaml"
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
        change(doc["spec"])
        path.write_text("---\n" + yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")

    return apply


def machine(spec: dict[str, object], name: str) -> dict[str, object]:
    machines = spec["machines"]
    assert isinstance(machines, list)
    return next(m for m in machines if m["name"] == name)


def test_no_change_is_an_empty_diff(tmp_path: Path) -> None:
    diff = diff_after(tmp_path, "dc-east", lambda root: None)
    assert diff.empty and diff.approvals() == []
    assert "none: the site stays as it is" in diff_report.to_table(diff)


def test_resizing_a_protected_machine_restarts_it_and_needs_approval(tmp_path: Path) -> None:
    def resize(spec: dict[str, object]) -> None:
        machine(spec, "db")["flavor"] = "large"

    diff = diff_after(tmp_path, "dc-east", edit_tenant("finance", resize))
    (change,) = diff.machines
    assert (change.domain, change.change, change.protected) == ("finance-db-1", "restart", True)
    assert change.reasons == ["flavor db (8 vCPU, 32768 MiB) → large (8 vCPU, 16384 MiB)"]
    assert diff.approvals() == ["finance-db-1"]
    assert diff.volumes == []  # the data volume stays attached
    md = diff_report.to_markdown(diff)
    assert "`tenancy up` refuses without `--approve finance-db-1`" in md
    assert "| `finance-db-1` | **restart** ⚠ needs `--approve` |" in md


def test_disks_that_grow_change_in_place_and_shrinking_ones_rebuild(tmp_path: Path) -> None:
    def disks(spec: dict[str, object]) -> None:
        db = machine(spec, "db")
        db["diskGiB"] = 60
        db["volumes"] = [{"name": "data", "sizeGiB": 400, "pool": "bulk", "backup": "weekly"}]

    diff = diff_after(tmp_path, "dc-east", edit_tenant("finance", disks))
    (change,) = diff.machines
    assert (change.change, change.reasons) == ("in-place", ["root disk grows 40 → 60 GiB"])
    assert [(v.volume, v.change, v.detail) for v in diff.volumes] == [
        ("data", "replace", "shrinks 500 → 400 GiB: rebuilt empty"),
        ("data", "backup", "daily → weekly"),
    ]
    assert diff.approvals() == ["finance-db-1"]  # its data would be rebuilt


def test_a_new_address_replaces_the_machine(tmp_path: Path) -> None:
    def renumber(spec: dict[str, object]) -> None:
        spec["network"] = {"cidr": "10.30.40.0/24"}

    diff = diff_after(tmp_path, "dc-east", edit_tenant("finance", renumber))
    changes = {m.domain: m for m in diff.machines}
    assert set(changes) == {"finance-app-1", "finance-app-2", "finance-db-1"}
    assert all(m.change == "replace" for m in changes.values())
    assert changes["finance-app-1"].reasons[0] == "address 10.30.2.10 → 10.30.40.10"
    (tenant,) = diff.tenants
    assert (tenant.segment_before, tenant.segment) == ("10.30.2.0/24", "10.30.40.0/24")
    assert diff.approvals() == ["finance-db-1"]


def test_routine_site_settings_replace_no_machine(tmp_path: Path) -> None:
    # the mirror and the operators' keys are in every seed, but only for first boot:
    # the baseline applies them in place, so the diff lists them once for the site
    def rotate(root: Path) -> None:
        edit_site(root, "local", packageMirror="http://10.0.0.9:3142")
        edit_site(root, "local", ops={**LOCAL_OPS, "sshKeys": ["ssh-ed25519 AAAAnew ops@new"]})

    diff = diff_after(tmp_path, "local", rotate)
    assert diff.machines == [] and diff.tenants == []
    assert diff.settings == [
        "operators' SSH keys (BASE-SSH-09)",
        "package mirror none → http://10.0.0.9:3142 (BASE-UPD-01)",
    ]
    assert not diff.empty
    assert "in place by the baseline" in diff_report.to_markdown(diff)
    assert "site setting operators' SSH keys" in diff_report.to_table(diff)


def test_a_new_ops_account_replaces_every_machine(tmp_path: Path) -> None:
    # the account name is identity: cloud-init creates it once, at first boot
    diff = diff_after(
        tmp_path, "local", lambda root: edit_site(root, "local", ops={**LOCAL_OPS, "user": "admin"})
    )
    assert {(m.domain, m.change) for m in diff.machines} == {
        ("hr-portal-1", "replace"),
        ("tourism-web-1", "replace"),
    }
    assert diff.machines[0].reasons == [
        "cloud-init identity changed (hostname, network or ops account)"
    ]


def allow_egress_to_archive(spec: dict[str, object]) -> None:
    firewall = spec["firewall"]
    assert isinstance(firewall, dict)
    firewall.setdefault("egress", []).append({"to": "archive", "ports": ["5432/tcp"]})


def test_flows_and_a_new_tenant(tmp_path: Path) -> None:
    def add(root: Path) -> None:
        ingress = [{"from": "hr", "to": "app", "ports": ["5432/tcp"]}]
        write_tenant(root, tenant_doc("archive", ingress=ingress))
        grant_quota(root, "local", "archive", vcpus=1, memoryGiB=1, storageGiB=10, machines=1)
        edit_tenant("hr", allow_egress_to_archive)(root)

    diff = diff_after(tmp_path, "local", add)
    assert [(t.name, t.change) for t in diff.tenants] == [("archive", "add"), ("hr", "modify")]
    assert [(m.domain, m.change) for m in diff.machines] == [("archive-app-1", "add")]
    assert {(f.tenant, f.change, f.direction, f.peer) for f in diff.flows} == {
        ("archive", "add", "ingress", "hr"),
        ("hr", "add", "egress", "archive/app"),
    }
    archive = diff.tenants[0]
    quota = {q.key: (q.used, q.granted) for q in archive.quota}
    assert quota["vcpus"] == (1, 1) and quota["machines"] == (1, 1)
    md = diff_report.to_markdown(diff)
    assert "```mermaid\nflowchart LR\n" in md
    assert '|"+ 5432/tcp"|' in md  # the new flow is an edge of the diagram


def test_diff_against_a_git_revision(tmp_path: Path, cli: Cli) -> None:
    root = copy_project(tmp_path / "repo")
    git(root, "init", "-q", "-b", "main")
    assert cli("--root", root, "plan", "--site", "dc-east", "--write-ledger").code == EXIT_OK
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "base")
    edit_tenant("finance", lambda s: machine(s, "db").update(flavor="large"))(root)
    result = cli(
        "--root", root, "diff", "--site", "dc-east", "--base", "main", "--format", "markdown"
    )
    assert result.code == EXIT_OK, result
    assert "| `finance-db-1` | **restart** ⚠ needs `--approve` |" in result.out
    # a symlink in the base revision is refused unread, not followed
    (root / "tenants" / "leak.yaml").symlink_to("../Pulumi.yaml")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "leak")
    (root / "tenants" / "leak.yaml").unlink()
    shown = cli("--root", root, "diff", "--site", "dc-east", "--base", "HEAD")
    assert shown.code == EXIT_OK, shown
    assert "files refused unread: tenants/leak.yaml" in shown.out
    unknown = cli("--root", root, "diff", "--site", "dc-east", "--base", "no-such-ref")
    assert unknown.code == 2 and "no commit 'no-such-ref'" in unknown.err


@pytest.mark.parametrize("ref", ["--output=x", "", "a\nb"])
def test_option_like_revisions_are_refused(tmp_path: Path, cli: Cli, ref: str) -> None:
    root = copy_project(tmp_path / "repo")
    git(root, "init", "-q", "-b", "main")
    result = cli("--root", root, "diff", "--site", "local", "--base", ref)
    assert result.code == 2
