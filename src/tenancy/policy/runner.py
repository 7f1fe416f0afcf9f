"""Apply (or check) the security baseline with ansible-runner, one private data dir per run.

A run lives in ``$TENANCY_STATE/runs/<run-id>/`` (git-ignored) and is kept:

``project/``              what ran: ``playbook.yml``, ``catalogue.yaml`` and ``roles/``, copied
                          from the project when the run starts (later edits cannot leak in)
``inventory/hosts.yml``   the rendered inventory (:func:`tenancy.policy.variables.policy_inventory`)
``env/envvars``           the ``ANSIBLE_*`` settings (pipelining, no host key checking, the
                          private key *path*, Python interpreter, SSH keepalives)
``env/extravars``         tenancy_run_*: run id, check mode, catalogue version, policy digest
``artifacts/<run-id>/``   ansible-runner's own: ``job_events/*.json``, ``stdout``, ``status``,
                          ``rc``, ``command``
``summary.json``          the per-host results below (:class:`RunResult`)

Results per host: ok/changed/failed/unreachable/skipped counts from the play
recap, plus every changed task and every failed task with its host, name and
the control IDs it implements (parsed from the task name prefix,
``"BASE-SSH-03 | ..."``, else from the task's tags). In check mode a changed
task is drift: the host differs from the policy there. A host the run should
have reached (the inventory's, narrowed by ``--limit``) but that is missing
from the play recap is failed, never ok: Ansible did not run the play on it.
An inventory that does not parse is fatal (``ANSIBLE_INVENTORY_*UNPARSED*``),
never a warning followed by a run against the implicit localhost.

Secrets never reach the run directory: ansible-runner records the complete
environment of ``ansible-playbook`` in ``artifacts/<id>/command``, so it runs
as a child process with a minimal environment (``PATH``, ``HOME``, locale,
``SSH_AUTH_SOCK``) instead of the caller's (which may hold the Pulumi
passphrase); the SSH key is passed by path and never copied; tasks that touch
secrets are ``no_log`` and Ansible censors their results.
"""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any, TextIO

import yaml

from tenancy.policy.catalogue import CatalogueError, load_catalogue

__all__ = [
    "MAX_FORKS",
    "READY_PROBE",
    "HostResult",
    "RunRequest",
    "RunResult",
    "SshWaitError",
    "TaskRef",
    "active_controls",
    "ansible_settings",
    "child_environment",
    "control_ids",
    "controller_source",
    "forks_for",
    "limited_hosts",
    "lockout_problems",
    "new_run_id",
    "parse_events",
    "policy_digest",
    "policy_files",
    "prepare_run",
    "private_key_for",
    "run_policy",
    "runs_dir",
    "wait_for_ssh",
]

#: Upper bound of parallel hosts in one run (ansible ``--forks``).
MAX_FORKS = 25
#: Probe a host is "ready" with: SSH works and cloud-init (if any) has finished.
READY_PROBE = "test ! -e /var/lib/cloud/instance || test -e /var/lib/cloud/instance/boot-finished"
#: The policy files a run applies, relative to the project root (roles/ is added whole).
POLICY_FILES = ("policies/playbook.yml", "policies/catalogue.yaml")

_ONE_ID = r"[A-Z][A-Z0-9]*-[A-Z]+-[0-9]{2}"
_NAME_IDS = re.compile(rf"^\s*({_ONE_ID}(?:\s*,\s*{_ONE_ID})*)\s*\|")
_ID = re.compile(rf"^{_ONE_ID}$")
#: Environment variables passed from the caller to ansible-runner (everything else stays out).
_PASS_ENV = ("HOME", "USER", "LOGNAME", "LANG", "LC_ALL", "TZ", "TMPDIR", "SSH_AUTH_SOCK")
_MESSAGE_LIMIT = 400


# -- paths, ids ----------------------------------------------------------------------


def runs_dir(state_dir: Path) -> Path:
    """Where runs are kept: ``<state>/runs``."""
    return state_dir / "runs"


