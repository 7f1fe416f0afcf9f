"""The table of ``tenancy`` commands: name -> the module that implements it, and its help line.

Modelled on pip's ``commands/__init__.py``: the dispatcher lists every command
from this table alone and imports only the module of the command that runs, so
``tenancy --help`` loads no command module and a command never imports the
dispatcher. A command module exposes ``register(subparsers)``, which adds the
full parser of each command the table routes to it.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import NamedTuple, TypeAlias

Subparsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"
Register: TypeAlias = Callable[[Subparsers], None]


class Command(NamedTuple):
    module: str
    """Dotted name of the module whose ``register`` adds this command's parser."""
    summary: str
    """The one line ``tenancy --help`` shows for the command."""


_INPUTS, _ENGINE = "tenancy.cli.inputs", "tenancy.cli.engine"

#: In the order ``tenancy --help`` lists them.
COMMANDS: dict[str, Command] = {
    "validate": Command(_INPUTS, "check tenant files (and the sites they name)"),
    "plan": Command(_INPUTS, "show what a site will run: machines, addresses, flows"),
    "diff": Command(
        "tenancy.cli.diff", "show what the working tree changes on a site against a git revision"
    ),
    "schema": Command(_INPUTS, "print the JSON Schema of tenant (or site) files"),
    "new": Command(_INPUTS, "scaffold a commented tenant file"),
    "inventory": Command(_INPUTS, "print the Ansible inventory the plan implies"),
    "codeowners": Command("tenancy.cli.codeowners", "write .github/CODEOWNERS from the inputs"),
    "audit": Command(
        "tenancy.cli.audit",
        "run the compliance suite against a site's VMs and write an evidence bundle",
    ),
    "doctor": Command(
        "tenancy.cli.doctor",
        "check this machine's prerequisites and print the fix for each problem",
    ),
    "preview": Command(_ENGINE, "show what pulumi would change on a site (replacements included)"),
    "up": Command(_ENGINE, "apply a site: write the ledger, then pulumi up"),
    "refresh": Command(_ENGINE, "read the real state of a site's resources back into the stack"),
    "destroy": Command(
        _ENGINE, "remove everything of a site's stack (protected machines need --approve)"
    ),
    "harden": Command(
        "tenancy.cli.harden",
        "apply (or --check) the security baseline on a site's VMs with Ansible",
    ),
}


def summary(name: str) -> str:
    """The table's help line of command ``name`` (descriptions start with it)."""
    return COMMANDS[name].summary


def add_command(
    sub: Subparsers, name: str, description: str | None = None, *, epilog: str | None = None
) -> argparse.ArgumentParser:
    """The parser of command ``name``, with the table's help line.

    An ``epilog`` (exit codes, notes) is laid out by hand: it is printed as written.
    """
    raw = epilog is not None
    return sub.add_parser(
        name,
        help=summary(name),
        description=description,
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter if raw else argparse.HelpFormatter,
    )
