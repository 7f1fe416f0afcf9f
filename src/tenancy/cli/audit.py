"""The ``tenancy audit`` verb: run the compliance suite against a site, keep the evidence."""

from __future__ import annotations

import argparse
import sys
from datetime import date
from pathlib import Path

from tenancy.cli.commands import Subparsers, add_command, summary
from tenancy.cli.errors import EXIT_INVALID, usage_error
from tenancy.cli.options import add_site, add_tenant, check_site_arg
from tenancy.policy.audit import (
    LYNIS_TIMEOUT,
    AuditError,
    AuditOptions,
    run_audit,
    summary_lines,
)
from tenancy.project import Project

DESCRIPTION = summary("audit") + (
    ": a pass/fail/waived/not-applicable/not-tested result per control and host, with the "
    "commands run and their output, an HTML report and a Lynis cross-check."
)
EPILOG = """\
exit codes:
  0  every required control holds on every audited host
  1  a required control failed (or could not be proven) on at least one host,
     or the plan, the catalogue or the waivers are invalid
  2  usage error, or the compliance suite could not run

A control passes only when all its items ran and passed; one item not tested
(e.g. a firewall probe that could not run) makes it not-tested, which fails
the audit. What narrows the audit (--tenant, --host, --no-probes, --standins
none, --no-lynis, --today, extra pytest arguments) is listed in the report's
banner, in results.json "reductions" and in the last line printed.

The evidence bundle (default $TENANCY_STATE/audits/<UTC timestamp>/) holds
report.html, results.json, records.json, junit.xml, pytest.log, inventory.yml,
lynis/ and SHA256SUMS over every file (check it with `sha256sum -c SHA256SUMS`).
The same suite runs without this command:
  pytest tests/compliance --hosts=ansible://all --ansible-inventory=inventory.yml -n 2
with the inventory.yml of a bundle (see tests/compliance/README.md).
"""


def _date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected YYYY-MM-DD") from None


def _audit(args: argparse.Namespace) -> int:
    project: Project = args.project
    problem = check_site_arg(project, args.site)
    if problem:
        return usage_error(problem)
    options = AuditOptions(
        root=project.root,
        site=args.site,
        tenants=tuple(args.tenant),
        hosts=tuple(args.host),
        out=Path(args.out).resolve() if args.out else None,
        workers=args.workers,
        lynis=not args.no_lynis,
        lynis_timeout=args.lynis_timeout,
        today=args.today,
        standins=args.standins,
        probes=not args.no_probes,
        pytest_args=args.pytest_args,
    )
    if options.out is not None and options.out.exists():
        return usage_error(f"{options.out} exists; the bundle needs a new directory")
    try:
        run = run_audit(options, stream=None if args.quiet else sys.stderr)
    except AuditError as exc:
        print(f"error: nothing audited:\n{exc}", file=sys.stderr)
        return EXIT_INVALID
    print("\n".join(summary_lines(run)))
    return run.exit_code


def register(sub: Subparsers) -> None:
    p = add_command(sub, "audit", DESCRIPTION, epilog=EPILOG)
    add_site(p)
    add_tenant(p)
    p.add_argument(
        "--host",
        action="append",
        default=[],
        metavar="NAME",
        help="only this machine (its domain name, e.g. hr-portal-1); repeatable",
    )
    p.add_argument("--out", default=None, metavar="DIR", help="bundle directory (must not exist)")
    p.add_argument(
        "--workers",
        type=int,
        default=0,
        metavar="N",
        help="parallel pytest workers, hosts spread over them (default: one per host, "
        "at most the CPU count)",
    )
    p.add_argument("--no-lynis", action="store_true", help="skip the Lynis cross-check")
    p.add_argument(
        "--lynis-timeout",
        type=float,
        default=LYNIS_TIMEOUT,
        metavar="SECONDS",
        help=f"give up on Lynis on a host after this (default: {LYNIS_TIMEOUT:.0f})",
    )
    p.add_argument(
        "--no-probes",
        action="store_true",
        help="skip the firewall reachability probes (stand-ins, other tenants' VMs); "
        "the report records the reduced scope",
    )
    p.add_argument(
        "--standins",
        default=None,
        metavar="NAME=ADDR,...",
        help="network-namespace probe sources (default: the tools/standins.sh ones; 'none')",
    )
    p.add_argument(
        "--today",
        type=_date,
        default=None,
        metavar="YYYY-MM-DD",
        help="judge waiver expiry on this date (default: today, UTC)",
    )
    p.add_argument("-q", "--quiet", action="store_true", help="do not stream pytest's output")
    p.add_argument("pytest_args", nargs="*", help="extra pytest arguments after --")
    p.set_defaults(func=_audit)
