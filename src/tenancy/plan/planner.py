"""From validated documents to a Plan: the one place that sequences the pure planners."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from pathlib import Path

from tenancy.contract import crosscheck
from tenancy.contract.errors import ErrorList, Location, SpecError
from tenancy.contract.loader import (
    LoadedSite,
    LoadedTenant,
    display_path,
    load_site,
    load_tenants,
    site_file,
    tenant_files,
)
from tenancy.gcpause import cyclic_gc_paused
from tenancy.plan.assemble import (
    Allocation,
    build_tenant_plan,
    host_usage,
    ledger_entry,
    tenant_addressing,
)
from tenancy.plan.flows import compile_flows
from tenancy.plan.ledger import Ledger, ledger_path, load_ledger
from tenancy.plan.links import link_names
from tenancy.plan.machines import allocate_addresses, machine_demands, place_machines
from tenancy.plan.model import Plan
from tenancy.plan.name_clash import check_derived_names
from tenancy.plan.profiles import check_profiles
from tenancy.plan.rule_budget import check_rule_budget
from tenancy.plan.segments import allocate_segments, allocate_vlans, check_recorded_zone
from tenancy.plan.site_ranges import (
    check_cidr_endpoints,
    check_segment_cidr,
    check_site_ranges,
    effective_external,
)
from tenancy.plan.zone_rules import check_zone_rules


@dataclass
class PlanResult:
    """Either a plan (and the ledger it implies) or the errors that prevent one."""

    problems: ErrorList = field(default_factory=ErrorList)
    plans: dict[str, Plan] = field(default_factory=dict)
    ledgers: dict[str, Ledger] = field(default_factory=dict)
    sites: dict[str, LoadedSite] = field(default_factory=dict)
    """The validated site of every plan: callers never load it again."""
    tenant_count: int = 0  # valid tenant files
    file_count: int = 0  # tenant files read

    @property
    def ok(self) -> bool:
        return not self.problems.errors


def plan_site(
    site: LoadedSite,
    tenants: dict[str, LoadedTenant],
    ledger: Ledger,
    ledger_file: str = "the ledger",
    approve_moves: frozenset[str] = frozenset(),
) -> tuple[Plan | None, Ledger | None, list[SpecError]]:
    """Plan one site; ``tenants`` are the tenants of this site only (already cross-checked).

    Allocation steps run first and all of them report (so one run names every
    problem); only when none failed are the flows compiled and the plan assembled.
    The third element holds the errors, or else the warnings (flows, moves).
    ``approve_moves`` (``TENANT/INSTANCE`` or ``all``) lets those instances change host.
    """
    s = site.model
    segments, problems = allocate_segments(s, tenants, ledger, ledger_file)
    vlans, vlan_problems = allocate_vlans(s, tenants, ledger)
    addresses, address_problems = allocate_addresses(tenants, segments, ledger)
    demands = machine_demands(s, tenants, segments)
    placement = place_machines(site, tenants, demands, ledger, approve_moves)
    problems += vlan_problems + address_problems + placement.errors
    if problems:
        return None, None, problems

    addressing = tenant_addressing(tenants, segments, addresses)
    rules, flow_problems = compile_flows(tenants, addressing, effective_external(s))
    bridges, macs = link_names(s.name, tenants, ledger)
    alloc = Allocation(segments, vlans, addresses, placement.hosts, bridges, macs)
    tenant_plans = [
        build_tenant_plan(site, name, t, alloc, rules[name]) for name, t in sorted(tenants.items())
    ]
    entries = {tp.name: ledger_entry(tp) for tp in tenant_plans}
    new_ledger = Ledger(site=s.name, tenants=entries).indexed()
    plan = Plan(
        site=s.name,
        domain_type=s.domain_type,
        tenants=tenant_plans,
        hosts=host_usage(s, placement.usage),
        warnings=[str(p) for p in sorted(flow_problems + placement.warnings, key=_loc)],
        moves=placement.moves,
    )
    return plan, new_ledger, flow_problems + placement.warnings


def _loc(e: SpecError) -> Location:
    """Warnings in file and line order, so the plan's JSON is stable."""
    return e.location


