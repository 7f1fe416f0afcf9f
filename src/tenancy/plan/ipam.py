"""IP address management: tenant segments from the site pool, addresses inside them."""

from __future__ import annotations

import bisect
import ipaddress
from collections.abc import Iterable

FIRST_MACHINE_OFFSET = 10  # .1 is the gateway; .2-.9 are kept for infrastructure


def overlaps(cidr: str, others: Iterable[str]) -> list[str]:
    net = ipaddress.IPv4Network(cidr)
    return [o for o in others if net.overlaps(ipaddress.IPv4Network(o))]


def _span(cidr: str) -> tuple[int, int]:
    net = ipaddress.IPv4Network(cidr)
    return int(net.network_address), int(net.broadcast_address)


class SegmentAllocator:
    """Hands out the lowest free aligned subnets of a pool, avoiding taken ranges.

    Taken ranges are kept as sorted, merged ``[start, end]`` integer intervals, so an
    allocation jumps over used space instead of testing every subnet against every
    taken network (which was cubic in the number of tenants).
    """

    def __init__(self, taken: Iterable[str] = ()) -> None:
        self._starts: list[int] = []
        self._ends: list[int] = []
        for cidr in taken:
            self.take(cidr)

    def take(self, cidr: str) -> None:
        start, end = _span(cidr)
        i = bisect.bisect_left(self._ends, start - 1)  # first interval that may touch
        j = i
        while j < len(self._starts) and self._starts[j] <= end + 1:
            start = min(start, self._starts[j])
            end = max(end, self._ends[j])
            j += 1
        self._starts[i:j] = [start]
        self._ends[i:j] = [end]

    def allocate(self, pool: str, prefix: int) -> str | None:
        """The first free subnet of ``pool`` with ``prefix``; it is taken before returning."""
        pool_net = ipaddress.IPv4Network(pool)
        if prefix < pool_net.prefixlen:
            return None
        size = 1 << (32 - prefix)
        candidate = int(pool_net.network_address)
        last = int(pool_net.broadcast_address)
        while candidate + size - 1 <= last:
            i = bisect.bisect_left(self._ends, candidate)  # first interval ending at/after it
            if i == len(self._starts) or self._starts[i] > candidate + size - 1:
                cidr = f"{ipaddress.IPv4Address(candidate)}/{prefix}"
                self.take(cidr)
                return cidr
            # jump past the blocking interval, to the next aligned boundary
            candidate = (self._ends[i] + 1 + size - 1) // size * size
        return None


def allocate_segment(pool: str, prefix: int, taken: list[str]) -> str | None:
    """The first subnet of ``pool`` with ``prefix`` that overlaps nothing in ``taken``."""
    return SegmentAllocator(taken).allocate(pool, prefix)


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
