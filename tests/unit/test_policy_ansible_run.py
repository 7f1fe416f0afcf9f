"""A run's private data dir, environment and command line, and real runs without any VM.

``run_policy`` runs for real here: ansible-runner (a child process) plays a tiny
playbook against ``ansible_connection=local`` hosts whose tasks only debug, fail
or report a change (nothing on this machine is modified), which exercises the
private data dir, the events, the per-host results and the secret hygiene.
"""

from __future__ import annotations

import json
import stat
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.support.project import REPO

from tenancy.policy.ansible_cli import runner_command
from tenancy.policy.ansible_env import ansible_settings, child_environment
from tenancy.policy.ansible_run import prepare_run, run_policy
from tenancy.policy.digest import PolicyFiles, policy_digest
from tenancy.policy.results import RunResult
from tenancy.policy.run_request import MAX_FORKS, RunRequest, forks_for, new_run_id

# -- policy files and digest -------------------------------------------------------


def fake_project(root: Path, playbook: str, role_tasks: str) -> Path:
    (root / "policies").mkdir(parents=True)
    (root / "policies" / "playbook.yml").write_text(textwrap.dedent(playbook))
    (root / "policies" / "catalogue.yaml").write_text("kind: PolicyCatalogue\n")
    (root / "policies" / "guardrails").mkdir()
    (root / "policies" / "guardrails" / "pack.py").write_text("# not applied by ansible\n")
    tasks = root / "roles" / "demo" / "tasks"
    tasks.mkdir(parents=True)
    (tasks / "main.yml").write_text(textwrap.dedent(role_tasks))
    return root


def test_policy_files_are_playbook_catalogue_and_roles() -> None:
    files = [p.as_posix() for p in PolicyFiles.under(REPO).names()]
    assert files[:2] == ["policies/playbook.yml", "policies/catalogue.yaml"]
    assert "roles/tenancy_ssh/tasks/config.yml" in files
    assert not any("guardrails" in f or "waivers" in f or "__pycache__" in f for f in files)


def test_policy_digest_follows_roles_and_variables(tmp_path: Path) -> None:
    root = fake_project(tmp_path / "p", "- hosts: all\n", "- name: x\n  debug: {}\n")
    project = PolicyFiles.under(root)
    variables = {"all": {"vars": {"x": 1}}}
    first = policy_digest(project, variables)
    assert first == policy_digest(project, {"all": {"vars": {"x": 1}}})
    assert len(first) == 64
    (root / "policies" / "guardrails" / "pack.py").write_text("# edited\n")
    assert policy_digest(project, variables) == first, "the guardrails pack is not applied"
    assert policy_digest(project, {"all": {"vars": {"x": 2}}}) != first
    (root / "roles" / "demo" / "tasks" / "main.yml").write_text("- name: y\n  debug: {}\n")
    assert policy_digest(project, variables) != first


# -- private data dir ----------------------------------------------------------------


def test_prepare_run_layout(tmp_path: Path) -> None:
    project = fake_project(tmp_path / "p", "- hosts: all\n", "- name: x\n  debug: {}\n")
    key = tmp_path / "id_ed25519"
    key.write_text("-----BEGIN OPENSSH PRIVATE KEY-----\nsecret\n")
    request = RunRequest(
        run_id="r-1",
        files=PolicyFiles.under(project),
        inventory={"all": {"hosts": {"h": {"ansible_host": "10.0.0.1"}}}},
        state_dir=tmp_path / "state",
        private_key=key,
        extravars={"tenancy_run_policy_digest": "d" * 64},
    )
    run_dir = prepare_run(request)
    assert run_dir == tmp_path / "state" / "runs" / "r-1"
    assert stat.S_IMODE(run_dir.stat().st_mode) == 0o700
    assert (run_dir / "project" / "playbook.yml").is_file()
    assert (run_dir / "project" / "catalogue.yaml").is_file()
    assert (run_dir / "project" / "roles" / "demo" / "tasks" / "main.yml").is_file()
    assert not (run_dir / "project" / "guardrails").exists()
    envvars = yaml.safe_load((run_dir / "env" / "envvars").read_text())
    assert envvars["ANSIBLE_PIPELINING"] == "True"
    assert envvars["ANSIBLE_HOST_KEY_CHECKING"] == "False"
    assert envvars["ANSIBLE_PRIVATE_KEY_FILE"] == str(key)
    assert "UserKnownHostsFile=/dev/null" in envvars["ANSIBLE_SSH_ARGS"]
    assert envvars["ANSIBLE_GATHER_SUBSET"] == "!all,min"
    extravars = yaml.safe_load((run_dir / "env" / "extravars").read_text())
    assert extravars == {
        "tenancy_run_id": "r-1",
        "tenancy_run_check_mode": False,
        "tenancy_run_policy_digest": "d" * 64,
    }
    inventory = yaml.safe_load((run_dir / "inventory" / "hosts.yml").read_text())
    assert inventory["all"]["hosts"]["h"]["ansible_host"] == "10.0.0.1"
    everything = "".join(p.read_text(errors="replace") for p in run_dir.rglob("*") if p.is_file())
    assert "secret" not in everything, "the key is passed by path, never copied"
    with pytest.raises(FileExistsError):
        prepare_run(request)  # a run id is used once