def plan_paths(
    root: Path,
    tenant_paths: list[Path] | None = None,
    sites: list[str] | None = None,
    *,
    context: bool = True,
    approve_moves: frozenset[str] = frozenset(),
    release: frozenset[str] = frozenset(),
) -> PlanResult:
    """Load and check every tenant under ``tenant_paths`` and plan every site involved.

    ``sites`` limits planning to those sites (their stack files must exist). Nothing is
    planned when any input is invalid. With ``context`` (the default) the other tenant
    files of ``root/tenants`` are loaded too, so a single file's references to other
    tenants resolve; a named file replaces the project's file of the same name.
    ``approve_moves`` names the instances (``TENANT/INSTANCE`` or ``all``) an operator
    allows to change host (see :func:`plan_site`). ``release`` names tenants whose
    recorded allocation is dropped, so they are allocated anew (a zone change).
    """
    with cyclic_gc_paused():
        return _plan_paths(root, tenant_paths, sites, context, approve_moves, release)


def _plan_paths(
    root: Path,
    tenant_paths: list[Path] | None,
    sites: list[str] | None,
    context: bool,
    approve_moves: frozenset[str],
    release: frozenset[str],
) -> PlanResult:
    """Read, check, then plan: nothing is planned while any input has an error."""
    result = PlanResult()
    files = _tenant_file_list(root, tenant_paths, context, result.problems)
    result.file_count = len(files)
    loaded, errors = load_tenants(files, root)
    result.problems.extend(errors)
    result.tenant_count = len(loaded)
    by_name = _unique_tenants(loaded, result.problems)
    wanted = set(sites) if sites else {t.model.spec.site for t in by_name.values()}
    loaded_sites, ledgers = _load_sites(root, wanted, sites or [], by_name, result.problems)
    if release:
        ledgers = {n: (ledger.without(release), f) for n, (ledger, f) in ledgers.items()}
    _cross_check(by_name, loaded_sites, result.problems)
    _check_each_site(by_name, loaded_sites, ledgers, result.problems)
    if result.problems.errors:
        return result
    for site_name in sorted(wanted):
        site = loaded_sites[site_name]
        ledger, ledger_file = ledgers[site_name]
        plan, new_ledger, problems = plan_site(
            site, _on_site(by_name, site_name), ledger, ledger_file, approve_moves
        )
        result.problems.extend(problems)
        if plan is not None and new_ledger is not None:
            result.plans[site_name] = plan
            result.ledgers[site_name] = new_ledger
            result.sites[site_name] = site
    if result.problems.errors:
        result.plans.clear()
        result.ledgers.clear()
        result.sites.clear()
    return result


def _tenant_file_list(
    root: Path, tenant_paths: list[Path] | None, context: bool, problems: ErrorList
) -> list[Path]:
    """The tenant files to read: the named ones, plus (``context``) the project's others.

    A named file replaces the project's file of the same name (or stem), so an edited
    copy of a tenant is checked against the other tenants, not against itself.
    """
    paths = tenant_paths or [root / "tenants"]
    files, errors = tenant_files(paths, root)
    problems.extend(errors)
    context_dir = root / "tenants"
    if context and context_dir.is_dir() and context_dir not in paths:
        named = {f.resolve() for f in files}
        stems = {_stem(f) for f in files}
        extra, refused = tenant_files([context_dir], root)  # links there are refused too
        problems.extend(refused)
        files += [f for f in extra if f.resolve() not in named and _stem(f) not in stems]
    return files


def _unique_tenants(loaded: list[LoadedTenant], problems: ErrorList) -> dict[str, LoadedTenant]:
    """Tenants by name; a second file claiming a name is an error (the first one wins)."""
    by_name: dict[str, LoadedTenant] = {}
    for t in loaded:
        if t.model.name in by_name:
            first = by_name[t.model.name]
            problems.add(
                SpecError(
                    t.locate("metadata", "name"),
                    "metadata.name",
                    "duplicate tenant name",
                    "unique tenant names",
                    repr(t.model.name),
                    related=(first.locate("metadata", "name"),),
                )
            )
            continue
        by_name[t.model.name] = t
    return by_name


