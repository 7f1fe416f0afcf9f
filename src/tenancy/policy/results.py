"""What a run did, per host: parsed from ansible-runner's job events, kept in summary.json.

Results per host: ok/changed/failed/unreachable/skipped counts from the play
recap, plus every changed task and every failed task with its host, name and
the control IDs it implements (parsed from the task name prefix,
``"BASE-SSH-03 | ..."``, else from the task's tags). In check mode a changed
task is drift: the host differs from the policy there. A host the run should
have reached but that is missing from the play recap is failed, never ok:
Ansible did not run the play on it. The PolicyRun outputs, the CLI report and
the audit's evidence all read these types, never the events themselves.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tenancy.policy.task_tags import tags_at

__all__ = ["HostResult", "RunResult", "TaskRef", "control_ids", "parse_events"]

_ONE_ID = r"[A-Z][A-Z0-9]*-[A-Z]+-[0-9]{2}"
_NAME_IDS = re.compile(rf"^\s*({_ONE_ID}(?:\s*,\s*{_ONE_ID})*)\s*\|")
_ID = re.compile(rf"^{_ONE_ID}$")
_MESSAGE_LIMIT = 400


@dataclass
class TaskRef:
    """One task on one host: its name, role and the control IDs it implements."""

    host: str
    task: str
    role: str = ""
    controls: list[str] = field(default_factory=list)
    message: str = ""


@dataclass
class HostResult:
    """The play recap of one host plus its changed and failed tasks."""

    host: str
    ok: int = 0
    changed: int = 0
    failed: int = 0
    unreachable: int = 0
    skipped: int = 0
    rescued: int = 0
    ignored: int = 0
    changed_tasks: list[TaskRef] = field(default_factory=list)
    failed_tasks: list[TaskRef] = field(default_factory=list)
    problem: str = ""
    """Why the counts above prove nothing (the host never appeared in the play recap)."""

    @property
    def status(self) -> str:
        if self.unreachable:
            return "unreachable"
        if self.failed or self.problem:
            return "failed"
        return "changed" if self.changed else "ok"

    @property
    def changed_controls(self) -> list[str]:
        return sorted({c for t in self.changed_tasks for c in t.controls})

    @property
    def failed_controls(self) -> list[str]:
        return sorted({c for t in self.failed_tasks for c in t.controls})

    def summary(self) -> dict[str, Any]:
        """The compact form kept in Pulumi outputs."""
        return {
            "status": self.status,
            "ok": self.ok,
            "changed": self.changed,
            "failed": self.failed,
            "unreachable": self.unreachable,
            "skipped": self.skipped,
            "changed_controls": self.changed_controls,
            "problem": self.problem,
            "failed_tasks": [
                {"task": t.task, "controls": t.controls, "message": t.message}
                for t in self.failed_tasks
            ],
        }


@dataclass
class RunResult:
    """What one run did, per host. ``status`` is ansible-runner's (or ``timeout``/``error``)."""

    run_id: str
    check: bool
    status: str
    rc: int
    run_dir: str
    started: str
    seconds: float
    hosts: dict[str, HostResult] = field(default_factory=dict)
    error: str = ""

    @property
    def failed_hosts(self) -> list[str]:
        return sorted(h for h, r in self.hosts.items() if r.failed or r.unreachable or r.problem)

    @property
    def changed_hosts(self) -> list[str]:
        """Hosts with changes; in check mode, the drifted ones."""
        return sorted(h for h, r in self.hosts.items() if r.changed)

    @property
    def ok(self) -> bool:
        return not self.error and not self.failed_hosts and self.rc == 0

    def to_dict(self) -> dict[str, Any]:
        doc = asdict(self)
        doc["failed_hosts"] = self.failed_hosts
        doc["changed_hosts"] = self.changed_hosts
        return doc

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> RunResult:
        hosts = {
            name: HostResult(
                **{
                    **{k: v for k, v in h.items() if k not in ("changed_tasks", "failed_tasks")},
                    "changed_tasks": [TaskRef(**t) for t in h.get("changed_tasks", [])],
                    "failed_tasks": [TaskRef(**t) for t in h.get("failed_tasks", [])],
                }
            )
            for name, h in (doc.get("hosts") or {}).items()
        }
        keep = {"run_id", "check", "status", "rc", "run_dir", "started", "seconds", "error"}
        return cls(**{k: v for k, v in doc.items() if k in keep}, hosts=hosts)

    def lines(self) -> list[str]:
        """Human-readable per-host lines (used by the CLI and by error messages)."""
        verb = "would change" if self.check else "changed"
        out: list[str] = []
        for name in sorted(self.hosts):
            r = self.hosts[name]
            out.append(
                f"{name}: {r.status} (ok={r.ok} changed={r.changed} failed={r.failed} "
                f"unreachable={r.unreachable} skipped={r.skipped})"
            )
            if r.problem:
                out.append(f"  FAILED: {r.problem}")
            if r.changed_controls:
                out.append(f"  {verb}: {', '.join(r.changed_controls)}")
            out.extend(f"    - {t.task}" for t in r.changed_tasks)
            for t in r.failed_tasks:
                ids = f" [{', '.join(t.controls)}]" if t.controls else ""
                out.append(f"  FAILED {t.task}{ids}: {t.message}")
        return out


