"""Zones mean something for flows: the site's zoneRules bound every declared flow.

The examples: an extranet tenant opening every port to the whole intranet, an
intranet tenant accepting from or sending to the internet (never allowed by
default), and the same through CIDR endpoints.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from tests.support.problems import assert_located, errors_of, find
from tests.support.project import edit_site, tenant_doc, write_tenant

from tenancy.contract.models import ZoneRules
from tenancy.contract.types import parse_port
from tenancy.plan.planner import PlanResult, plan_paths
from tenancy.plan.zone_rules import _covered


def validate(root: Path) -> PlanResult:
    result = plan_paths(root)
    for e in result.problems.items:
        assert_located(e)
    if result.problems.errors:
        assert result.plans == {}
    return result


def test_extranet_cannot_open_every_port_into_the_intranet(project: Path) -> None:
    """dc-east lets the extranet reach intranet tenants on 443/tcp only."""
    write_tenant(
        project,
        tenant_doc(
            "aa",
            site="dc-east",
            zone="extranet",
            egress=[{"to": "finance", "ports": ["1-65535/tcp"]}],
        ),
    )
    write_tenant(
        project,
        tenant_doc(
            "bb",
            site="dc-east",
            zone="extranet",
            egress=[{"to": "intranet", "ports": ["1-65535/tcp"]}],
        ),
    )
    errors = errors_of(validate(project))
    tenant = find(errors, location="tenants/aa.yaml", field="egress[0].ports")
    assert "between extranet tenants and intranet tenants" in tenant.message
    assert tenant.expected == "ports within 443/tcp (zoneRules.extranet.intranet)"
    assert tenant.found == "1-65535/tcp"
    keyword = find(errors, location="tenants/bb.yaml", field="egress[0].ports")
    assert "between extranet tenants and intranet" in keyword.message


@pytest.mark.parametrize(
    "rule",
    [
        {"ingress": [{"from": "internet", "ports": ["443/tcp"]}]},
        {"egress": [{"to": "internet", "ports": ["443/tcp"]}]},
        {"egress": [{"to": "8.8.8.0/24", "ports": ["53/udp"]}]},  # a CIDR on the internet
    ],
)
def test_the_intranet_never_meets_the_internet_on_dc_east(
    project: Path, rule: dict[str, list[dict[str, Any]]]
) -> None:
    write_tenant(
        project,
        tenant_doc("aa", site="dc-east", ingress=rule.get("ingress"), egress=rule.get("egress")),
    )
    (error,) = errors_of(validate(project), "tenants/aa.yaml")
    assert error.message == "the site's zone rules allow intranet tenants no traffic with internet"
    assert error.expected == "a peer that zoneRules.intranet of site dc-east allows"


def test_without_zone_rules_the_intranet_stays_off_the_internet(project: Path) -> None:
    path = project / "stacks" / "Pulumi.local.yaml"
    text = path.read_text(encoding="utf-8")
    start = text.index("    zoneRules:")
    end = text.index("    flavors:")
    path.write_text(text[:start] + text[end:], encoding="utf-8")  # no zoneRules at all
    write_tenant(project, tenant_doc("aa", egress=[{"to": "internet", "ports": ["443/tcp"]}]))
    errors = errors_of(validate(project))
    assert find(errors, location="tenants/aa.yaml", message="no traffic with internet")
    # and the extranet reaches no intranet tenant: tourism -> hr/web is refused too
    assert find(errors, location="tenants/tourism.yaml", message="no traffic with intranet tenants")


def test_a_cidr_in_the_intranet_client_range_counts_as_intranet(project: Path) -> None:
    """finance's off-site backup target 10.8.0.0/24 lies in dc-east's intranet clients."""
    write_tenant(
        project,
        tenant_doc("aa", site="dc-east", egress=[{"to": "10.8.0.0/24", "ports": ["873/tcp"]}]),
    )
    assert validate(project).ok


def test_both_sides_zone_rules_apply_to_a_tenant_flow(project: Path) -> None:
    """hr (intranet) accepts tourism (extranet) on 8443: allowed on local both ways."""
    assert validate(project).ok
    edit_site(
        project,
        "local",
        zoneRules={"intranet": {"intranet": "any"}, "extranet": {"intranet": ["8443/tcp"]}},
    )
    errors = errors_of(validate(project))
    hr = find(errors, location="tenants/hr.yaml", field="ingress[1].from")
    assert (
        hr.message
        == "the site's zone rules allow intranet tenants no traffic with extranet tenants"
    )


def test_covered_adds_adjacent_ranges() -> None:
    allowed = [parse_port(p) for p in ("80-89/tcp", "90-100/tcp", "53/udp")]
    assert _covered(parse_port("85-95/tcp"), allowed)
    assert not _covered(parse_port("85-101/tcp"), allowed)
    assert not _covered(parse_port("53/tcp"), allowed)
    assert _covered(parse_port("53/udp"), allowed)


def test_zone_rules_defaults() -> None:
    rules = ZoneRules()
    assert rules.allowed("intranet", "internet") is None
    assert rules.allowed("extranet", "intranet") is None
    assert rules.allowed("intranet", "intranet") == "any"
    assert rules.allowed("extranet", "internet") == "any"
