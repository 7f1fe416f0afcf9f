"""The tenant pull-request check: the PR's files are data, its names and texts escaped.

``tools/ci_pr.py`` is run by the workflow from the base branch; these tests drive it
on a real git repository holding the hostile variants a department could push
(a symlink to a secret, a file name with a newline and a workflow command, a
submodule), and read both workflow files to check the privilege split. The
CODEOWNERS step's script runs here too, on a pull request's merge commit.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml
from tests.support.cli import CliResult
from tests.support.project import REPO

WORKFLOWS = REPO / ".github" / "workflows"
SECRET = "correct horse battery staple"


def _load_ci_pr() -> ModuleType:
    spec = importlib.util.spec_from_file_location("ci_pr", REPO / "tools" / "ci_pr.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["ci_pr"] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


ci_pr = _load_ci_pr()


def _git(repo: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-C", str(repo), *args], check=True, capture_output=True, text=True
    )
    return done.stdout.strip()


def _commit(repo: Path, message: str) -> str:
    _git(repo, "add", "-A")
    _git(repo, "-c", "user.name=t", "-c", "user.email=t@example.org", "commit", "-q", "-m", message)
    return _git(repo, "rev-parse", "HEAD")


TENANT = """apiVersion: tenancy/v1
kind: Tenant
metadata: {name: NAME, displayName: Name, owner: a@example.org}
spec: {site: local, zone: intranet}
"""


@pytest.fixture
def hostile_pr(tmp_path: Path) -> tuple[Path, str, str]:
    """A repository whose head commit adds every kind of hostile tenant entry."""
    repo = tmp_path / "pr"
    (repo / "tenants").mkdir(parents=True)
    _git(repo, "init", "-q")
    (repo / "tenants" / "old.yaml").write_text(TENANT.replace("NAME", "old"), encoding="utf-8")
    (repo / "tenants" / "gone.yaml").write_text(TENANT.replace("NAME", "gone"), encoding="utf-8")
    (repo / ".tenancy").mkdir()
    (repo / ".tenancy" / "passphrase").write_text(SECRET, encoding="utf-8")
    base = _commit(repo, "base")
    (repo / "tenants" / "gone.yaml").unlink()
    (repo / "tenants" / "new.yaml").write_text(TENANT.replace("NAME", "new"), encoding="utf-8")
    (repo / "tenants" / "leak.yaml").symlink_to("../.tenancy/passphrase")
    (repo / "tenants" / "x\n::error::fake.yaml").write_text("x", encoding="utf-8")
    (repo / "tenants" / "notes").mkdir()
    (repo / "tenants" / "notes" / "deep.yaml").write_text("x", encoding="utf-8")
    (repo / "tenants" / "README.md").write_text("hello", encoding="utf-8")
    (repo / "Makefile").write_text("all:\n\tcurl evil\n", encoding="utf-8")
    _git(repo, "add", "-A")
    blob = _git(repo, "rev-parse", f"{base}:tenants/old.yaml")
    _git(repo, "update-index", "--add", "--cacheinfo", f"160000,{base},tenants/sub.yaml")
    _git(repo, "-c", "user.name=t", "-c", "user.email=t@example.org", "commit", "-q", "-m", "pr")
    assert blob  # the submodule entry points at a commit, not at this blob
    return repo, base, _git(repo, "rev-parse", "HEAD")


def test_export_copies_only_regular_tenant_files(
    hostile_pr: tuple[Path, str, str], tmp_path: Path
) -> None:
    repo, base, head = hostile_pr
    dest = tmp_path / "tenants"
    report = ci_pr.export(repo, base, head, dest)
    assert sorted(p.name for p in dest.iterdir()) == ["new.yaml", "old.yaml"]
    assert all(not p.is_symlink() for p in dest.iterdir())
    refused = {r["path"]: r["reason"] for r in report.refused}
    assert "symlink" in refused["tenants/leak.yaml"]
    assert "submodule" in refused["tenants/sub.yaml"]
    assert "tenants/x\\x0a::error::fake.yaml" in refused
    assert "tenants/README.md" in report.ignored and "tenants/notes/deep.yaml" in report.ignored
    assert report.deleted == ["tenants/gone.yaml"]
    assert "tenants/new.yaml" in report.changed and "tenants/leak.yaml" in report.changed
    assert report.outside == ["Makefile"] and report.outside_count == 1
    dumped = json.dumps([report.refused, report.outside, report.changed])
    assert SECRET not in dumped and "\n" not in "".join(r["path"] for r in report.refused)


def test_export_refuses_oversized_blobs_unread(
    hostile_pr: tuple[Path, str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo, base, head = hostile_pr
    monkeypatch.setattr(ci_pr, "EXPORT_MAX_BYTES", 10)
    read: list[tuple[str, ...]] = []
    real_git = ci_pr._git

    def spy(repo_: Path, *args: str) -> bytes:
        read.append(args)
        result: bytes = real_git(repo_, *args)
        return result

    monkeypatch.setattr(ci_pr, "_git", spy)
    report = ci_pr.export(repo, base, head, tmp_path / "tenants")
    assert not list((tmp_path / "tenants").iterdir())
    assert {r["path"] for r in report.refused} >= {"tenants/new.yaml", "tenants/old.yaml"}
    assert not [a for a in read if a[0] == "cat-file"]


def test_export_wants_full_commit_ids(hostile_pr: tuple[Path, str, str], tmp_path: Path) -> None:
    repo, base, _ = hostile_pr
    with pytest.raises(ValueError, match="full commit id"):
        ci_pr.export(repo, base, "HEAD; rm -rf /", tmp_path / "tenants")


def test_annotations_stay_one_command_each() -> None:
    validate = {
        "errors": [
            {
                "file": "tenants/a,b:c.yaml",
                "line": 3,
                "column": 7,
                "field": "metadata.displayName",
                "message": "bad\n::error file=x::forged\r%0A",
                "expected": "text",
                "found": "'\u202eevil'",
                "severity": "error",
            }
        ]
    }
    report = ci_pr.Report()
    report.refuse("tenants/x\n::warning::y.yaml", "refused")
    lines = list(ci_pr.annotation_lines(validate, report))
    assert len(lines) == 2
    for line in lines:
        assert "\n" not in line and "\r" not in line
        assert re.match(r"::(error|warning)[ :]", line)  # a command only at a line's start
    error = lines[1]
    assert error.startswith("::error file=tenants/a%2Cb%3Ac.yaml,line=3,col=7::")
    assert "%250A" in error  # the literal '%0A' of the message cannot decode to a newline
    assert "\u202e" not in error and "\\u202e" in error


@pytest.mark.parametrize("body", ["```\nclosed?\n```", "````` five", "plain", "`a` ``b``"])
def test_fence_cannot_be_closed_from_inside(body: str) -> None:
    text = ci_pr.fence(body + "\n<!-- hide -->\r\x1b[2J")
    opening = text.split("\n", 1)[0]
    marks = re.match(r"`+", opening)
    assert marks is not None
    inner = text.split("\n")[1:-2]
    assert all(not line.startswith(marks.group()) for line in inner)
    assert text.rstrip("\n").endswith(marks.group())
    assert "\r" not in text and "\x1b" not in text


def test_quoted_stops_commands_with_a_token_not_in_the_text() -> None:
    text = "::error::forged\n::abc::\n"
    out = ci_pr.quoted(text, token="abc")  # the wanted token occurs: another one is drawn
    first, *rest = out.split("\n")
    token = first.removeprefix("::stop-commands::")
    assert token != "abc" and token not in text
    assert rest[-2] == f"::{token}::" and "::error::forged" in out


def test_comment_fences_pull_request_text() -> None:
    report = ci_pr.Report()
    report.refuse("tenants/evil\n### fake.yaml", "not a regular file (symlink)")
    report.outside = ["Makefile"]
    report.outside_count = 1
    data = ci_pr.CommentInput(
        report=report,
        validate_code=1,
        validate_text="tenants/a.yaml:3: ```\n### :white_check_mark: all good\n",
        plans="",
        plan_errors="",
        sites=["local", "evil`site"],
        head="0" * 40,
    )
    body = ci_pr.comment(data)
    assert body.startswith("### :x: Tenant files are invalid")
    outside = _outside_fences(body)
    assert ":white_check_mark:" not in outside and "fake.yaml" not in outside
    assert "### :white_check_mark: all good" in body  # shown, but as fenced text
    assert "outside `tenants/`" in body


def _outside_fences(markdown: str) -> str:
    """The lines a renderer shows as markdown: fenced blocks removed (CommonMark's rule)."""
    out: list[str] = []
    closing: str | None = None
    for line in markdown.split("\n"):
        marks = re.match(r"`{3,}", line)
        if closing is None and marks:
            closing = marks.group()
        elif closing is not None and re.fullmatch(f"{closing}`*", line):
            closing = None
        elif closing is None:
            out.append(line)
    assert closing is None, "a fence left open"
    return "\n".join(out)


def _workflow(name: str) -> dict[Any, Any]:
    data = yaml.safe_load((WORKFLOWS / name).read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def test_the_check_is_unprivileged_and_runs_the_base_code() -> None:
    wf = _workflow("tenant-pr.yml")
    on = wf[True]  # YAML 1.1 reads the key `on` as a boolean
    assert set(on) == {"pull_request"}
    assert wf["permissions"] == {"contents": "read"}
    (job,) = wf["jobs"].values()
    assert job["permissions"] == {"contents": "read"}
    for step in job["steps"]:
        assert "${{" not in step.get("run", ""), step.get("name")
        if str(step.get("uses", "")).startswith("actions/checkout"):
            assert step["with"]["persist-credentials"] is False
    installs = [s["run"] for s in job["steps"] if "pip install" in s.get("run", "")]
    assert installs and all("./base" in r and "pr-data" not in r for r in installs)


def test_the_poster_runs_nothing_of_the_pull_request() -> None:
    wf = _workflow("tenant-pr-comment.yml")
    assert set(wf[True]) == {"workflow_run"}
    assert wf["permissions"] == {"actions": "read", "pull-requests": "write"}
    (job,) = wf["jobs"].values()
    for step in job["steps"]:
        assert "run" not in step, step.get("name")
        assert not str(step.get("uses", "")).startswith("actions/checkout")
    script = job["steps"][-1]["with"]["script"]
    assert "${{" not in script
    assert "head_sha" in script and re.search(r"\^\[1-9\]\[0-9\]", script)


# -- CODEOWNERS is current ----------------------------------------------------------------


def _steps() -> list[dict[str, Any]]:
    (job,) = _workflow("tenant-pr.yml")["jobs"].values()
    steps: list[dict[str, Any]] = job["steps"]
    return steps


def _step(name: str) -> dict[str, Any]:
    [step] = [s for s in _steps() if s.get("name") == name]
    return step


def test_the_codeowners_step_checks_the_pull_requests_file_with_the_base_code() -> None:
    names = [s.get("name") for s in _steps()]
    step = _step("CODEOWNERS is current")
    at = names.index("CODEOWNERS is current")
    assert names.index("Put the pull request's tenant files in place of the base's") < at
    assert names.index("Validate every tenant file") < at
    assert step["working-directory"] == "base"  # the base's code, its governance file
    assert step["if"] == "steps.validate.outputs.exit-code == '0'"
    run = step["run"]
    assert 'tenancy codeowners --check --output "$pr_file"' in run
    # the pull request's file is only read through git, as a regular blob
    assert re.findall(r"git -C \.\./pr-data ([a-z-]+)", run) == ["ls-tree", "cat-file", "cat-file"]
    assert run.count("pr-data") == 3
    assert "100644" in run and "-le 65536" in run
    assert 'python tools/ci_pr.py quote "$RUNNER_TEMP/codeowners.txt"' in run
    final = _steps()[-1]
    assert final["if"] == "always()"
    assert final["env"]["OWNERS"] == "${{ steps.codeowners.outputs.exit-code }}"
    assert '[ "$OWNERS" != "0" ]' in final["run"]


def _tenant_repo(tmp_path: Path, cli: Callable[..., CliResult]) -> tuple[Path, str]:
    """A pull request's merge commit: two tenants and the CODEOWNERS they imply."""
    repo = tmp_path / "pr-data"
    (repo / "tenants").mkdir(parents=True)
    (repo / "policies").mkdir()
    _git(repo, "init", "-q")
    shutil.copy2(REPO / "Pulumi.yaml", repo / "Pulumi.yaml")
    shutil.copy2(REPO / "policies" / "governance.yaml", repo / "policies" / "governance.yaml")
    for name in ("old", "new"):
        (repo / "tenants" / f"{name}.yaml").write_text(
            TENANT.replace("NAME", name), encoding="utf-8"
        )
    assert cli("--root", repo, "codeowners").code == 0
    return repo, _commit(repo, "pr")


def _run_codeowners_step(tmp_path: Path, repo: Path, head: str) -> tuple[str, str]:
    """Run the step's script as the runner would: the base holds the exported tenants."""
    base = tmp_path / "base"
    shutil.copytree(repo / "tenants", base / "tenants")
    (base / "policies").mkdir()
    (base / "tools").mkdir()
    shutil.copy2(repo / "Pulumi.yaml", base / "Pulumi.yaml")
    shutil.copy2(REPO / "policies" / "governance.yaml", base / "policies" / "governance.yaml")
    shutil.copy2(REPO / "tools" / "ci_pr.py", base / "tools" / "ci_pr.py")
    runner_temp = tmp_path / "runner-temp"
    runner_temp.mkdir()
    output = tmp_path / "github-output"
    env = {
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "HOME": str(tmp_path),
        "HEAD_SHA": head,
        "RUNNER_TEMP": str(runner_temp),
        "GITHUB_OUTPUT": str(output),
    }
    script = tmp_path / "step.sh"
    script.write_text(_step("CODEOWNERS is current")["run"], encoding="utf-8")
    done = subprocess.run(
        ["bash", "--noprofile", "--norc", "-eo", "pipefail", str(script)],
        cwd=base,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return output.read_text(encoding="utf-8"), done.stdout


def test_the_codeowners_step_passes_a_current_file(
    tmp_path: Path, cli: Callable[..., CliResult]
) -> None:
    repo, head = _tenant_repo(tmp_path, cli)
    outputs, log = _run_codeowners_step(tmp_path, repo, head)
    assert outputs == "exit-code=0\n"
    assert log.startswith("::stop-commands::")


def test_the_codeowners_step_fails_a_stale_file_with_its_diff(
    tmp_path: Path, cli: Callable[..., CliResult]
) -> None:
    repo, _ = _tenant_repo(tmp_path, cli)
    (repo / "tenants" / "added.yaml").write_text(TENANT.replace("NAME", "added"), encoding="utf-8")
    head = _commit(repo, "a new tenant, CODEOWNERS not regenerated")
    outputs, log = _run_codeowners_step(tmp_path, repo, head)
    assert outputs == "exit-code=1\n"
    assert "+/tenants/added.yaml a@example.org" in log and "stale" in log


def test_the_codeowners_step_reads_no_link(tmp_path: Path, cli: Callable[..., CliResult]) -> None:
    """A CODEOWNERS symlink to a file with the right text counts as missing, unread."""
    repo, _ = _tenant_repo(tmp_path, cli)
    owners = repo / ".github" / "CODEOWNERS"
    owners.rename(repo / "real-owners")
    owners.symlink_to("../real-owners")
    head = _commit(repo, "CODEOWNERS as a link")
    outputs, log = _run_codeowners_step(tmp_path, repo, head)
    assert outputs == "exit-code=1\n"
    assert "+* @example-gov/dc-ops" in log and "@@ -0,0 " in log
