"""The ``tenancy codeowners`` verb: write (or --check) .github/CODEOWNERS from the inputs."""

from __future__ import annotations

import argparse
import difflib
import sys
from pathlib import Path

from tenancy.cli.commands import Subparsers, add_command, summary
from tenancy.cli.errors import EXIT_INVALID, EXIT_OK, usage_error
from tenancy.contract.loader import display_path, load_tenants
from tenancy.contract.text import plain
from tenancy.policy.catalogue import CatalogueError
from tenancy.policy.codeowners import CodeownersError, codeowners
from tenancy.policy.governance import load_governance
from tenancy.project import Project

DESCRIPTION = summary("codeowners") + (
    ": ops by default and for tenants/, each tenant file's metadata.owner for that file, "
    "the teams of policies/governance.yaml for stacks/, policies/, the waivers and .github/."
)
EPILOG = """\
exit codes:
  0  the file is current (written when it was not; --check: nothing written)
  1  invalid input (a tenant file, or policies/governance.yaml missing or invalid),
     or --check only: the file differs from what would be generated (a unified
     diff on stdout); run `tenancy codeowners` and commit the file
  2  usage error

Every tenant file must validate (`tenancy validate` shows the same errors). An
owner that could end a CODEOWNERS line, start a comment or hide from a reviewer
(whitespace, '#', control characters) is refused with its file and line.
"""


def _read(path: Path) -> str | None:
    """The file's text as it is on disk (line endings kept), None when absent."""
    try:
        return path.read_bytes().decode("utf-8", errors="replace")
    except FileNotFoundError:
        return None


def _diff(old: str, new: str, shown: str) -> str:
    """A unified diff of the file on disk against the generated text, invisible characters
    shown escaped (the file on disk may hold anything)."""
    lines = difflib.unified_diff(
        old.splitlines(keepends=True),
        new.splitlines(keepends=True),
        fromfile=f"{shown} (on disk)",
        tofile=f"{shown} (generated)",
    )
    return "".join(plain(line.rstrip("\r\n")) + "\n" for line in lines)


def _codeowners(args: argparse.Namespace) -> int:
    project: Project = args.project
    target = Path(args.output) if args.output else project.root / ".github" / "CODEOWNERS"
    if target.is_dir():
        return usage_error(f"--output {target}: a directory, expected a file")
    try:
        governance = load_governance(project.governance_file)
    except CatalogueError as exc:
        print(exc, file=sys.stderr)
        return EXIT_INVALID
    tenants, errors = load_tenants([project.tenants_dir], project.root)
    text = ""
    if not errors:
        try:
            text = codeowners(tenants, governance)
        except CodeownersError as exc:
            errors = exc.errors
    if errors:
        for error in sorted(errors, key=lambda e: e.location):
            print(error, file=sys.stderr)
        print(f"CODEOWNERS not generated: {len(errors)} error(s)", file=sys.stderr)
        return EXIT_INVALID
    shown = display_path(target, project.root)
    current = _read(target)
    if current == text:
        print(f"{shown}: current", file=sys.stderr)
        return EXIT_OK
    if args.check:
        sys.stdout.write(_diff(current or "", text, shown))
        state = "missing" if current is None else "stale"
        print(f"{shown}: {state}: run `tenancy codeowners` and commit it", file=sys.stderr)
        return EXIT_INVALID
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text, encoding="utf-8")
    print(f"{shown}: written", file=sys.stderr)
    return EXIT_OK


def register(sub: Subparsers) -> None:
    p = add_command(sub, "codeowners", DESCRIPTION, epilog=EPILOG)
    p.add_argument(
        "--check",
        action="store_true",
        help="write nothing; exit 1 with a diff when the file is not what would be generated",
    )
    p.add_argument(
        "--output",
        metavar="PATH",
        default=None,
        help="the file to write or check (default: .github/CODEOWNERS of the project)",
    )
    p.set_defaults(func=_codeowners)
