"""The ansible-runner wrapper and the PolicyRun provider, without any VM.

``run_policy`` runs for real here: ansible-runner (a child process) plays a tiny
playbook against ``ansible_connection=local`` hosts whose tasks only debug, fail
or report a change (nothing on this machine is modified), which exercises the
private data dir, the events, the per-host results and the secret hygiene.
"""

from __future__ import annotations

import json
import os
import stat
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml
from unit_helpers import REPO

from tenancy.infra.dynamic import policyrun
from tenancy.infra.dynamic.policyrun import PolicyRunError, PolicyRunProvider
from tenancy.policy import runner
from tenancy.policy.runner import (
    MAX_FORKS,
    HostResult,
    RunRequest,
    RunResult,
    SshWaitError,
    TaskRef,
    child_environment,
    control_ids,
    forks_for,
    lockout_problems,
    new_run_id,
    parse_events,
    policy_digest,
    policy_files,
    prepare_run,
    private_key_for,
    run_policy,
    wait_for_ssh,
)

# -- control IDs -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "tags", "want"),
    [
        ("BASE-SSH-03 | Ensure root login over SSH is disabled", [], ["BASE-SSH-03"]),
        ("BASE-ACC-05, BASE-ACC-06 | Ensure login.defs ...", [], ["BASE-ACC-05", "BASE-ACC-06"]),
        (
            "BASE-AUD-03, BASE-AUD-04, MLPS-AUD-02 | Ensure the audit rules are configured",
            [],
            ["BASE-AUD-03", "BASE-AUD-04", "MLPS-AUD-02"],
        ),
        ("Reload sshd", [], []),
        ("Apply the kernel parameters", ["BASE-KRN-01", "tenancy_kernel"], ["BASE-KRN-01"]),
        ("BASE-SSH-03 is mentioned but not a prefix", [], []),
        ("", ["always"], []),
    ],
)
def test_control_ids(name: str, tags: list[str], want: list[str]) -> None:
    assert control_ids(name, tags) == want


def test_every_controlled_task_name_of_the_roles_parses() -> None:
    """Each task the catalogue traces (tagged with an ID) yields IDs from its name."""
    from tenancy.policy.catalogue import _tasks

    checked = 0
    for task_file in sorted((REPO / "roles").glob("*/tasks/*.yml")):
        for task in _tasks(yaml.safe_load(task_file.read_text())):
            tags = task.get("tags") or []
            ids = [t for t in tags if runner._ID.match(str(t))]
            if not ids or "import_tasks" in str(task):
                continue
            checked += 1
            assert set(control_ids(str(task["name"]))) == set(ids), (task_file, task["name"])
    assert checked >= 40


def test_tags_come_from_the_task_file_by_line() -> None:
    path = REPO / "roles/tenancy_kernel/tasks/sysctl.yml"
    line = next(
        i for i, text in enumerate(path.read_text().splitlines(), 1) if text.startswith("- name:")
    )
    assert runner._tags_at(f"{path}:{line}") == ("BASE-KRN-01", "BASE-KRN-02")
    assert runner._tags_at(f"{path}:9999") == ()
    assert runner._tags_at("no-such-file.yml:3") == ()


# -- events ------------------------------------------------------------------------


def write_events(directory: Path, events: list[dict[str, Any]]) -> Path:
    directory.mkdir(parents=True)
    for i, event in enumerate(events, 1):
        event.setdefault("counter", i)
        (directory / f"{i}-x.json").write_text(json.dumps(event))
    return directory


def ev(kind: str, host: str | None = None, **data: Any) -> dict[str, Any]:
    event_data = dict(data)
    if host:
        event_data["host"] = host
    return {"event": kind, "event_data": event_data}


