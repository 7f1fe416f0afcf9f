"""Checks of the shell and the site: tools/env.sh sourced here, and a site that plans.

They come first because every later check reads paths and the plan from them.
"""

from __future__ import annotations

from tenancy.doctor.common import FIX_ENV
from tenancy.doctor.model import Check, Facts
from tenancy.doctor.paths import show


def check_environment(facts: Facts) -> list[Check]:
    """tools/env.sh pins versions, PATH and the offline engine; without it nothing else holds."""
    missing = [v for v in ("TENANCY_ROOT", "PULUMI_VERSION") if not facts.env.get(v)]
    venv_bin = f"{facts.root}/.venv/bin"
    if venv_bin not in facts.env.get("PATH", "").split(":"):
        missing.append(f"{show(facts, venv_bin)} on PATH")
    if missing:
        return [
            Check(
                "environment",
                "tools/env.sh",
                "fail",
                f"not sourced: {', '.join(missing)} missing",
                FIX_ENV,
            )
        ]
    env_root = facts.env["TENANCY_ROOT"].rstrip("/")
    if env_root != facts.root.rstrip("/"):
        return [
            Check(
                "environment",
                "tools/env.sh",
                "warn",
                f"sourced from another clone: TENANCY_ROOT={env_root}, project {facts.root}",
                f"unset TENANCY_ROOT TENANCY_STATE PULUMI_BACKEND_URL && {FIX_ENV}",
            )
        ]
    return [Check("environment", "tools/env.sh", "ok", f"sourced (TENANCY_ROOT={env_root})")]


def check_site(facts: Facts) -> list[Check]:
    """The site must load, and its plan must exist, for the site-dependent checks to mean much."""
    if facts.site_error:
        return [Check("site", "site", "fail", facts.site_error, "tenancy validate tenants/")]
    site = facts.site
    if site is None:
        return []
    if site.plan_errors:
        first = site.plan_errors[0]
        return [
            Check(
                "site",
                f"plan {site.name}",
                "warn",
                f"no plan: {len(site.plan_errors)} error(s) (first: {first}); "
                "resource checks count no machines",
                "tenancy validate tenants/",
            )
        ]
    hosts = ", ".join(site.local_hosts) or "none"
    return [
        Check(
            "site",
            f"plan {site.name}",
            "ok",
            f"{len(site.machines)} machine(s) planned; hosts on this machine: {hosts}"
            + (f"; remote hosts: {', '.join(site.remote_hosts)}" if site.remote_hosts else ""),
        )
    ]
