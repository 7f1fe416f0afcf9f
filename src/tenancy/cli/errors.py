"""Exit codes and the one way every command reports a problem on stderr.

Kept free of heavy imports: the dispatcher uses it before any command module loads.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    from tenancy.plan.planner import PlanResult

EXIT_OK, EXIT_INVALID, EXIT_USAGE = 0, 1, 2


def fail(message: str, code: int) -> int:
    """Print ``error: message`` on stderr; the command returns ``code``."""
    print(f"error: {message}", file=sys.stderr)
    return code


def usage_error(message: str) -> int:
    """A wrong command line: nothing was read or run (exit 2)."""
    return fail(message, EXIT_USAGE)


def print_problems(result: PlanResult, stream: TextIO | None = None) -> None:
    """Every error, then every warning, of a plan (stderr unless ``stream``)."""
    # resolve sys.stderr at call time, so redirected or captured stderr gets the errors
    out = stream or sys.stderr
    for problem in [*result.problems.errors, *result.problems.warnings]:
        print(problem, file=out)
