"""The operators' keys: read once for seeds and baseline; missing keys are errors."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest
from tests.support.project import copy_project

from tenancy.contract.host_vars import SITE_OPS_SSH_KEYS, SITE_OPS_USER
from tenancy.contract.models import OpsSpec
from tenancy.plan.planner import plan_paths
from tenancy.policy.ops_keys import OpsKeyError, OpsKeys, ops_public_keys, site_ops_keys
from tenancy.policy.variables import (
    VariablesError,
    load_policy_sources,
    policy_inventory,
    tenant_hosts,
)
from tenancy.project import Project


def spec(**fields: object) -> OpsSpec:
    return OpsSpec.model_validate(fields)


def test_inline_keys_then_files_in_order_without_duplicates(tmp_path: Path) -> None:
    (tmp_path / "a.pub").write_text("# rotated 2026-12\nssh-ed25519 AAAAfile a@x\n\n")
    ops = spec(
        sshKeys=["ssh-ed25519 AAAAinline i@x", "ssh-ed25519 AAAAfile a@x"], sshKeyFiles=["a.pub"]
    )
    assert ops_public_keys(tmp_path, ops) == [
        "ssh-ed25519 AAAAinline i@x",
        "ssh-ed25519 AAAAfile a@x",
    ]


@pytest.mark.parametrize("content", [None, "", "# only a comment\n"])
def test_a_missing_or_empty_key_file_is_an_error_never_no_keys(
    tmp_path: Path, content: str | None
) -> None:
    if content is not None:
        (tmp_path / "k.pub").write_text(content)
    with pytest.raises(OpsKeyError, match=r"k\.pub"):
        ops_public_keys(tmp_path, spec(sshKeyFiles=["k.pub"]))
    assert site_ops_keys(tmp_path, spec(sshKeyFiles=["nope.pub"])).problem is not None


def test_the_inventory_hands_the_keys_to_the_baseline_and_refuses_none(tmp_path: Path) -> None:
    root = copy_project(tmp_path / "p")
    result = plan_paths(root, sites=["local"])
    assert result.ok
    plan, site = result.plans["local"], result.sites["local"].model
    sources = load_policy_sources(Project.at(root))
    keys = OpsKeys(("ssh-ed25519 AAAAone ops@one", "ssh-ed25519 AAAAtwo ops@two"))
    hosts = tenant_hosts(policy_inventory(plan, site, sources, date(2026, 12, 1), ops_keys=keys))
    assert hosts and all(h[SITE_OPS_SSH_KEYS] == list(keys.keys) for h in hosts.values())
    assert all(h[SITE_OPS_USER] == "ops" for h in hosts.values())
    missing = site_ops_keys(root, spec(sshKeyFiles=["gone.pub"]))
    with pytest.raises(VariablesError, match=r"gone\.pub is missing"):
        policy_inventory(plan, site, sources, date(2026, 12, 1), ops_keys=missing)
