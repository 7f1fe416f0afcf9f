"""Engine verbs of the ``tenancy`` command: up, preview, refresh, destroy (the real pulumi CLI)."""

from __future__ import annotations

import argparse
import io
import os
import sys
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path

from tenancy.cli.approved import ApprovalError, load_expected, preview_steps, unexpected
from tenancy.cli.commands import Subparsers, add_command, summary
from tenancy.cli.errors import EXIT_INVALID, EXIT_USAGE
from tenancy.cli.guardrails import GuardrailsError, guardrails
from tenancy.cli.options import add_approve_moves, add_site
from tenancy.engine import (
    EngineError,
    PolicyPack,
    run_pulumi,
    set_protection,
    stack_exists,
    unprotect_approved,
)
from tenancy.plan.ledger import ledger_path, write_ledger
from tenancy.plan.model import Plan
from tenancy.plan.placement import unknown_hosts
from tenancy.plan.planner import plan_paths
from tenancy.policy.progress import RunWatcher
from tenancy.project import Project

VERBS = ("preview", "up", "refresh", "destroy")
GUARDED = ("preview", "up")
"""The verbs that run the guardrails policy pack (refresh and destroy deploy nothing new)."""
GUARDRAILS_HELP = (
    " Runs the guardrails policy pack (policies/guardrails of the installed package) with "
    "a config written from this run's plan: ops grants, zones and segments, zone rules, "
    "address pools; a violation of any of its mandatory rules fails the command."
)


def _engine(args: argparse.Namespace) -> int:
    project: Project = args.project
    root = project.root
    moves = frozenset(args.approve_moves)
    result = plan_paths(root, None, sites=[args.site], approve_moves=moves)
    if not result.ok:
        for problem in result.problems.errors:
            print(problem, file=sys.stderr)
        print(f"nothing applied: {len(result.problems.errors)} error(s)", file=sys.stderr)
        return EXIT_INVALID
    if args.roll_image:
        unknown = unknown_hosts(result.sites[args.site].model, [args.roll_image])
        if unknown:
            print(f"error: --roll-image {unknown}", file=sys.stderr)
            return EXIT_USAGE
        # the program reads it: machines on this host move onto the current base images
        os.environ["TENANCY_ROLL_IMAGE"] = args.roll_image
    pack: PolicyPack | None = None
    if args.verb in GUARDED:
        try:
            pack = guardrails(
                project,
                result.plans[args.site],
                result.sites[args.site],
                args.approve,
                args.guardrails_config,
            )
        except GuardrailsError as exc:
            print("\n".join(exc.problems), file=sys.stderr)
            print(f"nothing applied: {len(exc.problems)} error(s)", file=sys.stderr)
            return EXIT_INVALID
        except EngineError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_USAGE
    if args.verb == "up":
        path = ledger_path(project.stacks_dir, args.site)
        if write_ledger(path, result.ledgers[args.site]):
            print(f"ledger {path.relative_to(root)} updated: commit it", file=sys.stderr)
    if args.approve:
        os.environ["TENANCY_APPROVE"] = ",".join(args.approve)
    if moves:  # the program plans the site again: the same moves must be allowed there
        os.environ["TENANCY_APPROVE_MOVES"] = ",".join(sorted(moves))
    extra: list[str] = []
    if args.verb in ("up", "destroy", "refresh"):
        extra.append("--yes")
    if args.verb in ("up", "refresh"):
        # the stack outputs hold the whole inventory: `pulumi stack output` shows them
        extra.append("--suppress-outputs")
    if args.verb in ("up", "refresh"):
        # the preview would do the whole job once more: for a refresh it reads every
        # resource twice (a PolicyRun's read is a check-mode Ansible run)
        extra.append("--skip-preview")
    if args.verb == "preview":
        # a preview saves no state; without this the CLI re-serialises the whole
        # snapshot after every step (quadratic: 100 tenants 18 min -> 66 s measured)
        os.environ.setdefault("PULUMI_SKIP_CHECKPOINTS", "true")
    if args.verb == "preview" and args.diff:
        extra.append("--diff")
    if args.verb == "up" and args.refresh:
        # read everything back first (a PolicyRun's read is a check-mode run that
        # records drift), so this one command also repairs what changed by hand
        extra.append("--refresh")
    if args.expect_no_changes:
        extra.append("--expect-no-changes")
    watchers: list[RunWatcher] = []

    def watch(show: Callable[[str], None]) -> AbstractContextManager[object]:
        watcher = RunWatcher(project.runs_dir, show)
        watchers.append(watcher)
        return watcher.running()

    lifted: list[str] = []
    if args.verb in ("up", "destroy") and args.approve:
        try:
            if args.verb == "destroy" or stack_exists(root, args.site):
                lifted = unprotect_approved(root, args.site, args.approve)
        except EngineError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_USAGE
        print(f"approved: protection lifted from {len(lifted)} resource(s)", file=sys.stderr)
    if args.verb == "up" and args.expect_diff is not None:
        refused = _check_expected(args, project, result.plans[args.site], pack)
        if refused is not None:
            try:  # nothing applied: the approved machines are protected again
                set_protection(root, args.site, lifted, protect=True)
            except EngineError as exc:
                print(f"error: {exc}", file=sys.stderr)
            return refused
    try:
        code = run_pulumi(
            root, args.site, args.verb, [*extra, *args.pulumi_args], watch=watch, policy_pack=pack
        )
    except EngineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    summary_lines = [line for w in watchers for line in w.summary_lines()]
    if summary_lines:
        print("hardening runs (per host):")
        print("\n".join(f"  {line}" for line in summary_lines))
    return code


