"""Progress of hardening runs, per host, from the job events ansible-runner writes.

Hardening a VM under software emulation takes minutes. ``tenancy up`` runs
it inside a PolicyRun resource (another process, started by pulumi), and
``tenancy harden`` inside this one; both runs write ansible-runner's
``artifacts/<run-id>/job_events/*.json`` as tasks start and finish. A
:class:`RunWatcher` follows every run directory that appears under
``$TENANCY_STATE/runs`` while it watches and reports, per host, the task that
started (``task n/m``, its role and control IDs, elapsed time) and, when the
play recap arrives, a summary line. Reading files keeps it independent of
the process that runs Ansible.

``m`` is the number of tasks ``ansible-playbook --list-tasks`` listed for the
run (``tasks.total`` in the run directory, written by the runner); tasks a
host skips still count, so ``n`` reaches ``m`` at the end.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: File in a run directory holding the number of tasks the play lists.
TOTAL_FILE = "tasks.total"
#: File in a run directory holding its short label (``apply hr``).
LABEL_FILE = "label"
#: ``<runs>/<run-id>.waiting`` while a run waits for its hosts to answer SSH: the label,
#: then the host names, one a line (written by the PolicyRun before the run dir exists).
WAITING_SUFFIX = ".waiting"


def waiting_marker(runs_dir: Path, run_id: str, label: str, hosts: list[str]) -> Path:
    """Write the marker a :class:`RunWatcher` reports as "waiting for SSH"; returns it."""
    runs_dir.mkdir(parents=True, exist_ok=True)
    path = runs_dir / f"{run_id}{WAITING_SUFFIX}"
    path.write_text("\n".join([label, *hosts]) + "\n", encoding="utf-8")
    return path


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


@dataclass
class HostProgress:
    """Where one host of one run is."""

    host: str
    started: float
    tasks: int = 0
    task: str = ""
    finished: float | None = None
    stats: dict[str, int] = field(default_factory=dict)


@dataclass
class RunProgress:
    """One run directory being followed."""

    run_id: str
    path: Path
    started: float
    total: int | None = None
    seen: set[str] = field(default_factory=set)
    hosts: dict[str, HostProgress] = field(default_factory=dict)
    done: bool = False
    handler: bool = False
    """The tasks starting now are handlers (not among the ``total`` listed tasks)."""

    label: str = ""
    """``apply hr`` / ``check hr``: the run's ``label`` file (``ansible_run.prepare_run``)."""


_NOT_LISTED = frozenset({"gather_facts", "ansible.builtin.gather_facts", "setup"})
_STATS = {"ok": "ok", "changed": "changed", "failures": "failed", "dark": "unreachable"}


def event_lines(run: RunProgress, event: dict[str, Any], now: float) -> list[str]:
    """The progress lines one job event produces (pure; updates ``run``)."""
    kind = event.get("event")
    data = event.get("event_data") or {}
    host = str(data.get("host") or "")
    if kind == "playbook_on_task_start":
        # ansible-runner reports a handler as a task start with is_conditional set
        run.handler = bool(data.get("is_conditional"))
        return []
    if kind == "runner_on_start" and host:
        hp = run.hosts.setdefault(host, HostProgress(host, started=now))
        name = str(data.get("task") or data.get("task_action") or "?")
        hp.task = name
        if run.handler:
            count = "handler"
        elif data.get("task_action") in _NOT_LISTED:
            count = "facts"  # implicit: `--list-tasks` does not list fact gathering
        else:
            hp.tasks += 1
            count = f"task {hp.tasks}" + (f"/{run.total}" if run.total else "")
        # the control IDs lead the task name ("BASE-SSH-03 | ..."): the role is what to add
        role = str(data.get("role") or "") or "play"
        return [f"  {run.label} {host}: {count} [{role}] {name} ({_clock(now - hp.started)})"]
    if kind == "playbook_on_stats":
        run.done = True
        lines = []
        names = set(run.hosts)
        for key in _STATS:
            names.update((data.get(key) or {}).keys())
        for name in sorted(names):
            hp = run.hosts.setdefault(name, HostProgress(name, started=run.started))
            hp.finished = now
            hp.stats = {
                attr: int((data.get(key) or {}).get(name, 0)) for key, attr in _STATS.items()
            }
            lines.append(f"  {run.label} {name}: done, {summary_text(hp)}")
        return lines
    return []


