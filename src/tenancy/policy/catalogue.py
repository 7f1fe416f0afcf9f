"""The policy catalogue: control IDs → Ansible role tags → compliance checks.

``policies/catalogue.yaml`` lists every security control once, groups them in
profiles (``baseline``, ``mlps-level3`` extending it) and says which role and
tags implement each control and which compliance check proves it.

This module is the catalogue as data: the models, the queries the playbook,
the audit and the report ask (``controls_for``, ``roles_for`` ...), and the
rules that make one catalogue consistent, checked when the model is built so
no inconsistent :class:`Catalogue` exists. Reading the file and wording its
errors is :mod:`.catalogue_load`; waivers are :mod:`.waivers`; whether the
roles under ``roles/`` do what the catalogue says is :mod:`.role_trace`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from tenancy.contract.yamldoc import PathKey, format_path

__all__ = [
    "Catalogue",
    "CatalogueError",
    "ConsistencyError",
    "Control",
    "Framework",
    "Implements",
    "PolicyModel",
    "Profile",
]

CONTROL_ID_PATTERN = r"^[A-Z][A-Z0-9]*-[A-Z]+-[0-9]{2}$"
CHECK_PATTERN = r"^test_[a-z0-9_]+\.py::[a-z][a-z0-9_]*$"
ROLE_PATTERN = r"^[a-z][a-z0-9_]*$"
NAME_PATTERN = r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$"

ControlId = Annotated[str, StringConstraints(pattern=CONTROL_ID_PATTERN)]
RoleName = Annotated[str, StringConstraints(pattern=ROLE_PATTERN)]
Name = Annotated[str, StringConstraints(pattern=NAME_PATTERN, max_length=63)]
Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]


class CatalogueError(ValueError):
    """A catalogue or waiver file is invalid. ``errors`` has one line per problem."""

    def __init__(self, errors: list[str]) -> None:
        self.errors = errors
        super().__init__("\n".join(errors))


class ConsistencyError(ValueError):
    """Semantic problems found by a model validator, each with the key path it concerns.

    Raised inside validation, so pydantic wraps it; :mod:`.catalogue_load` takes
    the problems back out to locate each one in the file.
    """

    def __init__(self, problems: list[tuple[PathKey, str]]) -> None:
        self.problems = problems
        super().__init__("; ".join(f"{format_path(p, quote=False)}: {m}" for p, m in problems))


class PolicyModel(BaseModel):
    """Base of the policy files' models: unknown keys are errors, values are not coerced."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class Framework(PolicyModel):
    """A public framework that controls cite (CIS benchmark, GB/T 22239-2019)."""

    title: Text
    version: Text
    clauses: dict[str, Text] = Field(default_factory=dict)
    """Known clause numbers → titles; when given, every reference must start with one."""


class Implements(PolicyModel):
    """Which role implements a control, and the task tags that carry it."""

    role: RoleName
    tags: list[Annotated[str, StringConstraints(min_length=1)]] = Field(min_length=1)


class Control(PolicyModel):
    """One security control with a stable ID."""

    id: ControlId
    title: Text
    rationale: Text
    severity: Literal["low", "medium", "high"]
    implements: Implements
    check: Annotated[str, StringConstraints(pattern=CHECK_PATTERN)]
    """The check that proves it, relative to the suite (the same in a wheel): ``test_x.py::f``."""
    references: dict[str, list[Text]] = Field(default_factory=dict)
    """Framework ID (a key of ``Catalogue.frameworks``) → section or clause numbers."""


class Profile(PolicyModel):
    """A named set of controls, optionally extending other profiles."""

    title: Text
    description: str = ""
    extends: list[Name] = Field(default_factory=list)
    controls: list[ControlId] = Field(default_factory=list)


class Metadata(PolicyModel):
    name: Name
    version: int = Field(ge=1)


