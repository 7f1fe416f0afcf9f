"""Tenant files are regular files; anything else is refused unread, and errors quote little.

A department's pull request could add ``tenants/leak.yaml -> ../.tenancy/passphrase``
(the error used to print the passphrase), a FIFO that blocks the reader, or
values made to flood or garble the error output.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
from tests.support.cli import CliResult
from tests.support.project import tenant_doc, write_tenant

from tenancy.cli.errors import EXIT_INVALID
from tenancy.contract.errors import SpecError
from tenancy.contract.loader import load_tenant, tenant_files
from tenancy.contract.text import EXCERPT_CHARS, excerpt
from tenancy.contract.yamlsource import LoadError, load_file
from tenancy.plan.planner import PlanResult

Cli = Callable[..., CliResult]
SECRET = "hunter2-the-site-passphrase"


@pytest.fixture
def leak(project: Path) -> Path:
    """``tenants/leak.yaml``, a symlink to a secret of the state directory."""
    state = project / ".tenancy"
    state.mkdir()
    (state / "passphrase").write_text(SECRET, encoding="utf-8")
    link = project / "tenants" / "leak.yaml"
    link.symlink_to("../.tenancy/passphrase")
    return link


def _all_text(errors: list[SpecError]) -> str:
    return "\n".join(str(e) for e in errors)


def test_a_symlinked_tenant_file_is_refused_unread(
    project: Path, leak: Path, plan_of: Callable[..., PlanResult]
) -> None:
    result = plan_of(project)
    errors = [e for e in result.problems.errors if e.location.file == "tenants/leak.yaml"]
    assert [e.message for e in errors] == ["a symlink: refused without reading it"]
    assert SECRET not in _all_text(result.problems.items)
    assert not result.plans  # nothing is planned while any input is refused


def test_a_symlink_named_on_the_command_line_is_refused(project: Path, leak: Path) -> None:
    files, errors = tenant_files([leak], project)
    assert files == []
    assert [str(e) for e in errors] == [
        "tenants/leak.yaml: error: <document>: a symlink: refused without reading it; "
        "expected a regular file (tenant files are never links, devices or pipes)"
    ]


def test_the_open_itself_refuses_a_symlink(project: Path, leak: Path) -> None:
    """Between listing and reading the file can be swapped: the open checks again."""
    loaded, errors = load_tenant(leak, "tenants/leak.yaml")
    assert loaded is None
    assert [e.message for e in errors] == ["a symlink: refused without reading it"]
    assert SECRET not in _all_text(errors)


def test_a_fifo_is_refused_without_blocking(project: Path) -> None:
    fifo = project / "tenants" / "pipe.yaml"
    os.mkfifo(fifo)
    files, errors = tenant_files([project / "tenants"], project)
    assert fifo not in files
    assert [e.message for e in errors] == ["not a regular file: refused without reading it"]
    with pytest.raises(LoadError) as caught:  # opened non-blocking, then refused by fstat
        load_file(fifo, "tenants/pipe.yaml")
    assert "not a regular file" in str(caught.value)


def test_the_cli_names_the_refused_file_and_never_its_target(
    cli: Cli, project: Path, leak: Path
) -> None:
    result = cli("--root", project, "validate")
    assert result.code == EXIT_INVALID
    assert "tenants/leak.yaml: error: <document>: a symlink: refused without reading it" in (
        result.out
    )
    assert SECRET not in result.out + result.err


def test_a_symlinked_tenants_directory_still_works(tmp_path: Path, project: Path) -> None:
    """Ops may keep tenants/ elsewhere: only the files themselves must be regular."""
    alias = tmp_path / "alias"
    alias.symlink_to(project / "tenants", target_is_directory=True)
    files, errors = tenant_files([alias], project)
    assert errors == [] and files


@pytest.mark.parametrize(
    ("where", "value"),
    [
        ("displayName", "x" * 100_000),
        ("owner", "a" * 50_000 + "@example.gov"),
        ("name", "\u202e" + "y" * 5_000),
    ],
)
def test_errors_quote_only_a_short_escaped_excerpt(project: Path, where: str, value: str) -> None:
    doc = tenant_doc("long")
    doc["metadata"][where] = value
    path = write_tenant(project, doc, "long")
    _, errors = load_tenant(path, "tenants/long.yaml")
    assert errors
    for error in errors:
        assert len(error.found) < EXCERPT_CHARS + 40, error.found
        assert "\u202e" not in str(error)
    assert any("characters)" in e.found for e in errors)


def test_a_huge_unknown_key_is_named_by_its_start(project: Path) -> None:
    key = "k" * 200_000
    text = (
        "apiVersion: tenancy/v1\nkind: Tenant\n"
        "metadata: {name: keys, displayName: K, owner: k@example.gov}\n"
        f"spec:\n  site: local\n  zone: intranet\n  ? {key}\n  : 1\n"
    )
    path = write_tenant(project, text, "keys")
    _, errors = load_tenant(path, "tenants/keys.yaml")
    (error,) = errors
    assert error.message == "unknown key"
    assert len(str(error)) < 600
    assert error.location.line == 7


def test_a_duplicate_hostile_key_is_named_by_its_start(project: Path) -> None:
    key = "\x1b[2J" + "d" * 1_000
    text = (
        "apiVersion: tenancy/v1\nkind: Tenant\n"
        "metadata: {name: dup, displayName: D, owner: d@example.gov}\n"
        f'spec:\n  site: local\n  zone: intranet\n  "{key}": 1\n  "{key}": 2\n'
    ).replace("\x1b", "\\e")
    path = write_tenant(project, text, "dup")
    _, errors = load_tenant(path, "tenants/dup.yaml")
    dups = [e for e in errors if e.message == "duplicate key"]
    assert len(dups) == 1
    shown = str(dups[0])
    assert "\x1b" not in shown and "\\x1b" in shown and len(shown) < 400


def test_excerpt_keeps_short_text_and_cuts_long_text() -> None:
    assert excerpt("web") == "'web'"
    assert excerpt("a\u202eb\rc") == "'a\\\\u202eb\\\\x0dc'"
    long = excerpt("z" * 1000)
    assert long == "'" + "z" * EXCERPT_CHARS + "'… (1000 characters)"
