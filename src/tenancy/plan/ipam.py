"""IP address management: tenant segments from the site pool, addresses inside them."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

FIRST_MACHINE_OFFSET = 10  # .1 is the gateway; .2-.9 are kept for infrastructure


def overlaps(cidr: str, others: Iterable[str]) -> list[str]:
    net = ipaddress.IPv4Network(cidr)
    return [o for o in others if net.overlaps(ipaddress.IPv4Network(o))]


def allocate_segment(pool: str, prefix: int, taken: list[str]) -> str | None:
    """The first subnet of ``pool`` with ``prefix`` that overlaps nothing in ``taken``."""
    pool_net = ipaddress.IPv4Network(pool)
    if prefix < pool_net.prefixlen:
        return None
    taken_nets = [ipaddress.IPv4Network(t) for t in taken]
    for candidate in pool_net.subnets(new_prefix=prefix):
        if not any(candidate.overlaps(t) for t in taken_nets):
            return str(candidate)
    return None


def gateway(cidr: str) -> str:
    return str(ipaddress.IPv4Network(cidr).network_address + 1)


def capacity(cidr: str) -> int:
    """How many machine addresses a segment holds."""
    net = ipaddress.IPv4Network(cidr)
    return max(0, net.num_addresses - 2 - FIRST_MACHINE_OFFSET + 1)


def allocate_addresses(
    cidr: str, instances: list[str], previous: dict[str, str]
) -> tuple[dict[str, str], list[str]]:
    """Keep every previous address still inside ``cidr``; give new instances the lowest free.

    Returns the mapping and the instances that did not fit.
    """
    net = ipaddress.IPv4Network(cidr)
    result: dict[str, str] = {}
    used: set[ipaddress.IPv4Address] = set()
    for inst in instances:
        addr = previous.get(inst)
        if addr is None:
            continue
        ip = ipaddress.IPv4Address(addr)
        first = net.network_address + FIRST_MACHINE_OFFSET
        if ip in net and first <= ip < net.broadcast_address and ip not in used:
            result[inst] = addr
            used.add(ip)
    candidates = (
        net.network_address + i for i in range(FIRST_MACHINE_OFFSET, net.num_addresses - 1)
    )
    missing: list[str] = []
    for inst in instances:
        if inst in result:
            continue
        for ip in candidates:
            if ip not in used:
                used.add(ip)
                result[inst] = str(ip)
                break
        else:
            missing.append(inst)
    return result, missing


def allocate_vlan(low: int, high: int, taken: set[int]) -> int | None:
    for vid in range(low, high + 1):
        if vid not in taken:
            return vid
    return None
