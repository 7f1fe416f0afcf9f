"""The guardrails policy pack's rules, called directly (no engine), plus the pack's server.

Each rule gets a failing and a passing example built by hand, and the whole pack is run
over the program the example sites build under mocks (it must pass, and fail once a
resource is broken the way each rule guards against).
"""

from __future__ import annotations

import contextlib
import copy
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc  # type: ignore[import-untyped,unused-ignore]  # untyped without types-grpcio
import jsonschema  # type: ignore[import-untyped,unused-ignore]  # untyped without types-jsonschema
import pytest
import tenancy_guardrails as g  # the pack directory: pytest pythonpath (pyproject.toml)
from google.protobuf import (  # type: ignore[import-untyped,unused-ignore]  # untyped without types-protobuf
    empty_pb2,
    json_format,
    struct_pb2,
)
from pulumi.runtime.proto import analyzer_pb2, analyzer_pb2_grpc, language_pb2, language_pb2_grpc
from pulumi_mocks import Program, program_inputs, run_program
from pulumi_policy.proxy import UNKNOWN_STRING_VALUE, unknown_checking_proxy
from tests.support.project import REPO

from tenancy.cli.guardrails import pack_config, pack_dir
from tenancy.infra import program as tenancy_program
from tenancy.infra.langhost import serve
from tenancy.infra.program_config import ProgramInputs
from tenancy.plan.planner import plan_paths
from tenancy.project import Project

PACK = pack_dir(Project.at(REPO))  # the installed package's folder, as `tenancy preview` uses

GIB = 1024**3


@dataclass
class Opts:
    protect: bool = False


@dataclass
class Res:
    """Stands in for pulumi_policy's ResourceValidationArgs and PolicyResource."""

    resource_type: str
    props: Any
    name: str
    parent: Res | None = None
    opts: Opts = field(default_factory=Opts)
    config: dict[str, Any] = field(default_factory=dict)

    @property
    def urn(self) -> str:
        kind = self.resource_type.rsplit(":", 1)[-1]
        return f"urn:pulumi:test::tenancy::{kind}::{self.name}"

    def get_config(self) -> dict[str, Any]:
        return self.config


@dataclass
class Stack:
    resources: list[Res]
    config: dict[str, Any] = field(default_factory=dict)

    def get_config(self) -> dict[str, Any]:
        return self.config


class Violations(list[tuple[str, str | None]]):
    def __call__(self, message: str, urn: str | None = None) -> None:
        self.append((message, urn))


def check(rule: Callable[[Any, Any], None], args: Any) -> Violations:
    found = Violations()
    rule(args, found)
    return found


def domain(name: str = "hr-portal-1", *, parent: Res | None = None, **nic: Any) -> Res:
    iface = {"network": "tenancy-hr", "mac": "52:54:00:00:00:01", **nic}
    iface = {k: v for k, v in iface.items() if v is not None}
    props = {"name": name, "vcpus": 1, "memory_mib": 512, "interfaces": [iface]}
    return Res(g.DOMAIN, props, f"{name}-domain", parent=parent)


# --- (a) domain-interfaces-filtered -----------------------------------------------------


def test_interface_without_filter_fails() -> None:
    found = check(g.domain_interfaces_filtered, domain(filter=None))
    assert len(found) == 1, found
    message, urn = found[0]
    assert "52:54:00:00:00:01" in message and "no nwfilter" in message
    assert urn is not None and urn.endswith("::hr-portal-1-domain")
    assert check(g.domain_interfaces_filtered, domain(filter=""))


def test_interface_with_filter_passes() -> None:
    assert not check(g.domain_interfaces_filtered, domain(filter="tenancy-hr-web"))
    # during preview the filter name may be an unknown output: present, not missing
    unknown = domain(filter=UNKNOWN_STRING_VALUE)
    unknown.props = unknown_checking_proxy(unknown.props)
    assert not check(g.domain_interfaces_filtered, unknown)
    assert not check(g.domain_interfaces_filtered, Res(g.NETWORK, {}, "not-a-domain"))


# --- (c) data-volume-protected ----------------------------------------------------------


def volume(name: str, protect: bool, **props: Any) -> Res:
    base = {"uri": "qemu:///system", "pool": "p", "name": name, "format": "qcow2"}
    return Res(g.VOLUME, {**base, **props}, name, opts=Opts(protect))


