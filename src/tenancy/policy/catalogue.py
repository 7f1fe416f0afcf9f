"""The policy catalogue: control IDs → Ansible role tags → compliance checks.

``policies/catalogue.yaml`` lists every security control once, groups them in
profiles (``baseline``, ``mlps-level3`` extending it) and says which role and
tags implement each control and which compliance check proves it. Waiver files
(``policies/waivers/*.yaml``) exempt one control on some hosts of one tenant
until an expiry date.

Scope of validation: the files only (the catalogue, the waiver files and the
role files under ``roles/``), never a live host. Errors name the file, the line
and the key path.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from datetime import date
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    model_validator,
)

__all__ = [
    "MAX_PROFILE_DEPTH",
    "Catalogue",
    "CatalogueError",
    "Control",
    "Framework",
    "Implements",
    "Profile",
    "Waiver",
    "active_waivers",
    "load_catalogue",
    "load_waivers",
    "verify_roles",
    "waived_control_ids",
]

#: How many ``extends`` levels a profile chain may have. policies/playbook.yml
#: resolves inheritance in Jinja with this many unrolled steps, so the limit is
#: part of the contract between the two.
MAX_PROFILE_DEPTH = 3

CONTROL_ID_PATTERN = r"^[A-Z][A-Z0-9]*-[A-Z]+-[0-9]{2}$"
CHECK_PATTERN = r"^test_[a-z0-9_]+\.py::[a-z][a-z0-9_]*$"
ROLE_PATTERN = r"^[a-z][a-z0-9_]*$"
NAME_PATTERN = r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$"

ControlId = Annotated[str, StringConstraints(pattern=CONTROL_ID_PATTERN)]
RoleName = Annotated[str, StringConstraints(pattern=ROLE_PATTERN)]
Name = Annotated[str, StringConstraints(pattern=NAME_PATTERN, max_length=63)]
Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]

_ONE_ID = r"[A-Z][A-Z0-9]*-[A-Z]+-[0-9]{2}"
#: A task name that implements controls: "BASE-SSH-03 | ..." or "BASE-SSH-01, BASE-SSH-02 | ...".
_TASK_NAME_IDS = re.compile(rf"^({_ONE_ID}(?:, {_ONE_ID})*) \| ")
_ID_RE = re.compile(CONTROL_ID_PATTERN)

Loc = tuple[str | int, ...]


class CatalogueError(ValueError):
    """A catalogue or waiver file is invalid. ``errors`` has one line per problem."""

    def __init__(self, errors: list[str]) -> None:
        self.errors = errors
        super().__init__("\n".join(errors))


class _ProblemsError(ValueError):
    """Semantic problems found by a model validator, each with the key path it concerns."""

    def __init__(self, problems: list[tuple[Loc, str]]) -> None:
        self.problems = problems
        super().__init__("; ".join(f"{_fmt_loc(loc)}: {msg}" for loc, msg in problems))


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class Framework(_Model):
    """A public framework that controls cite (CIS benchmark, GB/T 22239-2019)."""

    title: Text
    version: Text
    clauses: dict[str, Text] = Field(default_factory=dict)
    """Known clause numbers → titles; when given, every reference must start with one."""


class Implements(_Model):
    """Which role implements a control, and the task tags that carry it."""

    role: RoleName
    tags: list[Annotated[str, StringConstraints(min_length=1)]] = Field(min_length=1)


class Control(_Model):
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


class Profile(_Model):
    """A named set of controls, optionally extending other profiles."""

    title: Text
    description: str = ""
    extends: list[Name] = Field(default_factory=list)
    controls: list[ControlId] = Field(default_factory=list)


class Metadata(_Model):
    name: Name
    version: int = Field(ge=1)


class Catalogue(_Model):
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
            raise _ProblemsError(problems)
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


class Waiver(_Model):
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


class _WaiverFile(_Model):
    api_version: Literal["tenancy/v1"] = Field(alias="apiVersion")
    kind: Literal["WaiverList"]
    waivers: list[Waiver] = Field(default_factory=list)


# -- semantic checks ---------------------------------------------------------


def _catalogue_problems(cat: Catalogue) -> list[tuple[Loc, str]]:
    problems: list[tuple[Loc, str]] = []
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
        depth = _depth(cat.profiles, name, ())
        if depth is None:
            problems.append((("profiles", name, "extends"), "profile inheritance has a cycle"))
        elif depth > MAX_PROFILE_DEPTH:
            problems.append(
                (
                    ("profiles", name, "extends"),
                    f"inheritance is {depth} levels deep, at most {MAX_PROFILE_DEPTH}",
                )
            )
    return problems


def _depth(profiles: dict[str, Profile], name: str, path: tuple[str, ...]) -> int | None:
    """Levels of ``extends`` below ``name`` (0 = extends nothing); None on a cycle."""
    if name in path:
        return None
    if name not in profiles:
        return 0
    deepest = 0
    for parent in profiles[name].extends:
        d = _depth(profiles, parent, (*path, name))
        if d is None:
            return None
        deepest = max(deepest, d + 1)
    return deepest


# -- loading -----------------------------------------------------------------


def load_catalogue(path: str | Path, *, roles_dir: str | Path | None = None) -> Catalogue:
    """Load and validate a catalogue file.

    ``roles_dir`` (default: ``roles/`` next to the catalogue's folder, i.e. the
    repository's) must hold every role a control names. Raises
    :class:`CatalogueError`.
    """
    path = Path(path)
    data, node = _read_yaml(path)
    try:
        cat = Catalogue.model_validate(data)
    except ValidationError as exc:
        raise CatalogueError(_explain(exc, path, node)) from None
    roles = Path(roles_dir) if roles_dir is not None else path.resolve().parent.parent / "roles"
    missing = [
        f"{path}:{_line(node, ('controls', i, 'implements', 'role'))}: "
        f"controls[{i}].implements.role: "
        f"role {c.implements.role!r} of {c.id} does not exist under {roles}"
        for i, c in enumerate(cat.controls)
        if not (roles / c.implements.role / "tasks" / "main.yml").is_file()
    ]
    if missing:
        raise CatalogueError(missing)
    return cat


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
        data, node = _read_yaml(f)
        try:
            parsed = _WaiverFile.model_validate(data)
        except ValidationError as exc:
            errors.extend(_explain(exc, f, node))
            continue
        for i, w in enumerate(parsed.waivers):
            if catalogue is not None and w.control not in {c.id for c in catalogue.controls}:
                errors.append(
                    f"{f}:{_line(node, ('waivers', i, 'control'))}: waivers[{i}].control: "
                    f"unknown control {w.control}"
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


# -- role traceability -------------------------------------------------------


def verify_roles(catalogue: Catalogue, roles_dir: str | Path) -> list[str]:
    """Check that the roles under ``roles_dir`` implement the catalogue as it says.

    For every role the catalogue names: each control's tags appear on a task,
    a task name starts with the control ID, the role's ``<role>_controls``
    default lists exactly its controls, and no task names or tags an ID the
    catalogue does not give to this role. Returns the problems (empty = fine).
    """
    roles_dir = Path(roles_dir)
    problems: list[str] = []
    for role in catalogue.roles():
        role_dir = roles_dir / role
        mine = [c for c in catalogue.controls if c.implements.role == role]
        mine_ids = {c.id for c in mine}
        tasks_dir = role_dir / "tasks"
        if not (tasks_dir / "main.yml").is_file():
            problems.append(f"{role}: {tasks_dir / 'main.yml'} is missing")
            continue
        tags: set[str] = set()
        named: set[str] = set()
        for task_file in sorted(tasks_dir.glob("*.yml")):
            for task in _tasks(_safe_load(task_file)):
                task_tags = task.get("tags", [])
                task_tags = [task_tags] if isinstance(task_tags, str) else list(task_tags or [])
                tags.update(str(t) for t in task_tags)
                m = _TASK_NAME_IDS.match(str(task.get("name", "")))
                if m:
                    named.update(m.group(1).split(", "))
        for c in mine:
            for tag in c.implements.tags:
                if tag not in tags:
                    problems.append(f"{role}: no task is tagged {tag} ({c.id})")
            if c.id not in named:
                problems.append(f"{role}: no task name starts with {c.id}")
        strays = {t for t in tags | named if _ID_RE.match(t)} - mine_ids
        problems.extend(
            f"{role}: tasks name or tag {t}, which the catalogue does not give to {role}"
            for t in sorted(strays)
        )
        defaults_file = role_dir / "defaults" / "main.yml"
        defaults = _safe_load(defaults_file) if defaults_file.is_file() else {}
        declared = defaults.get(f"{role}_controls") if isinstance(defaults, dict) else None
        if not isinstance(declared, list) or set(map(str, declared)) != mine_ids:
            problems.append(
                f"{role}: defaults/main.yml {role}_controls must list exactly {sorted(mine_ids)}, "
                f"has {declared!r}"
            )
    return problems


def _tasks(items: Any) -> Iterator[dict[str, Any]]:
    """Every task dict in a task file, descending into block/rescue/always."""
    if not isinstance(items, list):
        return
    for item in items:
        if not isinstance(item, dict):
            continue
        yield item
        for key in ("block", "rescue", "always"):
            yield from _tasks(item.get(key))


# -- YAML with line numbers --------------------------------------------------


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that rejects duplicate mapping keys (plain safe_load keeps the last one)."""


def _construct_mapping(
    loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False
) -> dict[Any, Any]:
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=True)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None,
                None,
                f"duplicate key {key!r} (first on line {seen[key]})",
                key_node.start_mark,
            )
        seen[key] = key_node.start_mark.line + 1
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _read_yaml(path: Path) -> tuple[Any, yaml.Node | None]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise CatalogueError([f"{path}: cannot read: {exc.strerror}"]) from None
    try:
        node = yaml.compose(text, Loader=_UniqueKeyLoader)
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # a SafeLoader subclass: safe
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        raise CatalogueError([f"{where}: invalid YAML: {getattr(exc, 'problem', exc)}"]) from None
    return data, node


