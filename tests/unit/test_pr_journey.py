"""The department's pull request, end to end: the workflow's own steps on real git branches.

A repository with a base branch and concurrent pull requests (one adds a tenant,
one grows another, one adds a second tenant at the same time); for each, GitHub's
merge commit is built and the check job of ``.github/workflows/tenant-pr.yml`` runs
its shell steps exactly as written (``tests/support/actions.py``). Checked: the
comments, the ledger conflict and how the second pull request resolves it, a
stale CODEOWNERS, a stale ledger and a self-granted quota failing the check.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from tests.support.actions import JobRun, run_job
from tests.support.cli import CliResult
from tests.support.git import git
from tests.support.project import REPO, copy_project, tenant_doc, write_tenant

from tenancy.plan.ledger import read_ledger

Cli = Callable[..., CliResult]
WORKFLOW = REPO / ".github" / "workflows" / "tenant-pr.yml"
LEDGER = "stacks/ledger.local.yaml"
COMMENT = "tenant-pr-comment/comment.md"


class Repo:
    """The repository departments send pull requests to (``main`` is the base branch)."""

    def __init__(self, root: Path, cli: Cli) -> None:
        self.root, self.cli = root, cli
        self.prs = 0

    def git(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return git(self.root, *args, check=check)

    def tenancy(self, *args: str) -> CliResult:
        return self.cli("--root", self.root, *args)

    def commit(self, message: str) -> None:
        self.git("add", "-A")
        self.git("commit", "-q", "-m", message)

    def branch(self, name: str, start: str = "main") -> None:
        self.git("checkout", "-q", "-B", name, start)

    def check(self, branch: str, tmp: Path) -> JobRun:
        """GitHub's merge commit of ``branch`` into main, and the check job on it."""
        self.prs += 1
        self.branch(f"merge-{self.prs}")
        merged = self.git("merge", "--no-ff", "-q", branch, "-m", f"Merge {branch}", check=False)
        assert merged.returncode == 0, f"{branch} does not merge: {merged.stdout}"
        sha = self.git("rev-parse", "HEAD").stdout.strip()
        workspace = tmp / f"workspace-{self.prs}"
        workspace.mkdir()
        for where, rev in (("pr-data", sha), ("base", f"{sha}^1")):
            subprocess.run(
                ["git", "clone", "-q", str(self.root), str(workspace / where)], check=True
            )
            subprocess.run(
                ["git", "-C", str(workspace / where), "checkout", "-q", "--detach", rev],
                check=True,
            )
        self.git("checkout", "-q", "main")
        return run_job(WORKFLOW, "validate-and-plan", workspace, {"number": self.prs})

    def merge(self, branch: str) -> None:
        self.git("checkout", "-q", "main")
        self.git("merge", "--no-ff", "-q", branch, "-m", f"Merge {branch}")


def comment(run: JobRun) -> str:
    return (run.temp / COMMENT).read_text(encoding="utf-8")


@pytest.fixture
def repo(tmp_path: Path, cli: Cli) -> Repo:
    root = copy_project(tmp_path / "origin")
    (root / "policies").mkdir()
    shutil.copy2(REPO / "policies" / "governance.yaml", root / "policies" / "governance.yaml")
    (root / "tools").mkdir()
    shutil.copy2(REPO / "tools" / "ci_pr.py", root / "tools" / "ci_pr.py")
    r = Repo(root, cli)
    r.git("init", "-q", "-b", "main")
    for site in ("local", "dc-east"):
        assert r.tenancy("plan", "--site", site, "--write-ledger").code == 0
    assert r.tenancy("codeowners").code == 0
    r.commit("base")
    return r


def add_tenant(repo: Repo, name: str, *, ledger: bool = True, owners: bool = True) -> None:
    """What a department does: its file, its allocation, its CODEOWNERS line."""
    write_tenant(repo.root, tenant_doc(name))
    if ledger:
        assert repo.tenancy("plan", "--site", "local", "--write-ledger").code == 0
    if owners:
        assert repo.tenancy("codeowners").code == 0
    repo.commit(f"add {name}")


def segment(repo: Repo, tenant: str) -> str:
    return read_ledger(repo.root / LEDGER, "local").tenants[tenant].cidr


