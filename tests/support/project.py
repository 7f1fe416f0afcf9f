"""Project inputs for a test: a private copy of tenants/ and stacks/, and tenant documents.

Tests that write files work on a copy under their tmp_path; the repository's own
files are never modified.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "tests" / "unit" / "data"
EXAMPLE_TENANTS = sorted(p.stem for p in (REPO / "tenants").glob("*.yaml"))


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


OPEN_ZONES = {
    "intranet": {"intranet": "any", "extranet": "any", "internet": "any"},
    "extranet": {"intranet": "any", "extranet": "any", "internet": "any"},
}
"""Zone rules that allow every flow: for tests about flows, not about zones."""


def edit_site(root: Path, site: str, **changes: Any) -> None:
    """Set keys of ``stacks/Pulumi.<site>.yaml``'s site definition in a project copy."""
    path = root / "stacks" / f"Pulumi.{site}.yaml"
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    data["config"]["tenancy:site"].update(changes)
    path.write_text("---\n" + yaml.safe_dump(data, sort_keys=False), encoding="utf-8")


def grant_quota(root: Path, site: str, tenant: str, **quota: int) -> None:
    """Ops' grant for ``tenant`` in a project copy's ``stacks/quotas.<site>.yaml``."""
    path = root / "stacks" / f"quotas.{site}.yaml"
    data: dict[str, Any] = (
        yaml.safe_load(path.read_text(encoding="utf-8"))
        if path.exists()
        else {"apiVersion": "tenancy/v1", "kind": "QuotaGrants", "site": site, "tenants": {}}
    )
    data["tenants"][tenant] = quota
    path.write_text("---\n" + yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
