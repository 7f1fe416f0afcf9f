"""Hostile tenant files are refused cheaply: huge numbers, rule explosions, peer lists.

Tenant files are pull-request input. A number too long to convert, or a firewall
declaration that would expand into hundreds of thousands of rules, must be a
located error at the tenant's file and line, never a traceback or a long stall.
"""

from __future__ import annotations

import ipaddress
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.support.problems import assert_located, errors_of, find
from tests.support.project import tenant_doc, write_tenant
from yaml.constructor import SafeConstructor

from tenancy.contract.errors import SpecError
from tenancy.contract.loader import LoadedSite, LoadedTenant, load_site, load_tenant
from tenancy.contract.models import Tenant
from tenancy.contract.yamlguard import TENANT_RULE_BUDGET
from tenancy.contract.yamlsource import LoadError, load_text
from tenancy.contract.yamltree import MAX_NUMBER_CHARS
from tenancy.plan.model import Plan, RulePlan, TenantPlan
from tenancy.plan.planner import plan_paths
from tenancy.plan.rule_budget import SITE_BUDGET, TENANT_BUDGET, check_rule_budget, count_rules
from tenancy.render.firewall import host_flows, nwfilter_rules

HUGE = {
    "hex": "0x" + "f" * 100_000,
    "binary": "0b" + "1" * 100_000,
    "base 60": "1:" * 300_000 + "1",
    "decimal": "1" * 100_000,
    "float": "1." + "1" * 1_000_000,
    "tagged hex": '!!int "0x' + "f" * 100_000 + '"',
    "tagged float": '!!float "' + "9" * 100_000 + '"',
}


def load_errors(text: str, *, dates: bool = False) -> list[SpecError]:
    with pytest.raises(LoadError) as info:
        load_text(text, "t.yaml", dates=dates)
    return info.value.errors