def _safe_load(path: Path) -> Any:
    with path.open(encoding="utf-8") as fh:
        return yaml.safe_load(fh)


def _line(node: yaml.Node | None, loc: Loc) -> int:
    """1-based line of the deepest node of ``loc`` that exists in the document."""
    if node is None:
        return 1
    best = node
    for part in loc:
        nxt: yaml.Node | None = None
        if isinstance(best, yaml.MappingNode):
            for k, v in best.value:
                if isinstance(k, yaml.ScalarNode) and k.value == str(part):
                    nxt = v
                    break
        elif (
            isinstance(best, yaml.SequenceNode)
            and isinstance(part, int)
            and 0 <= part < len(best.value)
        ):
            nxt = best.value[part]
        if nxt is None:
            break
        best = nxt
    return int(best.start_mark.line) + 1


def _fmt_loc(loc: Loc) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "(top level)"


def _explain(exc: ValidationError, path: Path, node: yaml.Node | None) -> list[str]:
    lines: list[str] = []
    for err in exc.errors():
        ctx_error = (err.get("ctx") or {}).get("error")
        if isinstance(ctx_error, _ProblemsError):
            for loc, msg in ctx_error.problems:
                lines.append(f"{path}:{_line(node, loc)}: {_fmt_loc(loc)}: {msg}")
            continue
        loc = tuple(err["loc"])
        lines.append(f"{path}:{_line(node, loc)}: {_fmt_loc(loc)}: {err['msg']}")
    return lines
