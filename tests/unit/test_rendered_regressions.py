"""Artefacts a real tool refused although their input validated, pinned without the tool.

``tests/integration/test_rendered_artefacts.py`` renders generated tenants and hands
every artefact to the tool that reads it; each test here keeps one thing it found
fixed, so the unit suite catches a relapse on a machine without those tools.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import yaml

from tenancy.plan.planner import PlanResult
from tenancy.render.cloud_init import render_seed

SSH_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFkz8XbQZ9n3mZz0p4bJ2wq7WcXKqvJ5Yk2d3fXo6u4r ops@t"

# The types cloud-init 22.4's schema (Debian 12, the guests' version) gives the keys the
# user-data template writes; ``cloud-init schema`` refuses a file with any other.
USER_DATA_TYPES: dict[str, type | tuple[type, ...]] = {
    "hostname": str,
    "manage_etc_hosts": bool,
    "locale": str,
    "disable_root": bool,
    "ssh_pwauth": bool,
    "ssh_deletekeys": bool,
    "ssh_genkeytypes": list,
    "users": list,
    "apt": dict,
}
FALSE_STRINGS = ("off", "0", "no", "false")  # cloudinit.util.is_false: the module is skipped


def test_user_data_values_have_the_types_of_cloud_init_22_4_schema(
    project: Path, plan_of: Callable[..., PlanResult]
) -> None:
    """``locale: false`` (a boolean) failed ``cloud-init schema`` on every seed."""
    result = plan_of(project)
    assert result.ok, result.problems.errors
    seeds = [
        render_seed(m, t.segment, [SSH_KEY], "ops", "http://mirror.example.gov/debian")
        for plan in result.plans.values()
        for t in plan.tenants
        for m in t.machines
    ]
    assert seeds
    for seed in seeds:
        assert seed.user_data.startswith("#cloud-config\n")
        doc = yaml.safe_load(seed.user_data)
        for key, value in doc.items():
            assert key in USER_DATA_TYPES, f"new key {key!r}: add its cloud-init schema type"
            assert isinstance(value, USER_DATA_TYPES[key]), f"{key}: {value!r}"
        assert doc["locale"].lower() in FALSE_STRINGS, "the locale module must stay skipped"
