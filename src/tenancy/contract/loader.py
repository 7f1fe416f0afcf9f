"""Turn YAML files into validated models, collecting located errors from every file."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from tenancy.contract.errors import Location, SpecError, describe
from tenancy.contract.grants import LoadedGrants, grants_path, load_grants
from tenancy.contract.models import Site, Tenant
from tenancy.contract.validation_errors import pydantic_errors
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
    grants: LoadedGrants | None = None
    """``stacks/quotas.<site>.yaml``, when the site has one."""

    def locate(self, *path: str | int) -> Location:
        return self.doc.locate((*self.prefix, *path))


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
        return None, problems + [_moved(e) for e in pydantic_errors(exc, doc, Tenant)]
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


def _moved(error: SpecError) -> SpecError:
    """An unknown key that used to exist says where its job went."""
    if error.field == "spec.quota" and error.message == "unknown key":
        return SpecError(
            error.location,
            error.field,
            "quotas are granted by ops, not by the tenant file",
            "spec.quotaRequest (what you ask for); the grant lives in stacks/quotas.<site>.yaml",
            "spec.quota",
        )
    return error


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
    gpath = grants_path(path.parent, spec.name)
    grants, errors = load_grants(gpath, spec.name, display_path(gpath, root))
    problems.extend(errors)
    if problems:
        return None, problems
    return LoadedSite(spec, doc, prefix, grants), []
