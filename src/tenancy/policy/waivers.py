"""Waivers: approved, expiring exemptions from one control for some hosts of one tenant.

Waiver files (``policies/waivers/*.yaml``) are read like the catalogue (the
one located reader, :mod:`.catalogue_load`); a waiver names a control of the
catalogue, and the active ones for a host become its
``tenancy_waived_controls``, which the playbook skips and the compliance
suite reports as waived, not failed.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, StringConstraints, ValidationError

from tenancy.policy.catalogue import Catalogue, CatalogueError, ControlId, Name, PolicyModel, Text
from tenancy.policy.catalogue_load import explain, located, read_policy_file

__all__ = ["Waiver", "active_waivers", "load_waivers", "waived_control_ids"]


class Waiver(PolicyModel):
    """An approved, expiring exemption from one control for some hosts of one tenant."""

    control: ControlId
    tenant: Name
    hosts: list[Annotated[str, StringConstraints(min_length=1)]] = Field(default_factory=list)
    """Inventory host names the waiver covers; empty means every host of the tenant."""
    justification: Annotated[str, StringConstraints(strip_whitespace=True, min_length=20)]
    approved_by: Text
    expires: date
    """Last day on which the waiver applies."""
    ticket: str | None = None

    def is_active(self, today: date) -> bool:
        """True up to and including the expiry date."""
        return today <= self.expires

    def applies_to(self, tenant: str, host: str) -> bool:
        """True when the waiver's scope covers ``host`` of ``tenant`` (expiry not considered)."""
        return tenant == self.tenant and (not self.hosts or host in self.hosts)


class _WaiverFile(PolicyModel):
    api_version: Literal["tenancy/v1"] = Field(alias="apiVersion")
    kind: Literal["WaiverList"]
    waivers: list[Waiver] = Field(default_factory=list)


def load_waivers(path: str | Path, *, catalogue: Catalogue | None = None) -> list[Waiver]:
    """Load waivers from one file or from every ``*.yaml``/``*.yml`` file of a folder.

    With ``catalogue``, each waiver must name a control of it. Expired waivers
    are returned too (use :meth:`Waiver.is_active`). Raises :class:`CatalogueError`.
    """
    path = Path(path)
    files = sorted([*path.glob("*.yaml"), *path.glob("*.yml")]) if path.is_dir() else [path]
    waivers: list[Waiver] = []
    errors: list[str] = []
    for f in files:
        doc = read_policy_file(f)
        try:
            parsed = _WaiverFile.model_validate(doc.data)
        except ValidationError as exc:
            errors.extend(explain(exc, doc))
            continue
        for i, w in enumerate(parsed.waivers):
            if catalogue is not None and w.control not in {c.id for c in catalogue.controls}:
                errors.append(
                    located(doc, ("waivers", i, "control"), f"unknown control {w.control}")
                )
        waivers.extend(parsed.waivers)
    if errors:
        raise CatalogueError(errors)
    return waivers


def active_waivers(
    waivers: Iterable[Waiver], *, tenant: str, host: str, today: date
) -> list[Waiver]:
    """The waivers in force for ``host`` of ``tenant`` on ``today``."""
    return [w for w in waivers if w.applies_to(tenant, host) and w.is_active(today)]


def waived_control_ids(
    waivers: Iterable[Waiver], *, tenant: str, host: str, today: date
) -> list[str]:
    """Sorted control IDs to render as the host's ``tenancy_waived_controls``."""
    return sorted(
        {w.control for w in active_waivers(waivers, tenant=tenant, host=host, today=today)}
    )
