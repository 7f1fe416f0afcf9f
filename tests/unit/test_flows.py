"""Firewall compilation: default deny, two-sided tenant flows, port intersection, groups."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from tests.support.project import OPEN_ZONES, edit_site, tenant_doc, write_tenant

from tenancy.contract.types import PortRange
from tenancy.plan.flows import _intersect, _narrow, _ports, is_cidr, split_ref
from tenancy.plan.model import Plan, RulePlan, TenantPlan
from tenancy.plan.planner import PlanResult, plan_paths


def machines(*groups: tuple[str, int]) -> list[dict[str, Any]]:
    return [
        {"name": g, "count": n, "flavor": "tiny", "image": "debian-12", "diskGiB": 4}
        for g, n in groups
    ]


def plan_local(root: Path) -> tuple[PlanResult, Plan]:
    result = plan_paths(root, sites=["local"])
    assert result.ok, [str(e) for e in result.problems.errors]
    return result, result.plans["local"]


def tenant(plan: Plan, name: str) -> TenantPlan:
    return next(t for t in plan.tenants if t.name == name)


def rules(plan: Plan, name: str, kind: str = "tenant") -> list[RulePlan]:
    return [r for r in tenant(plan, name).rules if r.peer_kind == kind]


def addresses(plan: Plan, name: str, group: str) -> list[str]:
    return sorted(f"{m.address}/32" for m in tenant(plan, name).machines if m.group == group)


def two_tenants(
    root: Path,
    egress: list[dict[str, Any]],
    ingress: list[dict[str, Any]],
) -> None:
    """aa (app x2, db x1) sends to bb (web x2, api x1) on the local site."""
    write_tenant(root, tenant_doc("aa", machines=machines(("app", 2), ("db", 1)), egress=egress))
    write_tenant(root, tenant_doc("bb", machines=machines(("web", 2), ("api", 1)), ingress=ingress))


def test_ports_are_intersected(project: Path) -> None:
    two_tenants(
        project,
        egress=[{"to": "bb/web", "ports": ["8000-9000/tcp", "53/udp"]}],
        ingress=[{"from": "aa", "to": "web", "ports": ["8443/tcp", "9000-9100/tcp", "53/tcp"]}],
    )
    result, plan = plan_local(project)
    (ingress,) = rules(plan, "bb")
    assert ingress.direction == "ingress"
    assert ingress.ports == ["8443/tcp", "9000/tcp"]
    assert ingress.peer == "aa" and ingress.local_group == "web"
    assert ingress.local_cidrs == addresses(plan, "bb", "web")
    assert ingress.peer_cidrs == [tenant(plan, "aa").segment.cidr]
    (egress,) = rules(plan, "aa")
    assert (egress.direction, egress.peer, egress.ports) == (
        "egress",
        "bb/web",
        ["8443/tcp", "9000/tcp"],
    )
    assert egress.local_group is None and egress.local_cidrs == [tenant(plan, "aa").segment.cidr]
    assert egress.peer_cidrs == addresses(plan, "bb", "web")
    assert result.problems.warnings == []


def test_group_narrowing_from_tenant_slash_group(project: Path) -> None:
    two_tenants(
        project,
        egress=[{"to": "bb", "ports": ["443/tcp"]}],
        ingress=[{"from": "aa/app", "to": "web", "ports": ["443/tcp"]}],
    )
    _, plan = plan_local(project)
    (ingress,) = rules(plan, "bb")
    assert ingress.peer == "aa/app"
    assert ingress.peer_cidrs == addresses(plan, "aa", "app")  # not db
    assert len(ingress.peer_cidrs) == 2
    assert ingress.local_cidrs == addresses(plan, "bb", "web")  # not api
    (egress,) = rules(plan, "aa")
    assert (egress.local_group, egress.peer) == ("app", "bb/web")
    assert egress.local_cidrs == addresses(plan, "aa", "app")


def test_egress_from_group_narrows_the_ingress(project: Path) -> None:
    two_tenants(
        project,
        egress=[{"from": "db", "to": "bb/api", "ports": ["5432/tcp"]}],
        ingress=[{"from": "aa", "ports": ["5432/tcp"]}],
    )
    _, plan = plan_local(project)
    (ingress,) = rules(plan, "bb")
    assert (ingress.peer, ingress.local_group) == ("aa/db", "api")
    assert ingress.peer_cidrs == addresses(plan, "aa", "db")


def test_mismatched_groups_stay_closed(project: Path) -> None:
    two_tenants(
        project,
        egress=[{"from": "db", "to": "bb", "ports": ["443/tcp"]}],
        ingress=[{"from": "aa/app", "ports": ["443/tcp"]}],
    )
    result, plan = plan_local(project)
    assert rules(plan, "aa") == [] and rules(plan, "bb") == []
    assert len(result.problems.warnings) == 2


def test_disjoint_ports_stay_closed_with_warnings_on_both_sides(project: Path) -> None:
    two_tenants(
        project,
        egress=[{"to": "bb", "ports": ["80/tcp"]}],
        ingress=[{"from": "aa", "ports": ["443/tcp", "80/udp"]}],
    )
    result, plan = plan_local(project)
    assert rules(plan, "aa") == [] and rules(plan, "bb") == []
    files = sorted(w.location.file for w in result.problems.warnings)
    assert files == ["tenants/aa.yaml", "tenants/bb.yaml"]


def test_one_sided_ingress_warning_names_both_files(project: Path) -> None:
    two_tenants(project, egress=[], ingress=[{"from": "aa", "to": "web", "ports": ["443/tcp"]}])
    result, plan = plan_local(project)
    (warning,) = result.problems.warnings
    assert warning.severity == "warning"
    assert warning.location.file == "tenants/bb.yaml"
    assert warning.field == "spec.firewall.ingress[0].from"
    assert "aa declares no matching egress to bb on 443/tcp" in warning.message
    assert warning.expected == "an egress rule in tenants/aa.yaml with to: bb"
    assert warning.related[0].file == "tenants/aa.yaml"
    assert str(warning) in plan.warnings
    assert rules(plan, "bb") == []


def test_one_sided_egress_warning_names_both_files(project: Path) -> None:
    two_tenants(project, egress=[{"to": "bb/web", "ports": ["8443/tcp"]}], ingress=[])
    result, _ = plan_local(project)
    (warning,) = result.problems.warnings
    assert warning.location.file == "tenants/aa.yaml"
    assert warning.field == "spec.firewall.egress[0].to"
    assert "bb declares no matching ingress from aa on 8443/tcp" in warning.message
    assert "tenants/bb.yaml" in warning.expected
    assert warning.related[0].file == "tenants/bb.yaml"


def test_keyword_and_cidr_endpoints(project: Path) -> None:
    edit_site(project, "local", zoneRules=OPEN_ZONES)  # flows here, zones elsewhere
    doc = tenant_doc(
        "aa",
        machines=machines(("web", 1), ("db", 1)),
        ingress=[
            {"from": "intranet", "to": "web", "ports": ["443/tcp", "80/tcp", "443/tcp"]},
            {"from": "192.0.2.0/24", "ports": ["22/tcp"]},
        ],
        egress=[
            {"to": "internet", "ports": ["443/tcp"]},
            {"from": "db", "to": "10.8.0.0/24", "ports": ["873/tcp"]},
            {"from": "db", "to": "extranet", "ports": ["53/udp"]},
        ],
    )
    write_tenant(project, doc)
    _, plan = plan_local(project)
    by_peer = {r.peer: r for r in tenant(plan, "aa").rules}
    intranet = by_peer["intranet"]
    assert (intranet.peer_kind, intranet.direction) == ("keyword", "ingress")
    assert intranet.peer_cidrs == ["10.255.1.0/24"]  # local's intranet stand-in
    assert intranet.ports == ["80/tcp", "443/tcp"]  # sorted, duplicates merged
    assert intranet.local_cidrs == addresses(plan, "aa", "web")
    cidr_in = by_peer["192.0.2.0/24"]
    assert (cidr_in.peer_kind, cidr_in.peer_cidrs) == ("cidr", ["192.0.2.0/24"])
    assert cidr_in.local_cidrs == [tenant(plan, "aa").segment.cidr]
    assert by_peer["internet"].peer_cidrs == ["10.255.3.0/24"]
    assert by_peer["10.8.0.0/24"].local_cidrs == addresses(plan, "aa", "db")
    assert by_peer["extranet"].peer_cidrs == ["10.255.2.0/24"]


def test_duplicate_declarations_compile_once(project: Path) -> None:
    rules_ = [{"from": "intranet", "ports": ["443/tcp"]} for _ in range(2)]
    write_tenant(project, tenant_doc("aa", ingress=rules_))
    _, plan = plan_local(project)
    assert len(tenant(plan, "aa").rules) == 1


def test_several_egresses_can_match_one_ingress(project: Path) -> None:
    two_tenants(
        project,
        egress=[
            {"from": "app", "to": "bb/web", "ports": ["443/tcp"]},
            {"from": "db", "to": "bb/web", "ports": ["443/tcp"]},
        ],
        ingress=[{"from": "aa", "to": "web", "ports": ["443/tcp"]}],
    )
    result, plan = plan_local(project)
    assert sorted(r.peer for r in rules(plan, "bb")) == ["aa/app", "aa/db"]
    assert result.problems.warnings == []


def test_example_flows(project: Path) -> None:
    plan = plan_paths(project, sites=["dc-east"]).plans["dc-east"]
    finance = tenant(plan, "finance")
    (fp,) = [r for r in finance.rules if r.peer_kind == "tenant"]
    assert (fp.direction, fp.peer, fp.local_group, fp.ports) == (
        "ingress",
        "family-planning/app",
        "web",
        ["8443/tcp"],
    )
    assert fp.peer_cidrs == ["10.30.1.10/32", "10.30.1.11/32"]
    assert fp.local_cidrs == ["10.30.2.10/32", "10.30.2.11/32"]
    (back,) = [r for r in tenant(plan, "family-planning").rules if r.peer_kind == "tenant"]
    assert (back.direction, back.peer, back.local_group) == ("egress", "finance/web", "app")


def test_rules_are_sorted_and_deterministic(project: Path) -> None:
    two_tenants(
        project,
        egress=[{"to": "bb", "ports": ["1-100/tcp"]}, {"to": "internet", "ports": ["443/tcp"]}],
        ingress=[{"from": "aa", "ports": ["50/tcp"]}, {"from": "extranet", "ports": ["80/tcp"]}],
    )
    _, first = plan_local(project)
    _, second = plan_local(project)
    assert first.to_json() == second.to_json()
    for t in first.tenants:
        keys = [r.model_dump_json() for r in t.rules]
        assert len(keys) == len(set(keys))


# --------------------------------------------------------------------------- helpers


def test_split_ref_and_is_cidr() -> None:
    assert split_ref("hr") == ("hr", None)
    assert split_ref("hr/web") == ("hr", "web")
    assert is_cidr("10.0.0.0/8") and not is_cidr("hr/web") and not is_cidr("intranet")


@pytest.mark.parametrize(
    ("a", "b", "want"),
    [
        (None, None, (True, None)),
        ("web", None, (True, "web")),
        (None, "web", (True, "web")),
        ("web", "web", (True, "web")),
        ("web", "db", (False, "web")),
    ],
)
def test_narrow(a: str | None, b: str | None, want: tuple[bool, str | None]) -> None:
    assert _narrow(a, b) == want


def test_intersect() -> None:
    a = _ports(["1-100/tcp", "53/udp", "443/tcp"])
    b = _ports(["50-60/tcp", "90-200/tcp", "53/tcp", "443/tcp"])
    got = [str(p) for p in _intersect(a, b)]
    assert got == ["50-60/tcp", "53/tcp", "90-100/tcp", "443/tcp"]
    assert _intersect(a, []) == []
    assert _ports(["53/udp", "22/tcp", "22/tcp"]) == [
        PortRange("tcp", 22, 22),
        PortRange("udp", 53, 53),
    ]