def test_unprotected_data_volume_fails() -> None:
    found = check(g.data_volume_protected, volume("finance-db-1-data.qcow2", False, capacity=GIB))
    assert len(found) == 1 and "not protected" in found[0][0], found
    assert found[0][1] is not None and found[0][1].endswith("::finance-db-1-data.qcow2")


def test_protected_data_volume_and_other_shapes_pass() -> None:
    assert not check(g.data_volume_protected, volume("d.qcow2", True, capacity=GIB))
    # root overlay and base image are not data volumes, protected or not
    assert not check(g.data_volume_protected, volume("r.qcow2", False, backing_volume="/b"))
    assert not check(g.data_volume_protected, volume("b.qcow2", False, source="/img"))
    # an overlay's backing path is an unknown output in a first preview
    root = volume("r.qcow2", False, capacity=GIB, backing_volume=UNKNOWN_STRING_VALUE)
    root.props = unknown_checking_proxy(root.props)
    assert not check(g.data_volume_protected, root)


def test_approved_machine_may_drop_data_volume_protection() -> None:
    vol = volume("finance-db-1-data.qcow2", False, capacity=GIB)
    vol.config = {"approved": ["finance-db-1"]}
    assert not check(g.data_volume_protected, vol)
    vol.config = {"approved": ["finance-db-10", "finance-app-1"]}  # other machines' approval
    assert check(g.data_volume_protected, vol)


# --- (d) tenant-within-quota ------------------------------------------------------------


def tenant(name: str, quota: dict[str, int] | None) -> Res:
    outputs: dict[str, Any] = {"machines": {}}
    if quota is not None:
        outputs["quota"] = quota
    return Res(g.TENANT_HOSTING, outputs, name)


def vm_of(owner: Res, name: str, vcpus: int, memory_mib: int, disk_gib: int) -> list[Res]:
    vm = Res("tenancy:infra:VirtualMachine", {}, name, parent=owner)
    dom = domain(name, parent=vm)
    dom.props.update(vcpus=vcpus, memory_mib=memory_mib)
    root = Res(g.VOLUME, {"name": f"{name}-root.qcow2", "capacity": disk_gib * GIB}, f"{name}-root")
    root.parent = vm
    return [vm, dom, root]


QUOTA = {"vcpus": 4, "memoryGiB": 4, "storageGiB": 60}


def test_tenant_over_quota_fails() -> None:
    hr = tenant("hr", QUOTA)
    res = [hr, *vm_of(hr, "hr-a-1", 2, 2048, 20), *vm_of(hr, "hr-a-2", 4, 4096, 50)]
    found = check(g.tenant_within_quota, Stack(res))
    messages = "\n".join(m for m, _ in found)
    assert "6 vCPUs, over its quota of 4" in messages
    assert "6 memory GiB, over its quota of 4" in messages
    assert "70 storage GiB, over its quota of 60" in messages
    assert all(urn == hr.urn for _, urn in found), found


def test_tenant_within_quota_passes_and_config_ceiling_applies() -> None:
    hr = tenant("hr", QUOTA)
    res = [hr, *vm_of(hr, "hr-a-1", 2, 2048, 20), *vm_of(hr, "hr-a-2", 2, 2048, 40)]
    assert not check(g.tenant_within_quota, Stack(res))
    tighter = {"ceilings": {"hr": {"vcpus": 3, "memoryGiB": 8, "storageGiB": 100}}}
    found = check(g.tenant_within_quota, Stack(res, tighter))
    assert len(found) == 1, found
    assert "4 vCPUs, over its quota of 3 (auditor ceiling, policy config)" in found[0][0]


