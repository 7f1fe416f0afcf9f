"""The guardrails policy pack's rules, called directly (no engine), plus the pack's server.

Each rule gets a failing and a passing example built by hand, and the whole pack is run
over the program the example sites build under mocks (it must pass, and fail once a
resource is broken the way each rule guards against).
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc  # type: ignore[import-untyped,unused-ignore]  # untyped without types-grpcio
import pytest
import tenancy_guardrails as g  # the pack directory: pytest pythonpath (pyproject.toml)
from google.protobuf import empty_pb2  # type: ignore[import-untyped,unused-ignore]  # untyped without types-protobuf
from pulumi.runtime.proto import analyzer_pb2_grpc, language_pb2, language_pb2_grpc
from pulumi_mocks import Program, program_inputs, run_program
from pulumi_policy.proxy import UNKNOWN_STRING_VALUE, unknown_checking_proxy
from tests.support.project import REPO

from tenancy.infra import program as tenancy_program
from tenancy.infra.langhost import serve

PACK = REPO / "policies" / "guardrails"

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
    tighter = {"quotas": {"hr": {"vcpus": 3, "memoryGiB": 8, "storageGiB": 100}}}
    found = check(g.tenant_within_quota, Stack(res, tighter))
    assert len(found) == 1 and "4 vCPUs, over its quota of 3 (policy config)" in found[0][0]


def test_quota_fails_closed() -> None:
    orphan = domain("stray-1")
    found = check(g.tenant_within_quota, Stack([orphan]))
    assert found and "belongs to no tenant" in found[0][0] and found[0][1] == orphan.urn
    blind = tenant("hr", None)
    found = check(g.tenant_within_quota, Stack([blind, *vm_of(blind, "hr-a-1", 1, 512, 4)]))
    assert found and "no quota visible" in found[0][0]


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


def run_pack(resources: list[Res], stack_resources: list[Res]) -> Violations:
    found = Violations()
    for res in resources:
        g.domain_interfaces_filtered(res, found)
        g.data_volume_protected(res, found)
    g.segment_uplink_declared(Stack(stack_resources), found)
    g.tenant_within_quota(Stack(stack_resources), found)
    return found


@pytest.fixture
def example(tmp_path: Path) -> Callable[[str], Program]:
    def build(site_name: str) -> Program:
        inputs = program_inputs(REPO, site_name, tmp_path / "images")
        return run_program(lambda: tenancy_program.build(inputs), stack=site_name)

    return build


@pytest.mark.parametrize("site_name", ["local", "dc-east"])
def test_example_sites_pass_the_pack(example: Callable[[str], Program], site_name: str) -> None:
    prog = example(site_name)
    found = run_pack(as_policy_resources(prog, False), as_policy_resources(prog, True))
    assert not found, "\n".join(f"{u}: {m}" for m, u in found)


def test_broken_example_fails_every_rule(example: Callable[[str], Program]) -> None:
    prog = example("dc-east")
    resources = as_policy_resources(prog, False)
    stack = as_policy_resources(prog, True)
    by_name = {r.name: r for r in resources}
    by_name["finance-app-1-domain"].props["interfaces"][0].pop("filter")
    by_name["finance-db-1-data-vol"].opts.protect = False
    stack_by_name = {r.name: r for r in stack}
    stack_by_name["finance-db-1-domain"].props["vcpus"] = 64
    stack_by_name["finance-kvm-east-02-segment-net"].props["forward"] = "nat"
    found = run_pack(resources, stack)
    text = "\n".join(m for m, _ in found)
    assert "finance-app-1: interface" in text and "no nwfilter" in text
    assert "finance-db-1-data.qcow2 is not protected" in text
    assert "tenant finance uses" in text and "over its quota of 32" in text
    assert "network tenancy-finance forwards in mode 'nat'" in text
    assert len(found) == 4, text


# --- the pack itself --------------------------------------------------------------------


def test_pack_runs_through_the_language_host() -> None:
    """As ``pulumi preview --policy-pack`` does: RunPlugin, read the port, ask the analyzer."""
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
            info = analyzer_pb2_grpc.AnalyzerStub(pack).GetAnalyzerInfo(
                empty_pb2.Empty(), timeout=20
            )
    finally:
        stream.cancel()  # the CLI cancels the call when done: the langhost stops the pack
        channel.close()
        server.stop(grace=2).wait()
    assert info.name == "tenancy-guardrails"
    policies = {p.name: p for p in info.policies}
    assert sorted(policies) == [
        "data-volume-protected",
        "domain-interfaces-filtered",
        "segment-uplink-declared",
        "tenant-within-quota",
    ]
    for p in policies.values():
        assert p.enforcementLevel == 1, f"{p.name} is not mandatory"  # MANDATORY
        assert p.description.endswith(".") and p.description.count(". ") == 0, p.description
