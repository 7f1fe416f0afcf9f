"""Running a helper command to read its answer: one call shape for the whole package.

Every such command gets no stdin (an ssh or git that wants to ask something
fails at once instead of hanging on a prompt), captured text output, and a
timeout; the caller reads the exit code itself.
"""

from __future__ import annotations

import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path


def run_captured(
    argv: Sequence[str],
    timeout: float,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run ``argv`` to completion; raises ``OSError`` and ``subprocess.TimeoutExpired``."""
    return subprocess.run(
        list(argv),
        cwd=cwd,
        env=None if env is None else dict(env),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        stdin=subprocess.DEVNULL,
    )