def test_quota_prefers_the_ops_grant_of_the_config() -> None:
    """The grant tenancy writes from the plan wins over the TenantHosting output."""
    hr = tenant("hr", QUOTA)  # the output would allow 4 vCPUs
    res = [hr, *vm_of(hr, "hr-a-1", 2, 2048, 20), *vm_of(hr, "hr-a-2", 2, 2048, 40)]
    grant = {"grants": {"hr": {"vcpus": 3, "memoryGiB": 8, "storageGiB": 100}}}
    found = check(g.tenant_within_quota, Stack(res, grant))
    assert [m for m, _ in found] == [
        "tenant hr uses 4 vCPUs, over its quota of 3 (ops grant, policy config)"
    ]
    # an output below the usage (a tampered component) does not count once a grant is there
    small = tenant("hr", {"vcpus": 1, "memoryGiB": 1, "storageGiB": 1})
    res = [small, *vm_of(small, "hr-a-1", 2, 2048, 20)]
    generous = {"grants": {"hr": {"vcpus": 4, "memoryGiB": 4, "storageGiB": 60}}}
    assert not check(g.tenant_within_quota, Stack(res, generous))
    assert check(g.tenant_within_quota, Stack(res))  # without the grant, the output limits


def test_quota_counts_machines_and_segment_addresses() -> None:
    hr = tenant("hr", QUOTA)
    seg = Res("tenancy:infra:Segment", {}, "hr-local-segment", parent=hr)
    net = Res(g.NETWORK, {"address": "10.30.0.1", "prefix": 24}, "hr-net", parent=seg)
    res = [hr, seg, net, *vm_of(hr, "hr-a-1", 1, 512, 4), *vm_of(hr, "hr-a-2", 1, 512, 4)]
    within = {"grants": {"hr": {**QUOTA, "machines": 2, "addresses": 256}}}
    assert not check(g.tenant_within_quota, Stack(res, within))
    tight = {"grants": {"hr": {**QUOTA, "machines": 1, "addresses": 128}}}
    messages = sorted(m for m, _ in check(g.tenant_within_quota, Stack(res, tight)))
    assert messages == [
        "tenant hr uses 2 machines, over its quota of 1 (ops grant, policy config)",
        "tenant hr uses 256 segment addresses, over its quota of 128 (ops grant, policy config)",
    ]


def test_quota_fails_closed() -> None:
    orphan = domain("stray-1")
    found = check(g.tenant_within_quota, Stack([orphan]))
    assert found and "belongs to no tenant" in found[0][0] and found[0][1] == orphan.urn
    blind = tenant("hr", None)
    found = check(g.tenant_within_quota, Stack([blind, *vm_of(blind, "hr-a-1", 1, 512, 4)]))
    assert found and "no quota grant visible" in found[0][0]


# --- (b) segment-uplink-declared --------------------------------------------------------

RULESET = """table inet tenancy_t {
  set tenant_bridges {
    type ifname
    elements = { "tnhr-2b49" }
  }
  chain forward {
    type filter hook forward priority filter - 10; policy accept;
    ip saddr { 10.30.0.0/24 } ip daddr { 10.8.0.0/24 } tcp dport { 873 } ct state new accept
    iifname @tenant_bridges counter drop comment "default deny from tenants"
    oifname @tenant_bridges counter drop comment "default deny to tenants"
  }
}
"""
BODY = """<filterref filter='clean-traffic'/>
  <rule action='accept' direction='out' priority='300'>
    <tcp dstipaddr='10.8.0.0' dstipmask='24' dstportstart='873' dstportend='873' state='NEW'/>
  </rule>
  <rule action='drop' direction='inout' priority='1000'><all/></rule>"""


def site(*, ruleset: str = RULESET, body: str = BODY, **network: Any) -> tuple[Stack, Res]:
    hr = tenant("hr", QUOTA)
    seg = Res("tenancy:infra:Segment", {}, "hr-local-segment", parent=hr)
    props = {
        "uri": "qemu:///system",
        "name": "tenancy-hr",
        "bridge": "tnhr-2b49",
        "address": "10.30.0.1",
        "prefix": 24,
        **network,
    }
    net = Res(g.NETWORK, {k: v for k, v in props.items() if v is not None}, "hr-net", seg)
    policy = Res("tenancy:infra:FirewallPolicy", {}, "hr-local-firewall", parent=hr)
    nwf = Res(g.NWFILTER, {"name": "tenancy-hr-web", "body": body}, "hr-fw-web", policy)
    fw = Res(g.HOST_FIREWALL, {"uri": "qemu:///system", "ruleset": ruleset}, "local-firewall")
    return Stack([hr, seg, net, policy, nwf, fw]), net


def test_open_segment_with_declared_egress_passes() -> None:
    stack, _ = site()
    assert not check(g.segment_uplink_declared, stack)
    stack, _ = site(forward="open")
    assert not check(g.segment_uplink_declared, stack)