def summary_text(hp: HostProgress) -> str:
    """``changed 3, failed 0, unreachable 0 in 5m12s``."""
    s = hp.stats
    took = (hp.finished or hp.started) - hp.started
    return (
        f"changed {s.get('changed', 0)}, failed {s.get('failed', 0)}, "
        f"unreachable {s.get('unreachable', 0)} in {_clock(took)}"
    )


def _label(run_dir: Path) -> str:
    with contextlib.suppress(OSError):
        return (run_dir / LABEL_FILE).read_text(encoding="utf-8").strip() or run_dir.name
    return run_dir.name


class RunWatcher:
    """Follows the runs that appear under ``runs_dir`` after it starts; see the module doc."""

    def __init__(self, runs_dir: Path, emit: Callable[[str], None], interval: float = 2.0) -> None:
        self.runs_dir = runs_dir
        self.emit = emit
        self.interval = interval
        self.runs: dict[str, RunProgress] = {}
        self._known = self._existing()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _existing(self) -> set[str]:
        with contextlib.suppress(OSError):
            return {p.name for p in self.runs_dir.iterdir()}
        return set()

    def poll(self) -> None:
        """One scan: new run directories, new event files (in counter order)."""
        now = time.monotonic()
        with contextlib.suppress(OSError):
            for path in sorted(self.runs_dir.iterdir()):
                if path.name not in self._known and path.name.endswith(WAITING_SUFFIX):
                    self._known.add(path.name)
                    with contextlib.suppress(OSError, ValueError):
                        label, *hosts = path.read_text(encoding="utf-8").splitlines()
                        self.emit(f"  {label}: waiting for {', '.join(hosts)} to answer SSH")
                    continue
                if path.name not in self._known and path.is_dir():
                    self._known.add(path.name)
                    run = RunProgress(path.name, path, started=now, label=_label(path))
                    self.runs[path.name] = run
                    self.emit(f"  {run.label}: Ansible run {path.name} started")
        for run in self.runs.values():
            if run.done:
                continue
            if run.total is None:
                with contextlib.suppress(OSError, ValueError):
                    run.total = int((run.path / TOTAL_FILE).read_text().strip())
            for event in self._new_events(run):
                for line in event_lines(run, event, now):
                    self.emit(line)

    def _new_events(self, run: RunProgress) -> list[dict[str, Any]]:
        events_dir = run.path / "artifacts" / run.run_id / "job_events"
        found: list[dict[str, Any]] = []
        with contextlib.suppress(OSError):
            for path in events_dir.glob("*.json"):
                if path.name in run.seen:
                    continue
                try:
                    event = json.loads(path.read_text(encoding="utf-8"))
                except (OSError, ValueError):
                    continue  # still being written: read it on the next scan
                run.seen.add(path.name)
                found.append(event)
        return sorted(found, key=lambda e: int(e.get("counter") or 0))

    def summary_lines(self) -> list[str]:
        """One line per host of every finished run, for the end of the command."""
        lines: list[str] = []
        for run in self.runs.values():
            for name in sorted(run.hosts):
                hp = run.hosts[name]
                state = (
                    summary_text(hp) if hp.finished else f"not finished ({hp.task or 'no task'})"
                )
                lines.append(f"{run.label} {name}: {state}")
        return lines

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.poll()

    @contextlib.contextmanager
    def running(self) -> Iterator[RunWatcher]:
        """Watch in a background thread for the duration of a block (one last scan at exit)."""
        self._thread = threading.Thread(target=self._loop, name="run-watcher", daemon=True)
        self._thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            self._thread.join(timeout=10)
            self.poll()
