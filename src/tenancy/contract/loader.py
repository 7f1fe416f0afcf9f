"""Turn YAML files into validated models, collecting located errors from every file."""

from __future__ import annotations

import os
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, get_args, get_origin

from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo

from tenancy.contract.errors import Location, SpecError, describe
from tenancy.contract.models import Site, Tenant
from tenancy.contract.text import excerpt
from tenancy.contract.types import PATTERN_HELP, TYPE_DESCRIPTIONS
from tenancy.contract.yamldoc import Document, PathKey, format_path
from tenancy.contract.yamlsource import LoadError, load_file

SITE_CONFIG_KEY = "tenancy:site"
TENANT_SUFFIXES = (".yaml", ".yml")


@dataclass(frozen=True)
class LoadedTenant:
    """A valid tenant model together with the document it came from (for locating errors)."""

    model: Tenant
    doc: Document

    @property
    def file(self) -> str:
        return self.doc.file

    def locate(self, *path: str | int) -> Location:
        return self.doc.locate(tuple(path))


@dataclass(frozen=True)
class LoadedSite:
    model: Site
    doc: Document
    prefix: PathKey

    def locate(self, *path: str | int) -> Location:
        return self.doc.locate((*self.prefix, *path))


def pydantic_errors(
    exc: ValidationError, doc: Document, model: type[BaseModel], prefix: PathKey = ()
) -> list[SpecError]:
    """Translate pydantic errors into located errors naming field, expectation and finding."""
    out: list[SpecError] = []
    for err in exc.errors(include_url=False):
        loc: PathKey = tuple(err["loc"])
        # strip pydantic's internal markers (e.g. function-after[...]) from the path
        clean: PathKey = tuple(p for p in loc if not (isinstance(p, str) and "[" in p))
        full = (*prefix, *clean)
        kind = err["type"]
        msg = str(err["msg"])
        found = describe(err.get("input"))
        if kind == "extra_forbidden":
            allowed = _allowed_keys(model, clean[:-1])
            out.append(
                SpecError(
                    doc.locate(full),
                    format_path(full),
                    "unknown key",
                    f"one of: {', '.join(allowed)}" if allowed else "no extra keys",
                    excerpt(str(clean[-1])) if clean else "",
                )
            )
            continue
        if kind == "missing":
            out.append(
                SpecError(
                    doc.locate(full),
                    format_path(full),
                    "required key is missing",
                    f"a value for {clean[-1]!r}" if clean else "a value",
                )
            )
            continue
        expected = msg
        for lead, article in (
            ("Input should be ", ""),
            ("Value error, ", ""),
            ("String should ", "a string that should "),
            ("List should ", "a list that should "),
            ("Dictionary should ", "a mapping that should "),
            ("Tuple should ", "a list that should "),
        ):
            if expected.startswith(lead):
                expected = article + expected[len(lead) :]
                break
        if kind == "string_pattern_mismatch":
            expected = _pattern_expectation(model, clean, err.get("ctx") or {}, expected)
        out.append(SpecError(doc.locate(full), format_path(full), "invalid value", expected, found))
    return out


def _unwrap(annotation: Any) -> list[Any]:
    """The model classes an annotation may hold (through Optional, list, dict, Annotated)."""
    origin = get_origin(annotation)
    if origin is typing.Annotated:
        return _unwrap(get_args(annotation)[0])
    if origin in (list, tuple, set, dict, typing.Union, types.UnionType):
        found: list[Any] = []
        for arg in get_args(annotation):
            found.extend(_unwrap(arg))
        return found
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return []