@pytest.mark.parametrize(
    ("network", "expected"),
    [
        ({"forward": "nat"}, "forwards in mode 'nat'"),
        ({"forward": {"mode": "route", "dev": "eth0"}}, "forwards in mode 'route'"),
        ({"forward_dev": "eth0"}, "through device 'eth0'"),
        ({"bridge": "virbr0"}, "uses bridge 'virbr0', not a plan bridge"),
    ],
)
def test_network_forwarding_to_the_uplink_fails(network: dict[str, Any], expected: str) -> None:
    stack, net = site(**network)
    found = check(g.segment_uplink_declared, stack)
    assert any(expected in m and urn == net.urn for m, urn in found), found


def test_host_table_forwarding_undeclared_egress_fails() -> None:
    # hr's nwfilter declares no egress, but the host table lets 873 out to 10.8.0.0/24
    stack, net = site(body="<filterref filter='clean-traffic'/>")
    found = check(g.segment_uplink_declared, stack)
    assert len(found) == 1, found
    assert "forwards 10.30.0.0/24 to 10.8.0.0/24 tcp/873-873" in found[0][0]
    assert "declares no such egress" in found[0][0] and found[0][1] == net.urn
    # a wider port range than declared is not covered either
    wider = RULESET.replace("dport { 873 }", "dport { 1-65535 }")
    assert check(g.segment_uplink_declared, site(ruleset=wider)[0])


def test_segment_outside_the_host_table_fails() -> None:
    no_member = RULESET.replace('"tnhr-2b49"', '"tnother-0000"')
    found = check(g.segment_uplink_declared, site(ruleset=no_member)[0])
    assert any("not in the tenant_bridges set" in m for m, _ in found), found
    no_deny = "\n".join(line for line in RULESET.splitlines() if "from tenants" not in line)
    found = check(g.segment_uplink_declared, site(ruleset=no_deny)[0])
    assert any("no default deny" in m for m, _ in found), found
    stack, net = site()
    stack.resources = [r for r in stack.resources if r.resource_type != g.HOST_FIREWALL]
    found = check(g.segment_uplink_declared, stack)
    assert any("no host firewall" in m and u == net.urn for m, u in found), found


# --- zone-rules-respected --------------------------------------------------------------

ZONES: dict[str, Any] = {
    "tenants": {
        "hr": {"zone": "intranet", "cidr": "10.30.0.0/24"},
        "web": {"zone": "extranet", "cidr": "10.40.0.0/24"},
    },
    "zoneRules": {
        "intranet": {"intranet": "any", "extranet": "any", "internet": ["443/tcp"]},
        "extranet": {"extranet": "any", "internet": "any", "intranet": ["8000-8080/tcp"]},
    },
    "clients": {"intranet": ["10.8.0.0/24"], "extranet": ["10.9.0.0/24"]},
    "owned": [
        {"cidr": "10.30.0.0/16", "what": "intranet address pool"},
        {"cidr": "10.40.0.0/16", "what": "extranet address pool"},
        {"cidr": "10.99.0.0/24", "what": "ops network"},
    ],
}


def host_table(*flows: str) -> Res:
    """A HostFirewall whose table accepts ``flows`` (``src dst proto ports`` each)."""
    lines = []
    for flow in flows:
        src, dst, proto, ports = flow.split()
        lines.append(
            f"    ip saddr {{ {src} }} ip daddr {{ {dst} }} {proto} dport {{ {ports} }} "
            'ct state new accept comment "test"'
        )
    ruleset = RULESET.replace(RULESET.splitlines()[7], "\n".join(lines))
    return Res(g.HOST_FIREWALL, {"uri": "qemu:///system", "ruleset": ruleset}, "local-firewall")


def zones(*flows: str, **config: Any) -> Violations:
    return check(g.zone_rules_respected, Stack([host_table(*flows)], {**ZONES, **config}))


