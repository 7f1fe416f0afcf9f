"""Variables of the security baseline: rendered from plan + site + catalogue + waivers.

Pure functions on the repository's example tenants and sites (no hosts). The
shapes are checked against the roles themselves: the site variables their
defaults read, and the address/port patterns the firewall role accepts.
"""

from __future__ import annotations

import re
from datetime import date
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.support.project import OPEN_ZONES, REPO, edit_site, tenant_doc, write_tenant

from tenancy.contract.host_vars import CONTROLS, ROLES, SITE_VARIABLES
from tenancy.contract.loader import load_site, site_file
from tenancy.contract.models import Site
from tenancy.plan.model import Plan
from tenancy.plan.planner import plan_paths
from tenancy.policy.catalogue import Catalogue
from tenancy.policy.ops_keys import OpsKeys
from tenancy.policy.variables import (
    PolicySources,
    VariablesError,
    firewall_rules,
    load_policy_sources,
    policy_inventory,
    selected_controls,
    site_problems,
    site_variables,
    tenant_hosts,
)
from tenancy.policy.waivers import Waiver
from tenancy.project import Project

TODAY = date(2026, 11, 28)
OPS_KEYS = OpsKeys(("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOpsKeyOfTheTests ops@site",))
FIREWALL_VARS = yaml.safe_load((REPO / "roles/tenancy_firewall/vars/main.yml").read_text())
RULE_KEYS = {"direction", "peer_cidr", "proto", "port", "comment"}


def site_spec(root: Path, name: str) -> Site:
    site, errors = load_site(site_file(root / "stacks", name), name, root)
    assert site is not None, errors
    return site.model


def plan_for(root: Path, name: str) -> Plan:
    result = plan_paths(root, None, sites=[name])
    assert result.ok, [str(e) for e in result.problems.errors]
    return result.plans[name]


@pytest.fixture(scope="module")
def sources() -> PolicySources:
    return load_policy_sources(Project.at(REPO))


@pytest.fixture(scope="module")
def local_plan() -> Plan:
    return plan_for(REPO, "local")


@pytest.fixture(scope="module")
def local_site() -> Site:
    return site_spec(REPO, "local")


def waiver(control: str, tenant: str, hosts: list[str], expires: date) -> Waiver:
    return Waiver(
        control=control,
        tenant=tenant,
        hosts=hosts,
        justification="A compensating control is documented in the risk record.",
        approved_by="security-office@example.gov",
        approved_on=date(2026, 11, 2),
        expires=expires,
    )


# -- site variables ----------------------------------------------------------------


def test_local_site_variables_fall_back_to_the_segment_gateway(
    local_plan: Plan, local_site: Site
) -> None:
    hr = next(t for t in local_plan.tenants if t.name == "hr")
    got = site_variables(local_site, hr, OPS_KEYS.keys)
    gateway = hr.segment.gateway
    # The local site names no ops networks and no NTP servers: the hypervisor (the
    # segment gateway, which is also the controller here) is both.
    assert got.ops_cidrs == (f"{gateway}/32",)
    assert got.ntp_servers == (gateway,)
    assert got.apt_proxy == ""
    assert got.apt_mirror == ""
    assert got.syslog_host == ""
    assert got.syslog_port == 514
    assert got.syslog_protocol == "tcp"
    assert set(got.to_inventory()) == set(SITE_VARIABLES)


def test_site_settings_pass_through(local_plan: Plan, local_site: Site) -> None:
    site = local_site.model_copy(
        update={
            "ops": local_site.ops.model_copy(update={"cidrs": ["10.99.0.0/26"]}),
            "ntp_servers": ["10.99.0.5", "10.99.0.6"],
            "package_mirror": "http://10.99.0.7:3142",
        }
    )
    hr = next(t for t in local_plan.tenants if t.name == "hr")
    got = site_variables(site, hr, OPS_KEYS.keys)
    assert got.ops_cidrs == ("10.99.0.0/26", f"{hr.segment.gateway}/32")
    assert got.ntp_servers == ("10.99.0.5", "10.99.0.6")
    assert got.apt_proxy == "http://10.99.0.7:3142"
    assert site_problems(site) == []


