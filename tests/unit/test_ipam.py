"""IP address management: segments from the pool, addresses inside them, VLANs."""

from __future__ import annotations

import ipaddress
import random
import time

import pytest

from tenancy.plan import ipam


def brute_force(pool: str, prefix: int, taken: list[str]) -> str | None:
    """The specification: the first subnet of the pool that overlaps nothing taken."""
    nets = [ipaddress.IPv4Network(t) for t in taken]
    for candidate in ipaddress.IPv4Network(pool).subnets(new_prefix=prefix):
        if not any(candidate.overlaps(n) for n in nets):
            return str(candidate)
    return None


def test_first_free_segment() -> None:
    assert ipam.allocate_segment("10.30.0.0/16", 24, []) == "10.30.0.0/24"
    assert ipam.allocate_segment("10.30.0.0/16", 24, ["10.30.0.0/24"]) == "10.30.1.0/24"
    taken = ["10.30.0.0/24", "10.30.2.0/24"]
    assert ipam.allocate_segment("10.30.0.0/16", 24, taken) == "10.30.1.0/24"


def test_segments_stay_aligned_around_odd_taken_ranges() -> None:
    # a /26 in the middle of the first /24 blocks the whole /24
    assert ipam.allocate_segment("10.30.0.0/16", 24, ["10.30.0.64/26"]) == "10.30.1.0/24"
    # a /16 taken range covering the first part of a /8 pool
    assert ipam.allocate_segment("10.0.0.0/8", 26, ["10.0.0.0/16"]) == "10.1.0.0/26"
    # taken ranges larger than the pool, or outside it
    assert ipam.allocate_segment("10.30.0.0/16", 24, ["10.0.0.0/8"]) is None
    assert ipam.allocate_segment("10.30.0.0/16", 24, ["192.168.0.0/16"]) == "10.30.0.0/24"


def test_pool_full_and_prefix_too_short() -> None:
    assert ipam.allocate_segment("10.30.0.0/23", 24, ["10.30.0.0/24", "10.30.1.0/24"]) is None
    assert ipam.allocate_segment("10.30.0.0/24", 16, []) is None
    assert ipam.allocate_segment("10.30.0.0/24", 24, []) == "10.30.0.0/24"


def test_allocator_merges_and_takes() -> None:
    alloc = ipam.SegmentAllocator(["10.30.1.0/24", "10.30.0.0/24", "10.30.3.0/24"])
    got = [alloc.allocate("10.30.0.0/16", 24) for _ in range(3)]
    assert got == ["10.30.2.0/24", "10.30.4.0/24", "10.30.5.0/24"]
    alloc.take("10.30.6.0/23")
    assert alloc.allocate("10.30.0.0/16", 24) == "10.30.8.0/24"


@pytest.mark.parametrize("seed", range(40))
def test_allocator_matches_brute_force(seed: int) -> None:
    rng = random.Random(seed)
    pool = rng.choice(["10.30.0.0/16", "10.0.0.0/12", "172.16.0.0/20"])
    pool_net = ipaddress.IPv4Network(pool)
    prefix = rng.randint(pool_net.prefixlen, 28)
    taken: list[str] = []
    for _ in range(rng.randint(0, 30)):
        tp = rng.randint(max(8, pool_net.prefixlen - 2), 30)
        base = int(pool_net.network_address) + rng.randrange(pool_net.num_addresses)
        taken.append(str(ipaddress.IPv4Network(f"{ipaddress.IPv4Address(base)}/{tp}", False)))
    alloc = ipam.SegmentAllocator(taken)
    for _ in range(5):
        want = brute_force(pool, prefix, taken)
        got = alloc.allocate(pool, prefix)
        assert got == want, (pool, prefix, taken)
        if got is None:
            break
        taken.append(got)


def test_many_allocations_are_fast() -> None:
    alloc = ipam.SegmentAllocator(["10.64.0.0/24"])
    start = time.perf_counter()
    got = [alloc.allocate("10.64.0.0/10", 26) for _ in range(5000)]
    assert time.perf_counter() - start < 2.0
    assert len(set(got)) == 5000 and got[0] == "10.64.1.0/26"


def test_gateway_and_capacity() -> None:
    assert ipam.gateway("10.30.2.0/24") == "10.30.2.1"
    assert ipam.capacity("10.30.2.0/24") == 245  # .10 - .254
    assert ipam.capacity("10.30.2.0/28") == 5  # .10 - .14
    assert ipam.capacity("10.30.2.0/30") == 0


def test_overlaps() -> None:
    assert ipam.overlaps("10.0.0.0/8", ["10.1.0.0/16", "192.168.0.0/16"]) == ["10.1.0.0/16"]


def test_addresses_start_at_offset_and_are_sequential() -> None:
    got, missing = ipam.allocate_addresses("10.30.2.0/24", ["a-1", "a-2", "b-1"], {})
    assert got == {"a-1": "10.30.2.10", "a-2": "10.30.2.11", "b-1": "10.30.2.12"}
    assert missing == []


def test_previous_addresses_are_kept() -> None:
    previous = {"a-1": "10.30.2.50", "b-1": "10.30.2.10"}
    got, _ = ipam.allocate_addresses("10.30.2.0/24", ["a-1", "a-2", "b-1"], previous)
    assert got == {"a-1": "10.30.2.50", "b-1": "10.30.2.10", "a-2": "10.30.2.11"}


@pytest.mark.parametrize(
    "address",
    ["10.30.3.10", "10.30.2.5", "10.30.2.255", "10.30.2.0"],
    ids=["outside", "infrastructure", "broadcast", "network"],
)
def test_invalid_previous_address_is_replaced(address: str) -> None:
    got, _ = ipam.allocate_addresses("10.30.2.0/24", ["a-1"], {"a-1": address})
    assert got == {"a-1": "10.30.2.10"}


def test_previous_duplicates_are_resolved() -> None:
    previous = {"a-1": "10.30.2.20", "a-2": "10.30.2.20"}
    got, _ = ipam.allocate_addresses("10.30.2.0/24", ["a-1", "a-2"], previous)
    assert got == {"a-1": "10.30.2.20", "a-2": "10.30.2.10"}


def test_segment_full() -> None:
    instances = [f"m-{i}" for i in range(1, 8)]
    got, missing = ipam.allocate_addresses("10.30.2.0/28", instances, {})
    assert list(got.values()) == [f"10.30.2.{i}" for i in range(10, 15)]
    assert missing == ["m-6", "m-7"]


def test_vlans() -> None:
    assert ipam.allocate_vlan(100, 3999, set()) == 100
    assert ipam.allocate_vlan(100, 3999, {100, 101, 103}) == 102
    assert ipam.allocate_vlan(100, 101, {100, 101}) is None