def test_flows_the_zone_rules_allow_pass() -> None:
    assert not zones(
        "10.30.0.0/24 10.8.0.0/24 tcp 873",  # intranet tenant to intranet clients: any
        "10.30.0.10/32 1.1.1.0/24 tcp 443",  # ... to the internet on 443 only
        "10.40.0.0/24 10.30.0.10/32 tcp 8000-8010,8080",  # extranet into intranet: 8000-8080
        "10.9.0.0/24 10.40.0.0/24 tcp 22",  # extranet clients to an extranet tenant
    )
    # ranges add up: 8000-8040 and 8041-8080 cover one flow on 8000-8080
    split = {**ZONES["zoneRules"], "extranet": {"intranet": ["8041-8080/tcp", "8000-8040/tcp"]}}
    assert not zones("10.40.0.0/24 10.30.0.0/24 tcp 8000-8080", zoneRules=split)


def test_flow_on_ports_the_zone_rules_refuse_fails() -> None:
    found = zones("10.30.0.0/24 1.1.1.0/24 tcp 80,443")
    assert [m for m, _ in found] == [
        "local-firewall: tenant hr (intranet) sends to 1.1.1.0/24 (internet) on 80/tcp: "
        "zoneRules.intranet.internet allows only 443/tcp"
    ]
    assert found[0][1] is not None and found[0][1].endswith("::local-firewall")
    # a tenant-to-tenant flow is judged for both tenants: only the extranet side refuses 22
    found = zones("10.40.0.0/24 10.30.0.0/24 tcp 22")
    assert (
        len(found) == 1
        and "tenant web (extranet) sends to 10.30.0.0/24 (tenant hr)" in (found[0][0])
    ), found
    assert "on 22/tcp: zoneRules.extranet.intranet allows only 8000-8080/tcp" in found[0][0]


def test_flow_to_a_peer_the_zone_rules_leave_out_fails() -> None:
    closed = {"intranet": {"intranet": "any"}, "extranet": ZONES["zoneRules"]["extranet"]}
    found = zones("10.8.0.0/24 10.30.0.0/24 tcp 443", "10.9.0.0/24 10.30.0.0/24 tcp 443")
    assert not found, found
    found = zones("10.9.0.0/24 10.30.0.0/24 tcp 443", zoneRules=closed)
    assert [m for m, _ in found] == [
        "local-firewall: tenant hr (intranet) receives from 10.9.0.0/24 (extranet clients "
        "10.9.0.0/24): zoneRules.intranet allows intranet tenants no traffic with extranet"
    ]


def test_flow_into_the_sites_own_addresses_fails() -> None:
    found = zones("10.30.0.0/24 10.99.0.0/24 tcp 22")
    assert len(found) == 1 and "(ops network 10.99.0.0/24)" in found[0][0], found
    assert "site addresses outside every segment" in found[0][0]
    # a free part of a pool is the site's too, not internet
    found = zones("10.30.0.0/24 10.30.7.0/24 tcp 443")
    assert len(found) == 1 and "(intranet address pool 10.30.0.0/16)" in found[0][0], found


def test_zone_rules_fail_closed() -> None:
    found = check(g.zone_rules_respected, Stack([host_table()]))
    assert len(found) == 1 and "no tenant zones and ranges" in found[0][0], found
    unknown = host_table("10.30.0.0/24 1.1.1.0/24 tcp 443")
    unknown.props = unknown_checking_proxy({**unknown.props, "ruleset": UNKNOWN_STRING_VALUE})
    found = check(g.zone_rules_respected, Stack([unknown], ZONES))
    assert len(found) == 1 and "ruleset is not known yet" in found[0][0], found


# --- cidr-ownership ---------------------------------------------------------------------

CIDRS: dict[str, Any] = {
    "tenants": {
        "hr": {"zone": "intranet", "cidr": "10.30.0.0/24"},
        "web": {"zone": "extranet", "cidr": "10.40.0.0/24"},
    },
    "pools": {"intranet": "10.30.0.0/16", "extranet": "10.40.0.0/16"},
    "forbidden": [
        {"cidr": "10.30.255.0/24", "what": "site reserved range"},
        {"cidr": "10.30.250.0/24", "what": "infrastructure network"},
    ],
}


def ownership(stack: Stack, **config: Any) -> list[str]:
    stack.config = {**CIDRS, **config}
    return [m for m, _ in check(g.cidr_ownership, stack)]


def test_network_on_its_planned_range_passes() -> None:
    assert not ownership(site()[0])