def test_names_where_the_firewall_needs_addresses_are_site_problems() -> None:
    east = site_spec(REPO, "dc-east")
    problems = site_problems(east)
    assert any("ntpServers[0] 'ntp1.dc.example.gov'" in p for p in problems), problems
    assert any("packageMirror" in p for p in problems), problems
    assert all(p.startswith("site dc-east: ") for p in problems)


def test_every_site_variable_a_role_reads_is_rendered() -> None:
    """The interface matches: roles' defaults read only tenancy_site_* names we render."""
    read: set[str] = set()
    for defaults in (REPO / "roles").glob("*/defaults/main.yml"):
        read |= set(re.findall(r"\btenancy_site_[a-z_]+", defaults.read_text()))
    assert read, "no role reads a site variable?"
    assert read <= set(SITE_VARIABLES), read - set(SITE_VARIABLES)
    playbook = (REPO / "policies/playbook.yml").read_text()
    assert all(name in playbook for name in SITE_VARIABLES), "playbook header documents them"


# -- firewall rules ----------------------------------------------------------------


def test_firewall_rules_have_the_roles_shape(local_plan: Plan) -> None:
    port_re = re.compile(FIREWALL_VARS["tenancy_firewall_port_pattern"])
    address_re = re.compile(FIREWALL_VARS["tenancy_firewall_address_pattern"])
    seen = 0
    for tenant in local_plan.tenants:
        for group in {m.group for m in tenant.machines}:
            for rule in firewall_rules(tenant, group):
                seen += 1
                assert set(rule) == RULE_KEYS, rule
                assert rule["direction"] in ("ingress", "egress")
                assert rule["proto"] in ("tcp", "udp")
                assert address_re.match(rule["peer_cidr"]), rule
                assert isinstance(rule["port"], int | str)
                assert port_re.match(str(rule["port"])), rule
                assert len(rule["comment"]) <= 100 and '"' not in rule["comment"]
    assert seen >= 4


def test_single_ports_are_ints_and_ranges_strings(project: Path) -> None:
    edit_site(project, "local", zoneRules=OPEN_ZONES)  # flows here, zones elsewhere
    write_tenant(
        project,
        tenant_doc(
            "ranges",
            ingress=[{"from": "intranet", "to": "app", "ports": ["8000-8080/tcp", "443/tcp"]}],
            egress=[{"to": "internet", "ports": ["53/udp"]}],
        ),
    )
    plan = plan_for(project, "local")
    tenant = next(t for t in plan.tenants if t.name == "ranges")
    rules = firewall_rules(tenant, "app")
    by_port = {r["port"]: r for r in rules}
    assert by_port["8000-8080"]["proto"] == "tcp" and by_port[443]["direction"] == "ingress"
    assert by_port[53] == {
        "direction": "egress",
        "peer_cidr": "10.255.3.0/24",
        "proto": "udp",
        "port": 53,
        "comment": "egress internet 53/udp",
    }


# -- the inventory -------------------------------------------------------------------


def test_inventory_carries_every_policy_variable(
    local_plan: Plan, local_site: Site, sources: PolicySources
) -> None:
    inv = policy_inventory(local_plan, local_site, sources, TODAY, ops_keys=OPS_KEYS)
    hosts = tenant_hosts(inv)
    assert sorted(hosts) == sorted(m.domain for m in local_plan.machines())
    for name, hv in hosts.items():
        assert hv["ansible_user"] == "ops", name
        assert hv["tenancy_profiles"] == ["baseline"], name
        assert hv["tenancy_waived_controls"] == [], name
        assert all(set(r) == RULE_KEYS for r in hv["tenancy_firewall_rules"]), name
        for var in SITE_VARIABLES:
            assert var in hv, (name, var)
        gateway = next(t for t in local_plan.tenants if t.name == hv["tenancy_tenant"])
        assert f"{gateway.segment.gateway}/32" in hv["tenancy_site_ops_cidrs"]
    # same groups as `tenancy inventory`
    assert set(inv["all"]["children"]) == {"hr", "tourism"}
    assert set(inv["all"]["children"]["hr"]["children"]) == {"hr_web"}


def test_inventory_is_yaml_safe(local_plan: Plan, local_site: Site, sources: PolicySources) -> None:
    inv = policy_inventory(local_plan, local_site, sources, TODAY, ops_keys=OPS_KEYS)
    assert yaml.safe_load(yaml.safe_dump(inv)) == inv


