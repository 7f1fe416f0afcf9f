"""Fixtures of the unit tests of the tenant contract, the planner and the CLI.

The plain helpers they share (project copies, tenant documents, problem finders,
``CliResult``) live in ``tests.support``; test modules import them from there.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from tests.support.cli import CliResult
from tests.support.project import copy_project

from tenancy.cli import main as cli_main
from tenancy.plan.planner import PlanResult, plan_paths


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A fresh copy of the project, safe to edit."""
    return copy_project(tmp_path / "project")


@pytest.fixture
def plan_of() -> Callable[..., PlanResult]:
    def run(root: Path, *paths: Path, sites: list[str] | None = None) -> PlanResult:
        return plan_paths(root, list(paths) or None, sites=sites)

    return run


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Callable[..., CliResult]:
    """Run ``tenancy ARGS`` in-process; argparse usage errors come back as exit code 2."""

    def run(*args: str | Path) -> CliResult:
        capsys.readouterr()
        try:
            code = cli_main([str(a) for a in args])
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)

    return run