def test_child_environment_keeps_secrets_out() -> None:
    env = child_environment(
        {
            "PATH": "/usr/bin:/bin",
            "HOME": "/root",
            "LANG": "C.UTF-8",
            "SSH_AUTH_SOCK": "/tmp/agent.sock",
            "PULUMI_CONFIG_PASSPHRASE": "hunter2",
            "PULUMI_ACCESS_TOKEN": "pul-123",
            "AWS_SECRET_ACCESS_KEY": "x",
            "ANSIBLE_CONFIG": "/etc/evil.cfg",
        }
    )
    assert set(env) == {"PATH", "HOME", "LANG", "SSH_AUTH_SOCK", "PYTHONUNBUFFERED"}
    assert env["PATH"].split(":")[0] == str(Path(sys.executable).parent)


def test_forks_are_sized_for_the_hosts() -> None:
    assert [forks_for(n) for n in (0, 1, 3, MAX_FORKS, 400)] == [1, 1, 3, MAX_FORKS, MAX_FORKS]


def test_run_ids_are_unique_and_readable() -> None:
    a, b = new_run_id("apply", "local", "hr"), new_run_id("apply", "local", "hr")
    assert a != b and "-apply-local-hr-" in a
    assert "-check-it-policy-all-" in new_run_id("check", "it-policy")
    assert "/" not in new_run_id("apply", "x", "a/b c")


# -- a real run (local connection, harmless tasks) -------------------------------------

PLAYBOOK = """\
- name: Demo
  hosts: all
  gather_facts: false
  roles:
    - role: demo
"""
ROLE = """\
- name: "DEMO-CHG-01 | Report a change"
  ansible.builtin.debug:
    msg: "{{ inventory_hostname }} changes"
  changed_when: true
  tags: [DEMO-CHG-01]

- name: "DEMO-FAIL-01 | Fail on the bad host"
  ansible.builtin.fail:
    msg: "{{ inventory_hostname }} is not compliant"
  when: inventory_hostname == 'bad'
  tags: [DEMO-FAIL-01]

- name: Untitled step tagged with a control
  ansible.builtin.debug:
    msg: "{{ demo_value }}"
  changed_when: not ansible_check_mode
  tags: [DEMO-TAG-01]
"""


def local_inventory() -> dict[str, Any]:
    hosts = {
        name: {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}
        for name in ("good", "bad")
    }
    return {"all": {"children": {"t": {"children": {"t_g": {"hosts": hosts}}}}}}


@pytest.fixture
def demo_project(tmp_path: Path) -> Path:
    return fake_project(tmp_path / "project", PLAYBOOK, ROLE)


