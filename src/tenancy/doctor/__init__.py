"""``tenancy doctor``: is this machine ready for the README's journeys, and if not, what fixes it.

``model`` holds the facts and verdicts as plain data, ``checks`` judges facts
(pure, unit-tested with made-up facts) and ``gather`` reads them from the
real machine; the CLI verb (``tenancy.cli.doctor``) only formats.
"""

from tenancy.doctor.checks import run_checks
from tenancy.doctor.model import Check, Facts, Status

__all__ = ["Check", "Facts", "Status", "run_checks"]
