"""Quota grants: what ops allow each tenant of a site, in a file only ops edit.

A tenant's own file may only *ask* (``spec.quotaRequest``); the limit every
check uses is the grant in ``stacks/quotas.<site>.yaml`` (owned by ops through
CODEOWNERS), or the site's ``defaultQuota`` for a tenant the file does not list.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError

from tenancy.contract.errors import Location, SpecError
from tenancy.contract.models import Quota, Strict
from tenancy.contract.types import DnsLabel, TenantName
from tenancy.contract.validation_errors import pydantic_errors
from tenancy.contract.yamldoc import Document
from tenancy.contract.yamlsource import LoadError, load_file


class QuotaGrants(Strict):
    """``stacks/quotas.<site>.yaml``: one grant per tenant name."""

    api_version: Literal["tenancy/v1"] = Field(alias="apiVersion")
    kind: Literal["QuotaGrants"]
    site: DnsLabel
    tenants: dict[TenantName, Quota] = Field(default_factory=dict, max_length=10_000)


@dataclass(frozen=True)
class LoadedGrants:
    model: QuotaGrants
    doc: Document

    @property
    def file(self) -> str:
        return self.doc.file

    def locate(self, tenant: str) -> Location:
        return self.doc.locate(("tenants", tenant))


def grants_path(stacks_dir: Path, site: str) -> Path:
    return stacks_dir / f"quotas.{site}.yaml"


def load_grants(path: Path, site: str, display: str) -> tuple[LoadedGrants | None, list[SpecError]]:
    """The site's grants (``None`` without a file: every tenant has the site default)."""
    if not path.exists():
        return None, []
    try:
        doc = load_file(path, display)
    except LoadError as exc:
        return None, exc.errors
    try:
        grants = QuotaGrants.model_validate(doc.data)
    except ValidationError as exc:
        return None, doc.problems + pydantic_errors(exc, doc, QuotaGrants)
    if doc.problems:
        return None, list(doc.problems)
    if grants.site != site:
        return None, [
            SpecError(
                doc.locate(("site",)),
                "site",
                "grants belong to another site",
                repr(site),
                repr(grants.site),
            )
        ]
    return LoadedGrants(grants, doc), []
