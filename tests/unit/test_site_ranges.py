"""A tenant file claims no address space of the site, and names none as a CIDR endpoint.

The examples are those a hostile department could send: a segment in a public
range, on the internet stand-in, on half the address space or on the ops
network (which all three firewall layers trust for SSH); CIDR endpoints that are
another tenant's segment, the ops network or everything (``0.0.0.0/0``); and the
``internet`` keyword of ``dc-east`` (``0.0.0.0/0``), which covered every tenant.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest
from tests.support.problems import assert_located, errors_of, find
from tests.support.project import OPEN_ZONES, edit_site, grant_quota, tenant_doc, write_tenant

from tenancy.contract.loader import load_site
from tenancy.plan.planner import PlanResult, plan_paths
from tenancy.plan.site_ranges import cidr_classes, effective_internet


def validate(root: Path) -> PlanResult:
    result = plan_paths(root)
    for e in result.problems.items:
        assert_located(e)
    if result.problems.errors:
        assert result.plans == {}  # never a partial plan
    return result


@pytest.mark.parametrize(
    ("cidr", "message"),
    [
        ("8.8.8.0/24", "outside the intranet address pool"),
        ("10.255.3.0/24", "outside the intranet address pool"),  # local's internet stand-in
        ("128.0.0.0/1", "segment size not allowed by the site"),
        ("10.40.7.0/24", "outside the intranet address pool"),  # the other zone's pool
    ],
)
def test_a_segment_stays_in_its_zone_pool(project: Path, cidr: str, message: str) -> None:
    write_tenant(project, tenant_doc("aa", network={"cidr": cidr}))
    error = find(errors_of(validate(project), "tenants/aa.yaml"), message=message)
    assert error.field == "spec.network.cidr" and error.found == cidr


def test_a_segment_size_the_site_states(project: Path) -> None:
    write_tenant(project, tenant_doc("aa", network={"cidr": "10.30.0.0/20"}))
    grant_quota(project, "local", "aa", vcpus=1, memoryGiB=1, storageGiB=10, addresses=4096)
    error = find(errors_of(validate(project)), message="segment size not allowed")
    assert error.expected == "a /22 to /28"  # local: segmentPrefix 24, default range
    edit_site(
        project,
        "local",
        addressPools={
            "intranet": "10.30.0.0/16",
            "extranet": "10.40.0.0/16",
            "explicitPrefixes": [18, 26],
        },
    )
    assert validate(project).ok


def test_a_segment_on_the_ops_network_is_refused(project: Path) -> None:
    edit_site(
        project,
        "local",
        reserved=["10.30.255.0/24", "10.30.250.0/24"],
        ops={"user": "ops", "sshKeyFiles": [], "cidrs": ["10.30.250.0/26"]},
    )
    write_tenant(project, tenant_doc("aa", network={"cidr": "10.30.250.0/24"}))
    errors = errors_of(validate(project), "tenants/aa.yaml")
    assert find(errors, message="overlaps the ops network 10.30.250.0/26")
    assert find(errors, message="overlaps the site reserved range 10.30.250.0/24")


def test_the_site_file_keeps_ops_out_of_the_pools(project: Path) -> None:
    edit_site(project, "local", ops={"user": "ops", "sshKeyFiles": [], "cidrs": ["10.30.7.0/24"]})
    errors = errors_of(validate(project), "stacks/Pulumi.local.yaml")
    error = find(errors, message="overlaps the intranet address pool 10.30.0.0/16")
    assert error.field == "config.tenancy:site.ops.cidrs[0]"
    assert error.expected == "a range outside the pools, or inside a reserved range"


def test_the_site_file_keeps_pools_and_client_ranges_apart(project: Path) -> None:
    edit_site(
        project,
        "local",
        addressPools={"intranet": "10.30.0.0/16", "extranet": "10.30.128.0/17"},
        external={
            "intranet": ["10.30.1.0/24"],
            "extranet": ["10.255.2.0/24"],
            "internet": ["10.255.3.0/24"],
        },
    )
    errors = errors_of(validate(project), "stacks/Pulumi.local.yaml")
    assert find(errors, field="addressPools.extranet", message="overlaps the intranet address pool")
    client = find(errors, field="external.intranet[0]")
    assert client.message == "overlaps the intranet address pool 10.30.0.0/16"


@pytest.mark.parametrize(
    ("peer", "what"),
    [
        ("0.0.0.0/0", "intranet address pool 10.30.0.0/16"),
        ("10.30.9.0/25", "intranet address pool 10.30.0.0/16"),  # bb's segment
        ("10.30.255.0/28", "site reserved range 10.30.255.0/24"),
    ],
)
def test_a_cidr_endpoint_may_not_name_the_site(project: Path, peer: str, what: str) -> None:
    edit_site(project, "local", zoneRules=OPEN_ZONES)
    write_tenant(project, tenant_doc("bb", network={"cidr": "10.30.9.0/24"}))
    write_tenant(project, tenant_doc("aa", egress=[{"to": peer, "ports": ["22/tcp"]}]))
    error = find(errors_of(validate(project), "tenants/aa.yaml"), field="egress[0].to")
    assert what in error.message and error.found == peer
    if peer == "10.30.9.0/25":  # a flow to bb needs bb's consent: name it
        assert error.expected.startswith("the tenant by name (bb)")


def test_a_cidr_endpoint_outside_the_site_needs_no_consent(project: Path) -> None:
    edit_site(project, "local", zoneRules=OPEN_ZONES)
    write_tenant(project, tenant_doc("aa", ingress=[{"from": "192.0.2.0/24", "ports": ["22/tcp"]}]))
    result = validate(project)
    assert result.ok, [str(e) for e in result.problems.errors]


def test_internet_never_covers_the_site(project: Path) -> None:
    site, errors = load_site(project / "stacks" / "Pulumi.dc-east.yaml", "dc-east", project)
    assert site is not None, errors
    internet = [ipaddress.IPv4Network(c) for c in effective_internet(site.model)]
    owned = ["10.30.0.0/16", "172.20.0.0/16", "10.0.0.0/12", "172.16.0.0/14", "192.168.10.0/24"]
    for cidr in owned:
        assert not any(n.overlaps(ipaddress.IPv4Network(cidr)) for n in internet), cidr
    for address in ("8.8.8.8", "1.1.1.1", "10.200.0.1", "192.168.11.1"):
        assert any(ipaddress.IPv4Address(address) in n for n in internet), address


def test_the_plan_uses_the_site_free_internet(project: Path) -> None:
    result = validate(project)
    assert result.ok
    portal = next(t for t in result.plans["dc-east"].tenants if t.name == "culture-tourism-portal")
    (rule,) = [r for r in portal.rules if r.peer == "internet"]
    nets = [ipaddress.IPv4Network(c) for c in rule.peer_cidrs]
    finance = next(t for t in result.plans["dc-east"].tenants if t.name == "finance")
    segment = ipaddress.IPv4Network(finance.segment.cidr)
    assert nets and not any(n.overlaps(segment) for n in nets)


def test_cidr_classes(project: Path) -> None:
    site, _ = load_site(project / "stacks" / "Pulumi.dc-east.yaml", "dc-east", project)
    assert site is not None
    assert cidr_classes("10.8.0.0/24", site.model) == {"intranet"}
    assert cidr_classes("172.16.1.0/24", site.model) == {"extranet"}
    assert cidr_classes("8.8.8.0/24", site.model) == {"internet"}
    assert cidr_classes("0.0.0.0/1", site.model) == {"intranet", "internet"}


def test_the_rule_budget_counts_the_site_free_internet(project: Path) -> None:
    """dc-east's internet is 0.0.0.0/0 minus its ranges: dozens of blocks per rule."""
    ports = [f"{p}/tcp" for p in range(1000, 1060)]
    doc = tenant_doc(
        "aa", site="dc-east", zone="extranet", egress=[{"to": "internet", "ports": ports}]
    )
    edit_site(project, "dc-east", zoneRules=OPEN_ZONES)
    write_tenant(project, doc)
    result = validate(project)
    error = find(errors_of(result, "tenants/aa.yaml"), field="spec.firewall")
    site, _ = load_site(project / "stacks" / "Pulumi.dc-east.yaml", "dc-east", project)
    assert site is not None
    blocks = len(effective_internet(site.model))
    assert blocks > 30
    assert error.message == f"firewall expands into {60 * blocks} rules"