# -- control IDs ---------------------------------------------------------------------


def control_ids(task_name: str, tags: Iterable[str] = ()) -> list[str]:
    """Control IDs of a task: its name prefix (``"BASE-SSH-01, BASE-SSH-02 | ..."``), else tags."""
    m = _NAME_IDS.match(task_name or "")
    if m:
        return [part.strip() for part in m.group(1).split(",")]
    return [t for t in tags if _ID.match(str(t))]


# -- events --------------------------------------------------------------------------


def _message(res: Mapping[str, Any]) -> str:
    if "censored" in res:
        return str(res["censored"])
    parts = [res.get("msg"), res.get("reason"), res.get("stderr"), res.get("module_stderr")]
    text = " ".join(str(p).strip() for p in parts if p)
    if not text and isinstance(res.get("results"), list):
        text = " ".join(
            _message(r) for r in res["results"] if isinstance(r, Mapping) and r.get("failed")
        )
    text = " ".join(text.split())
    return text[: _MESSAGE_LIMIT - 1] + "…" if len(text) > _MESSAGE_LIMIT else text


def _events(events_dir: Path) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    for path in events_dir.glob("*.json"):
        with contextlib.suppress(OSError, ValueError):
            events.append(json.loads(path.read_text(encoding="utf-8")))
    return sorted(events, key=lambda e: int(e.get("counter") or 0))


_STAT_FIELDS = {
    "ok": "ok",
    "changed": "changed",
    "failures": "failed",
    "dark": "unreachable",
    "skipped": "skipped",
    "rescued": "rescued",
    "ignored": "ignored",
}


def parse_events(
    events_dir: Path,
    hosts: Iterable[str] = (),
    active: Mapping[str, set[str]] | None = None,
) -> dict[str, HostResult]:
    """Per-host results from ansible-runner's ``job_events``; every host of ``hosts`` appears.

    ``hosts`` are those the run should have reached. A host without stats in
    the play recap (``playbook_on_stats``) is failed with a :attr:`HostResult.problem`
    saying so: no counts there mean nothing ran on it, not that all went well.

    ``active`` (host -> control IDs the host gets) narrows the IDs of a task that
    implements several controls to the host's own (a baseline host is not told
    about the level-3 controls a shared task also serves).
    """
    active = active or {}
    results = {h: HostResult(host=h) for h in hosts}
    recap: set[str] | None = None  # hosts in the play recap; None: no recap at all
    for event in _events(events_dir):
        kind = event.get("event")
        data = event.get("event_data") or {}
        host = data.get("host")
        if not host:
            if kind == "playbook_on_stats":
                recap = set(recap or ()) | set(data.get("processed") or {})
                for key, attr in _STAT_FIELDS.items():
                    for h, count in (data.get(key) or {}).items():
                        setattr(results.setdefault(h, HostResult(host=h)), attr, int(count))
                        recap.add(h)
            continue
        res = data.get("res") or {}
        name = str(data.get("task") or data.get("task_action") or "")
        entry = results.setdefault(host, HostResult(host=host))
        controls = control_ids(name, tags_at(str(data.get("task_path") or "")))
        if host in active:
            controls = [c for c in controls if c in active[host]]
        ref = TaskRef(host=host, task=name, role=str(data.get("role") or ""), controls=controls)
        if kind == "runner_on_ok" and res.get("changed"):
            entry.changed_tasks.append(ref)
        elif kind == "runner_on_failed" and not data.get("ignore_errors"):
            ref.message = _message(res)
            entry.failed_tasks.append(ref)
        elif kind == "runner_on_unreachable":
            ref.message = _message(res) or "unreachable"
            entry.failed_tasks.append(ref)
    for name, entry in results.items():
        if recap is None:
            entry.problem = (
                f"{name} never appeared in the play recap: the run produced none "
                "(it aborted, or the inventory or playbook did not load)"
            )
        elif name not in recap:
            entry.problem = (
                f"{name} never appeared in the play recap: Ansible did not run the play on it"
            )
    return results
