"""Waive a compliance profile for a copy's tenants, so a bring-up skips the hardening.

Tests of the host firewall layers need the VMs, not a hardened guest; with the
controls waived the PolicyRun still runs but changes nothing in the guests.
"""

from __future__ import annotations

import datetime

import yaml

from tests.support.sitecopy import SiteCopy


def waive_baseline(copy: SiteCopy, tenants: list[str], profile: str = "baseline") -> list[str]:
    """Waive every control of ``profile`` for ``tenants`` in the copy (a waiver file).

    The program applies the security baseline to every tenant (PolicyRun); with
    the controls waived the run still happens (SSH, facts) but changes nothing
    in the guests, so a test of the host firewall layers sees only those layers
    and does not spend ~5 minutes of TCG per VM hardening. Returns the controls.
    """
    catalogue = yaml.safe_load((copy.root / "policies" / "catalogue.yaml").read_text())
    profiles = catalogue.get("profiles") or {}
    controls: list[str] = []
    todo = [profile]
    while todo:
        name = todo.pop()
        entry = profiles.get(name) or {}
        controls += [c for c in entry.get("controls") or [] if c not in controls]
        todo += list(entry.get("extends") or [])
    today = datetime.date.today()
    expires = today + datetime.timedelta(days=7)  # dumped as a YAML date
    doc = {
        "apiVersion": "tenancy/v1",
        "kind": "WaiverList",
        "waivers": [
            {
                "control": control,
                "tenant": tenant,
                "justification": "integration test of the host firewall layers "
                "(tests/integration/test_site_local.py); the baseline has its own suite",
                # one of policies/governance.yaml's approvers, within its maximum lifetime
                "approved_by": "security-office@example.gov",
                "approved_on": datetime.date.fromordinal(today.toordinal()),  # no YAML alias
                "expires": datetime.date.fromordinal(expires.toordinal()),
            }
            for tenant in tenants
            for control in controls
        ],
    }
    waivers = copy.root / "policies" / "waivers"
    waivers.mkdir(parents=True, exist_ok=True)
    (waivers / f"integration-{copy.site}.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    return controls