def test_run_policy_for_real(
    demo_project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PULUMI_CONFIG_PASSPHRASE", "do-not-leak-0xC0FFEE")
    request = RunRequest(
        run_id=new_run_id("apply", "unit"),
        files=PolicyFiles.under(demo_project),
        inventory=local_inventory(),
        state_dir=tmp_path / "state",
        extravars={"demo_value": "hello"},
        timeout=300,
    )
    result = run_policy(request)
    assert result.status == "failed" and result.rc != 0 and not result.ok, result.error
    good, bad = result.hosts["good"], result.hosts["bad"]
    assert good.status == "changed" and good.changed == 2 and good.failed == 0
    assert good.changed_controls == ["DEMO-CHG-01", "DEMO-TAG-01"], "name prefix, then tags"
    assert bad.status == "failed" and result.failed_hosts == ["bad"]
    assert bad.failed_tasks[0].controls == ["DEMO-FAIL-01"]
    assert bad.failed_tasks[0].message == "bad is not compliant"
    run_dir = Path(result.run_dir)
    artifacts = run_dir / "artifacts" / request.run_id
    assert (artifacts / "stdout").read_text().count("DEMO-CHG-01 | Report a change") == 1
    assert list((artifacts / "job_events").glob("*.json"))
    summary = json.loads((run_dir / "summary.json").read_text())
    assert RunResult.from_dict(summary) == result
    leaked = [p for p in run_dir.rglob("*") if p.is_file() and b"0xC0FFEE" in p.read_bytes()]
    assert not leaked, f"the caller's secrets reached the run directory: {leaked}"
    command = json.loads((artifacts / "command").read_text())
    assert "PULUMI_CONFIG_PASSPHRASE" not in command["env"]
    assert command["env"]["ANSIBLE_PIPELINING"] == "True"


def test_check_mode_reports_would_be_changes(demo_project: Path, tmp_path: Path) -> None:
    request = RunRequest(
        run_id=new_run_id("check", "unit"),
        files=PolicyFiles.under(demo_project),
        inventory=local_inventory(),
        state_dir=tmp_path / "state",
        check=True,
        limit="good",
        extravars={"demo_value": "hello"},
    )
    result = run_policy(request)
    assert result.ok, result.error
    assert list(result.hosts) == ["good"], "--limit left bad out of the run"
    assert result.changed_hosts == ["good"]
    assert result.hosts["good"].changed_controls == ["DEMO-CHG-01"]
    assert result.lines()[1:3] == [
        "  would change: DEMO-CHG-01",
        "    - DEMO-CHG-01 | Report a change",
    ]


def test_a_run_that_cannot_start_is_an_error(demo_project: Path, tmp_path: Path) -> None:
    (demo_project / "policies" / "playbook.yml").write_text("- hosts: all\n  tasks: 3\n")
    request = RunRequest(
        run_id=new_run_id("apply", "unit"),
        files=PolicyFiles.under(demo_project),
        inventory=local_inventory(),
        state_dir=tmp_path / "state",
    )
    result = run_policy(request)
    assert not result.ok and result.error.startswith("ansible-runner ended with rc")


def test_command_line_of_a_run(tmp_path: Path) -> None:
    request = RunRequest(
        run_id="r-cmd",
        files=PolicyFiles.under(REPO),
        inventory={},
        state_dir=tmp_path,
        check=True,
        limit="it-gamma",
        tags=("tenancy_ssh", "BASE-KRN-01"),
        skip_tags=("BASE-FW-03",),
    )
    argv = runner_command(request, host_count=3)
    assert argv[1:4] == ["-m", "ansible_runner", "run"]
    assert argv[argv.index("--forks") + 1] == "3"
    assert argv[argv.index("--limit") + 1] == "it-gamma"
    assert argv[-1] == ("--cmdline=--check --tags=tenancy_ssh,BASE-KRN-01 --skip-tags=BASE-FW-03")
    plain = runner_command(RunRequest("r", PolicyFiles.under(REPO), {}, tmp_path), host_count=40)
    assert not any(a.startswith("--cmdline") for a in plain)
    assert plain[plain.index("--forks") + 1] == str(MAX_FORKS)


def test_runs_use_mitogen_unless_told_otherwise(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TENANCY_ANSIBLE_STRATEGY", raising=False)
    settings = ansible_settings(tmp_path, None)
    assert settings["ANSIBLE_STRATEGY"] == "mitogen_linear"
    assert (Path(settings["ANSIBLE_STRATEGY_PLUGINS"]) / "mitogen_linear.py").is_file()
    monkeypatch.setenv("TENANCY_ANSIBLE_STRATEGY", "linear")
    settings = ansible_settings(tmp_path, None)
    assert "ANSIBLE_STRATEGY" not in settings and "ANSIBLE_STRATEGY_PLUGINS" not in settings