class Catalogue(PolicyModel):
    """The whole catalogue file."""

    api_version: Literal["tenancy/v1"] = Field(alias="apiVersion")
    kind: Literal["PolicyCatalogue"]
    metadata: Metadata
    frameworks: dict[Name, Framework] = Field(default_factory=dict)
    profiles: dict[Name, Profile] = Field(min_length=1)
    controls: list[Control] = Field(min_length=1)

    @model_validator(mode="after")
    def _consistent(self) -> Catalogue:
        problems = _catalogue_problems(self)
        if problems:
            raise ConsistencyError(problems)
        return self

    # -- queries -----------------------------------------------------------

    def control(self, control_id: str) -> Control:
        """The control with this ID (KeyError if unknown)."""
        for c in self.controls:
            if c.id == control_id:
                return c
        raise KeyError(f"unknown control {control_id!r}")

    def profile_chain(self, name: str) -> list[str]:
        """``name`` and every profile it extends, nearest first, each once."""
        if name not in self.profiles:
            known = ", ".join(sorted(self.profiles))
            raise KeyError(f"unknown profile {name!r} (known: {known})")
        seen: list[str] = []
        todo = [name]
        while todo:
            current = todo.pop(0)
            if current in seen:
                continue
            seen.append(current)
            todo.extend(self.profiles[current].extends)
        return seen

    def controls_for(self, profiles: Iterable[str]) -> list[Control]:
        """The controls selected by ``profiles`` and everything they extend.

        In catalogue order, each control once. Unknown profile names are a
        ``KeyError``.
        """
        wanted: set[str] = set()
        for name in profiles:
            for p in self.profile_chain(name):
                wanted.update(self.profiles[p].controls)
        return [c for c in self.controls if c.id in wanted]

    def roles_for(self, profiles: Iterable[str]) -> list[str]:
        """The roles that implement the controls of ``profiles``, in catalogue order."""
        roles: list[str] = []
        for c in self.controls_for(profiles):
            if c.implements.role not in roles:
                roles.append(c.implements.role)
        return roles

    def roles(self) -> list[str]:
        """Every role the catalogue names, in catalogue order."""
        return list(dict.fromkeys(c.implements.role for c in self.controls))


# -- semantic checks ---------------------------------------------------------


def _catalogue_problems(cat: Catalogue) -> list[tuple[PathKey, str]]:
    problems: list[tuple[PathKey, str]] = []
    ids: dict[str, int] = {}
    checks: dict[str, str] = {}
    for i, c in enumerate(cat.controls):
        if c.id in ids:
            problems.append(
                (("controls", i, "id"), f"duplicate control ID {c.id} (also controls[{ids[c.id]}])")
            )
        ids.setdefault(c.id, i)
        if c.check in checks:
            problems.append(
                (("controls", i, "check"), f"check {c.check} already proves {checks[c.check]}")
            )
        checks.setdefault(c.check, c.id)
        if c.id not in c.implements.tags:
            problems.append(
                (("controls", i, "implements", "tags"), f"must include the control's own ID {c.id}")
            )
        for fw, refs in c.references.items():
            if fw not in cat.frameworks:
                known = ", ".join(sorted(cat.frameworks)) or "none declared"
                problems.append(
                    (
                        ("controls", i, "references", fw),
                        f"unknown framework {fw!r} (known: {known})",
                    )
                )
                continue
            clauses = cat.frameworks[fw].clauses
            for j, ref in enumerate(refs):
                if clauses and ref.split(" ")[0] not in clauses:
                    problems.append(
                        (
                            ("controls", i, "references", fw, j),
                            f"{ref!r} is not under a known clause of {fw}",
                        )
                    )

    owner: dict[str, str] = {}
    for name, profile in cat.profiles.items():
        for j, parent in enumerate(profile.extends):
            if parent not in cat.profiles:
                problems.append((("profiles", name, "extends", j), f"unknown profile {parent!r}"))
        for j, cid in enumerate(profile.controls):
            if cid not in ids:
                problems.append((("profiles", name, "controls", j), f"unknown control {cid}"))
            elif cid in owner:
                problems.append(
                    (
                        ("profiles", name, "controls", j),
                        f"{cid} is already in profile {owner[cid]!r}",
                    )
                )
            else:
                owner[cid] = name
    for i, c in enumerate(cat.controls):
        if c.id not in owner:
            problems.append((("controls", i, "id"), f"{c.id} is in no profile"))

    for name in cat.profiles:
        if _in_cycle(cat.profiles, name, ()):
            problems.append((("profiles", name, "extends"), "profile inheritance has a cycle"))
    return problems


def _in_cycle(profiles: dict[str, Profile], name: str, path: tuple[str, ...]) -> bool:
    """Whether following ``extends`` from ``name`` comes back to a profile on ``path``.

    Any depth is fine: the controls a host gets are resolved here, in Python,
    and handed to the playbook as ``tenancy_controls``.
    """
    if name in path:
        return True
    if name not in profiles:
        return False
    return any(_in_cycle(profiles, parent, (*path, name)) for parent in profiles[name].extends)