def test_network_off_its_planned_range_fails() -> None:
    stack, net = site(address="10.30.5.1")
    found = check(g.cidr_ownership, Stack(stack.resources, CIDRS))
    assert [m for m, _ in found] == [
        "network tenancy-hr of tenant hr uses 10.30.5.0/24, not the 10.30.0.0/24 the plan assigned"
    ]
    assert found[0][1] == net.urn
    outside = ownership(site(address="10.50.0.1")[0])
    assert (
        "network tenancy-hr of tenant hr: 10.50.0.0/24 lies outside the intranet address "
        in (outside[1])
    ), outside


def test_network_on_site_or_other_tenant_ranges_fails() -> None:
    reserved = {**CIDRS["tenants"], "hr": {"zone": "intranet", "cidr": "10.30.255.0/24"}}
    found = ownership(site(address="10.30.255.1")[0], tenants=reserved)
    assert found == [
        "network tenancy-hr of tenant hr: 10.30.255.0/24 overlaps the site reserved range "
        "10.30.255.0/24"
    ]
    # another tenant's assigned range, and another tenant's deployed network
    wide = {**CIDRS["tenants"], "fin": {"zone": "intranet", "cidr": "10.30.0.0/23"}}
    found = ownership(site()[0], tenants=wide)
    assert found == [
        "network tenancy-hr of tenant hr: 10.30.0.0/24 overlaps tenant fin's range 10.30.0.0/23"
    ]
    stack, _ = site()
    fin = tenant("fin", QUOTA)
    stray = Res(
        g.NETWORK, {"name": "tenancy-fin", "address": "10.30.0.129", "prefix": 25}, "f", fin
    )
    stack.resources += [fin, stray]
    found = ownership(
        stack, tenants={**CIDRS["tenants"], "fin": {"zone": "intranet", "cidr": "10.30.1.0/24"}}
    )
    assert (
        "network tenancy-hr of tenant hr: 10.30.0.0/24 overlaps tenant fin's range 10.30.0.128/25"
        in found
    )
    assert (
        "network tenancy-fin of tenant fin: 10.30.0.128/25 overlaps tenant hr's range 10.30.0.0/24"
        in found
    )


def test_cidr_ownership_fails_closed() -> None:
    stack, _ = site()
    assert ownership(stack, tenants=None) == [  # no plan data: nothing can be judged
        "no tenant zones and ranges in the cidr-ownership policy config, so nothing can be "
        "checked: run the pack through `tenancy preview` or `tenancy up`, which write it"
    ]
    orphan = Res(g.NETWORK, {"name": "br0-net", "address": "10.30.9.1", "prefix": 24}, "orphan")
    assert ownership(Stack([orphan])) == [
        "network br0-net belongs to no tenant (no TenantHosting parent), so the plan assigned "
        "it no address range"
    ]
    stack, net = site()
    net.props = unknown_checking_proxy({**net.props, "address": UNKNOWN_STRING_VALUE})
    found = ownership(stack)
    assert len(found) == 1 and "address and prefix are not known yet" in found[0], found
    unplanned = ownership(site()[0], tenants={"web": CIDRS["tenants"]["web"]})
    assert unplanned == ["network tenancy-hr of tenant hr: the plan assigned tenant hr no range"]


# --- the pack over the program the example sites build ----------------------------------


def as_policy_resources(prog: Program, stack_view: bool) -> list[Res]:
    """Registrations as the analyzer sees them: inputs per resource, outputs per stack."""
    out: dict[str, Res] = {}
    for urn, r in prog.resources.items():
        props = r.outputs if (stack_view or not r.custom) else r.inputs
        out[urn] = Res(r.type, copy.deepcopy(props), r.name, opts=Opts(r.protect))
    for urn, r in prog.resources.items():
        out[urn].parent = out.get(r.parent)
    return list(out.values())


def run_pack(
    resources: list[Res], stack_resources: list[Res], config: dict[str, dict[str, Any]]
) -> Violations:
    """Every rule, each with its part of ``config`` (as the engine hands them out)."""
    found = Violations()
    for res in resources:
        res.config = config["data-volume-protected"]
        g.domain_interfaces_filtered(res, found)
        g.data_volume_protected(res, found)
    for name, rule in (
        ("segment-uplink-declared", g.segment_uplink_declared),
        ("tenant-within-quota", g.tenant_within_quota),
        ("zone-rules-respected", g.zone_rules_respected),
        ("cidr-ownership", g.cidr_ownership),
    ):
        rule(Stack(stack_resources, config[name]), found)
    return found


