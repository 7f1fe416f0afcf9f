"""git for tests that build real repositories: a fixed author, nothing of the user's config."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

AUTHOR = {
    "GIT_AUTHOR_NAME": "dept",
    "GIT_AUTHOR_EMAIL": "dept@example.gov",
    "GIT_COMMITTER_NAME": "dept",
    "GIT_COMMITTER_EMAIL": "dept@example.gov",
    "GIT_CONFIG_GLOBAL": os.devnull,
}


def git(repo: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """``git -C repo ARGS`` with captured text output."""
    return subprocess.run(
        ["git", "-C", str(repo), *args],
        capture_output=True,
        text=True,
        check=check,
        env={**os.environ, **AUTHOR},
    )
