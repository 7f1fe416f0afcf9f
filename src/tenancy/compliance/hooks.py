"""The hook through which the suite gets its policy: the catalogue, the waivers, the day.

The suite decides with the policy but does not own it: the policy part of
Tenancy (:mod:`tenancy.policy.suite_policy`, registered next to the plugin by
the suite's conftest.py) reads the files and answers :func:`pytest_tenancy_policy`,
so this package never imports the catalogue's loader.
"""

from __future__ import annotations

import pytest

from tenancy.compliance.applicability import Policy


@pytest.hookspec(firstresult=True)
def pytest_tenancy_policy(config: pytest.Config) -> Policy | None:
    """The catalogue, the waivers and the date they are judged on, for this run.

    Raise ``pytest.UsageError`` when the policy files are invalid.
    """
