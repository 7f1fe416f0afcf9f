"""The ``tenancy harden`` verb: apply or check the security baseline outside Pulumi.

Same playbook, roles, variables and runner as the PolicyRun resource that
``tenancy up`` creates per tenant, against the hosts the plan places on the
site (static addresses: the VMs must be up).
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import date
from pathlib import Path

from tenancy import cli
from tenancy.contract.loader import load_site, site_file
from tenancy.engine import state_dir
from tenancy.plan.planner import plan_paths
from tenancy.policy.catalogue import CatalogueError
from tenancy.policy.progress import RunWatcher
from tenancy.policy.runner import (
    RunRequest,
    RunResult,
    SshWaitError,
    lockout_problems,
    new_run_id,
    private_key_for,
    run_policy,
    runs_dir,
    wait_for_ssh,
)
from tenancy.policy.variables import (
    VariablesError,
    load_policy_sources,
    policy_inventory,
    tenant_hosts,
)

#: Exit codes of ``tenancy harden`` beyond the common 0/1/2.
EXIT_FAILED, EXIT_DRIFT = 3, 4

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


def _fail(message: str, code: int) -> int:
    print(f"error: {message}", file=sys.stderr)
    return code


def _harden(args: argparse.Namespace) -> int:
    root: Path = args.root
    problem = cli._check_site_arg(root, args.site)
    if problem:
        return _fail(problem, cli.EXIT_USAGE)
    result = plan_paths(root, None, sites=[args.site])
    if not result.ok:
        for error in result.problems.errors:
            print(error, file=sys.stderr)
        return _fail(f"nothing run: {len(result.problems.errors)} error(s)", cli.EXIT_INVALID)
    plan = result.plans[args.site]
    site, site_errors = load_site(site_file(root / "stacks", args.site), args.site, root)
    if site is None:
        for error in site_errors:
            print(error, file=sys.stderr)
        return cli.EXIT_INVALID
    try:
        sources = load_policy_sources(root)
        inv = policy_inventory(plan, site.model, sources, date.today(), args.tenant or None)
    except (CatalogueError, VariablesError) as exc:
        return _fail(f"nothing run:\n{exc}", cli.EXIT_INVALID)
    hosts = tenant_hosts(inv)
    if not hosts:
        print(f"site {args.site}: no machines planned; nothing to do", file=sys.stderr)
        return cli.EXIT_OK
    key = private_key_for(root, site.model.ops.ssh_key_files)
    user = site.model.ops.user
    if args.wait > 0:
        addresses = {h: str(v["ansible_host"]) for h, v in hosts.items()}
        try:
            wait_for_ssh(addresses, user, key, args.wait)
        except SshWaitError as exc:
            return _fail(str(exc), EXIT_FAILED)
    if not args.check and not args.no_lockout_check:  # check mode changes no firewall
        lockouts = lockout_problems(hosts)
        if lockouts:
            print("\n".join(lockouts), file=sys.stderr)
            return _fail(
                "nothing run: the firewall would lock this controller out", cli.EXIT_INVALID
            )
    tenant_label = ",".join(args.tenant) if args.tenant else None
    kind = "check" if args.check else "harden"
    request = RunRequest(
        run_id=new_run_id(kind, args.site, tenant_label),
        label=f"{kind} {tenant_label or args.site}",
        project=root,
        inventory=inv,
        state_dir=state_dir(root),
        check=args.check,
        private_key=key,
        limit=args.limit,
        tags=tuple(t for arg in args.tags for t in arg.split(",") if t),
        skip_tags=tuple(t for arg in args.skip_tags for t in arg.split(",") if t),
        timeout=args.timeout,
        extravars={
            "tenancy_run_catalogue": f"{sources.catalogue.metadata.name} "
            f"v{sources.catalogue.metadata.version}",
        },
    )
    print(
        f"{kind} site {args.site}: {len(hosts)} host(s), run {request.run_id}",
        file=sys.stderr,
    )
    if args.verbose:
        run = run_policy(request, stream=sys.stderr)
    elif args.quiet:
        run = run_policy(request)
    else:
        watcher = RunWatcher(runs_dir(request.state_dir), _stderr_line)
        with watcher.running():
            run = run_policy(request)
    code = exit_code(run)
    if args.format == "json":
        print(json.dumps({**run.to_dict(), "exit_code": code}, indent=2, ensure_ascii=False))
    else:
        print("\n".join(report_lines(run, root)))
    return code


def _stderr_line(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def exit_code(run: RunResult) -> int:
    """0 ok, 3 failures or an aborted run, 4 drift in check mode (see EPILOG)."""
    if not run.ok:
        return EXIT_FAILED
    if run.check and run.changed_hosts:
        return EXIT_DRIFT
    return cli.EXIT_OK


def report_lines(run: RunResult, root: Path) -> list[str]:
    """The per-host report and a one-line verdict."""
    lines = run.lines()
    if run.error:
        lines.append(f"error: {run.error}")
    where = Path(run.run_dir)
    shown = where.relative_to(root) if where.is_relative_to(root) else where
    hosts = len(run.hosts)
    if run.check:
        verdict = f"{len(run.changed_hosts)} drifted"
    else:
        verdict = f"{len(run.changed_hosts)} changed"
    lines.append(
        f"{'check' if run.check else 'harden'}: {hosts} host(s), {verdict}, "
        f"{len(run.failed_hosts)} failed/unreachable in {run.seconds:.0f} s; run dir {shown}"
    )
    return lines


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    text = "apply (or --check) the security baseline on a site's VMs with Ansible"
    p = sub.add_parser(
        "harden",
        help=text,
        description=text + ", outside Pulumi: the same playbook, roles and variables as the "
        "PolicyRun of `tenancy up`, against the hosts of the plan.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--site", default="local", help="stack name under stacks/ (default: local)")
    p.add_argument(
        "--tenant",
        action="append",
        default=[],
        metavar="NAME",
        help="only this tenant's machines (repeatable; default: every tenant of the site)",
    )
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
    p.add_argument("--format", choices=["text", "json"], default="text", help="result format")
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


cli._EXTRA_COMMANDS.append(register)
