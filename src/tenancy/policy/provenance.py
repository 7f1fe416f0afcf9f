"""What an audit's results were made from: the commit of ``tenants/`` and the tool versions.

results.json names them so an auditor can tell which tenant files and which
suite produced a verdict, and rerun the same audit later.
"""

from __future__ import annotations

import importlib.metadata
import platform
import subprocess
from pathlib import Path

from tenancy.process import run_captured

__all__ = ["tenants_commit", "tool_versions"]


def tenants_commit(root: Path) -> str | None:
    """The last commit that touched ``tenants/`` (None outside a git checkout)."""
    try:
        out = run_captured(["git", "log", "-1", "--format=%H", "--", "tenants/"], 30, cwd=root)
    except (OSError, subprocess.TimeoutExpired):
        return None
    value = out.stdout.strip()
    return value if out.returncode == 0 and value else None


def tool_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for dist in ("tenancy", "pytest", "pytest-testinfra", "pytest-xdist", "ansible-core", "jinja2"):
        try:
            versions[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            versions[dist] = "not installed"
    return versions
