"""The verbs on the inputs alone: validate, plan, schema, new, inventory (no hypervisor touched)."""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable
from pathlib import Path

import yaml

from tenancy.cli.commands import Subparsers, add_command
from tenancy.cli.errors import EXIT_INVALID, EXIT_OK, print_problems, usage_error
from tenancy.cli.ledger_gate import check_ledger
from tenancy.cli.options import add_approve_moves, add_format, add_site, check_site_arg
from tenancy.contract.loader import display_path, load_site, site_file
from tenancy.contract.models import Site, Tenant
from tenancy.contract.types import DNS_LABEL_RE
from tenancy.plan.ledger import ledger_path, write_ledger
from tenancy.plan.planner import plan_paths
from tenancy.project import Project
from tenancy.render import plan_report
from tenancy.render.env import render
from tenancy.render.inventory import inventory

PLAN_FORMATS = ("table", "markdown", "json", "dot", "mermaid")


def cmd_validate(args: argparse.Namespace) -> int:
    project: Project = args.project
    missing = [p for p in args.paths if not Path(p).exists()]
    if missing:
        return usage_error(f"no such file or directory: {', '.join(missing)}")
    paths = [Path(p) for p in args.paths] or [project.tenants_dir]
    result = plan_paths(project.root, paths)
    errors, warnings = result.problems.errors, result.problems.warnings
    if args.format == "json":
        doc = {
            "ok": not errors,
            "files": result.file_count,
            "tenants": result.tenant_count,
            "sites": sorted(result.plans),
            "errors": [e.as_dict() for e in errors],
            "warnings": [w.as_dict() for w in warnings],
        }
        print(json.dumps(doc, indent=2, ensure_ascii=False))
    else:
        for problem in [*errors, *warnings]:
            print(problem)
        verdict = "invalid" if errors else "valid"
        print(
            f"{result.file_count} tenant file(s) {verdict}: {len(errors)} error(s), "
            f"{len(warnings)} warning(s)",
            file=sys.stderr,
        )
    return EXIT_INVALID if errors else EXIT_OK


def cmd_plan(args: argparse.Namespace) -> int:
    project: Project = args.project
    problem = check_site_arg(project, args.site)
    if problem:
        return usage_error(problem)
    paths = [Path(p) for p in args.tenants] if args.tenants else None
    moves = frozenset(args.approve_moves)
    released = frozenset(args.release or ())
    result = plan_paths(
        project.root, paths, sites=[args.site], approve_moves=moves, release=released
    )
    if not result.ok:
        print_problems(result)
        print(f"no plan: {len(result.problems.errors)} error(s)", file=sys.stderr)
        return EXIT_INVALID
    plan = result.plans[args.site]
    renderers: dict[str, Callable[[], str]] = {
        "table": lambda: plan_report.to_table(plan),
        "markdown": lambda: plan_report.to_markdown(plan),
        "json": plan.to_json,
        "dot": lambda: plan_report.to_dot(plan),
        "mermaid": lambda: plan_report.to_mermaid(plan),
    }
    sys.stdout.write(renderers[args.format]())
    for warning in result.problems.warnings:
        print(warning, file=sys.stderr)
    if args.write_ledger:
        path = ledger_path(project.stacks_dir, args.site)
        changed = write_ledger(path, result.ledgers[args.site])
        print(f"ledger {path}: {'updated' if changed else 'unchanged'}", file=sys.stderr)
    if args.check_ledger:
        ledger = result.ledgers[args.site]
        gate = check_ledger(project, args.site, ledger, args.base_ledger, released)
        return EXIT_OK if gate else EXIT_INVALID
    return EXIT_OK


def cmd_schema(args: argparse.Namespace) -> int:
    model = Tenant if args.kind == "tenant" else Site
    schema = model.model_json_schema(by_alias=True, mode="validation")
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "Tenancy tenant v1" if args.kind == "tenant" else "Tenancy site"
    print(json.dumps(schema, indent=2, ensure_ascii=False))
    return EXIT_OK


