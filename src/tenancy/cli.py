"""The ``tenancy`` command: validate, plan, schema, new, inventory (and the engine verbs)."""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TextIO

import yaml

from tenancy import __version__
from tenancy.contract.loader import display_path, load_site, site_file
from tenancy.contract.models import Site, Tenant
from tenancy.contract.types import DNS_LABEL_RE
from tenancy.plan.ledger import ledger_path, write_ledger
from tenancy.plan.planner import PlanResult, known_sites, plan_paths
from tenancy.render import plan_report
from tenancy.render.env import render
from tenancy.render.inventory import inventory

EXIT_OK, EXIT_INVALID, EXIT_USAGE = 0, 1, 2


def find_root(start: Path) -> Path:
    """The nearest directory holding Pulumi.yaml (the project), else ``start``."""
    for candidate in (start, *start.parents):
        if (candidate / "Pulumi.yaml").is_file():
            return candidate
    return start


def _print_problems(result: PlanResult, stream: TextIO | None = None) -> None:
    # resolve sys.stderr at call time, so redirected or captured stderr gets the errors
    out = stream or sys.stderr
    for problem in [*result.problems.errors, *result.problems.warnings]:
        print(problem, file=out)


def _usage_error(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return EXIT_USAGE


def _check_site_arg(root: Path, site: str) -> str | None:
    """A usage problem with ``--site``, or None when its stack file exists."""
    if not re.match(DNS_LABEL_RE, site):
        return f"site {site!r}: expected a stack name (a DNS label)"
    if not site_file(root / "stacks", site).is_file():
        known = ", ".join(known_sites(root / "stacks")) or "(none)"
        return f"unknown site {site!r}: no stacks/Pulumi.{site}.yaml; known sites: {known}"
    return None


def cmd_validate(args: argparse.Namespace) -> int:
    root: Path = args.root
    missing = [p for p in args.paths if not Path(p).exists()]
    if missing:
        return _usage_error(f"no such file or directory: {', '.join(missing)}")
    paths = [Path(p) for p in args.paths] or [root / "tenants"]
    result = plan_paths(root, paths)
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
    root: Path = args.root
    problem = _check_site_arg(root, args.site)
    if problem:
        return _usage_error(problem)
    paths = [Path(p) for p in args.tenants] if args.tenants else None
    result = plan_paths(root, paths, sites=[args.site])
    if not result.ok:
        _print_problems(result)
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
        path = ledger_path(root / "stacks", args.site)
        changed = write_ledger(path, result.ledgers[args.site])
        print(f"ledger {path}: {'updated' if changed else 'unchanged'}", file=sys.stderr)
    return EXIT_OK


def cmd_schema(args: argparse.Namespace) -> int:
    model = Tenant if args.kind == "tenant" else Site
    schema = model.model_json_schema(by_alias=True, mode="validation")
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "Tenancy tenant v1" if args.kind == "tenant" else "Tenancy site"
    print(json.dumps(schema, indent=2, ensure_ascii=False))
    return EXIT_OK


def cmd_new(args: argparse.Namespace) -> int:
    root: Path = args.root
    name: str = args.name
    if not re.match(DNS_LABEL_RE, name) or len(name) < 2:
        print(
            f"error: tenant name {name!r}: expected a DNS label of 2-32 characters "
            "(a-z, 0-9, '-'; no '/', '.' or spaces)",
            file=sys.stderr,
        )
        return EXIT_USAGE
    problem = _check_site_arg(root, args.site)
    if problem:
        return _usage_error(problem)
    site_path = site_file(root / "stacks", args.site)
    site, errors = load_site(site_path, args.site, root)
    if site is None:
        for e in errors:
            print(e, file=sys.stderr)
        return EXIT_INVALID
    s = site.model
    target = Path(args.output) if args.output else root / "tenants" / f"{name}.yaml"
    text = render(
        "tenant/tenant.yaml.j2",
        name=name,
        path=display_path(target, root),
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
        print(f"error: {target} exists; not overwriting", file=sys.stderr)
        return EXIT_USAGE
    target.write_text(text, encoding="utf-8")
    print(f"wrote {target}: edit it, then `tenancy validate {target}`", file=sys.stderr)
    return EXIT_OK


def cmd_inventory(args: argparse.Namespace) -> int:
    root: Path = args.root
    problem = _check_site_arg(root, args.site)
    if problem:
        return _usage_error(problem)
    result = plan_paths(root, None, sites=[args.site])
    if not result.ok:
        _print_problems(result)
        return EXIT_INVALID
    site, _ = load_site(site_file(root / "stacks", args.site), args.site, root)
    user = site.model.ops.user if site else "ops"
    inv = inventory(result.plans[args.site], user)
    if args.format == "json":
        print(json.dumps(inv, indent=2, sort_keys=True, ensure_ascii=False))
    else:
        sys.stdout.write(yaml.safe_dump(inv, sort_keys=True, allow_unicode=True))
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tenancy",
        description="Department hosting as code: tenant YAML files -> validated plan -> "
        "libvirt VMs, segments and firewalls, hardened by Ansible, audited by testinfra.",
        epilog="Exit codes: 0 ok, 1 invalid input (nothing applied), 2 usage error.",
    )
    parser.add_argument("--version", action="version", version=f"tenancy {__version__}")
    parser.add_argument(
        "--root",
        type=Path,
        default=None,
        help="project directory (default: nearest parent holding Pulumi.yaml)",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser(
        "validate",
        help="check tenant files (and the sites they name)",
        description="Check tenant files against the contract, their sites and "
        "each other; report every error of every file with file:line.",
    )
    p.add_argument("paths", nargs="*", help="tenant files or directories (default: tenants/)")
    p.add_argument("--format", choices=["text", "json"], default="text")
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser(
        "plan",
        help="show what a site will run: machines, addresses, flows",
        description="Plan one site from all tenant files: segments, addresses, "
        "placement and firewall flows. Pure: touches no hypervisor.",
    )
    p.add_argument("--site", default="local", help="stack name under stacks/ (default: local)")
    p.add_argument(
        "--format",
        choices=["table", "markdown", "json", "dot", "mermaid"],
        default="table",
        help="markdown suits a pull-request comment",
    )
    p.add_argument("--tenants", nargs="*", help="tenant files or directories (default: tenants/)")
    p.add_argument(
        "--write-ledger",
        action="store_true",
        help="record new allocations in stacks/ledger.<site>.yaml (commit it)",
    )
    p.set_defaults(func=cmd_plan)

    p = sub.add_parser("schema", help="print the JSON Schema of tenant (or site) files")
    p.add_argument("--kind", choices=["tenant", "site"], default="tenant")
    p.set_defaults(func=cmd_schema)

    p = sub.add_parser(
        "new",
        help="scaffold a commented tenant file",
        description="Write tenants/NAME.yaml with every field explained.",
    )
    p.add_argument("name", help="tenant name (DNS label, becomes the file name)")
    p.add_argument("--site", default="local")
    p.add_argument("--zone", choices=["intranet", "extranet"], default="intranet")
    p.add_argument("--display-name", default=None)
    p.add_argument("--owner", default=None, help="contact e-mail")
    p.add_argument("-o", "--output", default=None, help="file to write, '-' for stdout")
    p.set_defaults(func=cmd_new)

    p = sub.add_parser("inventory", help="print the Ansible inventory the plan implies")
    p.add_argument("--site", default="local")
    p.add_argument("--format", choices=["yaml", "json"], default="yaml")
    p.set_defaults(func=cmd_inventory)

    for register in _EXTRA_COMMANDS:
        register(sub)
    return parser


# Commands that drive the engine or hosts register themselves here (see tenancy.cli_ops).
_EXTRA_COMMANDS: list[Callable[[argparse._SubParsersAction[argparse.ArgumentParser]], None]] = []


def main(argv: Sequence[str] | None = None) -> int:
    from tenancy import cli_audit, cli_doctor, cli_ops, cli_policy  # register engine/host verbs  # noqa: F401

    parser = build_parser()
    args = parser.parse_args(argv)
    args.root = (args.root or find_root(Path.cwd())).resolve()
    try:
        code: int = args.func(args)
    except BrokenPipeError:
        return EXIT_OK
    return code


if __name__ == "__main__":
    sys.exit(main())