def test_two_concurrent_pull_requests(repo: Repo, tmp_path: Path) -> None:
    repo.branch("pr-archive")
    add_tenant(repo, "archive")
    repo.branch("pr-museum")
    add_tenant(repo, "museum")
    repo.branch("pr-tourism")
    path = repo.root / "tenants" / "tourism.yaml"
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    doc["spec"]["machines"][0]["count"] = 2
    path.write_text("---\n" + yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")
    assert repo.tenancy("plan", "--site", "local", "--write-ledger").code == 0
    repo.commit("tourism: a second web server")

    first = repo.check("pr-archive", tmp_path)
    assert first.ok, first.failed()
    text = comment(first)
    assert "### :white_check_mark: Tenant files are valid" in text
    assert "| `archive` | add | intranet | `10.30.1.0/24` |" in text
    assert "| `archive-app-1` | **add** | new machine | no |" in text
    assert "```mermaid" in text and "<details><summary>The whole plan of local" in text

    second = repo.check("pr-museum", tmp_path)
    assert second.ok, second.failed()
    assert "| `museum` | add | intranet | `10.30.1.0/24` |" in comment(second)  # the same one

    grow = repo.check("pr-tourism", tmp_path)
    assert grow.ok, grow.failed()
    assert "| `tourism-web-2` | **add** | new machine | no |" in comment(grow)
    assert "| `tourism` | machines | 1 → 2 | 2 | - |" in comment(grow)

    # archive merges first: museum's allocation now conflicts in git, it cannot be merged
    repo.merge("pr-archive")
    repo.branch("try", "main")
    conflict = repo.git("merge", "--no-ff", "pr-museum", "-m", "x", check=False)
    assert conflict.returncode != 0 and f"Merge conflict in {LEDGER}" in conflict.stdout
    repo.git("merge", "--abort")
    # the department takes the base's ledger, allocates again and gets a new comment
    repo.git("checkout", "-q", "pr-museum")
    assert repo.git("merge", "main", "-m", "update", check=False).returncode != 0
    repo.git("checkout", "main", "--", LEDGER)
    assert repo.tenancy("plan", "--site", "local", "--write-ledger").code == 0
    assert repo.tenancy("codeowners").code == 0
    repo.commit("museum: re-allocated after archive merged")
    assert segment(repo, "museum") == "10.30.2.0/24"
    again = repo.check("pr-museum", tmp_path)
    assert again.ok, again.failed()
    assert "| `museum` | add | intranet | `10.30.2.0/24` |" in comment(again)
    # what the reviewers saw is what the merged ledger holds for `tenancy up`
    repo.merge("pr-museum")
    assert (segment(repo, "archive"), segment(repo, "museum")) == ("10.30.1.0/24", "10.30.2.0/24")


def test_a_pull_request_without_its_allocation_fails(repo: Repo, tmp_path: Path) -> None:
    repo.branch("pr")
    add_tenant(repo, "archive", ledger=False)
    run = repo.check("pr", tmp_path)
    assert not run.ok
    assert "stacks/ledger.local.yaml: stale: run `tenancy plan --site local --write-ledger`" in (
        comment(run)
    )
    assert run.failed() == [
        "Fail the check when a file was refused or invalid, CODEOWNERS stale, or a plan failed"
    ]


def test_a_stale_codeowners_fails(repo: Repo, tmp_path: Path) -> None:
    repo.branch("pr")
    add_tenant(repo, "archive", owners=False)
    run = repo.check("pr", tmp_path)
    assert not run.ok
    assert "/tenants/archive.yaml archive@example.gov" in run.step("CODEOWNERS is current").output
    final = run.steps[-1]
    assert final.code == 1 and "CODEOWNERS is not current" in final.output


def test_a_self_granted_quota_fails(repo: Repo, tmp_path: Path) -> None:
    repo.branch("pr")
    path = repo.root / "tenants" / "hr.yaml"
    text = path.read_text(encoding="utf-8")
    path.write_text(
        text.replace(
            "  zone: intranet\n",
            "  zone: intranet\n  quota: {vcpus: 4096, memoryGiB: 65536, storageGiB: 100000}\n",
        ),
        encoding="utf-8",
    )
    repo.commit("hr: more")
    run = repo.check("pr", tmp_path)
    assert not run.ok
    text = comment(run)
    assert "### :x: Tenant files are invalid" in text
    assert "spec.quota: quotas are granted by ops, not by the tenant file" in text
