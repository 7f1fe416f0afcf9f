"""Engine verbs of the ``tenancy`` command: up, preview, refresh, destroy (the real pulumi CLI)."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path

from tenancy import cli
from tenancy.engine import EngineError, run_pulumi, state_dir
from tenancy.plan.ledger import ledger_path, write_ledger
from tenancy.plan.planner import plan_paths
from tenancy.policy.progress import RunWatcher
from tenancy.policy.runner import runs_dir


def _engine(args: argparse.Namespace) -> int:
    root: Path = args.root
    result = plan_paths(root, None, sites=[args.site])
    if not result.ok:
        for problem in result.problems.errors:
            print(problem, file=sys.stderr)
        print(f"nothing applied: {len(result.problems.errors)} error(s)", file=sys.stderr)
        return cli.EXIT_INVALID
    if args.verb == "up":
        path = ledger_path(root / "stacks", args.site)
        if write_ledger(path, result.ledgers[args.site]):
            print(f"ledger {path.relative_to(root)} updated: commit it", file=sys.stderr)
    if args.approve:
        os.environ["TENANCY_APPROVE"] = ",".join(args.approve)
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
        watcher = RunWatcher(runs_dir(state_dir(root)), show)
        watchers.append(watcher)
        return watcher.running()

    try:
        code = run_pulumi(root, args.site, args.verb, [*extra, *args.pulumi_args], watch=watch)
    except EngineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return cli.EXIT_USAGE
    summary = [line for w in watchers for line in w.summary_lines()]
    if summary:
        print("hardening runs (per host):")
        print("\n".join(f"  {line}" for line in summary))
    return code


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    helps = {
        "preview": "show what pulumi would change on a site (replacements included)",
        "up": "apply a site: write the ledger, then pulumi up",
        "refresh": "read the real state of a site's resources back into the stack",
        "destroy": "remove everything of a site's stack (protected resources refuse)",
    }
    for verb, text in helps.items():
        p = sub.add_parser(
            verb,
            help=text,
            description=text + ". Runs the real pulumi CLI "
            "(offline, file backend under .tenancy/ unless PULUMI_BACKEND_URL).",
        )
        p.add_argument("--site", default="local")
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
        if verb == "preview":
            p.add_argument("--diff", action="store_true", help="show property-level diffs")
        if verb == "up":
            p.add_argument(
                "--refresh",
                action="store_true",
                help="read the real state first (hardening drift included) and repair it",
            )
        p.add_argument("pulumi_args", nargs="*", help="extra pulumi arguments after --")
        p.set_defaults(func=_engine, verb=verb)


cli._EXTRA_COMMANDS.append(register)
