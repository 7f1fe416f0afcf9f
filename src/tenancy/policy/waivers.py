"""Waivers: approved, expiring exemptions from one control for some hosts of one tenant.

Waiver files (``policies/waivers/*.yaml``) are read like the catalogue (the
one located reader, :mod:`.catalogue_load`); a waiver names a control of the
catalogue, and the active ones for a host become its
``tenancy_waived_controls``, which the playbook skips and the compliance
suite reports as waived, not failed.

A waiver records who accepted the risk (``approved_by``) and on which day
(``approved_on``); the project's governance file (:mod:`.governance`) bounds
how long it may last and, when it lists approvers, who may accept it. Every
command path loads waivers with the project's governance
(:func:`load_governed_waivers`); :func:`load_waivers` without one checks only
what a waiver file says of itself (approved_on not after today, expires not
before approved_on).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, StringConstraints, ValidationError

from tenancy.contract.text import excerpt
from tenancy.contract.yamldoc import Document
from tenancy.policy.catalogue import Catalogue, CatalogueError, ControlId, Name, PolicyModel, Text
from tenancy.policy.catalogue_load import explain, located, read_policy_file
from tenancy.policy.governance import Governance, load_governance

__all__ = [
    "Waiver",
    "active_waivers",
    "load_governed_waivers",
    "load_waivers",
    "waived_control_ids",
    "waiver_files",
]


class Waiver(PolicyModel):
    """An approved, expiring exemption from one control for some hosts of one tenant."""

    control: ControlId
    tenant: Name
    hosts: list[Annotated[str, StringConstraints(min_length=1)]] = Field(default_factory=list)
    """Inventory host names the waiver covers; empty means every host of the tenant."""
    justification: Annotated[str, StringConstraints(strip_whitespace=True, min_length=20)]
    approved_by: Text
    approved_on: date
    """The day ``approved_by`` accepted the risk; the lifetime counts from it."""
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


def waiver_files(path: Path) -> list[Path]:
    """The waiver files at ``path``: the file itself, or a folder's ``*.yaml``/``*.yml``."""
    return sorted([*path.glob("*.yaml"), *path.glob("*.yml")]) if path.is_dir() else [path]


def load_waivers(
    path: str | Path,
    *,
    catalogue: Catalogue | None = None,
    governance: Governance | None = None,
    today: date | None = None,
) -> list[Waiver]:
    """Load waivers from one file or from every ``*.yaml``/``*.yml`` file of a folder.

    With ``catalogue``, each waiver must name a control of it; with ``governance``,
    it must meet the project's waiver rules (lifetime, approvers). ``approved_on``
    may not lie after ``today`` (default: this machine's date). Expired waivers are
    returned too (use :meth:`Waiver.is_active`). Raises :class:`CatalogueError`.
    """
    today = today or date.today()
    controls = {c.id for c in catalogue.controls} if catalogue is not None else None
    waivers: list[Waiver] = []
    errors: list[str] = []
    for f in waiver_files(Path(path)):
        doc = read_policy_file(f)
        try:
            parsed = _WaiverFile.model_validate(doc.data)
        except ValidationError as exc:
            errors.extend(explain(exc, doc))
            continue
        for i, w in enumerate(parsed.waivers):
            if controls is not None and w.control not in controls:
                errors.append(
                    located(doc, ("waivers", i, "control"), f"unknown control {w.control}")
                )
            errors.extend(_rule_problems(doc, i, w, governance, today))
        waivers.extend(parsed.waivers)
    if errors:
        raise CatalogueError(errors)
    return waivers


def _rule_problems(
    doc: Document, i: int, w: Waiver, governance: Governance | None, today: date
) -> list[str]:
    """What keeps waiver ``i`` of ``doc`` from being granted: its dates, its approver."""
    problems: list[str] = []
    if w.approved_on > today:
        problems.append(
            located(
                doc,
                ("waivers", i, "approved_on"),
                f"expected a day not after today ({today.isoformat()}); found "
                f"{w.approved_on.isoformat()}: a waiver is recorded once it is approved",
            )
        )
    lifetime = (w.expires - w.approved_on).days
    if lifetime < 0:
        problems.append(
            located(
                doc,
                ("waivers", i, "expires"),
                f"expected a day on or after approved_on ({w.approved_on.isoformat()}); "
                f"found {w.expires.isoformat()}",
            )
        )
    if governance is None:
        return problems
    rules = governance.waivers
    if lifetime > rules.max_lifetime_days:
        problems.append(
            located(
                doc,
                ("waivers", i, "expires"),
                f"expected at most {rules.max_lifetime_days} days after approved_on "
                f"({governance.cite('waivers.maxLifetimeDays')}); found "
                f"{w.expires.isoformat()}, {lifetime} days after {w.approved_on.isoformat()}",
            )
        )
    if rules.approvers is not None and w.approved_by not in rules.approvers:
        problems.append(
            located(
                doc,
                ("waivers", i, "approved_by"),
                f"expected one of {governance.cite('waivers.approvers')} "
                f"({', '.join(rules.approvers)}); found {excerpt(w.approved_by)}",
            )
        )
    return problems


def load_governed_waivers(
    path: Path,
    governance_file: Path,
    *,
    catalogue: Catalogue | None = None,
    today: date | None = None,
) -> list[Waiver]:
    """The waivers at ``path`` under the governance of ``governance_file``.

    No waiver file (or no ``path``) means no waivers, and the governance file is
    not needed; any waiver file needs it, and a missing one is an error naming
    its path. Raises :class:`CatalogueError`.
    """
    if not path.exists() or not waiver_files(path):
        return []
    governance = load_governance(governance_file)
    return load_waivers(path, catalogue=catalogue, governance=governance, today=today)


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