def test_parse_events_per_host(tmp_path: Path) -> None:
    events = write_events(
        tmp_path / "job_events",
        [
            ev("runner_on_ok", "a", task="BASE-SSH-03 | Disable root", res={"changed": True}),
            ev("runner_on_ok", "a", task="Reload sshd", role="tenancy_ssh", res={"changed": True}),
            ev("runner_on_ok", "b", task="BASE-SSH-03 | Disable root", res={"changed": False}),
            ev(
                "runner_on_failed",
                "b",
                task="BASE-AUD-03, BASE-AUD-04 | Rules",
                res={"msg": "augenrules   failed\n rc=1", "stderr": "Syscall name unknown"},
            ),
            ev("runner_on_failed", "b", task="ignored", ignore_errors=True, res={"msg": "x"}),
            ev("runner_on_failed", "b", task="BASE-ACC-03 | Shadow", res={"censored": "hidden"}),
            ev("runner_on_unreachable", "c", task="Gathering Facts", res={"msg": "timed out"}),
            ev(
                "playbook_on_stats",
                None,
                ok={"a": 10, "b": 8},
                changed={"a": 2},
                failures={"b": 2},
                dark={"c": 1},
                skipped={"a": 3},
            ),
        ],
    )
    got = parse_events(events, ["a", "b", "c", "d"])
    a, b, c, d = got["a"], got["b"], got["c"], got["d"]
    assert (a.ok, a.changed, a.failed, a.skipped, a.status) == (10, 2, 0, 3, "changed")
    assert a.changed_controls == ["BASE-SSH-03"]
    assert [t.task for t in a.changed_tasks] == ["BASE-SSH-03 | Disable root", "Reload sshd"]
    assert b.status == "failed" and b.failed == 2
    assert b.failed_controls == ["BASE-ACC-03", "BASE-AUD-03", "BASE-AUD-04"]
    assert b.failed_tasks[0].message == "augenrules failed rc=1 Syscall name unknown"
    assert b.failed_tasks[1].message == "hidden"
    assert c.status == "unreachable" and c.failed_tasks[0].message == "timed out"
    assert d.status == "failed" and d.ok == 0, "listed, but missing from the play recap"
    assert d.problem == "d never appeared in the play recap: Ansible did not run the play on it"
    assert not (a.problem or b.problem or c.problem)


def test_long_messages_are_cut(tmp_path: Path) -> None:
    events = write_events(
        tmp_path / "e",
        [ev("runner_on_failed", "a", task="t", res={"msg": "x" * 5000})],
    )
    assert len(parse_events(events)["a"].failed_tasks[0].message) == 400


def test_run_result_round_trip_and_lines() -> None:
    result = RunResult(
        run_id="r1",
        check=True,
        status="successful",
        rc=0,
        run_dir="/tmp/r1",
        started="2026-11-28T05:00:00+00:00",
        seconds=12.5,
        hosts={
            "a": HostResult(
                host="a",
                ok=3,
                changed=1,
                changed_tasks=[TaskRef("a", "BASE-SSH-03 | x", controls=["BASE-SSH-03"])],
            ),
            "b": HostResult(host="b", ok=3),
        },
    )
    again = RunResult.from_dict(json.loads(json.dumps(result.to_dict())))
    assert again == result
    assert result.ok and result.changed_hosts == ["a"] and result.failed_hosts == []
    assert result.lines() == [
        "a: changed (ok=3 changed=1 failed=0 unreachable=0 skipped=0)",
        "  would change: BASE-SSH-03",
        "    - BASE-SSH-03 | x",
        "b: ok (ok=3 changed=0 failed=0 unreachable=0 skipped=0)",
    ]
    assert result.hosts["a"].summary()["changed_controls"] == ["BASE-SSH-03"]


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
    files = [p.as_posix() for p in policy_files(REPO)]
    assert files[:2] == ["policies/playbook.yml", "policies/catalogue.yaml"]
    assert "roles/tenancy_ssh/tasks/config.yml" in files
    assert not any("guardrails" in f or "waivers" in f or "__pycache__" in f for f in files)


