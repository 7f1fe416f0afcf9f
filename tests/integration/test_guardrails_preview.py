"""The real ``tenancy preview`` runs the guardrails policy pack, and a mandatory rule blocks it.

On an isolated copy of the project (``tests/support/sitecopy.py``, site ``it-guard``,
one tenant with one tiny machine) and its own Pulumi file backend:

1. ``tenancy preview`` passes: the pack runs (pulumi names it under "Policies") and
   the config written from the plan lets every rule pass on what would be deployed.
2. The same preview with an auditor's ceiling below what the tenant uses
   (``--guardrails-config``: 0 vCPUs) exits non-zero, and the output names the rule
   (``tenant-within-quota``, mandatory) and the tenant.

A preview creates nothing: the copy and its stack state are simply removed afterwards.
Needs what every engine test needs (``make test`` provides it): ``tools/env.sh``
sourced, the Pulumi CLI and plugins (``make engine``), libvirt answering (the
``pulumi_env`` fixture checks it), and the guest image (``make image``: the program
resolves the site's image files even in a preview).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.support.locks import site_lock
from tests.support.sitecopy import SiteCopy, make_site_copy, new_workdir

pytestmark = pytest.mark.integration

SITE = "it-guard"
TENANT = "it-guard"
PREVIEW_TIMEOUT = 1800.0

TENANT_DOC: dict[str, Any] = {
    "apiVersion": "tenancy/v1",
    "kind": "Tenant",
    "metadata": {"name": TENANT, "displayName": "护栏 Guard", "owner": "guard@example.gov"},
    "spec": {
        "site": SITE,
        "zone": "intranet",
        "machines": [{"name": "app", "flavor": "tiny", "image": "debian-12", "diskGiB": 4}],
        "firewall": {"ingress": [{"from": "intranet", "to": "app", "ports": ["443/tcp"]}]},
        "policies": ["baseline"],
    },
}


@pytest.fixture(scope="module")
def copy(pulumi_env: Any, guest_image: Any) -> Iterator[SiteCopy]:
    main = Path(os.environ["TENANCY_ROOT"])
    with site_lock(SITE):
        workdir = new_workdir(SITE)
        try:
            yield make_site_copy(main, workdir / "project", SITE, {TENANT: TENANT_DOC})
        finally:
            shutil.rmtree(workdir, ignore_errors=True)


def preview(copy: SiteCopy, *args: str) -> subprocess.CompletedProcess[str]:
    """``tenancy preview`` of the copy's site, pulumi's output without colour codes."""
    return copy.tenancy(
        "preview", "--site", SITE, *args, "--", "--color=never", timeout=PREVIEW_TIMEOUT
    )


def output(run: subprocess.CompletedProcess[str]) -> str:
    return run.stdout + run.stderr


def written_config(copy: SiteCopy) -> dict[str, Any]:
    path = copy.state / "policy-packs" / f"guardrails.{SITE}.json"
    config: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return config


def test_preview_runs_the_pack_and_passes(copy: SiteCopy) -> None:
    run = preview(copy)
    text = output(run)
    assert run.returncode == 0, text[-4000:]
    assert "✅ tenancy-guardrails@v" in text, text[-4000:]  # pulumi lists the pack it ran
    assert "[mandatory]" not in text, text[-4000:]
    config = written_config(copy)
    assert TENANT in config["tenant-within-quota"]["grants"]
    assert config["cidr-ownership"]["tenants"][TENANT]["zone"] == "intranet"


def test_a_mandatory_violation_fails_the_preview(copy: SiteCopy) -> None:
    ceiling = copy.root / "audit-ceiling.yaml"
    ceiling.write_text(
        f"tenant-within-quota:\n  ceilings:\n    {TENANT}: {{vcpus: 0}}\n", encoding="utf-8"
    )
    run = preview(copy, "--guardrails-config", str(ceiling))
    text = output(run)
    assert run.returncode != 0, text[-4000:]
    assert "❌ tenancy-guardrails@v" in text, text[-4000:]
    assert "[mandatory]" in text and "tenant-within-quota" in text, text[-4000:]
    assert (
        f"tenant {TENANT} uses 1 vCPUs, over its quota of 0 (auditor ceiling, policy config)"
        in text
    ), text[-4000:]
    assert written_config(copy)["tenant-within-quota"]["ceilings"] == {TENANT: {"vcpus": 0.0}}