def test_tenant_filter(local_plan: Plan, local_site: Site, sources: PolicySources) -> None:
    inv = policy_inventory(local_plan, local_site, sources, TODAY, ["tourism"], ops_keys=OPS_KEYS)
    assert list(inv["all"]["children"]) == ["tourism"]
    assert list(tenant_hosts(inv)) == ["tourism-web-1"]


def test_unknown_tenant_is_an_error(
    local_plan: Plan, local_site: Site, sources: PolicySources
) -> None:
    with pytest.raises(VariablesError) as err:
        policy_inventory(local_plan, local_site, sources, TODAY, ["nope"], ops_keys=OPS_KEYS)
    assert "tenant 'nope' is not planned on site local (planned: hr, tourism)" in str(err.value)


def test_unknown_profile_is_an_error_naming_the_file(
    project: Path, local_site: Site, sources: PolicySources
) -> None:
    # validation refuses the profile (test_derived_names); a plan made otherwise still is refused
    write_tenant(project, tenant_doc("strict", policies=["baseline"]))
    valid = plan_for(project, "local")
    tenants = [
        t.model_copy(update={"policies": ["baseline", "pci-dss"]}) if t.name == "strict" else t
        for t in valid.tenants
    ]
    plan = valid.model_copy(update={"tenants": tenants})
    with pytest.raises(VariablesError) as err:
        policy_inventory(plan, local_site, sources, TODAY, ["strict"], ops_keys=OPS_KEYS)
    message = str(err.value)
    assert "strict.yaml" in message and "unknown profile 'pci-dss'" in message
    assert "baseline, mlps-level3" in message


def test_site_problems_are_errors_unless_left_to_the_caller(sources: PolicySources) -> None:
    east = site_spec(REPO, "dc-east")
    plan = plan_for(REPO, "dc-east")
    with pytest.raises(VariablesError) as err:
        policy_inventory(plan, east, sources, TODAY, ops_keys=OPS_KEYS)
    assert "ntpServers" in str(err.value)
    inv = policy_inventory(plan, east, sources, TODAY, check_site=False, ops_keys=OPS_KEYS)
    hosts = tenant_hosts(inv)
    assert hosts and all(h["tenancy_site_ops_cidrs"][0] == "10.30.0.0/26" for h in hosts.values())
    level3 = [h for h in hosts.values() if "mlps-level3" in h["tenancy_profiles"]]
    assert level3, "finance and family-planning use mlps-level3"


def test_active_waivers_only_for_the_hosts_they_name(
    local_plan: Plan, local_site: Site, sources: PolicySources
) -> None:
    waivers = (
        waiver("BASE-SSH-08", "hr", ["hr-portal-1"], date(2027, 1, 31)),
        waiver("BASE-TIME-02", "hr", [], date(2027, 1, 31)),
        waiver("BASE-UPD-01", "hr", [], date(2026, 11, 27)),  # expired yesterday
        waiver("BASE-KRN-03", "tourism", ["someone-else"], date(2027, 1, 31)),
    )
    both = PolicySources(catalogue=sources.catalogue, waivers=waivers)
    hosts = tenant_hosts(policy_inventory(local_plan, local_site, both, TODAY, ops_keys=OPS_KEYS))
    assert hosts["hr-portal-1"]["tenancy_waived_controls"] == ["BASE-SSH-08", "BASE-TIME-02"]
    assert hosts["tourism-web-1"]["tenancy_waived_controls"] == []
    # the expiry day itself still counts
    on_expiry = tenant_hosts(
        policy_inventory(local_plan, local_site, both, date(2026, 11, 27), ops_keys=OPS_KEYS)
    )
    assert "BASE-UPD-01" in on_expiry["hr-portal-1"]["tenancy_waived_controls"]


def test_repository_waivers_load(sources: PolicySources) -> None:
    assert sources.waivers, "policies/waivers/example.yaml ships two examples"
    assert {w.tenant for w in sources.waivers} == {"example"}


def test_tenant_hosts_merges_group_and_host_vars() -> None:
    inv: dict[str, Any] = {
        "all": {
            "vars": {"a": 1, "b": 1},
            "children": {
                "t": {
                    "vars": {"b": 2, "c": 2},
                    "children": {"t_g": {"vars": {"c": 3}, "hosts": {"h": {"d": 4, "a": 9}}}},
                }
            },
        }
    }
    assert tenant_hosts(inv) == {"h": {"a": 9, "b": 2, "c": 3, "d": 4}}


