"""The harden use case, as the PolicyRun provider and ``tenancy harden`` use it (runs faked)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from tests.support.project import REPO

from tenancy.infra.dynamic.policyrun import PolicyRunError, PolicyRunProvider
from tenancy.policy import harden
from tenancy.policy.digest import PolicyFiles
from tenancy.policy.reachability import SshWaitError
from tenancy.policy.results import HostResult, RunResult, TaskRef
from tenancy.policy.run_request import RunRequest
from tenancy.project import Project

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

    monkeypatch.setattr(harden, "wait_for_ssh", never)
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
    monkeypatch.setattr(harden, "wait_for_ssh", lambda *a, **k: {})
    monkeypatch.setattr(harden, "lockout_problems", lambda *a, **k: [])
    monkeypatch.setattr(harden, "run_policy", lambda request, stream=None: result)
    with pytest.raises(PolicyRunError) as err:
        PolicyRunProvider().create(props(hosts={"a": "10.0.0.1", "b": "10.0.0.2"}))
    text = str(err.value)
    assert text.startswith("PolicyRun hr: the baseline failed on 1 of 2 host(s) (b)")
    assert "a: changed (ok=30 changed=5" in text
    assert "FAILED BASE-TIME-02 | x [BASE-TIME-02]: m" in text
    assert "run directory: /s/runs/r" in text


def test_apply_outputs_and_read_records_drift(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[RunRequest] = []

    def run(request: RunRequest, stream: Any = None) -> RunResult:
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

    monkeypatch.setattr(harden, "wait_for_ssh", lambda *a, **k: {})
    monkeypatch.setattr(harden, "lockout_problems", lambda *a, **k: [])
    monkeypatch.setattr(harden, "run_policy", run)
    provider = PolicyRunProvider()
    # numbers come back from the engine as floats: the inventory is normalised
    created = provider.create(props(inventory={"all": {"vars": {"port": 443.0}}}))
    assert created.id == "local/hr"
    outs = created.outs
    assert outs is not None
    assert outs["run_id"] == "r-apply" and outs["drifted"] == [] and outs["drift"] == {}
    assert outs["results"]["a"]["changed"] == 7 and outs["results"]["b"]["status"] == "ok"
    assert seen[0].inventory == {"all": {"vars": {"port": 443}}}
    assert seen[0].extravars == {"tenancy_run_policy_digest": "a" * 64} and not seen[0].check

    read = provider.read("local/hr", outs)
    assert seen[1].check and read.id == "local/hr" and read.outs is not None
    assert read.outs["drifted"] == ["a"] and read.outs["drift"] == {"a": ["BASE-SSH-03"]}
    assert read.outs["unverified"] == ["c"] and read.outs["check_run_id"] == "r-check"
    assert provider.diff("local/hr", read.outs, props()).changes is True

    monkeypatch.setenv("TENANCY_POLICY_REFRESH", "skip")
    assert provider.read("local/hr", outs).outs == outs and len(seen) == 2


# -- tenancy harden (the runner faked: no host is touched) ------------------------------


@pytest.fixture
def fake_harden(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> tuple[list[RunRequest], dict[str, Any]]:
    seen: list[RunRequest] = []
    outcome: dict[str, Any] = {"hosts": {}, "rc": 0, "lockouts": []}

    def run(request: RunRequest, stream: Any = None) -> RunResult:
        seen.append(request)
        result = fake_result(request.check, **outcome["hosts"])
        result.rc = outcome["rc"]
        result.run_dir = str(tmp_path / "state" / "runs" / request.run_id)
        return result

    def lockouts(hosts: Any) -> list[str]:
        return list(outcome["lockouts"])

    monkeypatch.setenv("TENANCY_STATE", str(tmp_path / "state"))
    monkeypatch.setattr(harden, "run_policy", run)
    monkeypatch.setattr(harden, "lockout_problems", lockouts)
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


# -- the use case itself ---------------------------------------------------------------


def options(**over: Any) -> harden.HardenOptions:
    return harden.HardenOptions(project=Project.at(REPO), **{"site": "local", **over})


def test_harden_announces_the_run_and_reports_its_verdict(fake_harden: Any) -> None:
    seen, outcome = fake_harden
    outcome["hosts"] = {"tourism-web-1": HostResult("tourism-web-1", ok=50)}
    said: list[str] = []
    done = harden.harden(options(tenants=("tourism",), check=True), progress=said.append)
    (request,) = seen
    assert said == [f"check site local: 1 host(s), run {request.run_id}"]
    assert request.files == PolicyFiles.of(Project.at(REPO)) and request.label == "check tourism"
    assert done.verdict is harden.Verdict.OK and done.run is not None
    assert done.lines()[-1].startswith("check: 1 host(s), 0 drifted, 0 failed/unreachable")
    assert done.lines()[-1].endswith(f"run dir {Path(done.run.run_dir)}"), "outside the root"
    outcome["hosts"]["tourism-web-1"].changed = 1
    assert harden.harden(options(check=True)).verdict is harden.Verdict.DRIFT
    outcome["rc"] = 2
    assert harden.harden(options()).verdict is harden.Verdict.FAILED


def test_harden_errors_say_why_nothing_ran(
    fake_harden: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen, outcome = fake_harden
    with pytest.raises(harden.HardenError) as unknown:
        harden.harden(options(tenants=("nope",)))
    assert unknown.value.kind is harden.ErrorKind.INVALID
    assert unknown.value.message.startswith("nothing run:\ntenant 'nope' is not planned")
    outcome["lockouts"] = ["hr-portal-1: this controller reaches ..."]
    with pytest.raises(harden.HardenError) as locked:
        harden.harden(options())
    assert locked.value.kind is harden.ErrorKind.LOCKOUT
    assert locked.value.details == ["hr-portal-1: this controller reaches ..."]
    assert harden.harden(options(lockout_check=False)).verdict is harden.Verdict.OK

    def silent(*_: Any, **__: Any) -> dict[str, float]:
        raise SshWaitError({"hr-portal-1": "No route to host"}, 5)

    monkeypatch.setattr(harden, "wait_for_ssh", silent)
    with pytest.raises(harden.HardenError) as unreachable:
        harden.harden(options(wait=5, check=True))
    assert unreachable.value.kind is harden.ErrorKind.UNREACHABLE
    assert "hr-portal-1: No route to host" in unreachable.value.message
    assert len(seen) == 1, "only the run without the lock-out check started"


def test_harden_without_machines_runs_nothing(fake_harden: Any, project: Path) -> None:
    seen, _ = fake_harden
    for tenant in (project / "tenants").glob("*.yaml"):
        tenant.unlink()
    done = harden.harden(harden.HardenOptions(project=Project.at(project), site="local"))
    assert done.verdict is harden.Verdict.NOTHING and done.run is None and not seen
    assert done.lines() == ["site local: no machines planned; nothing to do"]


def test_execute_marks_the_wait_for_a_watcher(
    fake_harden: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    request = RunRequest("r-wait", PolicyFiles.under(REPO), {"all": {}}, tmp_path, label="apply hr")
    marker = tmp_path / "runs" / "r-wait.waiting"
    waited: list[bool] = []

    def wait(*_: Any, **__: Any) -> dict[str, float]:
        waited.append(marker.read_text() == "apply hr\nhr-portal-1\n")
        return {}

    monkeypatch.setattr(harden, "wait_for_ssh", wait)
    run = harden.HardenRun(request, {"hr-portal-1": "10.30.0.10"}, "ops", wait=9, mark_waiting=True)
    assert harden.execute(run).ok
    assert waited == [True] and not marker.exists()
