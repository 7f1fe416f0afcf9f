"""``tenancy diff --base REF``: what the working tree changes on a site, against a git revision.

The pull-request comment: both revisions are planned the same way (the base from
its own tenant files, site file, grants and ledger, read out of git), and every
change is classified as the infrastructure will carry it out (replace, restart,
in place), protected machines and data marked.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from tenancy.cli.commands import Subparsers, add_command
from tenancy.cli.errors import EXIT_INVALID, EXIT_OK, print_problems, usage_error
from tenancy.cli.options import add_format, add_site, check_site_arg
from tenancy.gitsnap import SnapshotError, snapshot
from tenancy.plan.plan_diff import diff_plans, site_setting_changes
from tenancy.plan.planner import plan_paths
from tenancy.project import Project
from tenancy.render import diff_report
from tenancy.render.cloud_init import seed_identities

EPILOG = """\
exit codes:
  0  the diff was printed (also when nothing changes)
  1  the working tree's inputs do not plan (errors printed)
  2  usage: unknown site, not a git repository, unknown revision
"""


def cmd_diff(args: argparse.Namespace) -> int:
    project: Project = args.project
    problem = check_site_arg(project, args.site)
    if problem:
        return usage_error(problem)
    head = plan_paths(project.root, None, sites=[args.site])
    if not head.ok:
        print_problems(head)
        print(f"no plan: {len(head.problems.errors)} error(s)", file=sys.stderr)
        return EXIT_INVALID
    with tempfile.TemporaryDirectory(prefix="tenancy-base-") as tmp:
        try:
            shot = snapshot(project.root, args.base, Path(tmp))
        except SnapshotError as exc:
            return usage_error(str(exc))
        base = plan_paths(Path(tmp), None, sites=[args.site])
    base_error = None
    if shot.refused:
        base_error = f"files refused unread: {', '.join(sorted(shot.refused))}"
    elif not base.ok:
        base_error = f"{len(base.problems.errors)} error(s) at {args.base}"
    base_plan = base.plans.get(args.site) if base_error is None else None
    diff = diff_plans(
        base_plan,
        head.plans[args.site],
        seed_identities(base_plan, base.sites[args.site].model) if base_plan else {},
        seed_identities(head.plans[args.site], head.sites[args.site].model),
        base_error,
        site_setting_changes(
            base.sites[args.site].model if base_plan else None, head.sites[args.site].model
        ),
    )
    renderers = {
        "markdown": diff_report.to_markdown,
        "table": diff_report.to_table,
        "json": diff_report.to_json,
    }
    sys.stdout.write(renderers[args.format](diff))
    return EXIT_OK


def register(sub: Subparsers) -> None:
    p = add_command(
        sub,
        "diff",
        description="Compare the site's plan from the working tree with the plan at a git "
        "revision (the pull request's base): tenants, machines (replace, restart, in place), "
        "data volumes, flows and quota use; changes to protected machines are marked.",
        epilog=EPILOG,
    )
    add_site(p)
    p.add_argument("--base", required=True, metavar="REF", help="git revision to compare with")
    add_format(p, "table", "markdown", "json", help="markdown suits a pull-request comment")
    p.set_defaults(func=cmd_diff)