def _is_mapping(annotation: Any) -> bool:
    """Whether an annotation (through Optional/Annotated) is a dict of named entries."""
    origin = get_origin(annotation)
    if origin is typing.Annotated:
        return _is_mapping(get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        return any(_is_mapping(a) for a in get_args(annotation))
    return origin is dict


def _model_at(model: type[BaseModel], path: PathKey) -> type[BaseModel] | None:
    current: type[BaseModel] | None = model
    skip_key = False  # inside a dict field (flavors: {small: ...}) the next key is a name
    for part in path:
        if current is None:
            return None
        if isinstance(part, int):
            continue
        if skip_key:
            skip_key = False
            continue
        match = None
        for name, info in current.model_fields.items():
            if part in (name, info.alias):
                match = info
                break
        if match is None:
            return None
        candidates = _unwrap(match.annotation)
        current = candidates[0] if candidates else None
        skip_key = _is_mapping(match.annotation)
    return current


def _allowed_keys(model: type[BaseModel], path: PathKey) -> list[str]:
    target = _model_at(model, path)
    if target is None:
        return []
    return [info.alias or name for name, info in target.model_fields.items()]


def _pattern_expectation(
    model: type[BaseModel], path: PathKey, ctx: dict[str, Any], fallback: str
) -> str:
    """What a value must look like, in words, plus what the field is for."""
    shape = PATTERN_HELP.get(str(ctx.get("pattern", "")), "")
    purpose = _field_description(model, path)
    if purpose in TYPE_DESCRIPTIONS:  # the type's own description, nothing field-specific
        purpose = ""
    if shape and purpose:
        return f"{shape} ({purpose})"
    return shape or purpose or fallback


def _field_description(model: type[BaseModel], path: PathKey) -> str:
    item = bool(path) and isinstance(path[-1], int)  # an entry of a list field
    field_path = path[:-1] if item else path
    if not field_path or isinstance(field_path[-1], int):
        return ""
    parent = _model_at(model, field_path[:-1])
    if parent is None:
        return ""
    for name, info in parent.model_fields.items():
        if field_path[-1] in (name, info.alias):
            if not item:
                return info.description or ""
            for arg in get_args(info.annotation)[:1]:  # list[Annotated[str, Field(...)]]
                for meta in get_args(arg)[1:] if get_origin(arg) is typing.Annotated else ():
                    if isinstance(meta, FieldInfo) and meta.description:
                        return meta.description
            return ""
    return ""


def load_tenant(
    path: Path, display: str | None = None
) -> tuple[LoadedTenant | None, list[SpecError]]:
    """Load one tenant file; returns the model or the list of located errors."""
    name = display or str(path)
    try:
        doc = load_file(path, name, regular_only=True)
    except LoadError as exc:
        return None, exc.errors
    if not isinstance(doc.data, dict):
        return None, [
            SpecError(
                doc.locate(()),
                "",
                "a tenant file must be a mapping",
                "keys apiVersion, kind, metadata, spec",
                describe(doc.data),
            )
        ]
    problems = list(doc.problems)  # e.g. duplicate keys: reported with the model's errors
    try:
        spec = Tenant.model_validate(doc.data)
    except ValidationError as exc:
        return None, problems + pydantic_errors(exc, doc, Tenant)
    stem = path.name.rsplit(".", 1)[0]
    if spec.metadata.name != stem:
        problems.append(
            SpecError(
                doc.locate(("metadata", "name")),
                "metadata.name",
                "tenant name must equal the file name",
                f"{stem!r} (from {path.name})",
                repr(spec.metadata.name),
            )
        )
    if problems:
        return None, problems
    return LoadedTenant(spec, doc), []


def tenant_files(paths: list[Path], root: Path | None = None) -> tuple[list[Path], list[SpecError]]:
    """Expand directories into their tenant files, in a stable order.

    Tenant files are regular files: a symlink (``leak.yaml -> ../.tenancy/passphrase``),
    a FIFO or a device named ``*.yaml`` is refused here, by its directory entry, without
    being opened; :func:`load_file` checks again on the open file.
    """
    files: list[Path] = []
    errors: list[SpecError] = []
    seen: set[Path] = set()
    for p in paths:
        if p.is_dir():
            real_dir = p.resolve()  # once per directory, not once per file
            found: list[tuple[Path, Path]] = []
            with os.scandir(p) as entries:
                for entry in sorted(entries, key=lambda e: e.name):
                    if not entry.name.endswith(TENANT_SUFFIXES):
                        continue
                    problem = _not_regular(entry)
                    if problem:
                        errors.append(_refused(display_path(p / entry.name, root), problem))
                    else:
                        found.append((p / entry.name, real_dir / entry.name))
        elif p.is_symlink():
            errors.append(_refused(display_path(p, root), "a symlink"))
            continue
        elif p.is_file():
            found = [(p, p.resolve())]
        elif p.exists():
            errors.append(_refused(display_path(p, root), "not a regular file"))
            continue
        else:
            errors.append(SpecError(Location(str(p)), "", "no such file or directory"))
            continue
        for f, key in found:  # a file named twice (tenants/ and tenants/hr.yaml) is read once
            if key not in seen:
                seen.add(key)
                files.append(f)
    return files, errors


def _not_regular(entry: os.DirEntry[str]) -> str:
    """Why a directory entry is no tenant file (from the entry itself: nothing is opened)."""
    if entry.is_symlink():
        return "a symlink"
    if not entry.is_file(follow_symlinks=False):
        return "not a regular file"
    return ""


def _refused(shown: str, what: str) -> SpecError:
    return SpecError(
        Location(shown),
        "",
        f"{what}: refused without reading it",
        "a regular file (tenant files are never links, devices or pipes)",
    )


def display_path(path: Path, root: Path | None) -> str:
    """Path as shown in errors and plans: relative to the project root when inside it."""
    if root is not None:
        # lexically first (cheap, and keeps a symlinked tenants/ readable), then for real
        lexical = Path(os.path.normpath(path.absolute()))
        try:
            return lexical.relative_to(Path(os.path.normpath(root.absolute()))).as_posix()
        except ValueError:
            pass
        try:
            return path.resolve().relative_to(root.resolve()).as_posix()
        except ValueError:
            pass
    return str(path)


def load_tenants(
    paths: list[Path], root: Path | None = None
) -> tuple[list[LoadedTenant], list[SpecError]]:
    """Load every tenant file under ``paths``; all errors of all files are returned."""
    files, errors = tenant_files(paths, root)
    tenants: list[LoadedTenant] = []
    for f in files:
        loaded, errs = load_tenant(f, display_path(f, root))
        errors.extend(errs)
        if loaded is not None:
            tenants.append(loaded)
    return tenants, errors


def site_file(stacks_dir: Path, site: str) -> Path:
    return stacks_dir / f"Pulumi.{site}.yaml"


def load_site(
    path: Path, expected_name: str | None = None, root: Path | None = None
) -> tuple[LoadedSite | None, list[SpecError]]:
    """Load a site from a Pulumi stack config file (key ``config: tenancy:site:``)."""
    try:
        doc = load_file(path, display_path(path, root))
    except LoadError as exc:
        return None, exc.errors
    config = doc.data.get("config") if isinstance(doc.data, dict) else None
    if not isinstance(config, dict) or SITE_CONFIG_KEY not in config:
        return None, [
            SpecError(
                doc.locate(("config",)),
                f"config.{SITE_CONFIG_KEY}",
                "stack file has no site definition",
                f"a mapping under config: {SITE_CONFIG_KEY}:",
            )
        ]
    prefix: PathKey = ("config", SITE_CONFIG_KEY)
    problems = list(doc.problems)
    try:
        spec = Site.model_validate(config[SITE_CONFIG_KEY])
    except ValidationError as exc:
        return None, problems + pydantic_errors(exc, doc, Site, prefix)
    if expected_name is not None and spec.name != expected_name:
        problems.append(
            SpecError(
                doc.locate((*prefix, "name")),
                f"{format_path(prefix)}.name",
                "site name must equal the stack name",
                repr(expected_name),
                repr(spec.name),
            )
        )
    if problems:
        return None, problems
    return LoadedSite(spec, doc, prefix), []
