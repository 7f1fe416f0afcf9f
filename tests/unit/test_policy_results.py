"""Per-host results of a run: control IDs of tasks, tags by task line, job events, summaries."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.support.project import REPO

from tenancy.contract.host_vars import HostVars, PolicyVars
from tenancy.policy import results, task_tags
from tenancy.policy.ansible_run import active_controls
from tenancy.policy.catalogue import Catalogue
from tenancy.policy.catalogue_load import load_catalogue
from tenancy.policy.results import HostResult, RunResult, TaskRef, control_ids, parse_events
from tenancy.policy.variables import selected_controls

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
    from tenancy.policy.role_trace import _tasks

    checked = 0
    for task_file in sorted((REPO / "roles").glob("*/tasks/*.yml")):
        for task in _tasks(yaml.safe_load(task_file.read_text())):
            tags = task.get("tags") or []
            ids = [t for t in tags if results._ID.match(str(t))]
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
    assert task_tags.tags_at(f"{path}:{line}") == ("BASE-KRN-01", "BASE-KRN-02")
    assert task_tags.tags_at(f"{path}:9999") == ()
    assert task_tags.tags_at("no-such-file.yml:3") == ()


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


def _rendered(catalogue: Catalogue, profiles: list[str], waived: tuple[str, ...] = ()) -> HostVars:
    """A host's variables as the policy inventory renders them (selection included)."""
    controls = tuple(c.id for c in selected_controls(catalogue, profiles, waived))
    policy = PolicyVars(profiles=tuple(profiles), waived_controls=waived, controls=controls)
    return HostVars(policy=policy)


def test_shared_tasks_report_only_the_hosts_own_controls(tmp_path: Path) -> None:
    catalogue = load_catalogue(REPO / "policies" / "catalogue.yaml")
    active = active_controls(
        {
            "base": _rendered(catalogue, ["baseline"]),
            "l3": _rendered(catalogue, ["mlps-level3"], ("MLPS-LOG-01",)),
            # an inventory that carries no selection (not rendered by Tenancy)
            "odd": HostVars(policy=PolicyVars(profiles=("no-such-profile",))),
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
