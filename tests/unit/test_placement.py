"""Placement: capacity-aware, anti-affine, deterministic and stable across changes.

(Another tenant's edit never moving a machine: tests/unit/test_placement_stability.py.)
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.support.problems import errors_of, find
from tests.support.project import REPO, grant_quota, tenant_doc, write_tenant

from tenancy.contract.models import Site
from tenancy.plan.ledger import ledger_path, write_ledger
from tenancy.plan.placement import Demand, HostState, Move, Recorded, host_states, place
from tenancy.plan.planner import plan_paths


def site(name: str = "dc-east", **changes: Any) -> Site:
    data = yaml.safe_load((REPO / "stacks" / f"Pulumi.{name}.yaml").read_text(encoding="utf-8"))
    spec = dict(data["config"]["tenancy:site"])
    spec.update(changes)
    return Site.model_validate(spec)


def demand(tenant: str, inst: str, group: str = "app", vcpus: int = 2, mem: int = 4096) -> Demand:
    return Demand((tenant, inst), (tenant, group), vcpus, mem, {"@root": 20})


def test_host_capacity_includes_overcommit() -> None:
    hosts = host_states(site())
    h = hosts["kvm-east-01"]
    assert h.vcpus_capacity == 64 * 4  # cpu overcommit 4.0
    assert h.memory_capacity == 512 * 1024  # memory overcommit 1.0
    assert h.pool_capacity == {"ssd": 4000, "bulk": 20000}
    assert h.root_pool == "ssd"


def test_shortfall_reasons() -> None:
    h = HostState(
        "h", vcpus_capacity=4, memory_capacity=1024, pool_capacity={"a": 10}, root_pool="a"
    )
    assert h.shortfall(Demand(("t", "x"), ("t", "g"), 5, 1, {})) == "vCPUs 5 > 4"
    assert h.shortfall(Demand(("t", "x"), ("t", "g"), 1, 2048, {})) == "memory 2048 MiB > 1024 MiB"
    assert (
        h.shortfall(Demand(("t", "x"), ("t", "g"), 1, 1, {"@root": 11})) == "pool a 11 GiB > 10 GiB"
    )
    assert h.shortfall(Demand(("t", "x"), ("t", "g"), 1, 1, {"ssd": 1})) == "no pool 'ssd'"
    ok = Demand(("t", "x"), ("t", "g"), 4, 1024, {"@root": 6, "a": 4})
    assert h.shortfall(ok) == ""
    h.take(ok)
    assert (h.vcpus_used, h.memory_used, h.pool_used) == (4, 1024, {"a": 10})
    assert h.groups == {("t", "g"): 1}


def test_anti_affinity_spreads_a_group() -> None:
    demands = [demand("t", f"web-{i}", "web") for i in (1, 2, 3)]
    got = place(site(), demands, {})
    assert got.failed == {} and got.moves == []
    assert len({got.hosts[d.key] for d in demands}) == 3


def test_anti_affinity_then_most_free_memory() -> None:
    demands = [demand("t", f"web-{i}", "web") for i in range(1, 5)]
    got = place(site(), demands, {})
    placed, hosts = got.hosts, got.usage
    # 01 and 02 have 512 GiB, 03 384 GiB: the fourth web goes to the freest of 01/02
    assert placed[("t", "web-1")] == "kvm-east-01"
    assert placed[("t", "web-2")] == "kvm-east-02"
    assert placed[("t", "web-3")] == "kvm-east-03"
    assert placed[("t", "web-4")] == "kvm-east-01"
    assert hosts["kvm-east-01"].groups[("t", "web")] == 2


def test_placement_is_stable_for_existing_instances() -> None:
    # web-1 sits on 03 (not the preferred host); adding web-2 and web-3 leaves it there
    demands = [demand("t", f"web-{i}", "web") for i in (1, 2, 3)]
    placed = place(site(), demands, {("t", "web-1"): Recorded("kvm-east-03")}).hosts
    assert placed[("t", "web-1")] == "kvm-east-03"
    assert {placed[("t", "web-2")], placed[("t", "web-3")]} == {"kvm-east-01", "kvm-east-02"}


def test_grown_instance_that_no_longer_fits_its_host_moves() -> None:
    huge = demand("t", "db-1", "db", vcpus=8, mem=400 * 1024)  # more than 03's 384 GiB
    was = demand("t", "db-1", "db", vcpus=8, mem=32 * 1024).fingerprint()
    got = place(site(), [huge], {("t", "db-1"): Recorded("kvm-east-03", was)})
    assert got.failed == {} and got.hosts[("t", "db-1")] in {"kvm-east-01", "kvm-east-02"}
    (move,) = got.moves
    assert (move.from_host, move.to_host) == ("kvm-east-03", got.hosts[("t", "db-1")])
    assert move.why == "memory 409600 MiB > 393216 MiB on kvm-east-03"


def test_unchanged_instance_stays_even_over_capacity() -> None:
    # recorded with this very demand (or before fingerprints): its host is kept
    huge = demand("t", "db-1", "db", vcpus=8, mem=400 * 1024)
    for rec in (Recorded("kvm-east-03", huge.fingerprint()), Recorded("kvm-east-03")):
        got = place(site(), [huge], {("t", "db-1"): rec})
        assert got.hosts == {("t", "db-1"): "kvm-east-03"} and got.moves == []
        assert got.usage["kvm-east-03"].overflow() == "memory 409600 MiB > 393216 MiB"


def test_previous_host_that_vanished_is_replaced() -> None:
    got = place(site(), [demand("t", "a-1")], {("t", "a-1"): Recorded("kvm-gone")})
    assert got.hosts[("t", "a-1")] == "kvm-east-01"
    assert got.moves == [
        Move(("t", "a-1"), "kvm-gone", "kvm-east-01", "host kvm-gone is no longer in the site")
    ]


def test_unplaceable_instance_reasons() -> None:
    giant = demand("t", "x-1", vcpus=999)
    got = place(site(), [giant], {})
    assert got.hosts == {}
    assert got.failed[("t", "x-1")] == (
        "kvm-east-01: vCPUs 999 > 256; kvm-east-02: vCPUs 999 > 256; kvm-east-03: vCPUs 999 > 192"
    )


def test_unplaceable_reasons_are_bounded() -> None:
    hosts = [
        {
            "name": f"h{i}",
            "uri": "qemu:///system",
            "vcpus": 1,
            "memoryGiB": 1,
            "pools": [{"name": "p", "capacityGiB": 10, "path": "/p"}],
        }
        for i in range(10)
    ]
    got = place(site(hosts=hosts), [demand("t", "x-1", vcpus=100)], {})
    assert got.failed[("t", "x-1")].endswith("; and 7 more hosts")


def reference_place(
    spec: Site, demands: list[Demand], previous: dict[tuple[str, str], Recorded]
) -> dict[tuple[str, str], str]:
    """The placement rule, written the obvious way: unchanged recorded instances kept
    unconditionally, then changed ones where they still fit, then min over fitting hosts."""
    hosts = host_states(spec)
    placed: dict[tuple[str, str], str] = {}
    recorded = [d for d in demands if d.key in previous and previous[d.key].host in hosts]
    for d in recorded:
        if previous[d.key].fingerprint in (None, d.fingerprint()):
            hosts[previous[d.key].host].take(d)
            placed[d.key] = previous[d.key].host
    for d in recorded:
        h = hosts[previous[d.key].host]
        if d.key not in placed and not h.shortfall(d):
            h.take(d)
            placed[d.key] = h.name
    pending = [d for d in demands if d.key not in placed]
    for d in pending:
        fits = [h for h in hosts.values() if not h.shortfall(d)]
        if fits:
            best = min(
                fits,
                key=lambda h: (h.groups.get(d.group, 0), h.memory_used - h.memory_capacity, h.name),
            )
            best.take(d)
            placed[d.key] = best.name
    return placed


@pytest.mark.parametrize("seed", range(30))
def test_placement_matches_reference_rule(seed: int) -> None:
    rng = random.Random(seed)
    hosts: list[dict[str, Any]] = [  # host documents, as the site YAML holds them
        {
            "name": f"h{i:02d}",
            "uri": "qemu:///system",
            "vcpus": rng.choice([4, 8, 16]),
            "memoryGiB": rng.choice([8, 16, 32]),
            "pools": [{"name": "p", "capacityGiB": rng.choice([100, 400]), "path": "/p"}],
        }
        for i in range(rng.randint(1, 8))
    ]
    spec = site(hosts=hosts)
    demands = [
        Demand(
            (f"t{rng.randint(0, 3)}", f"m-{i}"),
            (f"t{rng.randint(0, 3)}", rng.choice(["a", "b", "c"])),
            rng.choice([1, 2, 4]),
            rng.choice([512, 2048, 8192]),
            {"@root": rng.choice([10, 40])},
        )
        for i in range(rng.randint(1, 40))
    ]
    sizes = [
        None,  # recorded before fingerprints: unchanged
        "2 vCPU, 2048 MiB, @root 10 GiB",  # the demand may or may not have been this
        "4 vCPU, 8192 MiB, @root 40 GiB",
    ]
    previous = {
        d.key: Recorded(rng.choice([*hosts, {"name": "gone"}])["name"], rng.choice(sizes))
        for d in demands
        if rng.random() < 0.5
    }
    got = place(spec, demands, previous)
    assert got.hosts == reference_place(spec, demands, previous)
    assert set(got.failed) == {d.key for d in demands} - set(got.hosts)
    moved = {k for k, h in got.hosts.items() if k in previous and previous[k].host != h}
    assert {m.key for m in got.moves} == moved


# --------------------------------------------------------------------------- in plans


def test_count_three_spreads_over_the_three_dc_east_hosts(project: Path) -> None:
    doc = tenant_doc(
        "aa",
        site="dc-east",
        machines=[{"name": "web", "count": 3, "flavor": "small", "image": "debian-12"}],
    )
    write_tenant(project, doc)
    plan = plan_paths(project, sites=["dc-east"]).plans["dc-east"]
    tenant = next(t for t in plan.tenants if t.name == "aa")
    assert sorted(m.host for m in tenant.machines) == ["kvm-east-01", "kvm-east-02", "kvm-east-03"]
    assert tenant.segment.hosts == ["kvm-east-01", "kvm-east-02", "kvm-east-03"]
    portal = next(t for t in plan.tenants if t.name == "culture-tourism-portal")
    assert len({m.host for m in portal.machines}) == 3


def test_existing_machine_stays_when_a_new_one_arrives(project: Path) -> None:
    first = plan_paths(project, sites=["dc-east"])
    write_ledger(ledger_path(project / "stacks", "dc-east"), first.ledgers["dc-east"])
    before = {(m.tenant, m.instance): m.host for m in first.plans["dc-east"].machines()}
    # a tenant sorting first takes 160 GiB on each of kvm-east-01/02, so kvm-east-03 now
    # has the most free memory: a fresh placement would move machines there, the ledger
    # keeps every existing machine where it is
    hog = tenant_doc(
        "aa",
        site="dc-east",
        machines=[{"name": f"g{i}", "flavor": "db", "image": "debian-12"} for i in range(10)],
    )
    grant_quota(project, "dc-east", "aa", vcpus=512, memoryGiB=1024, storageGiB=5000)
    write_tenant(project, hog)
    after = plan_paths(project, sites=["dc-east"])
    assert after.ok, [str(e) for e in after.problems.errors]
    moved = {(m.tenant, m.instance): m.host for m in after.plans["dc-east"].machines()}
    for key, host in before.items():
        assert moved[key] == host, key
    # without the ledger the same inputs would have moved an existing machine
    ledger_path(project / "stacks", "dc-east").unlink()
    fresh = plan_paths(project, sites=["dc-east"]).plans["dc-east"]
    fresh_hosts = {(m.tenant, m.instance): m.host for m in fresh.machines()}
    assert any(fresh_hosts[k] != h for k, h in before.items())


def test_unplaceable_machine_error(project: Path) -> None:
    # local has one host with 16 GiB: 20 x medium (1.5 GiB) cannot fit
    doc = tenant_doc(
        "aa",
        machines=[{"name": "w", "count": 20, "flavor": "medium", "image": "debian-12"}],
    )
    grant_quota(project, "local", "aa", vcpus=100, memoryGiB=100, storageGiB=1000, machines=20)
    write_tenant(project, doc)
    result = plan_paths(project)
    assert result.plans == {}
    error = find(errors_of(result, "tenants/aa.yaml"), message="no hypervisor of site local")
    assert error.field == "spec.machines[0]"
    assert error.expected == "capacity on some host"
    assert error.found.startswith("local: ")
    assert error.location.line >= 1