def cmd_new(args: argparse.Namespace) -> int:
    project: Project = args.project
    name: str = args.name
    if not re.match(DNS_LABEL_RE, name) or len(name) < 2:
        return usage_error(
            f"tenant name {name!r}: expected a DNS label of 2-32 characters "
            "(a-z, 0-9, '-'; no '/', '.' or spaces)"
        )
    problem = check_site_arg(project, args.site)
    if problem:
        return usage_error(problem)
    site, errors = load_site(site_file(project.stacks_dir, args.site), args.site, project.root)
    if site is None:
        for e in errors:
            print(e, file=sys.stderr)
        return EXIT_INVALID
    s = site.model
    target = Path(args.output) if args.output else project.tenants_dir / f"{name}.yaml"
    text = render(
        "tenant/tenant.yaml.j2",
        name=name,
        path=display_path(target, project.root),
        display_name=args.display_name or name,
        owner=args.owner or f"{name}-it@example.gov",
        site=s.name,
        zone=args.zone,
        flavor=sorted(s.flavors)[0],
        flavors=", ".join(sorted(s.flavors)),
        image=sorted(s.images)[0],
        images=", ".join(sorted(s.images)),
        pool=sorted(s.pool_names())[0],
    )
    if args.output == "-":
        sys.stdout.write(text)
        return EXIT_OK
    if target.exists():
        return usage_error(f"{target} exists; not overwriting")
    target.write_text(text, encoding="utf-8")
    print(f"wrote {target}: edit it, then `tenancy validate {target}`", file=sys.stderr)
    return EXIT_OK


def cmd_inventory(args: argparse.Namespace) -> int:
    project: Project = args.project
    problem = check_site_arg(project, args.site)
    if problem:
        return usage_error(problem)
    result = plan_paths(project.root, None, sites=[args.site])
    if not result.ok:
        print_problems(result)
        return EXIT_INVALID
    user = result.sites[args.site].model.ops.user
    inv = inventory(result.plans[args.site], user)
    if args.format == "json":
        print(json.dumps(inv, indent=2, sort_keys=True, ensure_ascii=False))
    else:
        sys.stdout.write(yaml.safe_dump(inv, sort_keys=True, allow_unicode=True))
    return EXIT_OK


def register(sub: Subparsers) -> None:
    p = add_command(
        sub,
        "validate",
        description="Check tenant files against the contract, their sites and "
        "each other; report every error of every file with file:line.",
    )
    p.add_argument("paths", nargs="*", help="tenant files or directories (default: tenants/)")
    add_format(p, "text", "json")
    p.set_defaults(func=cmd_validate)

    p = add_command(
        sub,
        "plan",
        description="Plan one site from all tenant files: segments, addresses, "
        "placement and firewall flows. Pure: touches no hypervisor.",
    )
    add_site(p)
    add_format(p, *PLAN_FORMATS, help="markdown suits a pull-request comment")
    p.add_argument("--tenants", nargs="*", help="tenant files or directories (default: tenants/)")
    p.add_argument(
        "--write-ledger",
        action="store_true",
        help="record new allocations in stacks/ledger.<site>.yaml (commit it)",
    )
    p.add_argument(
        "--release",
        action="append",
        metavar="TENANT",
        help="drop TENANT's recorded segment, VLAN and addresses so they are allocated "
        "anew (after a zone change; every machine of TENANT is rebuilt); repeatable",
    )
    p.add_argument(
        "--check-ledger",
        action="store_true",
        help="exit 1 when stacks/ledger.<site>.yaml is not what the tenant files imply "
        "(a pull request must commit its allocation)",
    )
    p.add_argument(
        "--base-ledger",
        metavar="FILE",
        help="with --check-ledger: the base branch's ledger; exit 1 when an allocation "
        "recorded there moves or is held by another tenant",
    )
    add_approve_moves(p)
    p.set_defaults(func=cmd_plan)

    p = add_command(sub, "schema")
    p.add_argument("--kind", choices=["tenant", "site"], default="tenant")
    p.set_defaults(func=cmd_schema)

    p = add_command(sub, "new", description="Write tenants/NAME.yaml with every field explained.")
    p.add_argument("name", help="tenant name (DNS label, becomes the file name)")
    add_site(p)
    p.add_argument("--zone", choices=["intranet", "extranet"], default="intranet")
    p.add_argument("--display-name", default=None)
    p.add_argument("--owner", default=None, help="contact e-mail")
    p.add_argument("-o", "--output", default=None, help="file to write, '-' for stdout")
    p.set_defaults(func=cmd_new)

    p = add_command(sub, "inventory")
    add_site(p)
    add_format(p, "yaml", "json")
    p.set_defaults(func=cmd_inventory)