@dataclass
class Example:
    inputs: ProgramInputs
    prog: Program

    def config(self) -> dict[str, dict[str, Any]]:
        """What ``tenancy preview`` would hand the pack for this plan."""
        return pack_config(self.inputs.plan, self.inputs.site)

    def run(self, resources: list[Res], stack: list[Res]) -> Violations:
        return run_pack(resources, stack, self.config())


@pytest.fixture
def example(tmp_path: Path) -> Callable[[str], Example]:
    def build(site_name: str) -> Example:
        inputs = program_inputs(REPO, site_name, tmp_path / "images")
        return Example(inputs, run_program(lambda: tenancy_program.build(inputs), stack=site_name))

    return build


@pytest.mark.parametrize("site_name", ["local", "dc-east"])
def test_example_sites_pass_the_pack(example: Callable[[str], Example], site_name: str) -> None:
    ex = example(site_name)
    found = ex.run(as_policy_resources(ex.prog, False), as_policy_resources(ex.prog, True))
    assert not found, "\n".join(f"{u}: {m}" for m, u in found)


def test_broken_example_fails_every_rule(example: Callable[[str], Example]) -> None:
    ex = example("dc-east")
    resources = as_policy_resources(ex.prog, False)
    stack = as_policy_resources(ex.prog, True)
    by_name = {r.name: r for r in resources}
    by_name["finance-app-1-domain"].props["interfaces"][0].pop("filter")
    by_name["finance-db-1-data-vol"].opts.protect = False
    stack_by_name = {r.name: r for r in stack}
    stack_by_name["finance-db-1-domain"].props["vcpus"] = 64
    stack_by_name["finance-kvm-east-02-segment-net"].props["forward"] = "nat"
    # dc-east keeps the intranet off the internet: a smuggled accept out of finance's segment
    table = stack_by_name["kvm-east-01-firewall"].props
    table["ruleset"] = table["ruleset"].replace(
        "    iifname @tenant_bridges counter drop",
        "    ip saddr { 10.30.2.0/24 } ip daddr { 9.9.9.0/24 } tcp dport { 53 } ct state new "
        'accept comment "smuggled"\n    iifname @tenant_bridges counter drop',
    )
    # family-planning's segment on one host moved onto the reserved range
    stack_by_name["family-planning-kvm-east-02-segment-net"].props["address"] = "10.30.255.1"
    found = ex.run(resources, stack)
    text = "\n".join(m for m, _ in found)
    assert "finance-app-1: interface" in text and "no nwfilter" in text
    assert "finance-db-1-data.qcow2 is not protected" in text
    assert "tenant finance uses" in text and "over its quota of 32 (ops grant" in text
    assert "network tenancy-finance forwards in mode 'nat'" in text
    assert (
        "kvm-east-01-firewall: tenant finance (intranet) sends to 9.9.9.0/24 (internet): "
        "zoneRules.intranet allows intranet tenants no traffic with internet" in text
    )
    # the uplink rule sees the smuggled flow too: finance declared no such egress
    assert "forwards 10.30.2.0/24 to 9.9.9.0/24 tcp/53-53 on the uplink" in text
    assert (
        "network tenancy-family-planning of tenant family-planning uses 10.30.255.0/24, "
        "not the 10.30.1.0/24 the plan assigned" in text
    )
    assert "10.30.255.0/24 overlaps the site reserved range 10.30.255.0/24" in text
    assert len(found) == 8, text


# --- the pack itself --------------------------------------------------------------------


@contextlib.contextmanager
def pack_server() -> Iterator[analyzer_pb2_grpc.AnalyzerStub]:
    """As ``pulumi preview --policy-pack`` does: RunPlugin, read the port, talk to the pack."""
    server, port = serve("127.0.0.1:1")
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    request = language_pb2.RunPluginRequest(
        pwd=str(REPO),
        args=["127.0.0.1:1"],
        env=[f"{k}={v}" for k, v in os.environ.items()],
        kind="analyzer",
        info=language_pb2.ProgramInfo(
            root_directory=str(PACK), program_directory=str(PACK), entry_point="."
        ),
    )
    stream = language_pb2_grpc.LanguageRuntimeStub(channel).RunPlugin(request, timeout=60)
    try:
        first = next(stream)
        assert first.stdout, first
        analyzer_port = int(first.stdout.split(b"\n")[0])
        with grpc.insecure_channel(f"127.0.0.1:{analyzer_port}") as pack:
            yield analyzer_pb2_grpc.AnalyzerStub(pack)
    finally:
        stream.cancel()  # the CLI cancels the call when done: the langhost stops the pack
        channel.close()
        server.stop(grace=2).wait()


