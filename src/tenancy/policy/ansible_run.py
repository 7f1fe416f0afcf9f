"""Apply (or check) the security baseline with ansible-runner, one private data dir per run.

A run lives in ``$TENANCY_STATE/runs/<run-id>/`` (git-ignored) and is kept:

``project/``              what ran: ``playbook.yml``, ``catalogue.yaml`` and ``roles/``, copied
                          from the installed package when the run starts (later edits cannot
                          leak in; :class:`tenancy.policy.digest.PolicyFiles`)
``inventory/hosts.yml``   the rendered inventory (:func:`tenancy.policy.variables.policy_inventory`)
``env/envvars``           the ``ANSIBLE_*`` settings (:mod:`tenancy.policy.ansible_env`)
``env/extravars``         tenancy_run_*: run id, check mode, catalogue version, policy digest
``artifacts/<run-id>/``   ansible-runner's own: ``job_events/*.json``, ``stdout``, ``status``,
                          ``rc``, ``command``
``summary.json``          the per-host results (:class:`tenancy.policy.results.RunResult`)

A host the run should have reached (the inventory's, narrowed by ``--limit``)
but that is missing from the play recap is failed, never ok. An inventory that
does not parse is fatal (``ANSIBLE_INVENTORY_*UNPARSED*``), never a warning
followed by a run against the implicit localhost.

Secrets never reach the run directory: ansible-runner runs as a child process
with a minimal environment (:func:`tenancy.policy.ansible_env.child_environment`);
the SSH key is passed by path and never copied; tasks that touch secrets are
``no_log`` and Ansible censors their results. A run that outlives its timeout
is killed with its whole process group.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

import yaml

from tenancy.contract.host_vars import HostVars
from tenancy.policy.ansible_cli import count_tasks, limited_hosts, runner_command
from tenancy.policy.ansible_env import ansible_settings, child_environment
from tenancy.policy.results import RunResult, parse_events
from tenancy.policy.run_request import RunRequest
from tenancy.policy.variables import inventory_host_vars

__all__ = ["active_controls", "prepare_run", "run_policy"]


def prepare_run(request: RunRequest) -> Path:
    """Create the private data dir of a run; returns it."""
    run_dir = request.run_dir
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    run_dir.mkdir(mode=0o700)
    # first, so that a watcher finding the directory finds its label too
    (run_dir / "label").write_text((request.label or request.run_id) + "\n", encoding="utf-8")
    project = run_dir / "project"
    for name in request.files.names():
        # policies/playbook.yml -> project/playbook.yml; roles/x -> project/roles/x
        inside = name.relative_to("policies") if name.parts[0] == "policies" else name
        dest = project / inside
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(request.files.path(name), dest)
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


def active_controls(hosts: Mapping[str, HostVars]) -> dict[str, set[str]]:
    """Host -> the control IDs the run applied to it (the inventory's ``tenancy_controls``).

    The selection the playbook was given, not a second resolution of the
    profiles. Hosts whose inventory carries none are left out (their changes
    are reported as the tasks name them).
    """
    selected = {host: hv.policy.controls for host, hv in hosts.items()}
    return {host: set(ids) for host, ids in selected.items() if ids is not None}


def run_policy(request: RunRequest, stream: TextIO | None = None) -> RunResult:
    """Run the playbook once; never raises for host failures (see :attr:`RunResult.ok`).

    ``stream`` receives ansible's output line by line while it runs (the CLI
    passes stderr); it is always kept in ``artifacts/<run-id>/stdout``.
    """
    host_vars = inventory_host_vars(request.inventory)
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
                runner_command(request, len(hosts)),
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
    active = active_controls(host_vars)
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