def _load_sites(
    root: Path,
    wanted: set[str],
    asked: list[str],
    by_name: dict[str, LoadedTenant],
    problems: ErrorList,
) -> tuple[dict[str, LoadedSite], dict[str, tuple[Ledger, str]]]:
    """Every site planned or named by a tenant, with its ledger (and its display path).

    A site without a stack file is an error at each tenant naming it, and once more
    when it was ``asked`` for on the command line.
    """
    stacks = root / "stacks"
    loaded_sites: dict[str, LoadedSite] = {}
    ledgers: dict[str, tuple[Ledger, str]] = {}
    for site_name in sorted(wanted | {t.model.spec.site for t in by_name.values()}):
        path = site_file(stacks, site_name)
        if not path.is_file():
            problems.extend(_unknown_site(root, path, site_name, site_name in asked, by_name))
            continue
        site, errs = load_site(path, site_name, root)
        problems.extend(errs)
        if site is None:
            continue
        loaded_sites[site_name] = site
        lpath = ledger_path(stacks, site_name)
        ledger, errs = load_ledger(lpath, site_name, display_path(lpath, root))
        problems.extend(errs)
        if ledger is not None:
            ledgers[site_name] = (ledger, display_path(lpath, root))
    return loaded_sites, ledgers


def _unknown_site(
    root: Path, path: Path, site_name: str, asked: bool, by_name: dict[str, LoadedTenant]
) -> list[SpecError]:
    """Errors for a site without a stack file: at each tenant naming it, and the ask."""
    shown = display_path(path, root)
    errors = [
        SpecError(
            t.locate("spec", "site"),
            "spec.site",
            "unknown site",
            f"a stack file {shown}",
            repr(site_name),
        )
        for t in by_name.values()
        if t.model.spec.site == site_name
    ]
    if asked:
        errors.append(
            SpecError(
                Location(shown),
                "",
                f"no such stack file for site {site_name!r}",
                f"one of: {', '.join(known_sites(root / 'stacks')) or '(no stacks)'}",
            )
        )
    return errors


def _cross_check(
    by_name: dict[str, LoadedTenant], sites: dict[str, LoadedSite], problems: ErrorList
) -> None:
    """What no single file can show: limits of each tenant's site, references, overlaps."""
    for t in by_name.values():
        problems.extend(check_profiles(t))
        site = sites.get(t.model.spec.site)
        if site is not None:
            problems.extend(crosscheck.check_against_site(t, site))
    problems.extend(crosscheck.check_references(by_name))
    for site_name, site in sorted(sites.items()):
        problems.extend(crosscheck.check_cidrs(_on_site(by_name, site_name), site))
        problems.extend(check_rule_budget(by_name, site))


def _check_each_site(
    by_name: dict[str, LoadedTenant],
    sites: dict[str, LoadedSite],
    ledgers: dict[str, tuple[Ledger, str]],
    problems: ErrorList,
) -> None:
    """Per site: derived names unique (the ledger's tenants keep theirs, newcomers
    rename), the site's ranges, each tenant's segment and CIDR endpoints, zone rules."""
    for site_name, site in sorted(sites.items()):
        tenants = _on_site(by_name, site_name)
        ledger = ledgers.get(site_name)
        recorded = ledger[0].tenants if ledger is not None else {}
        problems.extend(check_derived_names(site, tenants, recorded))
        problems.extend(check_site_ranges(site))
        known = {n: e.cidr for n, e in recorded.items()}
        known.update(
            {n: t.model.spec.network.cidr for n, t in tenants.items() if t.model.spec.network.cidr}
        )
        segments = {n: ipaddress.IPv4Network(c) for n, c in known.items() if n in tenants}
        for _, t in sorted(tenants.items()):
            if ledger is not None:
                problems.extend(check_recorded_zone(t, ledger[0], site.model, ledger[1]))
            problems.extend(check_segment_cidr(t, site.model))
            problems.extend(check_cidr_endpoints(t, site.model, segments))
            problems.extend(check_zone_rules(t, tenants, site.model))


def _on_site(by_name: dict[str, LoadedTenant], site: str) -> dict[str, LoadedTenant]:
    """The tenants of one site: each site is checked and planned on its own."""
    return {n: t for n, t in by_name.items() if t.model.spec.site == site}


def known_sites(stacks: Path) -> list[str]:
    """Site names with a stack file under ``stacks``."""
    if not stacks.is_dir():
        return []
    return sorted(
        p.name[len("Pulumi.") : -len(".yaml")] for p in stacks.glob("Pulumi.*.yaml") if p.is_file()
    )


def _stem(path: Path) -> str:
    """``finance`` of ``finance.yaml``: a named file replaces the project file of that name."""
    return path.name.rsplit(".", 1)[0]