def new_run_id(kind: str, site: str, tenant: str | None = None) -> str:
    """``20261128T052700Z-apply-local-hr-1a2b3c``: sortable, readable, unique."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    parts = [stamp, kind, site, tenant or "all", secrets.token_hex(3)]
    return "-".join(re.sub(r"[^A-Za-z0-9_.-]+", "_", p) for p in parts)


def private_key_for(root: Path, key_files: Iterable[str]) -> Path | None:
    """The private half of the site's first ops public key file that has one on disk.

    ``TENANCY_OPS_SSH_KEY`` overrides; None means ssh's defaults (agent, ~/.ssh).
    """
    override = os.environ.get("TENANCY_OPS_SSH_KEY")
    if override:
        return Path(override)
    for name in key_files:
        public = Path(name) if name.startswith("/") else root / name
        if public.suffix == ".pub":
            private = public.with_suffix("")
            if private.is_file():
                return private
    return None


def forks_for(host_count: int) -> int:
    """One fork per host, at most :data:`MAX_FORKS`."""
    return max(1, min(host_count, MAX_FORKS))


# -- policy files --------------------------------------------------------------------


def policy_files(project: Path) -> list[Path]:
    """The files a run applies, relative to ``project``: playbook, catalogue and roles/**."""
    files = [Path(p) for p in POLICY_FILES if (project / p).is_file()]
    roles = project / "roles"
    if roles.is_dir():
        files += sorted(
            p.relative_to(project)
            for p in roles.rglob("*")
            if p.is_file()
            and not any(part.startswith(".") or part == "__pycache__" for part in p.parts)
            and p.suffix != ".pyc"
        )
    return files


def policy_digest(project: Path, variables: Mapping[str, Any]) -> str:
    """sha256 of the playbook, the catalogue, every role file and the rendered variables.

    A change to any of them changes the digest (and so re-applies a PolicyRun);
    the same inputs give the same digest on any machine.
    """
    h = hashlib.sha256()
    for rel in policy_files(project):
        h.update(rel.as_posix().encode() + b"\0")
        h.update((project / rel).read_bytes() + b"\0")
    h.update(json.dumps(variables, sort_keys=True, ensure_ascii=False).encode())
    return h.hexdigest()


# -- request and results -------------------------------------------------------------


@dataclass(frozen=True)
class RunRequest:
    """Everything one run needs; nothing is read from the caller's environment later."""

    run_id: str
    project: Path
    """Project root holding policies/ and roles/."""
    inventory: Mapping[str, Any]
    """YAML-ready inventory with every variable (policy_inventory)."""
    state_dir: Path
    check: bool = False
    private_key: Path | None = None
    limit: str | None = None
    forks: int | None = None
    timeout: float = 3600.0
    extravars: Mapping[str, Any] = field(default_factory=dict)
    tags: tuple[str, ...] = ()
    """Only tasks with these tags (ansible --tags), e.g. a control ID or a role name."""
    skip_tags: tuple[str, ...] = ()
    """Skip tasks with these tags (ansible --skip-tags), e.g. a control ID."""
    label: str = ""
    """Short name shown in progress lines (``apply hr``); default: the run id."""

    @property
    def run_dir(self) -> Path:
        return runs_dir(self.state_dir) / self.run_id

    @property
    def artifact_dir(self) -> Path:
        return self.run_dir / "artifacts" / self.run_id


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


@lru_cache(maxsize=256)
def _task_tags_by_line(path: str) -> dict[int, tuple[str, ...]]:
    """1-based start line of every task mapping in a task file -> its tags."""
    try:
        node = yaml.compose(Path(path).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return {}
    found: dict[int, tuple[str, ...]] = {}

    def walk(n: yaml.Node | None) -> None:
        if isinstance(n, yaml.SequenceNode):
            for item in n.value:
                walk(item)
        elif isinstance(n, yaml.MappingNode):
            tags: tuple[str, ...] = ()
            for k, v in n.value:
                if isinstance(k, yaml.ScalarNode) and k.value == "tags":
                    if isinstance(v, yaml.SequenceNode):
                        tags = tuple(str(i.value) for i in v.value)
                    elif isinstance(v, yaml.ScalarNode):
                        tags = (str(v.value),)
                if isinstance(k, yaml.ScalarNode) and k.value in ("block", "rescue", "always"):
                    walk(v)
            found[n.start_mark.line + 1] = tags

    walk(node)
    return found


def _tags_at(task_path: str) -> tuple[str, ...]:
    path, _, line = (task_path or "").rpartition(":")
    if not path or not line.isdigit():
        return ()
    return _task_tags_by_line(path).get(int(line), ())


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
        controls = control_ids(name, _tags_at(str(data.get("task_path") or "")))
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


# -- environment ---------------------------------------------------------------------


def ansible_settings(run_dir: Path, private_key: Path | None) -> dict[str, str]:
    """The ``ANSIBLE_*`` variables of a run (written to ``env/envvars``)."""
    settings = {
        "ANSIBLE_PIPELINING": "True",
        "ANSIBLE_HOST_KEY_CHECKING": "False",
        # VMs are recreated with the same address: never record or check host keys here.
        "ANSIBLE_SSH_ARGS": (
            "-C -o ControlMaster=auto -o ControlPersist=120s -o UserKnownHostsFile=/dev/null "
            "-o StrictHostKeyChecking=no -o ServerAliveInterval=15 -o ServerAliveCountMax=8"
        ),
        "ANSIBLE_TIMEOUT": "30",
        "ANSIBLE_SSH_RETRIES": "3",
        # Debian 12 guests only (the roles' platform): skip interpreter discovery.
        "ANSIBLE_PYTHON_INTERPRETER": "/usr/bin/python3",
        "ANSIBLE_GATHER_SUBSET": "!all,min",
        "ANSIBLE_ROLES_PATH": str(run_dir / "project" / "roles"),
        "ANSIBLE_LOCAL_TEMP": str(run_dir / "tmp"),
        "ANSIBLE_RETRY_FILES_ENABLED": "False",
        "ANSIBLE_NOCOLOR": "True",
        "ANSIBLE_FORCE_COLOR": "False",
        # An inventory that does not parse stops the run instead of a warning and a
        # play against the implicit localhost (that "succeeds" on no host at all).
        "ANSIBLE_INVENTORY_UNPARSED_FAILED": "True",
        "ANSIBLE_INVENTORY_ANY_UNPARSED_IS_FAILED": "True",
    }
    if private_key is not None:
        settings["ANSIBLE_PRIVATE_KEY_FILE"] = str(private_key)
    settings.update(strategy_settings(os.environ.get("TENANCY_ANSIBLE_STRATEGY", STRATEGY)))
    return settings


#: Ansible strategy of every run; ``TENANCY_ANSIBLE_STRATEGY=linear`` is Ansible's own.
STRATEGY = "mitogen_linear"


def strategy_settings(strategy: str) -> dict[str, str]:
    """``mitogen_linear`` (default): one persistent Python interpreter per host instead of
    one per task (Mitogen for Ansible). Under software emulation starting Python in the
    guest dominates every task: a no-change check of two demo VMs took 191 s with
    ``linear`` and 32 s with Mitogen, same results (ok 54, changed 0, skipped 10 per
    host). Anything else, or Mitogen missing: Ansible's own ``linear``."""
    if not strategy.startswith("mitogen"):
        return {}
    try:
        import ansible_mitogen.plugins.strategy as plugins
    except ImportError:
        return {}
    return {
        "ANSIBLE_STRATEGY_PLUGINS": str(Path(plugins.__file__).parent),
        "ANSIBLE_STRATEGY": strategy,
    }


def child_environment(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The minimal environment ansible-runner runs in (see the module doc on secrets)."""
    source = os.environ if base is None else base
    env = {k: source[k] for k in _PASS_ENV if k in source}
    venv_bin = str(Path(sys.executable).parent)
    path = source.get("PATH", "/usr/local/bin:/usr/bin:/bin")
    env["PATH"] = path if path.split(":")[0] == venv_bin else f"{venv_bin}:{path}"
    env.setdefault("LANG", "C.UTF-8")
    env["PYTHONUNBUFFERED"] = "1"
    return env


# -- preparing and running -----------------------------------------------------------


def prepare_run(request: RunRequest) -> Path:
    """Create the private data dir of a run; returns it."""
    run_dir = request.run_dir
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    run_dir.mkdir(mode=0o700)
    # first, so that a watcher finding the directory finds its label too
    (run_dir / "label").write_text((request.label or request.run_id) + "\n", encoding="utf-8")
    project = run_dir / "project"
    for rel in policy_files(request.project):
        # policies/playbook.yml -> project/playbook.yml; roles/x -> project/roles/x
        inside = rel.relative_to("policies") if rel.parts[0] == "policies" else rel
        dest = project / inside
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(request.project / rel, dest)
    inv_dir = run_dir / "inventory"
    inv_dir.mkdir()
    (inv_dir / "hosts.yml").write_text(
        yaml.safe_dump(dict(request.inventory), sort_keys=True, allow_unicode=True),
        encoding="utf-8",
    )
    env_dir = run_dir / "env"
    env_dir.mkdir()
    (env_dir / "envvars").write_text(
        yaml.safe_dump(ansible_settings(run_dir, request.private_key), sort_keys=True),
        encoding="utf-8",
    )
    extravars = {"tenancy_run_id": request.run_id, "tenancy_run_check_mode": request.check}
    extravars.update(request.extravars)
    (env_dir / "extravars").write_text(
        yaml.safe_dump(extravars, sort_keys=True, allow_unicode=True), encoding="utf-8"
    )
    (run_dir / "tmp").mkdir(mode=0o700)
    return run_dir


def _command(request: RunRequest, host_count: int) -> list[str]:
    argv = [
        sys.executable,
        "-m",
        "ansible_runner",
        "run",
        str(request.run_dir),
        "--playbook",
        "playbook.yml",
        "--ident",
        request.run_id,
        "--forks",
        str(request.forks or forks_for(host_count)),
    ]
    if request.limit:
        argv += ["--limit", request.limit]
    cmdline = ["--check"] if request.check else []
    if request.tags:
        cmdline.append("--tags=" + ",".join(request.tags))
    if request.skip_tags:
        cmdline.append("--skip-tags=" + ",".join(request.skip_tags))
    if cmdline:
        argv.append("--cmdline=" + " ".join(cmdline))  # "=": argparse would take "--check" for
    return argv  # an option of ansible-runner


def count_tasks(request: RunRequest, run_dir: Path) -> int | None:
    """How many tasks the play lists for this run (``ansible-playbook --list-tasks``).

    Written to ``tasks.total`` for the progress display (:mod:`tenancy.policy.progress`);
    None when listing fails (progress then shows no total). Handlers are not listed.
    """
    argv = [
        str(Path(sys.executable).parent / "ansible-playbook"),
        "-i",
        str(run_dir / "inventory" / "hosts.yml"),
        str(run_dir / "project" / "playbook.yml"),
        "--list-tasks",
    ]
    if request.limit:
        argv += ["--limit", request.limit]
    if request.tags:
        argv.append("--tags=" + ",".join(request.tags))
    if request.skip_tags:
        argv.append("--skip-tags=" + ",".join(request.skip_tags))
    env = {**child_environment(), **ansible_settings(run_dir, request.private_key)}
    try:
        done = subprocess.run(
            argv, cwd=run_dir, env=env, capture_output=True, text=True, timeout=120, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if done.returncode != 0:
        return None
    tasks = [
        line
        for line in done.stdout.splitlines()
        if "TAGS:" in line and not line.strip().startswith(("play #", "playbook:"))
    ]
    (run_dir / "tasks.total").write_text(f"{len(tasks)}\n", encoding="utf-8")
    return len(tasks)


def limited_hosts(request: RunRequest, hosts: Iterable[str]) -> list[str]:
    """The ``hosts`` the run's ``--limit`` selects: those that must appear in the play recap.

    Ansible resolves the pattern itself (``ansible-inventory --limit`` on the
    run's inventory and settings). Without a limit, or when it cannot be
    resolved, every host is expected: one left out then shows as failed, never as ok.
    """
    every = list(hosts)
    if not request.limit:
        return every
    argv = [
        sys.executable,
        "-m",
        "ansible.cli.inventory",
        "--inventory",
        str(request.run_dir / "inventory" / "hosts.yml"),
        "--list",
        "--limit",
        request.limit,
    ]
    env = {**child_environment(), **ansible_settings(request.run_dir, request.private_key)}
    try:
        done = subprocess.run(
            argv,
            cwd=request.run_dir,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
            stdin=subprocess.DEVNULL,
        )
        doc = json.loads(done.stdout) if done.returncode == 0 else None
    except (OSError, subprocess.TimeoutExpired, ValueError):
        doc = None
    if not isinstance(doc, dict):
        return every
    selected = {
        str(h)
        for group in doc.values()
        if isinstance(group, dict)
        for h in group.get("hosts") or []
    }
    return [h for h in every if h in selected]


def _inventory_hosts(inventory: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    from tenancy.policy.variables import tenant_hosts  # local: variables imports the plan

    return tenant_hosts(dict(inventory))


def active_controls(project: Path, hosts: Mapping[str, Mapping[str, Any]]) -> dict[str, set[str]]:
    """Host -> the control IDs it gets (its profiles' minus its waivers), from a run's project.

    Empty when the project has no valid catalogue (nothing is narrowed then).
    """
    try:
        catalogue = load_catalogue(project / "catalogue.yaml", roles_dir=project / "roles")
    except CatalogueError:
        return {}
    out: dict[str, set[str]] = {}
    for host, hv in hosts.items():
        try:
            ids = {c.id for c in catalogue.controls_for(hv.get("tenancy_profiles") or ["baseline"])}
        except KeyError:
            continue
        out[host] = ids - set(hv.get("tenancy_waived_controls") or [])
    return out


def run_policy(request: RunRequest, stream: TextIO | None = None) -> RunResult:
    """Run the playbook once; never raises for host failures (see :attr:`RunResult.ok`).

    ``stream`` receives ansible's output line by line while it runs (the CLI
    passes stderr); it is always kept in ``artifacts/<run-id>/stdout``.
    """
    host_vars = _inventory_hosts(request.inventory)
    hosts = sorted(host_vars)
    started = datetime.now(UTC).isoformat(timespec="seconds")
    t0 = time.monotonic()
    run_dir = prepare_run(request)
    result = RunResult(
        run_id=request.run_id,
        check=request.check,
        status="error",
        rc=-1,
        run_dir=str(run_dir),
        started=started,
        seconds=0.0,
    )
    log = run_dir / "runner.log"
    count_tasks(request, run_dir)
    deadline = t0 + request.timeout
    try:
        with log.open("w", encoding="utf-8") as log_fh:
            proc = subprocess.Popen(
                _command(request, len(hosts)),
                cwd=run_dir,
                env=child_environment(),
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                text=True,
                start_new_session=True,
            )
            assert proc.stdout is not None
            with _killer(proc, deadline):
                for line in proc.stdout:
                    log_fh.write(line)
                    if stream is not None:
                        stream.write(line)
                        stream.flush()
            proc.wait()
        result.rc = proc.returncode
        status_file = request.artifact_dir / "status"
        result.status = (
            status_file.read_text().strip() if status_file.is_file() else f"rc {proc.returncode}"
        )
        if time.monotonic() > deadline:
            result.status = "timeout"
            result.error = f"the run exceeded its {request.timeout:.0f} s timeout and was stopped"
    except OSError as exc:
        result.error = f"cannot start ansible-runner: {exc}"
    active = active_controls(run_dir / "project", host_vars)
    expected = limited_hosts(request, hosts)
    result.hosts = parse_events(request.artifact_dir / "job_events", expected, active)
    reported = any(r.failed or r.unreachable for r in result.hosts.values())
    if not result.error and result.rc != 0 and not reported:
        tail = _tail(log, 15)
        result.error = f"ansible-runner ended with rc {result.rc} ({result.status}): {tail}"
    result.seconds = round(time.monotonic() - t0, 1)
    (run_dir / "summary.json").write_text(
        json.dumps(result.to_dict(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
    )
    return result


@contextlib.contextmanager
def _killer(proc: subprocess.Popen[str], deadline: float) -> Iterator[None]:
    """Kill the run's process group when the deadline passes (a watchdog thread)."""
    stop = False

    def watch() -> None:
        while not stop and proc.poll() is None:
            if time.monotonic() > deadline:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
                time.sleep(10)
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                return
            time.sleep(1)

    with ThreadPoolExecutor(max_workers=1) as pool:
        pool.submit(watch)
        try:
            yield
        finally:
            stop = True


def _tail(path: Path, lines: int) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:]
    except OSError:
        return ""
    return " | ".join(line.strip() for line in text if line.strip())


# -- readiness -----------------------------------------------------------------------


class SshWaitError(RuntimeError):
    """Some hosts did not answer SSH in time; ``pending`` maps them to their last error."""

    def __init__(self, pending: dict[str, str], timeout: float) -> None:
        self.pending = pending
        lines = [f"  {host}: {error or 'no answer'}" for host, error in sorted(pending.items())]
        head = f"{len(pending)} host(s) did not answer SSH within {timeout:.0f} s:"
        super().__init__("\n".join([head, *lines]))


def _ssh_argv(address: str, user: str, private_key: Path | None, command: str) -> list[str]:
    argv = [
        "ssh",
        "-o",
        "BatchMode=yes",
        "-o",
        "StrictHostKeyChecking=no",
        "-o",
        "UserKnownHostsFile=/dev/null",
        "-o",
        "LogLevel=ERROR",
        "-o",
        "ConnectTimeout=10",
    ]
    if private_key is not None:
        argv += ["-o", "IdentitiesOnly=yes", "-i", str(private_key)]
    return [*argv, f"{user}@{address}", command]


def _probe(address: str, user: str, private_key: Path | None, command: str) -> tuple[int, str]:
    try:
        done = subprocess.run(
            _ssh_argv(address, user, private_key, command),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired:
        return 255, "ssh timed out after 60 s"
    except OSError as exc:
        return 255, f"cannot run ssh: {exc}"
    if done.returncode == 0:
        return 0, ""
    error = (done.stderr or "").strip().splitlines()
    if done.returncode != 255 and not error:
        return done.returncode, "SSH answers; cloud-init has not finished yet"
    return done.returncode, (error[-1] if error else f"ssh exit {done.returncode}")


def wait_for_ssh(
    hosts: Mapping[str, str],
    user: str,
    private_key: Path | None,
    timeout: float,
    interval: float = 5.0,
    probe: str = READY_PROBE,
) -> dict[str, float]:
    """Wait until every host (name -> address) answers SSH and cloud-init is done.

    Returns the seconds each host took; raises :class:`SshWaitError` naming the
    hosts that never answered (with their last error) once ``timeout`` passes.
    """
    start = time.monotonic()
    deadline = start + timeout
    pending = dict(hosts)
    errors: dict[str, str] = {}
    ready: dict[str, float] = {}
    if not pending:
        return ready
    with ThreadPoolExecutor(max_workers=min(16, len(pending))) as pool:
        while pending:
            futures = {
                name: pool.submit(_probe, address, user, private_key, probe)
                for name, address in pending.items()
            }
            for name, future in futures.items():
                rc, error = future.result()
                if rc == 0:
                    ready[name] = round(time.monotonic() - start, 1)
                    pending.pop(name)
                    errors.pop(name, None)
                else:
                    errors[name] = error
            if not pending:
                break
            if time.monotonic() + interval > deadline:
                raise SshWaitError({h: errors.get(h, "") for h in pending}, timeout)
            time.sleep(interval)
    return ready


# -- lock-out guard ------------------------------------------------------------------


def controller_source(address: str) -> tuple[str, str] | None:
    """(source address, interface) this machine uses to reach ``address``; None if unknown."""
    try:
        done = subprocess.run(
            ["ip", "-j", "route", "get", address],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
        routes = json.loads(done.stdout or "[]") if done.returncode == 0 else []
    except (OSError, subprocess.TimeoutExpired, ValueError):
        return None
    if not routes or not routes[0].get("prefsrc"):
        return None
    return str(routes[0]["prefsrc"]), str(routes[0].get("dev", "?"))


def lockout_problems(
    hosts: Mapping[str, Mapping[str, Any]],
    source_of: Callable[[str], tuple[str, str] | None] = controller_source,
) -> list[str]:
    """Hosts whose firewall (BASE-FW-03) would shut this controller out of SSH.

    ``hosts`` maps host names to merged variables (``tenant_hosts``). A host is
    a problem when the address this machine reaches it from lies outside its
    ``tenancy_site_ops_cidrs`` and BASE-FW-03 is not waived for it.
    """
    problems: list[str] = []
    for name, hv in sorted(hosts.items()):
        if "BASE-FW-03" in (hv.get("tenancy_waived_controls") or []):
            continue
        found = source_of(str(hv.get("ansible_host", name)))
        if found is None:
            continue
        source, dev = found
        cidrs = [str(c) for c in hv.get("tenancy_site_ops_cidrs") or []]
        try:
            inside = any(
                ipaddress.ip_address(source) in ipaddress.ip_network(c, strict=False) for c in cidrs
            )
        except ValueError:
            inside = False
        if not inside:
            problems.append(
                f"{name}: this controller reaches {hv.get('ansible_host')} from {source} "
                f"(via {dev}), outside tenancy_site_ops_cidrs {cidrs}: BASE-FW-03 would "
                "lock it out of SSH (is the tenant's segment up? add the controller's "
                "network to the site's ops.cidrs)"
            )
    return problems
