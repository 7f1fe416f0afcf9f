"""Per-host progress of hardening runs, read from ansible-runner's job event files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tenancy.policy.progress import RunWatcher, waiting_marker

RUN_ID = "20261202T050000Z-apply-local-hr-a1b2c3"


def write_event(run_dir: Path, counter: int, event: str, **data: Any) -> None:
    events = run_dir / "artifacts" / RUN_ID / "job_events"
    events.mkdir(parents=True, exist_ok=True)
    doc = {"counter": counter, "event": event, "event_data": data}
    (events / f"{counter}-uuid{counter}.json").write_text(json.dumps(doc))


def test_watcher_reports_tasks_per_host_with_total_and_a_summary(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    runs.mkdir()
    (runs / "older-run").mkdir()  # there before the watcher: not followed
    lines: list[str] = []
    watcher = RunWatcher(runs, lines.append)
    run_dir = runs / RUN_ID
    run_dir.mkdir()
    (run_dir / "label").write_text("apply hr\n")
    (run_dir / "tasks.total").write_text("2\n")
    write_event(run_dir, 1, "playbook_on_task_start", task="Gathering Facts")
    write_event(
        run_dir,
        2,
        "runner_on_start",
        host="hr-portal-1",
        task="Gathering Facts",
        task_action="gather_facts",
    )
    write_event(
        run_dir,
        3,
        "runner_on_start",
        host="hr-portal-1",
        task="BASE-SSH-03 | Ensure root login over SSH is disabled",
        role="tenancy_ssh",
    )
    watcher.poll()
    assert lines[0] == f"  apply hr: Ansible run {RUN_ID} started"
    assert lines[1].startswith("  apply hr hr-portal-1: facts [play] Gathering Facts (")
    assert lines[2].startswith(
        "  apply hr hr-portal-1: task 1/2 [tenancy_ssh] BASE-SSH-03 | Ensure root login"
    )
    write_event(run_dir, 4, "playbook_on_task_start", task="restart sshd", is_conditional=True)
    write_event(run_dir, 5, "runner_on_start", host="hr-portal-1", task="restart sshd")
    write_event(
        run_dir,
        6,
        "playbook_on_stats",
        ok={"hr-portal-1": 3},
        changed={"hr-portal-1": 2},
        failures={},
        dark={"hr-portal-2": 1},
    )
    watcher.poll()
    assert lines[3].startswith("  apply hr hr-portal-1: handler [play] restart sshd")
    assert lines[4].startswith("  apply hr hr-portal-1: done, changed 2, failed 0, unreachable 0")
    # a host that only appears in the recap (never started a task) is reported too
    assert lines[5].startswith("  apply hr hr-portal-2: done, changed 0, failed 0, unreachable 1")
    watcher.poll()
    assert len(lines) == 6, "events are reported once"
    summary = watcher.summary_lines()
    assert [s.split(":")[0] for s in summary] == ["apply hr hr-portal-1", "apply hr hr-portal-2"]


def test_a_half_written_event_file_is_read_on_the_next_scan(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    runs.mkdir()
    lines: list[str] = []
    watcher = RunWatcher(runs, lines.append)
    run_dir = runs / RUN_ID
    events = run_dir / "artifacts" / RUN_ID / "job_events"
    events.mkdir(parents=True)
    (run_dir / "label").write_text("apply hr\n")
    partial = events / "1-u.json"
    partial.write_text('{"counter": 1, "event": "runner_on_st')
    watcher.poll()
    assert len(lines) == 1  # only "started"
    partial.write_text(
        json.dumps(
            {"counter": 1, "event": "runner_on_start", "event_data": {"host": "h", "task": "t"}}
        )
    )
    watcher.poll()
    assert lines[1].startswith("  apply hr h: task 1 [play] t")


def test_a_run_waiting_for_ssh_is_reported_before_its_directory_exists(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    runs.mkdir()
    lines: list[str] = []
    watcher = RunWatcher(runs, lines.append)
    marker = waiting_marker(runs, RUN_ID, "apply hr", ["hr-portal-1", "hr-portal-2"])
    watcher.poll()
    watcher.poll()
    assert lines == ["  apply hr: waiting for hr-portal-1, hr-portal-2 to answer SSH"]
    marker.unlink()
    (runs / RUN_ID).mkdir()
    (runs / RUN_ID / "label").write_text("apply hr\n")
    watcher.poll()
    assert lines[1] == f"  apply hr: Ansible run {RUN_ID} started"
