"""The project a command or a Pulumi program works on, found once and passed around.

A project is a directory holding ``Pulumi.yaml``: its ``tenants/`` and
``stacks/`` are the inputs; ``.tenancy/`` (or ``$TENANCY_STATE``) its state.
The files Tenancy ships (templates, the policy catalogue and playbook, the
Ansible roles, the compliance checks) always come from the installed package
(``importlib.resources``; in a checkout they are its top-level folders), so a
wheel install plans, hardens and audits a project that holds nothing but
tenants, stacks and waivers, and every project of one install renders alike.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

PROJECT_FILE = "Pulumi.yaml"
RESOURCES = "tenancy._resources"
"""The sub-packages that carry the shipped files (pyproject.toml maps each onto its folder)."""
SHIPPED = ("templates", "policies", "roles", "compliance")


class ProjectError(Exception):
    """A resource is neither in the project nor in the installed package."""


def find_root(start: Path) -> Path:
    """The nearest directory at or above ``start`` holding Pulumi.yaml, else ``start``."""
    start = start.resolve()
    for candidate in (start, *start.parents):
        if (candidate / PROJECT_FILE).is_file():
            return candidate
    return start


def shipped(name: str) -> Path:
    """The folder of a shipped resource in the installed package (a checkout maps its own)."""
    if name not in SHIPPED:
        raise ProjectError(f"unknown resource {name!r}; known: {', '.join(SHIPPED)}")
    try:
        path = Path(str(resources.files(f"{RESOURCES}.{name}")))
    except ModuleNotFoundError:
        path = None
    if path is None or not path.is_dir():
        raise ProjectError(
            f"the installed tenancy package carries no {name}: reinstall it from a wheel "
            "or from a checkout (pip install -e .)"
        )
    return path


@dataclass(frozen=True)
class Project:
    """Paths of one project: inputs, state, caches and the shipped resources it uses."""

    root: Path
    state_dir: Path
    cache_dir: Path

    @classmethod
    def at(cls, root: Path, env: Mapping[str, str] | None = None) -> Project:
        """The project rooted at ``root``; state and cache dirs follow tools/env.sh."""
        env = os.environ if env is None else env
        root = root.resolve()
        state = env.get("TENANCY_STATE") or str(root / ".tenancy")
        cache = env.get("TENANCY_CACHE") or str(
            Path(env.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "tenancy"
        )
        return cls(root=root, state_dir=Path(state), cache_dir=Path(cache))

    @classmethod
    def find(cls, start: Path | None = None, env: Mapping[str, str] | None = None) -> Project:
        """The project at or above ``start`` (default: the working directory)."""
        return cls.at(find_root(start or Path.cwd()), env)

    # --- inputs -------------------------------------------------------------

    @property
    def tenants_dir(self) -> Path:
        return self.root / "tenants"

    @property
    def stacks_dir(self) -> Path:
        return self.root / "stacks"

    # --- state --------------------------------------------------------------

    @property
    def runs_dir(self) -> Path:
        """One directory per hardening run (ansible-runner private data dirs)."""
        return self.state_dir / "runs"

    @property
    def audits_dir(self) -> Path:
        return self.state_dir / "audits"

    @property
    def logs_dir(self) -> Path:
        """Full engine output and provider tracebacks."""
        return self.state_dir / "logs"

    @property
    def guest_image_info(self) -> Path:
        """What ``tools/guest-image.sh`` built last (shared by every clone, like the engine)."""
        return self.cache_dir / "images" / "current" / "build-info.json"

    @property
    def waivers_dir(self) -> Path:
        """Waivers are the project's own (granted per site), not shipped."""
        return self.root / "policies" / "waivers"

    @property
    def governance_file(self) -> Path:
        """Who owns which files and the waiver rules: the project's own, like its waivers."""
        return self.root / "policies" / "governance.yaml"

    # --- shipped resources (the same for every project of this install) -----

    @property
    def policies_dir(self) -> Path:
        """The catalogue and the playbook."""
        return shipped("policies")

    @property
    def roles_dir(self) -> Path:
        return shipped("roles")

    @property
    def compliance_dir(self) -> Path:
        """The auditors' checks (``test_<domain>.py``) that ``tenancy audit`` runs."""
        return shipped("compliance")
