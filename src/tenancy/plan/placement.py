"""Capacity-aware, stable placement of machine instances onto hypervisor hosts.

Existing placements are kept whenever they still fit, so adding a machine
never moves another. New instances go to the host that holds the fewest
instances of the same machine group (anti-affinity), then the most free
memory, then the host name: deterministic for the same inputs.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field

from tenancy.contract.models import Site


@dataclass(frozen=True)
class Demand:
    """What one instance needs from a host."""

    key: tuple[str, str]  # (tenant, instance)
    group: tuple[str, str]  # (tenant, group) for anti-affinity
    vcpus: int
    memory_mib: int
    storage_gib: dict[str, int]  # pool -> GiB (root pool resolved per host: "@root")


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

    def take(self, demand: Demand) -> None:
        self.vcpus_used += demand.vcpus
        self.memory_used += demand.memory_mib
        for pool, gib in self.needs(demand).items():
            self.pool_used[pool] = self.pool_used.get(pool, 0) + gib
        self.groups[demand.group] = self.groups.get(demand.group, 0) + 1


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
    site: Site, demands: list[Demand], previous: dict[tuple[str, str], str]
) -> tuple[dict[tuple[str, str], str], dict[tuple[str, str], str], dict[str, HostState]]:
    """Returns (placements, unplaceable instance -> reason, host usage)."""
    hosts = host_states(site)
    placed: dict[tuple[str, str], str] = {}
    failed: dict[tuple[str, str], str] = {}
    pending: list[Demand] = []
    # first pass: keep what was placed before, as long as it still fits
    for demand in demands:
        host = hosts.get(previous.get(demand.key, ""))
        if host is not None and not host.shortfall(demand):
            host.take(demand)
            placed[demand.key] = host.name
        else:
            pending.append(demand)
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
            failed[demand.key] = shown
            continue
        i = bisect.bisect_left(keys, _free_key(best))
        del keys[i], order[i]
        best.take(demand)
        j = bisect.bisect_left(keys, _free_key(best))
        keys.insert(j, _free_key(best))
        order.insert(j, best)
        holding.setdefault(demand.group, set()).add(best.name)
        placed[demand.key] = best.name
    return placed, failed, hosts


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
