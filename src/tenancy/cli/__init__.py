"""The ``tenancy`` command: a table of commands, each module imported only when it runs.

``tenancy.cli:main`` is the console script (pyproject.toml); the dispatcher is
:mod:`tenancy.cli.dispatch`, the table :mod:`tenancy.cli.commands`.
"""

from tenancy.cli.dispatch import main

__all__ = ["main"]