def struct(value: dict[str, Any]) -> struct_pb2.Struct:
    out = struct_pb2.Struct()
    out.update(value)
    return out


def analyzer_resource(res: Res) -> analyzer_pb2.AnalyzerResource:
    return analyzer_pb2.AnalyzerResource(
        type=res.resource_type,
        properties=struct(res.props),
        urn=res.urn,
        name=res.name,
        parent=res.parent.urn if res.parent is not None else "",
    )


def test_pack_runs_through_the_language_host() -> None:
    """The pack's server: every rule mandatory, the plan's config fits the rules' schemas,
    and a violation comes back as a mandatory diagnostic (which fails the preview)."""
    result = plan_paths(REPO, None, sites=["local"])
    assert result.ok, result.problems.errors
    config = pack_config(result.plans["local"], result.sites["local"].model, ["x-app-1"])
    stack, net = site(address="10.30.5.1")  # hr's network off the range the plan assigned
    domain_res = domain(filter=None)
    with pack_server() as pack:
        info = pack.GetAnalyzerInfo(empty_pb2.Empty(), timeout=20)
        configure = analyzer_pb2.ConfigureAnalyzerRequest()
        for rule in ("cidr-ownership", "domain-interfaces-filtered"):
            body = {**CIDRS, "enforcementLevel": "mandatory"} if rule == "cidr-ownership" else {}
            configure.policyConfig[rule].CopyFrom(
                analyzer_pb2.PolicyConfig(
                    enforcementLevel=analyzer_pb2.MANDATORY,
                    properties=struct({k: v for k, v in body.items() if k != "enforcementLevel"}),
                )
            )
        pack.Configure(configure, timeout=20)
        stacked = pack.AnalyzeStack(
            analyzer_pb2.AnalyzeStackRequest(
                resources=[analyzer_resource(r) for r in stack.resources]
            ),
            timeout=20,
        )
        single = pack.Analyze(
            analyzer_pb2.AnalyzeRequest(
                type=domain_res.resource_type,
                properties=struct(domain_res.props),
                urn=domain_res.urn,
                name=domain_res.name,
            ),
            timeout=20,
        )
    assert info.name == "tenancy-guardrails"
    policies = {p.name: p for p in info.policies}
    assert sorted(policies) == sorted(g_rule[0] for g_rule in g.RULES) == sorted(config)
    for p in policies.values():
        assert p.enforcementLevel == analyzer_pb2.MANDATORY, f"{p.name} is not mandatory"
        assert p.description.endswith(".") and p.description.count(". ") == 0, p.description
        # what the engine checks before it configures the pack (--policy-pack-config)
        schema = {
            "type": "object",
            "properties": json_format.MessageToDict(p.configSchema.properties),
        }
        props = {k: v for k, v in config[p.name].items() if k != "enforcementLevel"}
        jsonschema.Draft7Validator(schema).validate(props)
        assert config[p.name]["enforcementLevel"] == "mandatory"
    ownership = [d for d in stacked.diagnostics if d.policyName == "cidr-ownership"]
    assert [d.message.splitlines()[-1] for d in ownership] == [
        "network tenancy-hr of tenant hr uses 10.30.5.0/24, not the 10.30.0.0/24 the plan assigned"
    ], stacked  # the CLI shows the rule's description, then the violation
    assert ownership[0].urn == net.urn
    assert ownership[0].policyPackName == "tenancy-guardrails"
    assert all(d.enforcementLevel == analyzer_pb2.MANDATORY for d in stacked.diagnostics)
    (filtered,) = single.diagnostics
    assert filtered.policyName == "domain-interfaces-filtered", single
    assert filtered.enforcementLevel == analyzer_pb2.MANDATORY
