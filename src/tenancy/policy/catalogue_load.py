"""Reading the policy files: the one located YAML reader, its errors in the catalogue's words.

The catalogue and the waiver files are hand-edited YAML like tenant files, so
they go through the same guarded reader (:mod:`tenancy.contract.yamlsource`:
aliases, tags, merge keys and oversized files refused the same way), with
YAML dates kept as dates (a waiver's expiry). Only the wording is the
catalogue's own: one line per problem, ``file:line: key.path: message``, the
line being where the offending value starts. Scope: the files only (and the
role folders a control names), never a live host.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import ValidationError

from tenancy.contract.errors import SpecError
from tenancy.contract.yamldoc import Document, PathKey, format_path
from tenancy.contract.yamlsource import (
    LoadError,
    MalformedYamlError,
    UnreadableFileError,
    load_file,
)
from tenancy.policy.catalogue import Catalogue, CatalogueError, ConsistencyError

__all__ = ["explain", "load_catalogue", "located", "read_policy_file"]


def read_policy_file(path: Path) -> Document:
    """The document of one policy file, or :class:`CatalogueError` naming what is wrong.

    A duplicate key is fatal here (the tenant loader reports it with the model's
    errors): a policy file with two values for one key is not checked further.
    """
    try:
        doc = load_file(path, dates=True)
    except UnreadableFileError as exc:
        raise CatalogueError([f"{path}: cannot read: {exc.reason}"]) from None
    except MalformedYamlError as exc:
        [error] = exc.errors
        line = error.location.line
        raise CatalogueError([f"{path}:{line}: invalid YAML: {exc.problem}"]) from None
    except LoadError as exc:
        raise CatalogueError([_refused(e) for e in exc.errors]) from None
    if doc.duplicates:
        raise CatalogueError(
            [
                f"{path}:{d.line}: invalid YAML: "
                f"duplicate key {d.path[-1]!r} (first on line {d.first_line})"
                for d in doc.duplicates
            ]
        )
    return doc


def _refused(error: SpecError) -> str:
    """A refusal of the reader (an alias, a tag, a file too large ...) as a catalogue line."""
    where = f"{error.field}: " if error.field else ""
    found = f" (found {error.found})" if error.found else ""
    return (
        f"{error.location.file}:{error.location.line}: invalid YAML: {where}{error.message}{found}"
    )


def located(doc: Document, loc: PathKey, message: str) -> str:
    """``file:line: key.path: message``, the line where the value at ``loc`` starts."""
    field = format_path(loc, quote=False) or "(top level)"
    return f"{doc.file}:{doc.locate_value(loc).line}: {field}: {message}"


def explain(exc: ValidationError, doc: Document) -> list[str]:
    """One located line per pydantic error, and per consistency problem of the catalogue."""
    lines: list[str] = []
    for err in exc.errors():
        ctx_error = (err.get("ctx") or {}).get("error")
        if isinstance(ctx_error, ConsistencyError):
            lines.extend(located(doc, loc, msg) for loc, msg in ctx_error.problems)
            continue
        lines.append(located(doc, tuple(err["loc"]), err["msg"]))
    return lines


def load_catalogue(path: str | Path, *, roles_dir: str | Path | None = None) -> Catalogue:
    """Load and validate a catalogue file.

    ``roles_dir`` (default: ``roles/`` next to the catalogue's folder, i.e. the
    repository's) must hold every role a control names. Raises
    :class:`CatalogueError`.
    """
    path = Path(path)
    doc = read_policy_file(path)
    try:
        cat = Catalogue.model_validate(doc.data)
    except ValidationError as exc:
        raise CatalogueError(explain(exc, doc)) from None
    roles = Path(roles_dir) if roles_dir is not None else path.resolve().parent.parent / "roles"
    missing = [
        located(
            doc,
            ("controls", i, "implements", "role"),
            f"role {c.implements.role!r} of {c.id} does not exist under {roles}",
        )
        for i, c in enumerate(cat.controls)
        if not (roles / c.implements.role / "tasks" / "main.yml").is_file()
    ]
    if missing:
        raise CatalogueError(missing)
    return cat
