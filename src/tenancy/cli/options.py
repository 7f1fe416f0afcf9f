"""The options several commands share, defined once so they are spelled and explained alike."""

from __future__ import annotations

import argparse
import re

from tenancy.contract.loader import site_file
from tenancy.contract.types import DNS_LABEL_RE
from tenancy.plan.planner import known_sites
from tenancy.project import Project

DEFAULT_SITE = "local"


def add_site(parser: argparse.ArgumentParser) -> None:
    """``--site``: the stack a command works on; check it with :func:`check_site_arg`."""
    parser.add_argument(
        "--site", default=DEFAULT_SITE, help=f"stack name under stacks/ (default: {DEFAULT_SITE})"
    )


def add_tenant(parser: argparse.ArgumentParser) -> None:
    """``--tenant``: narrow a command to some tenants' machines (``args.tenant`` is a list)."""
    parser.add_argument(
        "--tenant",
        action="append",
        default=[],
        metavar="NAME",
        help="only this tenant's machines (repeatable; default: every tenant of the site)",
    )


_MOVE_RE = re.compile(r"^[a-z0-9][a-z0-9-]*/[a-z0-9][a-z0-9-]*$")


def move_list(value: str) -> list[str]:
    """``TENANT/INSTANCE,...`` or ``all``: the instances an operator lets change host."""
    items = [v.strip() for v in value.split(",") if v.strip()]
    bad = [v for v in items if v != "all" and not _MOVE_RE.match(v)]
    if not items or bad:
        shown = ", ".join(repr(b) for b in bad) or repr(value)
        raise argparse.ArgumentTypeError(f"expected TENANT/INSTANCE,... or 'all'; found {shown}")
    return items


def add_approve_moves(parser: argparse.ArgumentParser) -> None:
    """``--approve-moves``: instances that may change host (``args.approve_moves`` is a list)."""
    parser.add_argument(
        "--approve-moves",
        type=move_list,
        action="extend",
        default=[],
        metavar="TENANT/INSTANCE,...",
        help="let these machines change host where they no longer fit (a move rebuilds a "
        "machine with an empty root disk): without it a protected machine never moves, nor "
        "one whose own demand did not change; 'all' for every machine (repeatable)",
    )


def add_format(parser: argparse.ArgumentParser, *choices: str, help: str | None = None) -> None:
    """``--format``: how the result is printed; the first choice is the default."""
    parser.add_argument("--format", choices=list(choices), default=choices[0], help=help)


def check_site_arg(project: Project, site: str) -> str | None:
    """A usage problem with ``--site``, or None when its stack file exists."""
    if not re.match(DNS_LABEL_RE, site):
        return f"site {site!r}: expected a stack name (a DNS label)"
    if not site_file(project.stacks_dir, site).is_file():
        known = ", ".join(known_sites(project.stacks_dir)) or "(none)"
        return f"unknown site {site!r}: no stacks/Pulumi.{site}.yaml; known sites: {known}"
    return None
