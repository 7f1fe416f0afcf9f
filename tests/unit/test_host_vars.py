"""Host variables as the inventory holds them and as Python reads them back (no hosts)."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from tenancy.contract.host_vars import (
    ANSIBLE_HOST,
    CONTROLS,
    FIREWALL_RULES,
    PROFILES,
    SITE_SYSLOG_PORT,
    SITE_VARIABLES,
    HostVars,
    HostVarsError,
    PolicyVars,
    SiteVars,
    parse_hosts,
)

RULE = {"direction": "ingress", "peer_cidr": "10.255.1.0/24", "proto": "tcp", "port": 443}


def test_a_host_round_trips_through_yaml() -> None:
    host = HostVars(
        address="10.30.0.10",
        user="ops",
        tenant="hr",
        policy=PolicyVars(
            profiles=("baseline",),
            waived_controls=("BASE-SSH-08",),
            controls=("BASE-SSH-01",),
            roles=("tenancy_ssh",),
            firewall_rules=(RULE,),
        ),
        site=SiteVars(ops_cidrs=("10.30.0.1/32",), ntp_servers=("10.30.0.1",), syslog_port=6514),
    )
    rendered = yaml.safe_load(yaml.safe_dump(host.to_inventory()))
    assert rendered[ANSIBLE_HOST] == "10.30.0.10" and rendered[CONTROLS] == ["BASE-SSH-01"]
    assert HostVars.from_inventory(rendered) == host


def test_a_hand_written_inventory_reads_with_defaults() -> None:
    host = HostVars.from_inventory({PROFILES: "mlps-level3"})
    assert host.address is None and host.address_or("web-1") == "web-1" and host.user == "ops"
    assert host.policy.profiles == ("mlps-level3",), "one name is a list of one"
    assert host.policy.controls is None, "no selection rendered: None, not empty"
    assert host.site == SiteVars() and host.site.syslog_port == 514
    assert HostVars.from_inventory({}).policy.profiles_or_default() == ("baseline",)
    assert HostVars().to_inventory().keys() >= set(SITE_VARIABLES)


def test_flows_that_are_not_mappings_are_left_out() -> None:
    host = HostVars.from_inventory(PolicyVars(firewall_rules=(RULE,)).to_inventory())
    assert host.policy.firewall_rules == (RULE,)
    odd: dict[str, Any] = {FIREWALL_RULES: [RULE, "443/tcp"]}
    assert HostVars.from_inventory(odd).policy.firewall_rules == (RULE,)


@pytest.mark.parametrize(
    ("key", "value", "words"),
    [
        (SITE_SYSLOG_PORT, "syslog", "expected a port number"),
        (PROFILES, {"baseline": True}, "expected a list of names"),
        (FIREWALL_RULES, "443/tcp", "expected a list of flows"),
    ],
)
def test_a_value_of_the_wrong_kind_names_its_variable(key: str, value: Any, words: str) -> None:
    with pytest.raises(HostVarsError, match=f"inventory variable {key}: {words}"):
        HostVars.from_inventory({key: value})


def test_parse_hosts_reads_every_host() -> None:
    hosts = parse_hosts({"a": {ANSIBLE_HOST: "10.0.0.1"}, "b": {}})
    assert {name: hv.address_or(name) for name, hv in hosts.items()} == {"a": "10.0.0.1", "b": "b"}