@pytest.fixture
def no_conversion(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Fail any scalar conversion: a too-long number must be refused unread."""

    def refuse(self: SafeConstructor, node: Any, deep: bool = False) -> Any:
        raise AssertionError(f"converted a {len(node.value)}-character scalar")

    monkeypatch.setattr(SafeConstructor, "construct_object", refuse)
    yield


# --------------------------------------------------------------------------- numbers


@pytest.mark.parametrize("kind", sorted(HUGE))
def test_huge_number_is_a_located_error_without_conversion(kind: str, no_conversion: None) -> None:
    (error,) = load_errors(f"spec:\n  count: {HUGE[kind]}\n")
    assert (error.location.file, error.location.line, error.location.column) == ("t.yaml", 2, 10)
    assert error.field == "spec.count"
    assert error.message == "number too long"
    assert error.expected == f"at most {MAX_NUMBER_CHARS} digits"
    assert len(str(error)) < 300, "the error quotes the whole value"


def test_long_timestamp_is_refused_where_dates_are_read(no_conversion: None) -> None:
    (error,) = load_errors("expires: 2027-03-31 12:00:00." + "1" * 100_000 + "\n", dates=True)
    assert error.message == "date too long" and error.location.line == 1


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("0x" + "f" * (MAX_NUMBER_CHARS - 2), int("f" * (MAX_NUMBER_CHARS - 2), 16)),
        ("9" * MAX_NUMBER_CHARS, int("9" * MAX_NUMBER_CHARS)),
        ("1:30:00", 5400),
        ("0b101", 5),
        ("1.5e+3", 1500.0),
    ],
)
def test_numbers_within_the_bound_still_convert(text: str, value: object) -> None:
    assert load_text(f"a: {text}\n", "t.yaml").data == {"a": value}


def test_int_digit_limit_cannot_be_reached() -> None:
    """Python's smallest digit limit (640) is far above what the bound lets through."""
    old = sys.get_int_max_str_digits()
    sys.set_int_max_str_digits(640)
    try:
        (error,) = load_errors("a: " + "7" * 700 + "\n")
        assert error.message == "number too long"
        biggest = load_text("a: 0x" + "f" * (MAX_NUMBER_CHARS - 2) + "\n", "t.yaml").data["a"]
        assert str(biggest)  # printable in any error message
    finally:
        sys.set_int_max_str_digits(old)


@pytest.mark.parametrize(
    "value", ['!!int ""', '!!int "-"', '!!float ""', '!!bool "maybe"', '!!int "0x"']
)
def test_unconvertible_tagged_scalar_is_located(value: str) -> None:
    (error,) = load_errors(f"a:\n  b: {value}\n")
    assert error.message.startswith("bad scalar") and error.location.line == 2


def test_huge_number_in_a_tenant_file_is_located_by_plan(project: Path) -> None:
    text = (project / "tenants" / "hr.yaml").read_text(encoding="utf-8")
    assert "count: 1" in text
    write_tenant(project, text.replace("count: 1", "count: " + HUGE["base 60"]), "hr")
    result = plan_paths(project)
    error = find(errors_of(result, "tenants/hr.yaml"), message="number too long")
    assert_located(error)
    assert error.field == "spec.machines[0].count"


# --------------------------------------------------------------------------- rule budget


def many_ports(n: int, start: int = 1000) -> list[str]:
    return [f"{start + k}/tcp" for k in range(n)]


def firewall_tenant(
    project: Path, name: str, rules: int, ports: int = 64, *, as_json: bool = False
) -> Path:
    """A tenant of one machine with ``rules`` ingress rules from intranet of ``ports`` each.

    ``as_json``: written as JSON (which is YAML), much faster to write than block YAML.
    """
    ingress = [
        {"from": "intranet", "ports": many_ports(ports, 1000 + 64 * r)} for r in range(rules)
    ]
    doc = tenant_doc(name, ingress=ingress)
    return write_tenant(project, json.dumps(doc) if as_json else doc, name)


def loaded(project: Path, *names: str) -> tuple[dict[str, LoadedTenant], LoadedSite]:
    site, errors = load_site(project / "stacks" / "Pulumi.local.yaml", "local", project)
    assert site is not None, errors
    tenants: dict[str, LoadedTenant] = {}
    for n in names:
        t, errors = load_tenant(project / "tenants" / f"{n}.yaml", f"tenants/{n}.yaml")
        assert t is not None, errors
        tenants[n] = t
    return tenants, site


def test_count_is_ports_times_peer_blocks_times_groups(project: Path) -> None:
    machines = [
        {"name": "web", "count": 3, "flavor": "tiny", "image": "debian-12"},
        {"name": "db", "count": 2, "flavor": "tiny", "image": "debian-12"},
    ]
    write_tenant(project, tenant_doc("peer", machines=machines))
    doc = tenant_doc(
        "calls",
        machines=[dict(machines[0]), {**machines[1], "name": "cache"}],
        ingress=[{"from": "peer/web", "ports": many_ports(5)}],  # 5 x 3 machines x 2 groups
        egress=[
            {"to": "peer/db", "from": "web", "ports": many_ports(4)},  # 4 x 2 x 1
            {"to": "10.8.0.0/24", "ports": ["873/tcp"]},  # 1 x 1 x 2
            {"to": "peer", "from": "cache", "ports": many_ports(2)},  # 2 x 1 segment x 1
        ],
    )
    write_tenant(project, doc)
    tenants, site = loaded(project, "peer", "calls")
    count = count_rules(tenants["calls"], tenants, site)
    assert count.total == 5 * 3 * 2 + 4 * 2 + 1 * 2 + 2
    assert (count.largest, count.largest_field) == (30, "spec.firewall.ingress[0]")


def test_tenant_over_its_budget_is_refused_at_its_firewall(project: Path) -> None:
    """Few enough ports to be read, but applied to two groups: the planner's count refuses."""
    rules = TENANT_BUDGET // 64 // 2 + 1
    machines = [
        {"name": g, "flavor": "tiny", "image": "debian-12", "diskGiB": 4} for g in ("web", "app")
    ]
    ingress = [{"from": "intranet", "ports": many_ports(64, 1000 + 64 * r)} for r in range(rules)]
    path = write_tenant(project, tenant_doc("noisy", machines=machines, ingress=ingress))
    tenants, site = loaded(project, "noisy")
    expected = count_rules(tenants["noisy"], tenants, site).total
    assert expected == rules * 64 * 2 * len(site.model.external.intranet) > TENANT_BUDGET
    result = plan_paths(project)
    assert not result.plans
    error = find(errors_of(result, "tenants/noisy.yaml"), message="firewall expands into")
    assert error.field == "spec.firewall"
    text = path.read_text(encoding="utf-8").splitlines()
    assert text[error.location.line - 1].strip() == "firewall:"
    assert f"into {expected} rules" in error.message and str(TENANT_BUDGET) in error.expected


def test_ports_over_the_budget_are_refused_while_reading(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """More distinct ports than the budget: refused at ``firewall:``, the rest never read."""
    rules = TENANT_BUDGET // 64 + 1
    path = firewall_tenant(project, "noisy", rules)
    # text past the bound that would not even parse: reading stopped before it
    path.write_text(path.read_text(encoding="utf-8") + "  policies: [unclosed\n", "utf-8")
    lines = path.read_text(encoding="utf-8").splitlines()
    result = plan_paths(project)
    assert not result.plans
    (error,) = errors_of(result, "tenants/noisy.yaml")
    assert error.field == "spec.firewall" and lines[error.location.line - 1].strip() == "firewall:"
    assert error.message == f"firewall expands into more than {TENANT_BUDGET} rules"
    assert str(TENANT_BUDGET) in error.expected and f"at least {TENANT_BUDGET + 1}" in error.found
    assert len(str(error)) < 400

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("validated a file refused while reading")

    monkeypatch.setattr(Tenant, "model_validate", refuse)
    model, errors = load_tenant(path, "tenants/noisy.yaml")
    assert model is None and [str(e) for e in errors] == [str(error)]


def rules_text(rules: list[list[str]], where: str = "spec") -> str:
    """A document holding ``where.firewall.ingress`` rules with these ports (flow YAML)."""
    items = "\n".join(f"      - {{from: intranet, ports: [{', '.join(r)}]}}" for r in rules)
    return f"{where}:\n  firewall:\n    ingress:\n{items}\n    egress: []\n"


def test_reading_counts_distinct_ports_of_tenant_rules_only() -> None:
    full, rest = divmod(TENANT_RULE_BUDGET, 64)
    at_budget = [many_ports(64, 1000 + 64 * r) for r in range(full)] + [many_ports(rest, 60000)]
    doc = load_text(rules_text(at_budget), "t.yaml")
    assert sum(len(set(r["ports"])) for r in doc.data["spec"]["firewall"]["ingress"]) == (
        TENANT_RULE_BUDGET
    )
    (error,) = load_errors(rules_text([*at_budget, ["7/udp"]]))
    assert (error.field, error.location.line) == ("spec.firewall", 2)
    # the same port again in a rule counts once; the same lists elsewhere not at all
    repeated = [["443/tcp"] * 64 for _ in range(TENANT_RULE_BUDGET // 32)]
    assert load_text(rules_text(repeated), "t.yaml").data["spec"]["firewall"]["ingress"]
    elsewhere = load_text(rules_text([*at_budget, ["7/udp"]], where="site"), "t.yaml")
    assert len(elsewhere.data["site"]["firewall"]["ingress"]) == len(at_budget) + 1


def test_a_rule_counts_each_port_at_least_once(project: Path) -> None:
    """The reader's bound is a lower bound: no machines still counts each port once."""
    ingress = [{"from": "intranet", "ports": many_ports(3)}]
    write_tenant(project, tenant_doc("bare", machines=[], ingress=ingress))
    tenants, site = loaded(project, "bare")
    assert count_rules(tenants["bare"], tenants, site).total == 3 * len(
        site.model.external.intranet
    )


def test_tenant_at_its_budget_plans(project: Path) -> None:
    firewall_tenant(project, "busy", TENANT_BUDGET // 64)
    result = plan_paths(project)
    assert result.ok, [str(e) for e in result.problems.errors]


def test_site_over_its_budget_names_the_largest_tenant(project: Path) -> None:
    per_tenant = TENANT_BUDGET // 64  # each tenant within its own budget
    count = SITE_BUDGET // (per_tenant * 64) + 1
    for k in range(count):
        name = f"load-{chr(97 + k // 26)}{chr(97 + k % 26)}"
        firewall_tenant(project, name, per_tenant, as_json=True)
    firewall_tenant(
        project, "zz-top", per_tenant, ports=63, as_json=True
    )  # not the largest: fewer ports
    result = plan_paths(project)
    errors = [e for e in result.problems.errors if "tenants of site local" in e.message]
    assert len(errors) == 1 and not result.plans
    (error,) = errors
    assert error.location.file == "tenants/load-aa.yaml" and error.field == "spec.firewall"
    assert str(SITE_BUDGET) in error.expected and error.related
    assert not [e for e in result.problems.errors if "firewall expands into" in e.message]


def test_site_budget_with_small_limits(project: Path) -> None:
    for name in ("one", "two"):
        firewall_tenant(project, name, 1, ports=10)
    tenants, site = loaded(project, "one", "two")
    assert check_rule_budget(tenants, site, tenant_budget=10, site_budget=20) == []
    (error,) = check_rule_budget(tenants, site, tenant_budget=10, site_budget=19)
    assert "20 firewall rules" in error.message and error.location.file == "tenants/one.yaml"
    errors = check_rule_budget(tenants, site, tenant_budget=9, site_budget=100)
    assert [e.location.file for e in errors] == ["tenants/one.yaml", "tenants/two.yaml"]


# --------------------------------------------------------------------------- collapsing


def planned_tenant(project: Path) -> tuple[Plan, TenantPlan]:
    result = plan_paths(project, sites=["local"])
    assert result.ok, [str(e) for e in result.problems.errors]
    plan = result.plans["local"]
    return plan, plan.tenants[0]


def peer_rule(peers: list[str]) -> RulePlan:
    return RulePlan(
        direction="ingress",
        local_group=None,
        local_cidrs=["10.30.9.0/24"],
        peer="other/app",
        peer_kind="tenant",
        peer_cidrs=peers,
        ports=["443/tcp", "8000-8100/tcp"],
    )


def test_consecutive_peer_instances_become_one_block(project: Path) -> None:
    plan, tenant = planned_tenant(project)
    consecutive = [f"10.50.0.{i}/32" for i in range(64, 128)]
    every_other = [f"10.60.0.{i}/32" for i in range(0, 128, 2)]
    changed = tenant.model_copy(update={"rules": [peer_rule(consecutive + every_other)]})
    group = tenant.machines[0].group
    rules = [r for r in nwfilter_rules(changed, group, []) if r.priority == 300]
    peers = {(r.peer_ip, r.peer_mask) for r in rules}
    assert ("10.50.0.64", 26) in peers
    assert not any(ip.startswith("10.50.") and mask == 32 for ip, mask in peers)
    assert len([p for p in peers if p[0].startswith("10.60.")]) == 64  # nothing to merge
    assert len(rules) == 2 * (1 + 64)  # per port: one block, 64 lone addresses

    flows = host_flows(plan.model_copy(update={"tenants": [changed]}))
    (flow,) = [f for f in flows if f.comment.endswith("other/app")]
    assert flow.src[0] == "10.50.0.64/26" and len(flow.src) == 65
    assert flow.ports == "{ 443, 8000-8100 }"
    assert [ipaddress.IPv4Network(s) for s in flow.src] == sorted(
        ipaddress.IPv4Network(s) for s in flow.src
    )


def test_collapsing_is_deterministic(project: Path) -> None:
    _, tenant = planned_tenant(project)
    peers = [f"10.50.0.{i}/32" for i in range(100)]
    a = tenant.model_copy(update={"rules": [peer_rule(peers)]})
    b = tenant.model_copy(update={"rules": [peer_rule(list(reversed(peers)))]})
    group = tenant.machines[0].group
    assert nwfilter_rules(a, group, []) == nwfilter_rules(b, group, [])
