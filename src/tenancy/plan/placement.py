"""Capacity-aware, stable placement of machine instances onto hypervisor hosts.

An instance recorded in the ledger stays on its host unless its own demand
changed, its host left the site, or an operator approved its move: another
tenant's edit never moves it, even when that leaves its host over capacity
(then the changed or new demand is the one that moves or fails). A changed
instance stays while it still fits. Everything else goes to the host that
holds the fewest instances of the same machine group (anti-affinity), then
the most free memory, then the host name: deterministic for the same inputs.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from tenancy.contract.models import Site

Key = tuple[str, str]  # (tenant, instance)
APPROVE_ALL = "all"


def storage_of(disk_gib: int, volumes: Iterable[tuple[str, int]]) -> dict[str, int]:
    """GiB per pool of one instance: its root disk ("@root", the host's first pool) and volumes."""
    storage = {"@root": disk_gib}
    for pool, gib in volumes:
        storage[pool] = storage.get(pool, 0) + gib
    return storage


def fingerprint(vcpus: int, memory_mib: int, storage_gib: Mapping[str, int]) -> str:
    """The demand as the ledger records it: readable in a review, independent of the host."""
    pools = ", ".join(f"{p} {g} GiB" for p, g in sorted(storage_gib.items()))
    return f"{vcpus} vCPU, {memory_mib} MiB, {pools}"


def approves(approved: frozenset[str], key: Key) -> bool:
    """Whether the operator allowed this instance to move (``TENANT/INSTANCE`` or ``all``)."""
    return APPROVE_ALL in approved or f"{key[0]}/{key[1]}" in approved


@dataclass(frozen=True)
class Demand:
    """What one instance needs from a host."""

    key: Key
    group: tuple[str, str]  # (tenant, group) for anti-affinity
    vcpus: int
    memory_mib: int
    storage_gib: dict[str, int]  # pool -> GiB (root pool resolved per host: "@root")
    protect: bool = False  # a move rebuilds it empty: refused unless approved

    def fingerprint(self) -> str:
        return fingerprint(self.vcpus, self.memory_mib, self.storage_gib)


@dataclass(frozen=True)
class Recorded:
    """Where the ledger put an instance, and its demand then (None: recorded before
    fingerprints, taken as unchanged)."""

    host: str
    fingerprint: str | None = None


@dataclass(frozen=True)
class Move:
    """An instance that leaves its recorded host, and why it must."""

    key: Key
    from_host: str
    to_host: str
    why: str


@dataclass
class HostState:
    name: str
    vcpus_capacity: int
    memory_capacity: int
    pool_capacity: dict[str, int]
    root_pool: str
    vcpus_used: int = 0
    memory_used: int = 0
    pool_used: dict[str, int] = field(default_factory=dict)
    groups: dict[tuple[str, str], int] = field(default_factory=dict)

    def needs(self, demand: Demand) -> dict[str, int]:
        out: dict[str, int] = {}
        for pool, gib in demand.storage_gib.items():
            name = self.root_pool if pool == "@root" else pool
            out[name] = out.get(name, 0) + gib
        return out

    def shortfall(self, demand: Demand) -> str:
        """Empty when the demand fits, else a reason."""
        if self.vcpus_used + demand.vcpus > self.vcpus_capacity:
            return f"vCPUs {self.vcpus_used + demand.vcpus} > {self.vcpus_capacity}"
        if self.memory_used + demand.memory_mib > self.memory_capacity:
            return f"memory {self.memory_used + demand.memory_mib} MiB > {self.memory_capacity} MiB"
        for pool, gib in self.needs(demand).items():
            if pool not in self.pool_capacity:
                return f"no pool {pool!r}"
            wanted = self.pool_used.get(pool, 0) + gib
            if wanted > self.pool_capacity[pool]:
                return f"pool {pool} {wanted} GiB > {self.pool_capacity[pool]} GiB"
        return ""

    def overflow(self) -> str:
        """Empty within capacity, else what exceeds it (kept instances may overfill a host)."""
        over = {p: 0 for p, used in self.pool_used.items() if used > self.pool_capacity.get(p, 0)}
        return self.shortfall(Demand(("", ""), ("", ""), 0, 0, over))

    def take(self, demand: Demand) -> None:
        self.vcpus_used += demand.vcpus
        self.memory_used += demand.memory_mib
        for pool, gib in self.needs(demand).items():
            self.pool_used[pool] = self.pool_used.get(pool, 0) + gib
        self.groups[demand.group] = self.groups.get(demand.group, 0) + 1


@dataclass
class Placement:
    """Hosts per instance, and what could not be placed, what moves and each host's use."""

    hosts: dict[Key, str]
    usage: dict[str, HostState]
    failed: dict[Key, str] = field(default_factory=dict)  # no host has room: why not
    refused: dict[Key, Move] = field(default_factory=dict)  # protected, must move, unapproved
    moves: list[Move] = field(default_factory=list)


def host_states(site: Site) -> dict[str, HostState]:
    return {
        h.name: HostState(
            name=h.name,
            vcpus_capacity=int(h.vcpus * site.overcommit.cpu),
            memory_capacity=int(h.memory_gib * 1024 * site.overcommit.memory),
            pool_capacity={p.name: p.capacity_gib for p in h.pools},
            root_pool=h.pools[0].name,
        )
        for h in site.hosts
    }


def place(
    site: Site,
    demands: list[Demand],
    previous: Mapping[Key, Recorded],
    approved: frozenset[str] = frozenset(),
) -> Placement:
    """Place every demand: kept ones first, then changed ones on their host, then the rest."""
    hosts = host_states(site)
    result = Placement(hosts={}, usage=hosts)
    leaving: dict[Key, str] = {}  # instance -> why it leaves its recorded host
    settle = _keep_unchanged(demands, previous, approved, hosts, result)
    for demand in settle:  # changed or approved: stay while it still fits
        rec = previous[demand.key]
        host = hosts.get(rec.host)
        why = f"host {rec.host} is no longer in the site"
        if host is not None:
            why = host.shortfall(demand)
            if not why:
                host.take(demand)
                result.hosts[demand.key] = host.name
                continue
            why = f"{why} on {host.name}"
        if demand.protect and not approves(approved, demand.key):
            if host is not None:  # it still holds its place: others do not take it
                host.take(demand)
            result.refused[demand.key] = Move(demand.key, rec.host, "", why)
        else:
            leaving[demand.key] = why
    taken = result.hosts.keys() | result.refused.keys()
    _place_rest([d for d in demands if d.key not in taken], hosts, result)
    result.moves = [
        Move(key, previous[key].host, result.hosts[key], why)
        for key, why in leaving.items()
        if key in result.hosts
    ]
    return result


def _keep_unchanged(
    demands: list[Demand],
    previous: Mapping[Key, Recorded],
    approved: frozenset[str],
    hosts: dict[str, HostState],
    result: Placement,
) -> list[Demand]:
    """Pin every recorded, unchanged, unapproved instance to its host, over capacity or not;
    returns the other recorded ones, in demand order."""
    settle: list[Demand] = []
    for demand in demands:
        rec = previous.get(demand.key)
        if rec is None:
            continue
        changed = rec.fingerprint is not None and rec.fingerprint != demand.fingerprint()
        host = hosts.get(rec.host)
        if host is None or changed or approves(approved, demand.key):
            settle.append(demand)
            continue
        host.take(demand)
        result.hosts[demand.key] = host.name
    return settle


def _place_rest(pending: list[Demand], hosts: dict[str, HostState], result: Placement) -> None:
    """New and moving instances, in demand order, onto the best fitting host."""
    # hosts ordered by (most free memory, name), kept sorted as memory is taken
    order = sorted(hosts.values(), key=_free_key)
    keys = [_free_key(h) for h in order]
    holding: dict[tuple[str, str], set[str]] = {}  # group -> hosts with an instance of it
    for h in hosts.values():
        for group in h.groups:
            holding.setdefault(group, set()).add(h.name)
    for demand in pending:
        best = _choose(demand, order, hosts, holding.get(demand.group, set()))
        if best is None:
            reasons = [f"{h.name}: {h.shortfall(demand)}" for h in hosts.values()]
            shown = "; ".join(reasons[:3])
            if len(reasons) > 3:
                shown += f"; and {len(reasons) - 3} more hosts"
            result.failed[demand.key] = shown
            continue
        i = bisect.bisect_left(keys, _free_key(best))
        del keys[i], order[i]
        best.take(demand)
        j = bisect.bisect_left(keys, _free_key(best))
        keys.insert(j, _free_key(best))
        order.insert(j, best)
        holding.setdefault(demand.group, set()).add(best.name)
        result.hosts[demand.key] = best.name


def _free_key(h: HostState) -> tuple[int, str]:
    return (-(h.memory_capacity - h.memory_used), h.name)


def _choose(
    demand: Demand, order: list[HostState], hosts: dict[str, HostState], holding: set[str]
) -> HostState | None:
    """The fitting host with the fewest instances of the demand's group, then the most free
    memory, then the name (the same choice as ``min`` over all hosts, without scanning all)."""
    for h in order:  # hosts without this group, most free memory first
        if h.name not in holding and not h.shortfall(demand):
            return h
    fitting = [hosts[n] for n in sorted(holding) if not hosts[n].shortfall(demand)]
    if not fitting:
        return None
    return min(fitting, key=lambda h: (h.groups.get(demand.group, 0), *_free_key(h)))


def unknown_hosts(site: Site, names: list[str]) -> str | None:
    """``"<names>: not a host of site S (hosts: ...)"``, None when all are the site's hosts."""
    known = [h.name for h in site.hosts]
    unknown = [n for n in names if n not in known]
    if not unknown:
        return None
    return f"{', '.join(unknown)}: not a host of site {site.name} (hosts: {', '.join(known)})"
