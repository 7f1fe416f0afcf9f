"""``tenancy plan --check-ledger [--base-ledger FILE]``: the pull request carries its allocation.

A pull request must commit the ledger its files imply (``--write-ledger``), so the
allocation its reviewers see is the one ``tenancy up`` creates. Stale means writing
the ledger would change it; against the base branch's ledger, no recorded allocation
may move or change hands.
"""

from __future__ import annotations

import difflib
import sys
from pathlib import Path

from tenancy.contract.errors import Location
from tenancy.contract.loader import display_path
from tenancy.contract.yamlsource import LoadError, load_file
from tenancy.plan.ledger import Ledger, ledger_path, load_ledger
from tenancy.plan.ledger_review import Locate, compare_with_base
from tenancy.project import Project


def check_ledger(
    project: Project,
    site: str,
    ledger: Ledger,
    base_file: str | None,
    released: frozenset[str],
) -> bool:
    """Whether the ledger passes the gate; every problem is printed to stderr."""
    path = ledger_path(project.stacks_dir, site)
    shown = display_path(path, project.root)
    ok = True
    if base_file is not None:
        base_path = Path(base_file)
        base, errors = load_ledger(base_path, site, base_file)
        if base is not None:
            errors += compare_with_base(base, ledger, _locator(path, shown), released)
        for error in errors:
            print(error, file=sys.stderr)
        ok = not errors
    wanted = ledger.dump()
    found = path.read_text(encoding="utf-8") if path.is_file() else ""
    if found != wanted:
        diff = difflib.unified_diff(
            found.splitlines(keepends=True),
            wanted.splitlines(keepends=True),
            f"{shown} (committed)",
            f"{shown} (what the tenant files imply)",
        )
        sys.stderr.writelines(diff)
        print(
            f"{shown}: stale: run `tenancy plan --site {site} --write-ledger` and commit it",
            file=sys.stderr,
        )
        return False
    if ok:
        print(f"{shown}: current", file=sys.stderr)
    return ok


def _locator(path: Path, shown: str) -> Locate:
    """Find keys in the committed ledger file (its file name alone if it cannot be read)."""
    try:
        doc = load_file(path, shown)
    except (LoadError, OSError):
        return lambda _path: Location(shown)
    return lambda key: doc.locate(key)
