"""What a hardening run applies, and the fingerprint that says when to apply it again.

The playbook and the catalogue (the shipped ``policies/``) and every role file
(the shipped ``roles/``) are what a run copies into its private data dir and
what the PolicyRun's ``policy_hash`` covers. The files are named as in a
checkout (``policies/playbook.yml``, ``roles/<role>/...``) wherever they are
installed, so the same files give the same digest on any machine.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tenancy.project import Project

__all__ = ["POLICY_FILES", "PolicyFiles", "policy_digest"]

#: The files of ``policies/`` a run applies (``roles/`` is added whole).
POLICY_FILES = ("playbook.yml", "catalogue.yaml")


def _ignored(rel: Path) -> bool:
    return any(part.startswith(".") or part == "__pycache__" for part in rel.parts) or (
        rel.suffix == ".pyc"
    )


@dataclass(frozen=True)
class PolicyFiles:
    """Where the applied files live: ``policies_dir`` (playbook, catalogue) and ``roles_dir``."""

    policies_dir: Path
    roles_dir: Path

    @classmethod
    def of(cls, project: Project) -> PolicyFiles:
        """The files a project's runs apply (the installed package's)."""
        return cls(project.policies_dir, project.roles_dir)

    @classmethod
    def under(cls, root: Path) -> PolicyFiles:
        """A tree laid out like a checkout: ``root/policies`` and ``root/roles``."""
        return cls(root / "policies", root / "roles")

    def names(self) -> list[Path]:
        """``policies/playbook.yml``, ``policies/catalogue.yaml``, then ``roles/**`` sorted."""
        names = [Path("policies", n) for n in POLICY_FILES if (self.policies_dir / n).is_file()]
        if self.roles_dir.is_dir():
            names += sorted(
                Path("roles") / rel
                for rel in (p.relative_to(self.roles_dir) for p in self.roles_dir.rglob("*"))
                if (self.roles_dir / rel).is_file() and not _ignored(rel)
            )
        return names

    def path(self, name: Path) -> Path:
        """The file behind one of :meth:`names`."""
        top, *rest = name.parts
        return (self.policies_dir if top == "policies" else self.roles_dir).joinpath(*rest)


def policy_digest(files: PolicyFiles, variables: Mapping[str, Any]) -> str:
    """sha256 of the playbook, the catalogue, every role file and the rendered variables.

    A change to any of them changes the digest (and so re-applies a PolicyRun);
    the same inputs give the same digest on any machine.
    """
    h = hashlib.sha256()
    for name in files.names():
        h.update(name.as_posix().encode() + b"\0")
        h.update(files.path(name).read_bytes() + b"\0")
    h.update(json.dumps(variables, sort_keys=True, ensure_ascii=False).encode())
    return h.hexdigest()
