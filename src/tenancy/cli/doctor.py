"""``tenancy doctor``: checks this machine's prerequisites and prints the fix of each problem."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence

from tenancy.cli.commands import Subparsers, add_command
from tenancy.cli.errors import EXIT_INVALID, EXIT_OK, usage_error
from tenancy.cli.options import add_format, add_site, check_site_arg
from tenancy.doctor.checks import counts, failed, fixes, run_checks
from tenancy.doctor.gather import gather_facts
from tenancy.doctor.model import Check
from tenancy.project import Project

NAME_WIDTH = 24  # longer names push their detail right instead of widening every line
LABELS = {"ok": "ok", "warn": "WARN", "fail": "FAIL", "info": "info"}

DESCRIPTION = (
    "Check every prerequisite of the README's journeys (tools, libvirt, engine, guest image, "
    "state, Python env, memory and disk for the site's plan, network guard and stand-ins) "
    "and print, per problem, the one command that fixes it."
)
EPILOG = """\
exit codes:
  0  nothing failed (warnings and info lines do not block)
  1  at least one check failed: each says what is wrong and the command that fixes it
  2  usage error (unknown site)

Read-only: it stats files, reads /proc and runs virsh/nft/pulumi version
queries with timeouts; it never starts, installs or changes anything.
"""


def to_text(site: str, checks: Sequence[Check]) -> str:
    """One line per check, grouped; a fix line under every failure and warning."""
    width = min(max((len(c.name) for c in checks), default=0), NAME_WIDTH)
    lines = [f"tenancy doctor: site {site}"]
    group = None
    for c in checks:
        if c.group != group:
            group = c.group
            lines.append(f"{group}:")
        lines.append(f"  {LABELS[c.status]:<4}  {c.name:<{width}}  {c.detail}")
        if c.fix and c.status in ("fail", "warn"):
            lines.append(f"  {'':<4}  {'':<{width}}  fix: {c.fix}")
    n = counts(checks)
    verdict = "NOT READY" if failed(checks) else "ready"
    lines.append(
        f"{verdict}: {n['ok']} ok, {n['warn']} warning(s), {n['fail']} failed, {n['info']} info"
    )
    todo = fixes(checks)
    if todo:
        lines.append("to fix, in this order:")
        lines += [f"  {f}" for f in todo]
    return "\n".join(lines) + "\n"


def to_json(site: str, checks: Sequence[Check]) -> str:
    doc = {
        "site": site,
        "ok": not failed(checks),
        "counts": dict(counts(checks)),
        "checks": [c.as_dict() for c in checks],
        "fixes": fixes(checks),
    }
    return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"


def cmd_doctor(args: argparse.Namespace) -> int:
    project: Project = args.project
    problem = check_site_arg(project, args.site)
    if problem:
        return usage_error(problem)
    checks = run_checks(gather_facts(project.root, args.site))
    render = to_json if args.format == "json" else to_text
    print(render(args.site, checks), end="")
    return EXIT_INVALID if failed(checks) else EXIT_OK


def register(sub: Subparsers) -> None:
    p = add_command(sub, "doctor", DESCRIPTION, epilog=EPILOG)
    add_site(p)
    add_format(p, "text", "json")
    p.set_defaults(func=cmd_doctor)
