"""The command table of `tenancy`: every entry registers its command, lazily, without a circle.

The dispatcher (``tenancy.cli.dispatch``) imports only the shared modules; each
command module imports only those too, never the dispatcher, so no import
circle runs through ``src/tenancy/cli/`` and ``tenancy --help`` loads no command.
"""

from __future__ import annotations

import argparse
import ast
import importlib
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from tests.support.cli import CliResult
from tests.support.project import REPO

from tenancy.cli.commands import COMMANDS, Command

CLI_DIR = REPO / "src" / "tenancy" / "cli"
#: The modules every command may use; they import no other module of tenancy.cli.
SHARED = {
    "tenancy.cli.commands",
    "tenancy.cli.errors",
    "tenancy.cli.options",
    "tenancy.cli.ledger_gate",
    "tenancy.cli.guardrails",
    "tenancy.cli.approved",
}
#: The entry points: the package exposes the dispatcher's ``main``, ``-m`` runs it.
ENTRY = {"tenancy.cli": {"tenancy.cli.dispatch"}, "tenancy.cli.__main__": {"tenancy.cli"}}
COMMAND_MODULES = sorted({c.module for c in COMMANDS.values()})


def _module(path: Path) -> str:
    return "tenancy.cli" if path.stem == "__init__" else f"tenancy.cli.{path.stem}"


MODULES = {_module(p): p for p in sorted(CLI_DIR.glob("*.py"))}


def _cli_imports(path: Path) -> set[str]:
    """The ``tenancy.cli`` modules ``path`` imports, at the top or inside functions."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path.name}: relative import"
            # `from tenancy.cli import doctor` imports the module tenancy.cli.doctor
            full = [f"{node.module}.{a.name}" for a in node.names]
            names = [node.module or "", *(n for n in full if n in MODULES)]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        found |= {n for n in names if n == "tenancy.cli" or n.startswith("tenancy.cli.")}
    return found


def test_the_table_names_existing_modules() -> None:
    assert set(COMMAND_MODULES) <= set(MODULES), "a table entry names a missing module"
    assert "tenancy.cli.dispatch" not in COMMAND_MODULES
    assert set(COMMAND_MODULES).isdisjoint(SHARED)


@pytest.mark.parametrize("name", sorted(MODULES))
def test_modules_import_only_the_shared_ones(name: str) -> None:
    """No circle: commands and the dispatcher import shared modules, shared ones import none."""
    imported = _cli_imports(MODULES[name]) - {name}
    if name in ENTRY:
        allowed = ENTRY[name]
    elif name in SHARED:
        allowed = set()
    else:  # a command module, or the dispatcher (which imports commands lazily, by name)
        allowed = SHARED
    assert imported <= allowed, f"{name} imports {sorted(imported - allowed)}"


@pytest.mark.parametrize("name", list(COMMANDS))
def test_every_entry_registers_its_command(name: str) -> None:
    command: Command = COMMANDS[name]
    module = importlib.import_module(command.module)
    parser = argparse.ArgumentParser(prog="tenancy")
    sub = parser.add_subparsers(dest="command")
    module.register(sub)
    assert name in sub.choices, f"{command.module}.register adds no parser {name!r}"
    routed_here = {n for n, c in COMMANDS.items() if c.module == command.module}
    assert set(sub.choices) <= routed_here, "registers a command the table routes elsewhere"
    assert callable(sub.choices[name].get_default("func"))


def test_help_lists_the_table_in_order(cli: Callable[..., CliResult]) -> None:
    result = cli("--help")
    flat = " ".join(result.out.split())  # argparse wraps long help lines
    places = [flat.find(f" {name} {c.summary}") for name, c in COMMANDS.items()]
    assert -1 not in places, flat
    assert places == sorted(places)


def test_help_and_usage_errors_import_no_command_module() -> None:
    """The point of the table: `tenancy --help` (or a typo) loads no command, no pydantic."""
    code = (
        "import sys\n"
        "from tenancy.cli import main\n"
        "for argv in (['--help'], ['--version'], ['bogus'], []):\n"
        "    try:\n"
        "        main(argv)\n"
        "    except SystemExit:\n"
        "        pass\n"
        "print(' '.join(sorted(m for m in sys.modules if m.startswith(('tenancy', 'pydantic')))))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO
    )
    loaded = set(proc.stdout.split())
    assert not loaded & set(COMMAND_MODULES), loaded
    assert not any(m.startswith("pydantic") for m in loaded), loaded
