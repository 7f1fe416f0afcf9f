"""One hardening run, described before it starts: what to apply, where, to which hosts.

The CLI (``tenancy harden``), the PolicyRun provider, the audit and the
benchmarks all describe a run with a :class:`RunRequest`; everything it needs
is in it, so nothing is read from the caller's environment once it runs. Runs
live in ``<state>/runs/<run-id>/``; the id says when, what and for whom.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tenancy.policy.digest import PolicyFiles

__all__ = ["MAX_FORKS", "RunRequest", "forks_for", "new_run_id", "runs_dir"]

#: Upper bound of parallel hosts in one run (ansible ``--forks``).
MAX_FORKS = 25


def runs_dir(state_dir: Path) -> Path:
    """Where runs are kept: ``<state>/runs`` (:attr:`tenancy.project.Project.runs_dir`)."""
    return state_dir / "runs"


def new_run_id(kind: str, site: str, tenant: str | None = None) -> str:
    """``20261128T052700Z-apply-local-hr-1a2b3c``: sortable, readable, unique."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    parts = [stamp, kind, site, tenant or "all", secrets.token_hex(3)]
    return "-".join(re.sub(r"[^A-Za-z0-9_.-]+", "_", p) for p in parts)


def forks_for(host_count: int) -> int:
    """One fork per host, at most :data:`MAX_FORKS`."""
    return max(1, min(host_count, MAX_FORKS))


@dataclass(frozen=True)
class RunRequest:
    """Everything one run needs; nothing is read from the caller's environment later."""

    run_id: str
    files: PolicyFiles
    """The playbook, catalogue and roles to apply (:meth:`PolicyFiles.of` a project)."""
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
