"""The ``tenancy harden`` verb: apply or check the security baseline outside Pulumi.

Same playbook, roles, variables and runner as the PolicyRun resource that
``tenancy up`` creates per tenant, against the hosts the plan places on the
site (static addresses: the VMs must be up).
"""

from __future__ import annotations

import argparse
import json
import sys
from contextlib import nullcontext

from tenancy.cli.commands import Subparsers, add_command, summary
from tenancy.cli.errors import EXIT_INVALID, EXIT_OK, EXIT_USAGE, fail
from tenancy.cli.options import add_format, add_site, add_tenant, check_site_arg
from tenancy.policy.harden import ErrorKind, HardenError, HardenOptions, Verdict, harden
from tenancy.policy.progress import RunWatcher
from tenancy.project import Project

#: Exit codes of ``tenancy harden`` beyond the common 0/1/2.
EXIT_FAILED, EXIT_DRIFT = 3, 4

DESCRIPTION = summary("harden") + (
    ", outside Pulumi: the same playbook, roles and variables as the PolicyRun of "
    "`tenancy up`, against the hosts of the plan."
)
EPILOG = """\
exit codes:
  0  applied (or, with --check, no drift) on every host
  1  invalid input: tenants, site, catalogue, waivers, or a firewall that would lock
     this controller out of SSH; nothing ran
  2  usage error
  3  a task failed or a host was unreachable on at least one host (the others still ran)
  4  --check only: no failure, but at least one host differs from the policy (drift);
     re-apply with `tenancy harden` or `tenancy up` (after `tenancy refresh`)

Check mode runs the same playbook with ansible --check: nothing changes on the
hosts, and every task that would change something is reported with its control
IDs. Runs are kept under $TENANCY_STATE/runs/<run-id>/ (inventory, ansible-runner
job events and stdout, summary.json).
"""


#: How a finished run and a refusal end the command (see EPILOG).
EXIT_CODES = {
    Verdict.NOTHING: EXIT_OK,
    Verdict.OK: EXIT_OK,
    Verdict.FAILED: EXIT_FAILED,
    Verdict.DRIFT: EXIT_DRIFT,
}
REFUSED = {
    ErrorKind.INVALID: EXIT_INVALID,
    ErrorKind.LOCKOUT: EXIT_INVALID,
    ErrorKind.UNREACHABLE: EXIT_FAILED,
}


def _harden(args: argparse.Namespace) -> int:
    project: Project = args.project
    problem = check_site_arg(project, args.site)
    if problem:
        return fail(problem, EXIT_USAGE)
    options = HardenOptions(
        project=project,
        site=args.site,
        tenants=tuple(args.tenant),
        check=args.check,
        limit=args.limit,
        tags=_split(args.tags),
        skip_tags=_split(args.skip_tags),
        wait=args.wait,
        timeout=args.timeout,
        lockout_check=not args.no_lockout_check,
    )
    follow = not (args.quiet or args.verbose)  # the per-host progress lines
    watching = RunWatcher(project.runs_dir, _stderr_line).running() if follow else nullcontext()
    try:
        with watching:
            stream = sys.stderr if args.verbose else None
            outcome = harden(options, progress=_stderr_line, stream=stream)
    except HardenError as exc:
        for line in exc.details:
            print(line, file=sys.stderr)
        return fail(exc.message, REFUSED[exc.kind])
    if outcome.run is None:
        print(outcome.reason, file=sys.stderr)
        return EXIT_OK
    code = EXIT_CODES[outcome.verdict]
    if args.format == "json":
        doc = {**outcome.run.to_dict(), "exit_code": code}
        print(json.dumps(doc, indent=2, ensure_ascii=False))
    else:
        print("\n".join(outcome.lines()))
    return code


def _split(values: list[str]) -> tuple[str, ...]:
    """``--tags a,b --tags c`` -> ``("a", "b", "c")``."""
    return tuple(t for arg in values for t in arg.split(",") if t)


def _stderr_line(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def register(sub: Subparsers) -> None:
    p = add_command(sub, "harden", DESCRIPTION, epilog=EPILOG)
    add_site(p)
    add_tenant(p)
    p.add_argument(
        "--check", action="store_true", help="report drift, change nothing (exit 4 on drift)"
    )
    p.add_argument("--limit", default=None, help="ansible --limit pattern (host or group names)")
    p.add_argument(
        "--tags",
        action="append",
        default=[],
        metavar="TAGS",
        help="only these tags: control IDs (BASE-SSH-03) or roles (tenancy_ssh); repeatable",
    )
    p.add_argument(
        "--skip-tags",
        action="append",
        default=[],
        metavar="TAGS",
        help="skip these tags on every host of the run (a run-wide waiver); repeatable",
    )
    p.add_argument(
        "--wait",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="first wait up to SECONDS for every host to answer SSH (default: do not wait)",
    )
    p.add_argument(
        "--timeout", type=float, default=3600.0, metavar="SECONDS", help="stop the run after this"
    )
    p.add_argument(
        "--no-lockout-check",
        action="store_true",
        help="skip the check that this controller's address is in the ops networks (BASE-FW-03)",
    )
    add_format(p, "text", "json", help="result format")
    p.add_argument(
        "-q", "--quiet", action="store_true", help="no progress lines on stderr, only the result"
    )
    p.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="stream ansible's own output to stderr instead of the per-host progress lines",
    )
    p.set_defaults(func=_harden)
