"""The top-level ``tenancy`` parser, and the dispatch to the one command that runs.

Two passes over the command line: the first knows every command only by its
table entry (enough for ``--help``, ``--version`` and an unknown or missing
command); the second adds the full parser of the chosen command, imported then.
"""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Sequence
from pathlib import Path

from tenancy import __version__
from tenancy.cli.commands import COMMANDS, Register
from tenancy.cli.errors import EXIT_OK
from tenancy.project import Project

DESCRIPTION = (
    "Department hosting as code: tenant YAML files -> validated plan -> "
    "libvirt VMs, segments and firewalls, hardened by Ansible, audited by testinfra."
)
EPILOG = "Exit codes: 0 ok, 1 invalid input (nothing applied), 2 usage error."


def build_parser(register: Register | None = None) -> argparse.ArgumentParser:
    """The top-level parser: with ``register``, the parsers it adds; else one stub per command.

    A stub has the table's help line and no options of its own, so the first pass
    hands the command's arguments on untouched, ``--help`` included.
    """
    parser = argparse.ArgumentParser(prog="tenancy", description=DESCRIPTION, epilog=EPILOG)
    parser.add_argument("--version", action="version", version=f"tenancy {__version__}")
    parser.add_argument(
        "--root",
        type=Path,
        default=None,
        help="project directory (default: nearest parent holding Pulumi.yaml)",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    if register is not None:
        register(sub)
        return parser
    for name, command in COMMANDS.items():
        sub.add_parser(name, help=command.summary, add_help=False)
    return parser


def parse(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The arguments of the command ``argv`` names, its module imported for it."""
    first, _ = build_parser().parse_known_args(argv)
    module = importlib.import_module(COMMANDS[first.command].module)
    register: Register = module.register
    args = build_parser(register).parse_args(argv)
    # one Project per run, handed to the command: it never looks for the root itself
    project = Project.at(args.root) if args.root else Project.find()
    args.project, args.root = project, project.root
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``tenancy ARGS``; the exit code (argparse exits 2 itself on a usage error)."""
    args = parse(argv)
    try:
        code: int = args.func(args)
    except BrokenPipeError:
        return EXIT_OK
    return code
