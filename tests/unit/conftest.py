"""Shared helpers for the unit tests of the tenant contract, the planner and the CLI.

Tests that write files work on a copy of the repository's tenants/ and stacks/
(plus Pulumi.yaml) under tmp_path; the repository's own files are never modified.

tests/unit is not a package, so this module registers itself as ``unit_helpers``:
test modules write ``from unit_helpers import ...`` to share the plain functions below.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from tenancy.cli import main as cli_main
from tenancy.contract.errors import SpecError
from tenancy.plan.planner import PlanResult, plan_paths

REPO = Path(__file__).resolve().parents[2]
DATA = Path(__file__).resolve().parent / "data"
EXAMPLE_TENANTS = sorted(p.stem for p in (REPO / "tenants").glob("*.yaml"))


sys.modules["unit_helpers"] = sys.modules[__name__]


def copy_project(dest: Path) -> Path:
    """A private copy of the project inputs: tenants/, stacks/ (without ledgers), Pulumi.yaml."""
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copytree(REPO / "tenants", dest / "tenants")
    shutil.copytree(
        REPO / "stacks",
        dest / "stacks",
        ignore=shutil.ignore_patterns("ledger.*", "__pycache__", "*.pyc"),
    )
    shutil.copy2(REPO / "Pulumi.yaml", dest / "Pulumi.yaml")
    return dest


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A fresh copy of the project, safe to edit."""
    return copy_project(tmp_path / "project")


def tenant_doc(
    name: str,
    site: str = "local",
    zone: str = "intranet",
    machines: list[dict[str, Any]] | None = None,
    ingress: list[dict[str, Any]] | None = None,
    egress: list[dict[str, Any]] | None = None,
    **spec: Any,
) -> dict[str, Any]:
    """A valid tenant document (one tiny machine unless told otherwise)."""
    default_machine = {
        "name": "app",
        "flavor": "tiny" if site == "local" else "small",
        "image": "debian-12",
        "diskGiB": 4,
    }
    body: dict[str, Any] = {
        "site": site,
        "zone": zone,
        "machines": machines if machines is not None else [default_machine],
        "firewall": {"ingress": ingress or [], "egress": egress or []},
    }
    body.update(spec)
    return {
        "apiVersion": "tenancy/v1",
        "kind": "Tenant",
        "metadata": {"name": name, "displayName": f"{name} 部门", "owner": f"{name}@example.gov"},
        "spec": body,
    }


def write_tenant(root: Path, doc: dict[str, Any] | str, name: str | None = None) -> Path:
    """Write a tenant document (dict or raw YAML text) to ``root/tenants/<name>.yaml``."""
    if isinstance(doc, dict):
        name = name or doc["metadata"]["name"]
        text = yaml.safe_dump(doc, sort_keys=False, allow_unicode=True)
    else:
        text = doc
    assert name is not None
    path = root / "tenants" / f"{name}.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def write_data(root: Path, data_name: str, as_name: str | None = None) -> Path:
    """Copy ``tests/unit/data/<data_name>`` into the project's tenants/ directory."""
    target = root / "tenants" / (as_name or Path(data_name).name)
    shutil.copy2(DATA / data_name, target)
    return target


def errors_of(result: PlanResult, file: str | None = None) -> list[SpecError]:
    return [e for e in result.problems.errors if file is None or e.location.file == file]


def find(problems: list[SpecError], **want: str) -> SpecError:
    """The one problem whose fields contain the given texts (field=, message=, ...)."""
    hits = [
        p
        for p in problems
        if all(
            text in (str(p.location) if key == "location" else str(getattr(p, key)))
            for key, text in want.items()
        )
    ]
    assert hits, f"no problem matching {want} in:\n" + "\n".join(str(p) for p in problems)
    return hits[0]


def assert_located(problem: SpecError) -> None:
    """Every error names a file, a line >= 1 and says what was wrong."""
    assert problem.location.file
    assert problem.location.line >= 1, str(problem)
    assert problem.message


@pytest.fixture
def plan_of() -> Callable[..., PlanResult]:
    def run(root: Path, *paths: Path, sites: list[str] | None = None) -> PlanResult:
        return plan_paths(root, list(paths) or None, sites=sites)

    return run


class CliResult:
    def __init__(self, code: int, out: str, err: str) -> None:
        self.code, self.out, self.err = code, out, err

    def __repr__(self) -> str:
        return f"CliResult(code={self.code}, out={self.out[-500:]!r}, err={self.err[-500:]!r})"


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
