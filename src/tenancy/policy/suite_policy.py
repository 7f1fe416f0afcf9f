"""The compliance suite's policy, as a pytest plugin: which catalogue, which waivers, which day.

The suite (:mod:`tenancy.compliance.plugin`) decides with the policy but does
not read it: this plugin owns the options that name the policy files, loads
them with the catalogue's own validation and answers the suite's
``pytest_tenancy_policy`` hook. The suite's conftest.py registers both plugins.
Waivers are loaded under the project's governance file (``--tenancy-governance``),
as on every other path.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from tenancy.compliance.applicability import Policy
from tenancy.policy.catalogue import CatalogueError
from tenancy.policy.catalogue_load import load_catalogue
from tenancy.policy.waivers import load_governed_waivers
from tenancy.project import Project, shipped


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("tenancy", "Tenancy compliance suite")
    group.addoption(
        "--tenancy-catalogue",
        default=str(shipped("policies") / "catalogue.yaml"),
        help="policy catalogue (default: policies/catalogue.yaml of this project)",
    )
    group.addoption(
        "--tenancy-waivers",
        default=str(Project.find().waivers_dir),
        help="waiver file or folder of *.yaml (default: policies/waivers)",
    )
    group.addoption(
        "--tenancy-governance",
        default=str(Project.find().governance_file),
        help="the waiver rules (default: policies/governance.yaml; needed when there are waivers)",
    )
    group.addoption(
        "--tenancy-today",
        default=None,
        metavar="YYYY-MM-DD",
        help="judge waiver expiry on this date (default: today, UTC)",
    )


def pytest_tenancy_policy(config: pytest.Config) -> Policy:
    """The catalogue, the waivers and the day of this run (a usage error when invalid)."""
    try:
        catalogue = load_catalogue(config.getoption("tenancy_catalogue"))
        waivers = load_governed_waivers(
            Path(config.getoption("tenancy_waivers")),
            Path(config.getoption("tenancy_governance")),
            catalogue=catalogue,
        )
    except CatalogueError as exc:
        raise pytest.UsageError(f"invalid policy files:\n{exc}") from None
    today_text = config.getoption("tenancy_today")
    try:
        today = date.fromisoformat(today_text) if today_text else datetime.now(UTC).date()
    except ValueError:
        raise pytest.UsageError(f"--tenancy-today {today_text!r}: expected YYYY-MM-DD") from None
    return Policy(catalogue=catalogue, waivers=waivers, today=today)
