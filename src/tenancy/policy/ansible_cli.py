"""The Ansible command lines of a run: ansible-runner itself and the questions asked around it.

Before a run, ``ansible-playbook --list-tasks`` counts its tasks (the progress
display's total); after it, ``ansible-inventory --limit`` resolves which hosts
the run had to reach (a host the limit selects but the play recap lacks is
failed). Both ask Ansible itself, on the run's own inventory and settings, so
patterns and tags mean exactly what they mean to the run.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

from tenancy.policy.ansible_env import ansible_settings, child_environment
from tenancy.policy.run_request import RunRequest, forks_for
from tenancy.process import run_captured

__all__ = ["count_tasks", "limited_hosts", "runner_command"]


def _selection(request: RunRequest) -> list[str]:
    """``--tags=...``/``--skip-tags=...`` of a run (one argument each)."""
    args = []
    if request.tags:
        args.append("--tags=" + ",".join(request.tags))
    if request.skip_tags:
        args.append("--skip-tags=" + ",".join(request.skip_tags))
    return args


def _environment(request: RunRequest, run_dir: Path) -> dict[str, str]:
    return {**child_environment(), **ansible_settings(run_dir, request.private_key)}


def runner_command(request: RunRequest, host_count: int) -> list[str]:
    """``python -m ansible_runner run <run dir> ...`` for this run."""
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
    cmdline = (["--check"] if request.check else []) + _selection(request)
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
    argv += _selection(request)
    try:
        done = run_captured(argv, 120, cwd=run_dir, env=_environment(request, run_dir))
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
    try:
        done = run_captured(
            argv, 300, cwd=request.run_dir, env=_environment(request, request.run_dir)
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
