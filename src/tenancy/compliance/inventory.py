"""The Ansible inventory at collection time: which hosts are selected, what they declare.

Items that exist on one host only (its declared flows, its probes) must be
known before any test runs, so they are read from the inventory pytest was
given (``--hosts=ansible://...``, ``--ansible-inventory``), not from a host.
"""

from __future__ import annotations

from typing import Any

import pytest

__all__ = ["all_inventory_hosts", "inventory_hosts"]


def _runner(config: pytest.Config) -> Any:
    """testinfra's reader of the inventory pytest was given (cached per inventory)."""
    # testinfra ships no type information
    from testinfra.utils.ansible_runner import AnsibleRunner

    return AnsibleRunner.get_runner(config.option.ansible_inventory)


def inventory_hosts(config: pytest.Config) -> dict[str, dict[str, Any]]:
    """Selected inventory hosts (``--hosts=ansible://...``) with their variables.

    Empty when the hosts do not come from an Ansible inventory: checks whose
    items depend on a host's declared flows then have only their common items.
    """
    specs = [s for s in (config.option.hosts or "").split(",") if s.startswith("ansible://")]
    if not specs:
        return {}
    runner = _runner(config)
    names: set[str] = set()
    for spec in specs:
        pattern = spec.split("://", 1)[1].split("?", 1)[0] or "all"
        names.update(runner.get_hosts(pattern))
    return {name: dict(runner.get_variables(name)) for name in sorted(names)}


def all_inventory_hosts(config: pytest.Config) -> dict[str, dict[str, Any]]:
    """Every host of the inventory (probe sources may be outside the selection)."""
    if not config.option.ansible_inventory:
        return {}
    runner = _runner(config)
    return {name: dict(runner.get_variables(name)) for name in runner.get_hosts("all")}