def _check_expected(
    args: argparse.Namespace, project: Project, plan: Plan, pack: PolicyPack | None
) -> int | None:
    """Exit code when the stack would replace or delete more than the approved diff said."""
    try:
        approved = load_expected(args.expect_diff)
    except ApprovalError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if approved.site != args.site:
        print(f"error: {args.expect_diff} is a diff of site {approved.site!r}", file=sys.stderr)
        return EXIT_USAGE
    os.environ.setdefault("PULUMI_SKIP_CHECKPOINTS", "true")
    buffer = io.StringIO()
    try:
        code = run_pulumi(
            project.root,
            args.site,
            "preview",
            ["--json", *args.pulumi_args],
            out=buffer,
            policy_pack=pack,
        )
        steps = preview_steps(buffer.getvalue()) if code == 0 else []
    except (EngineError, ApprovalError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if code != 0:
        sys.stderr.write(buffer.getvalue()[-20000:])
        print("nothing applied: the preview failed", file=sys.stderr)
        return code
    found = unexpected(steps, approved, {m.domain for m in plan.machines()})
    for line in found:
        print(f"not approved: {line}", file=sys.stderr)
    if found:
        print(
            f"nothing applied: the stack would do {len(found)} thing(s) the approved diff "
            f"({args.expect_diff}) does not announce; diff again and have it reviewed",
            file=sys.stderr,
        )
        return EXIT_INVALID
    print(f"the preview matches the approved diff ({args.expect_diff})", file=sys.stderr)
    return None


def register(sub: Subparsers) -> None:
    for verb in VERBS:
        p = add_command(
            sub,
            verb,
            description=summary(verb) + ". Runs the real pulumi CLI "
            "(offline, file backend under .tenancy/ unless PULUMI_BACKEND_URL)."
            + (GUARDRAILS_HELP if verb in GUARDED else ""),
        )
        add_site(p)
        p.add_argument(
            "--approve",
            action="append",
            default=[],
            metavar="DOMAIN",
            help="allow replacing/deleting this protected machine (repeatable)",
        )
        p.add_argument(
            "--expect-no-changes", action="store_true", help="fail if anything would change"
        )
        if verb in GUARDED:
            add_approve_moves(p)
            p.add_argument(
                "--guardrails-config",
                type=Path,
                metavar="FILE",
                help="an operator's additions to the guardrails config (YAML or JSON): "
                "tenant-within-quota.ceilings {tenant: {vcpus, memoryGiB, storageGiB, machines, "
                "addresses}} (an auditor's ceiling below the grant) and "
                "data-volume-protected.approved [domain]; the rest comes from the plan",
            )
            p.add_argument(
                "--roll-image",
                metavar="HOST",
                help="move the machines on HOST onto the current base images (each is rebuilt: "
                "protected ones need --approve); without it existing machines keep the image "
                "version they run and only new machines get a rebuilt image",
            )
        else:
            # refresh and destroy plan no new placement and roll nothing
            p.set_defaults(approve_moves=[], roll_image=None)
        if verb == "preview":
            p.add_argument("--diff", action="store_true", help="show property-level diffs")
        if verb == "up":
            p.add_argument(
                "--expect-diff",
                type=Path,
                metavar="FILE",
                help="the `tenancy diff --format json` the reviewers approved: a preview runs "
                "first, and nothing is applied when the stack would replace or delete a "
                "machine's domain, disk, seed or data volume that FILE does not announce",
            )
            p.add_argument(
                "--refresh",
                action="store_true",
                help="read the real state first (hardening drift included) and repair it",
            )
        p.add_argument("pulumi_args", nargs="*", help="extra pulumi arguments after --")
        p.set_defaults(func=_engine, verb=verb)
