"""Every machine instance's address in its segment and its hypervisor host.

Both read the ledger first, so adding a machine or a tenant never renumbers or
moves another one, and one tenant's edit never moves another tenant's machines:
a recorded host changes only with the instance's own demand, a vanished host or
an operator's approval, and every such move is shown (a warning and ``Plan.moves``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tenancy.contract.errors import SpecError
from tenancy.contract.loader import LoadedSite, LoadedTenant
from tenancy.contract.models import Site
from tenancy.plan import ipam
from tenancy.plan.ledger import Ledger
from tenancy.plan.model import MovePlan
from tenancy.plan.placement import Demand, HostState, Key, Move, Recorded, place, storage_of

Placements = dict[tuple[str, str], str]  # (tenant, instance) -> host


def allocate_addresses(
    tenants: dict[str, LoadedTenant], segments: dict[str, str], ledger: Ledger
) -> tuple[dict[str, dict[str, str]], list[SpecError]]:
    """Addresses per tenant and instance, and an error for each segment too small.

    Tenants without a segment (its allocation failed, already reported) get none.
    """
    addresses: dict[str, dict[str, str]] = {}
    problems: list[SpecError] = []
    for name, t in sorted(tenants.items()):
        if name not in segments:
            continue
        instances = [i for m in t.model.spec.machines for i in m.instance_names()]
        prev = ledger.tenants[name].addresses if name in ledger.tenants else {}
        got, missing = ipam.allocate_addresses(segments[name], instances, prev)
        if missing:
            problems.append(
                SpecError(
                    t.locate("spec", "network", "cidr"),
                    "spec.network.cidr",
                    f"segment {segments[name]} too small for {len(instances)} machines",
                    f"room for {len(instances)} addresses",
                )
            )
        addresses[name] = got
    return addresses, problems


def machine_demands(
    site: Site, tenants: dict[str, LoadedTenant], segments: dict[str, str]
) -> list[Demand]:
    """What every instance asks of a host (flavor, root disk, volumes per pool), in
    tenant order: the order placement considers them in."""
    demands: list[Demand] = []
    for name, t in sorted(tenants.items()):
        if name not in segments:
            continue
        for m in t.model.spec.machines:
            flavor = site.flavors[m.flavor]
            storage = storage_of(m.disk_gib, ((v.pool, v.size_gib) for v in m.volumes))
            demands.extend(
                Demand(
                    key=(name, inst),
                    group=(name, m.group),
                    vcpus=flavor.vcpus,
                    memory_mib=flavor.memory_mib,
                    storage_gib=storage,
                    protect=m.protect,
                )
                for inst in m.instance_names()
            )
    return demands


@dataclass
class MachinePlacement:
    """Hosts per instance, host usage, the moves, and the errors and warnings of placement."""

    hosts: Placements
    usage: dict[str, HostState]
    moves: list[MovePlan] = field(default_factory=list)
    errors: list[SpecError] = field(default_factory=list)
    warnings: list[SpecError] = field(default_factory=list)


def place_machines(
    site: LoadedSite,
    tenants: dict[str, LoadedTenant],
    demands: list[Demand],
    ledger: Ledger,
    approve_moves: frozenset[str] = frozenset(),
) -> MachinePlacement:
    """Place every instance (recorded hosts kept, see :func:`place`); an error per instance
    no host has room for or that is protected and would have to move unapproved, and a
    warning per move and per host the kept instances overfill."""
    previous = {
        (t, i): Recorded(h, e.demands.get(i))
        for t, e in ledger.tenants.items()
        for i, h in e.hosts.items()
    }
    s = site.model
    got = place(s, demands, previous, approve_moves)
    out = MachinePlacement(got.hosts, got.usage)
    protected = {d.key for d in demands if d.protect}
    for key, reason in sorted(got.failed.items()):
        out.errors.append(
            _at_machine(
                tenants,
                key,
                f"no hypervisor of site {s.name} has room for {key[1]}",
                "capacity on some host",
                reason,
            )
        )
    for key, move in sorted(got.refused.items()):
        out.errors.append(
            _at_machine(
                tenants,
                key,
                f"{key[1]} is protected and would have to leave host {move.from_host}, "
                "rebuilt elsewhere with an empty root disk",
                f"a demand that fits {move.from_host}, or `--approve-moves {key[0]}/{key[1]}`",
                move.why,
            )
        )
    for move in got.moves:
        out.moves.append(_move_plan(move, move.key in protected))
        out.warnings.append(_move_warning(tenants, move, move.key in protected))
    out.warnings += _overfilled(site, got.usage)
    return out


def _move_plan(move: Move, protect: bool) -> MovePlan:
    tenant, instance = move.key
    return MovePlan(
        tenant=tenant,
        instance=instance,
        from_host=move.from_host,
        to_host=move.to_host,
        why=move.why,
        protect=protect,
    )


def _move_warning(tenants: dict[str, LoadedTenant], move: Move, protect: bool) -> SpecError:
    approved = "; protected, move approved" if protect else ""
    return _at_machine(
        tenants,
        move.key,
        f"{move.key[1]} moves from host {move.from_host} to {move.to_host} "
        f"({move.why}{approved}): it is rebuilt there with an empty root disk",
        "",
        "",
        severity="warning",
    )


def _at_machine(
    tenants: dict[str, LoadedTenant],
    key: Key,
    message: str,
    expected: str,
    found: str,
    severity: str = "error",
) -> SpecError:
    """A problem located at the machine entry the instance belongs to."""
    tname, inst = key
    t = tenants[tname]
    idx = next(k for k, m in enumerate(t.model.spec.machines) if inst in m.instance_names())
    return SpecError(
        t.locate("spec", "machines", idx),
        f"spec.machines[{idx}]",
        message,
        expected,
        found,
        severity=severity,
    )


def _overfilled(site: LoadedSite, usage: dict[str, HostState]) -> list[SpecError]:
    """A warning per host the ledger's kept instances fill beyond its capacity."""
    out: list[SpecError] = []
    for idx, h in enumerate(site.model.hosts):
        reason = usage[h.name].overflow()
        if reason:
            out.append(
                SpecError(
                    site.locate("hosts", idx),
                    f"hosts[{idx}]",
                    f"host {h.name} is over capacity with the machines kept on it",
                    "room for them, or moves approved with --approve-moves TENANT/INSTANCE",
                    reason,
                    severity="warning",
                )
            )
    return out
