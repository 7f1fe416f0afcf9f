"""Governance: who owns which files of the project, and the rules every waiver must meet.

``policies/governance.yaml`` is the project's own (like its waivers) and read
like them, with the one located reader (:mod:`.catalogue_load`). It names the
GitHub teams that review pull requests (``tenancy codeowners`` writes them
into ``.github/CODEOWNERS``) and bounds waivers: how long one may last and,
optionally, who may approve one. There are no defaults: a team name or a
waiver lifetime guessed by the program would be a review nobody asked for, so
a missing file is an error naming its path.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, StringConstraints, ValidationError

from tenancy.contract.types import EMAIL_RE
from tenancy.policy.catalogue import CatalogueError, PolicyModel
from tenancy.policy.catalogue_load import explain, read_policy_file

__all__ = ["TEAM_PATTERN", "Governance", "Teams", "WaiverRules", "load_governance"]

TEAM_PATTERN = r"^@[A-Za-z0-9](?:[A-Za-z0-9-]{0,37}[A-Za-z0-9])?/[A-Za-z0-9][A-Za-z0-9_-]{0,99}$"
"""A GitHub team handle ``@org/team``: nothing a CODEOWNERS line could read as more."""

Team = Annotated[str, StringConstraints(pattern=TEAM_PATTERN)]
Email = Annotated[str, StringConstraints(max_length=254, pattern=EMAIL_RE)]


class Teams(PolicyModel):
    """The teams that own the project's own files."""

    ops: Team
    """Owns the sites, the workflows and every file no other line names (new tenants too)."""
    security: Team
    """Owns the policies, the waivers and this file."""


class WaiverRules(PolicyModel):
    """What every waiver file must respect."""

    max_lifetime_days: int = Field(alias="maxLifetimeDays", ge=1)
    """The most days a waiver's ``expires`` may lie after its ``approved_on``."""
    approvers: list[Email] | None = Field(default=None, min_length=1)
    """When given, a waiver's ``approved_by`` must be one of them (omit to accept any)."""


class _GovernanceFile(PolicyModel):
    api_version: Literal["tenancy/v1"] = Field(alias="apiVersion")
    kind: Literal["Governance"]
    teams: Teams
    waivers: WaiverRules


@dataclass(frozen=True)
class Governance:
    """The governance of a project, with the file it came from (errors cite its keys)."""

    file: str
    teams: Teams
    waivers: WaiverRules

    def cite(self, key: str) -> str:
        """Where a rule comes from, for an error message: ``<file> <key>``."""
        return f"{self.file} {key}"


def load_governance(path: str | Path) -> Governance:
    """Read and validate the governance file; raises :class:`CatalogueError` (located)."""
    path = Path(path)
    name = str(path)
    if not path.exists():
        raise CatalogueError(
            [
                f"{name}: missing: the project's governance file is needed here (kind "
                "Governance: teams.ops, teams.security, waivers.maxLifetimeDays); "
                "there are no defaults"
            ]
        )
    doc = read_policy_file(path)
    try:
        parsed = _GovernanceFile.model_validate(doc.data)
    except ValidationError as exc:
        raise CatalogueError(explain(exc, doc)) from None
    return Governance(file=name, teams=parsed.teams, waivers=parsed.waivers)