# -- the control selection: computed here, applied as given by the playbook -------------


def _expected(sources: PolicySources, profiles: list[str], waived: list[str]) -> list[str]:
    """The profiles' controls through ``extends``, waived ones removed, in catalogue order."""
    return [c.id for c in sources.catalogue.controls_for(profiles) if c.id not in waived]


@pytest.mark.parametrize("site_name", ["local", "dc-east"])
def test_every_host_gets_its_resolved_controls_and_roles(
    site_name: str, sources: PolicySources
) -> None:
    plan, site = plan_for(REPO, site_name), site_spec(REPO, site_name)
    hosts = tenant_hosts(
        policy_inventory(plan, site, sources, TODAY, check_site=False, ops_keys=OPS_KEYS)
    )
    assert hosts
    for name, hv in hosts.items():
        wanted = _expected(sources, hv["tenancy_profiles"], hv["tenancy_waived_controls"])
        assert hv[CONTROLS] == wanted, name
        roles = [sources.catalogue.control(cid).implements.role for cid in wanted]
        assert hv[ROLES] == list(dict.fromkeys(roles)), name
    level3 = {c.id for c in sources.catalogue.controls_for(["mlps-level3"])}
    assert any(set(hv[CONTROLS]) == level3 for hv in hosts.values()) == (site_name == "dc-east")


def test_waived_controls_leave_the_selection_and_a_role_without_controls_goes(
    local_plan: Plan, local_site: Site, sources: PolicySources
) -> None:
    time_controls = [
        c.id for c in sources.catalogue.controls if c.implements.role == "tenancy_time"
    ]
    waivers = tuple(waiver(cid, "hr", ["hr-portal-1"], date(2027, 1, 31)) for cid in time_controls)
    both = PolicySources(catalogue=sources.catalogue, waivers=waivers)
    hosts = tenant_hosts(policy_inventory(local_plan, local_site, both, TODAY, ops_keys=OPS_KEYS))
    portal, other = hosts["hr-portal-1"], hosts["tourism-web-1"]
    assert portal["tenancy_waived_controls"] == sorted(time_controls)
    assert portal[CONTROLS] == _expected(sources, ["baseline"], time_controls)
    assert "tenancy_time" not in portal[ROLES] and "tenancy_time" in other[ROLES]
    assert set(time_controls) <= set(other[CONTROLS])


def test_selection_follows_three_levels_of_extends(sources: PolicySources) -> None:
    """A chain as deep as the catalogue allows today resolves completely (no fixed unrolling)."""
    doc = sources.catalogue.model_dump(by_alias=True)
    level3 = doc["profiles"]["mlps-level3"]
    moved = level3["controls"]
    doc["profiles"]["level-1"] = {"title": "L1", "extends": ["baseline"], "controls": moved[:3]}
    doc["profiles"]["level-2"] = {"title": "L2", "extends": ["level-1"], "controls": moved[3:6]}
    level3.update(extends=["level-2"], controls=moved[6:])
    deep = Catalogue.model_validate(doc)
    assert deep.profile_chain("mlps-level3") == ["mlps-level3", "level-2", "level-1", "baseline"]
    chosen = [c.id for c in selected_controls(deep, ["mlps-level3"], ["MLPS-ACC-01"])]
    flat = [c.id for c in sources.catalogue.controls_for(["mlps-level3"])]
    assert chosen == [cid for cid in flat if cid != "MLPS-ACC-01"]


def test_playbook_applies_the_rendered_selection_without_resolving_it() -> None:
    play = yaml.safe_load((REPO / "policies/playbook.yml").read_text())[0]
    pre_tasks = play["pre_tasks"]
    # the play checks the selection it is given; it computes none
    assert len(pre_tasks) == 1 and "ansible.builtin.assert" in pre_tasks[0]
    checks = " ".join(pre_tasks[0]["ansible.builtin.assert"]["that"])
    assert CONTROLS in checks and ROLES in checks
    assert "extends" not in yaml.safe_dump(pre_tasks)
    for entry in play["roles"]:
        assert entry["vars"] == {f"{entry['role']}_controls": "{{ " + CONTROLS + " }}"}
        assert entry["when"] == f"'{entry['role']}' in {ROLES}"
