"""Traceability: do the roles under ``roles/`` implement the catalogue as it says?

A check of Ansible's files, not of the catalogue's: role task and defaults
files are Ansible YAML (its own loader, its own rules), so they are read with
plain ``yaml.safe_load`` for their content only; no line numbers are needed,
as every problem names the role and the control. Run by the unit tests on
the shipped roles; a live host is never involved.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from tenancy.policy.catalogue import CONTROL_ID_PATTERN, Catalogue

__all__ = ["verify_roles"]

_ONE_ID = r"[A-Z][A-Z0-9]*-[A-Z]+-[0-9]{2}"
#: A task name that implements controls: "BASE-SSH-03 | ..." or "BASE-SSH-01, BASE-SSH-02 | ...".
_TASK_NAME_IDS = re.compile(rf"^({_ONE_ID}(?:, {_ONE_ID})*) \| ")
_ID_RE = re.compile(CONTROL_ID_PATTERN)


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


def _safe_load(path: Path) -> Any:
    with path.open(encoding="utf-8") as fh:
        return yaml.safe_load(fh)