def test_policy_digest_follows_roles_and_variables(tmp_path: Path) -> None:
    project = fake_project(tmp_path / "p", "- hosts: all\n", "- name: x\n  debug: {}\n")
    variables = {"all": {"vars": {"x": 1}}}
    first = policy_digest(project, variables)
    assert first == policy_digest(project, {"all": {"vars": {"x": 1}}})
    assert len(first) == 64
    (project / "policies" / "guardrails" / "pack.py").write_text("# edited\n")
    assert policy_digest(project, variables) == first, "the guardrails pack is not applied"
    assert policy_digest(project, {"all": {"vars": {"x": 2}}}) != first
    (project / "roles" / "demo" / "tasks" / "main.yml").write_text("- name: y\n  debug: {}\n")
    assert policy_digest(project, variables) != first


# -- private data dir ----------------------------------------------------------------


def test_prepare_run_layout(tmp_path: Path) -> None:
    project = fake_project(tmp_path / "p", "- hosts: all\n", "- name: x\n  debug: {}\n")
    key = tmp_path / "id_ed25519"
    key.write_text("-----BEGIN OPENSSH PRIVATE KEY-----\nsecret\n")
    request = RunRequest(
        run_id="r-1",
        project=project,
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
    assert env["PATH"].split(":")[0] == str(Path(os.sys.executable).parent)


def test_forks_are_sized_for_the_hosts() -> None:
    assert [forks_for(n) for n in (0, 1, 3, MAX_FORKS, 400)] == [1, 1, 3, MAX_FORKS, MAX_FORKS]


def test_run_ids_are_unique_and_readable() -> None:
    a, b = new_run_id("apply", "local", "hr"), new_run_id("apply", "local", "hr")
    assert a != b and "-apply-local-hr-" in a
    assert "-check-it-policy-all-" in new_run_id("check", "it-policy")
    assert "/" not in new_run_id("apply", "x", "a/b c")


def test_private_key_is_the_public_key_files_sibling(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TENANCY_OPS_SSH_KEY", raising=False)
    (tmp_path / "k").mkdir()
    (tmp_path / "k" / "ops.pub").write_text("ssh-ed25519 AAAA")
    assert private_key_for(tmp_path, ["k/ops.pub"]) is None
    (tmp_path / "k" / "ops").write_text("private")
    assert private_key_for(tmp_path, ["/nonexistent.pub", "k/ops.pub"]) == tmp_path / "k" / "ops"
    monkeypatch.setenv("TENANCY_OPS_SSH_KEY", "/elsewhere/key")
    assert private_key_for(tmp_path, ["k/ops.pub"]) == Path("/elsewhere/key")


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
        name: {"ansible_connection": "local", "ansible_python_interpreter": os.sys.executable}
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
        project=demo_project,
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
        project=demo_project,
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
        project=demo_project,
        inventory=local_inventory(),
        state_dir=tmp_path / "state",
    )
    result = run_policy(request)
    assert not result.ok and result.error.startswith("ansible-runner ended with rc")


# -- readiness and lock-out ------------------------------------------------------------


def test_wait_for_ssh_retries_until_ready(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: dict[str, int] = {}

    def probe(address: str, *_: Any) -> tuple[int, str]:
        calls[address] = calls.get(address, 0) + 1
        return (0, "") if calls[address] >= 3 else (255, "Connection refused")

    monkeypatch.setattr(runner, "_probe", probe)
    ready = wait_for_ssh({"a": "10.0.0.1", "b": "10.0.0.2"}, "ops", None, 10, interval=0.01)
    assert set(ready) == {"a", "b"} and calls == {"10.0.0.1": 3, "10.0.0.2": 3}


def test_wait_for_ssh_names_every_silent_host(monkeypatch: pytest.MonkeyPatch) -> None:
    def probe(address: str, *_: Any) -> tuple[int, str]:
        if address == "10.0.0.1":
            return 0, ""
        return 255, f"ssh: connect to host {address} port 22: No route to host"

    monkeypatch.setattr(runner, "_probe", probe)
    with pytest.raises(SshWaitError) as err:
        wait_for_ssh(
            {"a": "10.0.0.1", "b": "10.0.0.2", "c": "10.0.0.3"}, "ops", None, 0.05, interval=0.01
        )
    assert err.value.pending == {
        "b": "ssh: connect to host 10.0.0.2 port 22: No route to host",
        "c": "ssh: connect to host 10.0.0.3 port 22: No route to host",
    }
    assert str(err.value).startswith("2 host(s) did not answer SSH within 0 s:")


def test_ssh_probe_command_line() -> None:
    argv = runner._ssh_argv("10.0.0.1", "ops", Path("/k/id"), runner.READY_PROBE)
    assert argv[-2:] == ["ops@10.0.0.1", runner.READY_PROBE]
    assert "BatchMode=yes" in argv and "IdentitiesOnly=yes" in argv and "/k/id" in argv


def test_lockout_guard() -> None:
    hosts = {
        "in": {"ansible_host": "10.30.0.10", "tenancy_site_ops_cidrs": ["10.30.0.1/32"]},
        "out": {"ansible_host": "10.40.0.10", "tenancy_site_ops_cidrs": ["10.40.0.1/32"]},
        "waived": {
            "ansible_host": "10.50.0.10",
            "tenancy_site_ops_cidrs": [],
            "tenancy_waived_controls": ["BASE-FW-03"],
        },
        "unknown": {"ansible_host": "10.60.0.10", "tenancy_site_ops_cidrs": []},
    }
    sources = {
        "10.30.0.10": ("10.30.0.1", "tnhr"),
        "10.40.0.10": ("192.0.2.2", "eth0"),
        "10.50.0.10": ("192.0.2.2", "eth0"),
    }
    problems = lockout_problems(hosts, sources.get)
    assert len(problems) == 1 and problems[0].startswith("out: this controller reaches")
    assert "from 192.0.2.2 (via eth0)" in problems[0]


# -- the PolicyRun provider (no engine) -------------------------------------------------


def props(**over: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "tenant": "hr",
        "site": "local",
        "hosts": {"hr-portal-1": "10.30.0.10"},
        "instances": {"hr-portal-1": "uuid-1"},
        "ssh_user": "ops",
        "policy_hash": "a" * 64,
        "inventory": {"all": {}},
        "project": "/p",
        "state_dir": "/s",
        "private_key": "",
        "ssh_timeout": 900,
        "run_timeout": 3600,
        "problems": [],
    }
    base.update(over)
    return base


@pytest.mark.parametrize(
    ("olds", "news", "changes"),
    [
        (props(), props(), False),
        (props(run_id="r", results={}, drifted=[], drift={}), props(), False),
        (props(), props(policy_hash="b" * 64), True),
        (props(), props(instances={"hr-portal-1": "uuid-2"}), True),
        (props(), props(hosts={"hr-portal-1": "10.30.0.11"}), True),
        (props(), props(ssh_user="admin"), True),
        (props(drifted=["hr-portal-1"], drift={"hr-portal-1": ["BASE-SSH-03"]}), props(), True),
        # where and how to run is not a reason to run again
        (props(), props(project="/elsewhere", state_dir="/x", run_timeout=60.0), False),
        (props(ssh_timeout=900.0), props(), False),
    ],
)
def test_diff(olds: dict[str, Any], news: dict[str, Any], changes: bool) -> None:
    result = PolicyRunProvider().diff("local/hr", olds, news)
    assert result.changes is changes
    assert result.replaces == [] and result.delete_before_replace is False


def test_check_fills_defaults_and_validates() -> None:
    minimal = {k: v for k, v in props().items() if k not in ("instances", "private_key")}
    checked = PolicyRunProvider().check({}, minimal)
    assert checked.failures == []
    assert checked.inputs["instances"] == {} and checked.inputs["private_key"] == ""
    bad = PolicyRunProvider().check({}, props(hosts={}, policy_hash="short"))
    assert {f.property for f in bad.failures} == {"hosts", "policy_hash"}


def test_site_problems_fail_the_run_before_anything_happens() -> None:
    with pytest.raises(PolicyRunError, match="nothing applied:\nsite dc-east: ntpServers"):
        PolicyRunProvider().create(props(problems=["site dc-east: ntpServers[0] ..."]))


def test_create_waits_for_ssh_and_reports_silent_hosts(monkeypatch: pytest.MonkeyPatch) -> None:
    def never(*_: Any, **__: Any) -> dict[str, float]:
        raise SshWaitError({"hr-portal-1": "No route to host"}, 900)

    monkeypatch.setattr(policyrun, "wait_for_ssh", never)
    with pytest.raises(PolicyRunError) as err:
        PolicyRunProvider().create(props())
    assert "PolicyRun hr: nothing applied: 1 host(s) did not answer SSH" in str(err.value)
    assert "hr-portal-1: No route to host" in str(err.value)


def fake_result(check: bool, **hosts: HostResult) -> RunResult:
    return RunResult(
        run_id="r-check" if check else "r-apply",
        check=check,
        status="successful",
        rc=0,
        run_dir="/s/runs/r",
        started="",
        seconds=1.0,
        hosts=dict(hosts),
    )


def test_failed_hosts_fail_the_operation_with_every_hosts_result(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    result = fake_result(
        False,
        a=HostResult("a", ok=30, changed=5),
        b=HostResult(
            "b",
            ok=10,
            failed=1,
            failed_tasks=[TaskRef("b", "BASE-TIME-02 | x", controls=["BASE-TIME-02"], message="m")],
        ),
    )
    result.rc, result.status = 2, "failed"
    monkeypatch.setattr(policyrun, "wait_for_ssh", lambda *a, **k: {})
    monkeypatch.setattr(policyrun, "lockout_problems", lambda *a, **k: [])
    monkeypatch.setattr(policyrun, "run_policy", lambda request: result)
    with pytest.raises(PolicyRunError) as err:
        PolicyRunProvider().create(props(hosts={"a": "10.0.0.1", "b": "10.0.0.2"}))
    text = str(err.value)
    assert text.startswith("PolicyRun hr: the baseline failed on 1 of 2 host(s) (b)")
    assert "a: changed (ok=30 changed=5" in text
    assert "FAILED BASE-TIME-02 | x [BASE-TIME-02]: m" in text
    assert "run directory: /s/runs/r" in text


def test_apply_outputs_and_read_records_drift(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[RunRequest] = []

    def run(request: RunRequest) -> RunResult:
        seen.append(request)
        if request.check:
            return fake_result(
                True,
                a=HostResult(
                    "a",
                    changed=1,
                    changed_tasks=[TaskRef("a", "BASE-SSH-03 | y", controls=["BASE-SSH-03"])],
                ),
                b=HostResult("b", ok=40),
                c=HostResult("c", unreachable=1),
            )
        return fake_result(False, a=HostResult("a", ok=40, changed=7), b=HostResult("b", ok=40))

    monkeypatch.setattr(policyrun, "wait_for_ssh", lambda *a, **k: {})
    monkeypatch.setattr(policyrun, "lockout_problems", lambda *a, **k: [])
    monkeypatch.setattr(policyrun, "run_policy", run)
    provider = PolicyRunProvider()
    # numbers come back from the engine as floats: the inventory is normalised
    created = provider.create(props(inventory={"all": {"vars": {"port": 443.0}}}))
    assert created.id == "local/hr"
    outs = created.outs
    assert outs["run_id"] == "r-apply" and outs["drifted"] == [] and outs["drift"] == {}
    assert outs["results"]["a"]["changed"] == 7 and outs["results"]["b"]["status"] == "ok"
    assert seen[0].inventory == {"all": {"vars": {"port": 443}}}
    assert seen[0].extravars == {"tenancy_run_policy_digest": "a" * 64} and not seen[0].check

    read = provider.read("local/hr", outs)
    assert seen[1].check and read.id == "local/hr"
    assert read.outs["drifted"] == ["a"] and read.outs["drift"] == {"a": ["BASE-SSH-03"]}
    assert read.outs["unverified"] == ["c"] and read.outs["check_run_id"] == "r-check"
    assert provider.diff("local/hr", read.outs, props()).changes is True

    monkeypatch.setenv("TENANCY_POLICY_REFRESH", "skip")
    assert provider.read("local/hr", outs).outs == outs and len(seen) == 2


def test_shared_tasks_report_only_the_hosts_own_controls(tmp_path: Path) -> None:
    request = RunRequest(
        run_id="r-active", project=REPO, inventory={"all": {}}, state_dir=tmp_path / "s"
    )
    project = prepare_run(request) / "project"
    active = runner.active_controls(
        project,
        {
            "base": {"tenancy_profiles": ["baseline"]},
            "l3": {"tenancy_profiles": ["mlps-level3"], "tenancy_waived_controls": ["MLPS-LOG-01"]},
            "odd": {"tenancy_profiles": ["no-such-profile"]},
        },
    )
    assert "MLPS-ACC-03" not in active["base"] and "BASE-ACC-06" in active["base"]
    assert "MLPS-ACC-03" in active["l3"] and "MLPS-LOG-01" not in active["l3"]
    assert "odd" not in active
    events = write_events(
        tmp_path / "job_events",
        [
            ev("runner_on_ok", h, task="BASE-ACC-06, MLPS-ACC-03 | Shell", res={"changed": True})
            for h in ("base", "l3", "other")
        ],
    )
    got = parse_events(events, active=active)
    assert got["base"].changed_controls == ["BASE-ACC-06"]
    assert got["l3"].changed_controls == ["BASE-ACC-06", "MLPS-ACC-03"]
    assert got["other"].changed_controls == ["BASE-ACC-06", "MLPS-ACC-03"], "unknown: as named"


def test_command_line_of_a_run(tmp_path: Path) -> None:
    request = RunRequest(
        run_id="r-cmd",
        project=REPO,
        inventory={},
        state_dir=tmp_path,
        check=True,
        limit="it-gamma",
        tags=("tenancy_ssh", "BASE-KRN-01"),
        skip_tags=("BASE-FW-03",),
    )
    argv = runner._command(request, host_count=3)
    assert argv[1:4] == ["-m", "ansible_runner", "run"]
    assert argv[argv.index("--forks") + 1] == "3"
    assert argv[argv.index("--limit") + 1] == "it-gamma"
    assert argv[-1] == ("--cmdline=--check --tags=tenancy_ssh,BASE-KRN-01 --skip-tags=BASE-FW-03")
    plain = runner._command(RunRequest("r", REPO, {}, tmp_path), host_count=40)
    assert not any(a.startswith("--cmdline") for a in plain)
    assert plain[plain.index("--forks") + 1] == str(MAX_FORKS)


# -- tenancy harden (the runner faked: no host is touched) ------------------------------


@pytest.fixture
def fake_harden(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> tuple[list[RunRequest], dict[str, Any]]:
    from tenancy import cli_policy

    seen: list[RunRequest] = []
    outcome: dict[str, Any] = {"hosts": {}, "rc": 0, "lockouts": []}

    def run(request: RunRequest, stream: Any = None) -> RunResult:
        seen.append(request)
        result = fake_result(request.check, **outcome["hosts"])
        result.rc = outcome["rc"]
        result.run_dir = str(tmp_path / "state" / "runs" / request.run_id)
        return result

    monkeypatch.setenv("TENANCY_STATE", str(tmp_path / "state"))
    monkeypatch.setattr(cli_policy, "run_policy", run)
    monkeypatch.setattr(cli_policy, "lockout_problems", lambda hosts: outcome["lockouts"])
    return seen, outcome


def test_harden_builds_the_run_from_the_plan(fake_harden: Any, cli: Any) -> None:
    seen, outcome = fake_harden
    outcome["hosts"] = {"tourism-web-1": HostResult("tourism-web-1", ok=50)}
    result = cli(
        "--root", REPO, "harden", "--site", "local", "--tenant", "tourism",
        "--tags", "tenancy_ssh,BASE-FW-03", "--skip-tags", "BASE-UPD-01", "-q",
    )  # fmt: skip
    assert result.code == 0, result
    (request,) = seen
    assert "-harden-local-tourism-" in request.run_id and not request.check
    assert request.tags == ("tenancy_ssh", "BASE-FW-03") and request.skip_tags == ("BASE-UPD-01",)
    assert list(request.inventory["all"]["children"]) == ["tourism"]
    assert request.extravars["tenancy_run_catalogue"] == "dc-shared-security-baseline v1"
    assert str(request.state_dir).endswith("/state")
    assert result.out.splitlines()[-1].startswith("harden: 1 host(s), 0 changed, 0 failed")


def test_harden_check_exits_4_on_drift_and_3_on_failure(fake_harden: Any, cli: Any) -> None:
    seen, outcome = fake_harden
    outcome["hosts"] = {
        "hr-portal-1": HostResult(
            "hr-portal-1",
            changed=1,
            changed_tasks=[TaskRef("hr-portal-1", "BASE-SSH-03 | x", controls=["BASE-SSH-03"])],
        ),
        "tourism-web-1": HostResult("tourism-web-1", ok=50),
    }
    drift = cli("--root", REPO, "harden", "--site", "local", "--check", "-q")
    assert drift.code == 4, drift
    assert "  would change: BASE-SSH-03" in drift.out
    assert "check: 2 host(s), 1 drifted, 0 failed/unreachable" in drift.out
    assert seen[-1].check
    outcome["hosts"]["tourism-web-1"] = HostResult("tourism-web-1", unreachable=1)
    outcome["rc"] = 4
    failed = cli("--root", REPO, "harden", "--site", "local", "--check", "--format", "json")
    assert failed.code == 3, failed
    doc = json.loads(failed.out)
    assert doc["exit_code"] == 3 and doc["failed_hosts"] == ["tourism-web-1"]


def test_harden_refuses_what_it_cannot_run(fake_harden: Any, cli: Any) -> None:
    seen, outcome = fake_harden
    assert cli("--root", REPO, "harden", "--site", "nowhere").code == 2
    unknown = cli("--root", REPO, "harden", "--site", "local", "--tenant", "nope")
    assert unknown.code == 1 and "tenant 'nope' is not planned on site local" in unknown.err
    east = cli("--root", REPO, "harden", "--site", "dc-east")
    assert east.code == 1 and "ntpServers[0] 'ntp1.dc.example.gov'" in east.err
    outcome["lockouts"] = ["hr-portal-1: this controller reaches ..."]
    locked = cli("--root", REPO, "harden", "--site", "local")
    assert locked.code == 1 and "would lock this controller out" in locked.err
    assert cli("--root", REPO, "harden", "--site", "local", "--check", "-q").code == 0, (
        "check mode changes no firewall: no lock-out check"
    )
    assert len(seen) == 1


def test_runs_use_mitogen_unless_told_otherwise(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tenancy.policy.runner import ansible_settings

    monkeypatch.delenv("TENANCY_ANSIBLE_STRATEGY", raising=False)
    settings = ansible_settings(tmp_path, None)
    assert settings["ANSIBLE_STRATEGY"] == "mitogen_linear"
    assert (Path(settings["ANSIBLE_STRATEGY_PLUGINS"]) / "mitogen_linear.py").is_file()
    monkeypatch.setenv("TENANCY_ANSIBLE_STRATEGY", "linear")
    settings = ansible_settings(tmp_path, None)
    assert "ANSIBLE_STRATEGY" not in settings and "ANSIBLE_STRATEGY_PLUGINS" not in settings
