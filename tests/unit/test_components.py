"""The Pulumi program under mocks: what ``tenancy.infra.program.build`` registers.

Each test builds a fresh program from the repository's example tenants and sites
(images faked, no libvirt, no engine) and checks resources against the plan they were
built from. Assertion messages name the URN of the resource at fault.
"""

from __future__ import annotations

import ipaddress
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path

import pytest
from pulumi_mocks import COMPONENT, DYNAMIC, Program, Registered, program_inputs, run_program
from tests.support.project import REPO, tenant_doc, write_tenant

from tenancy.infra import program as tenancy_program
from tenancy.infra import tenant_hosting
from tenancy.infra.dynamic.policyrun import policy_run_args
from tenancy.infra.program_config import ProgramInputs
from tenancy.infra.storage_volume import GIB
from tenancy.plan import names
from tenancy.plan.model import MachinePlan, Plan, TenantPlan
from tenancy.render.firewall import guest_host_services, render_host_nftables, table_name

SITES = ["local", "dc-east"]
# One PolicyRun (the tenant's hardening run) per tenant with machines, where the
# TenantHosting component creates them.
POLICY_RUNS = hasattr(tenant_hosting, "PolicyRun")
Build = Callable[..., tuple[ProgramInputs, Program]]


@pytest.fixture
def build(tmp_path: Path) -> Build:
    """``build(site, root=REPO, approve=())``: a fresh program per call, with its inputs."""

    def run(
        site: str, root: Path = REPO, approve: tuple[str, ...] = ()
    ) -> tuple[ProgramInputs, Program]:
        inputs = program_inputs(root, site, tmp_path / "images", approve=frozenset(approve))
        return inputs, run_program(lambda: tenancy_program.build(inputs), stack=site)

    return run


def machines(plan: Plan) -> list[tuple[TenantPlan, MachinePlan]]:
    return [(t, m) for t in plan.tenants for m in t.machines]


def vm_child(prog: Program, m: MachinePlan, suffix: str, kind: str) -> Registered:
    return prog.named(f"{m.domain}{suffix}", kind)


# --- counts -----------------------------------------------------------------------------


def expected_counts(inputs: ProgramInputs) -> dict[str, int]:
    """What the plan implies: one Hypervisor per host, one Segment per tenant and host..."""
    plan, site = inputs.plan, inputs.site
    placements = [(t, h) for t in plan.tenants for h in t.segment.hosts]
    groups_on_hosts = sum(len({m.group for m in t.machines if m.host == h}) for t, h in placements)
    ms = plan.machines()
    volumes = sum(len(m.volumes) for m in ms)
    counts = {
        "Hypervisor": len(site.hosts),
        "StoragePool": sum(len(h.pools) for h in site.hosts),
        "HostFirewall": len(site.hosts),
        "TenantHosting": len(plan.tenants),
        "Segment": len(placements),
        "Network": len(placements),
        "FirewallPolicy": len(placements),
        "NwFilter": groups_on_hosts,
        "VirtualMachine": len(ms),
        "Domain": len(ms),
        "CloudInitDisk": len(ms),
        "StorageVolume": volumes,
        # 3 base volumes (disk, kernel, initrd) per image and host, a root overlay per
        # machine and one volume per StorageVolume
        "Volume": 3 * len(inputs.images) * len(site.hosts) + len(ms) + volumes,
        "PolicyRun": sum(1 for t in plan.tenants if t.machines) if POLICY_RUNS else 0,
    }
    return {k: v for k, v in sorted(counts.items()) if v}


@pytest.mark.parametrize("site", SITES)
def test_resource_counts_follow_the_plan(build: Build, site: str) -> None:
    inputs, prog = build(site)
    assert prog.counts() == expected_counts(inputs)
    for r in prog.resources.values():
        prefix = DYNAMIC if r.custom else COMPONENT
        assert r.type.startswith(prefix), f"{r.urn}: unexpected type token {r.type}"


def test_example_sites_pinned_totals(build: Build) -> None:
    """The shipped examples, spelled out: local has hr + tourism, dc-east three tenants."""
    _, local = build("local")
    _, east = build("dc-east")
    runs = {"PolicyRun": 2} if POLICY_RUNS else {}
    assert local.counts() == {
        **runs,
        "CloudInitDisk": 2,
        "Domain": 2,
        "FirewallPolicy": 2,
        "HostFirewall": 1,
        "Hypervisor": 1,
        "Network": 2,
        "NwFilter": 2,
        "Segment": 2,
        "StoragePool": 2,
        "TenantHosting": 2,
        "VirtualMachine": 2,
        "Volume": 5,
    }
    assert sorted(r.name for r in local.of_kind("Domain")) == [
        "hr-portal-1-domain",
        "tourism-web-1-domain",
    ]
    assert len(east.resources) == 100 + (3 if POLICY_RUNS else 0), east.counts()
    assert sorted(r.name for r in east.of_kind("TenantHosting")) == [
        "culture-tourism-portal",
        "family-planning",
        "finance",
    ]


# --- domains ----------------------------------------------------------------------------


@pytest.mark.parametrize("site", SITES)
def test_domains_match_the_plan(build: Build, site: str) -> None:
    inputs, prog = build(site)
    plan = inputs.plan
    uris = {h.name: h.uri for h in inputs.site.hosts}
    for t, m in machines(plan):
        dom = vm_child(prog, m, "-domain", "Domain")
        p, urn = dom.inputs, dom.urn
        assert p["name"] == m.domain, urn
        assert p["domain_type"] == plan.domain_type == inputs.site.domain_type, urn
        assert p["uri"] == uris[m.host], urn
        assert (p["vcpus"], p["memory_mib"]) == (m.vcpus, m.memory_mib), urn
        [nic] = p["interfaces"]
        assert nic["mac"] == m.mac, f"{urn}: MAC {nic['mac']} is not the planned {m.mac}"
        assert nic["filter_parameters"] == {"IP": m.address}, f"{urn}: address not from plan"
        assert ipaddress.ip_address(m.address) in ipaddress.ip_network(t.segment.cidr), urn
        assert nic["network"] == t.segment.network, urn
        assert nic["filter"] == names.filter_name(t.name, m.group), f"{urn}: no tenant nwfilter"
        targets = [d["target"] for d in p["disks"]]
        assert targets == ["vda", "vdb", *[f"vd{chr(ord('c') + i)}" for i in range(len(m.volumes))]]
        root, seed = p["disks"][0], p["disks"][1]
        assert root["path"] == vm_child(prog, m, "-root", "Volume").outputs["path"], urn
        seed_disk = vm_child(prog, m, "-seed", "CloudInitDisk")
        host = next(h for h in inputs.site.hosts if h.name == m.host)
        pool_dir = next(pl.path for pl in host.pools if pl.name == m.root_pool).rstrip("/")
        # named from the plan (a seed rewritten in place keeps it), created before the domain
        assert seed_disk.urn in dom.dependencies, urn
        assert seed == {
            "path": f"{pool_dir}/{seed_disk.inputs['name']}",
            "target": "vdb",
            "format": "raw",
            "readonly": True,
        }, urn
        pool = f"tenancy-{plan.site}-{m.root_pool}"
        assert p["kernel"].startswith(f"/mock-pools/{pool}/base-{m.image}-"), urn
        assert p["kernel"].endswith(".vmlinuz") and p["initrd"].endswith(".initrd"), urn
        vm = prog.parent_of(dom)
        assert vm is not None and vm.kind == "VirtualMachine" and vm.name == m.domain, urn
        owner = prog.parent_of(vm)
        assert owner is not None and owner.kind == "TenantHosting" and owner.name == t.name, urn


@pytest.mark.parametrize(("site", "domain_type"), [("local", "qemu"), ("dc-east", "kvm")])
def test_domain_type_comes_from_the_site(build: Build, site: str, domain_type: str) -> None:
    _, prog = build(site)
    for dom in prog.of_kind("Domain"):
        assert dom.inputs["domain_type"] == domain_type, dom.urn


def test_root_and_data_volumes(build: Build) -> None:
    inputs, prog = build("dc-east")
    site = inputs.plan.site
    for _, m in machines(inputs.plan):
        root = vm_child(prog, m, "-root", "Volume")
        assert root.inputs["capacity"] == m.disk_gib * GIB, root.urn
        assert root.inputs["pool"] == f"tenancy-{site}-{m.root_pool}", root.urn
        assert root.inputs["backing_volume"].endswith(f"base-{m.image}-0123456789abcdef.qcow2")
        dom = vm_child(prog, m, "-domain", "Domain")
        for index, vol in enumerate(m.volumes):
            data = vm_child(prog, m, f"-{vol.name}-vol", "Volume")
            urn = data.urn
            assert data.inputs["capacity"] == vol.size_gib * GIB, urn
            assert data.inputs["pool"] == f"tenancy-{site}-{vol.pool}", urn
            assert "backing_volume" not in data.inputs and "source" not in data.inputs, urn
            assert dom.inputs["disks"][2 + index]["path"] == data.outputs["path"], dom.urn
            component = prog.parent_of(data)
            assert component is not None and component.kind == "StorageVolume", urn
            assert component.outputs["backup"] == vol.backup, component.urn


# --- segments ---------------------------------------------------------------------------


@pytest.mark.parametrize("site", SITES)
def test_one_open_segment_per_tenant_and_host(build: Build, site: str) -> None:
    inputs, prog = build(site)
    uris = {h.name: h.uri for h in inputs.site.hosts}
    hypervisors = {r.name: r for r in prog.of_kind("Hypervisor")}
    for t in inputs.plan.tenants:
        for host in t.segment.hosts:
            seg = prog.named(f"{t.name}-{host}-segment", "Segment")
            net = prog.named(f"{t.name}-{host}-segment-net", "Network")
            s = t.segment
            assert net.parent == seg.urn, net.urn
            assert net.inputs == {
                "uri": uris[host],
                "name": s.network,
                "bridge": s.bridge,
                "address": s.gateway,
                "prefix": s.prefix,
                "dns": False,
                "autostart": True,
            }, net.urn
            assert not any(k.startswith("forward") for k in net.inputs), net.urn
            pool_urns = {c.urn for c in prog.children(hypervisors[host])}
            assert pool_urns <= set(seg.dependencies), f"{seg.urn}: not after its hypervisor"


# --- firewall ---------------------------------------------------------------------------


Rule = tuple[str, str, str, int, int]  # direction, proto, peer CIDR, port low, port high


def filter_rules(body: str) -> set[Rule]:
    """The accept rules of an nwfilter body, as (direction, proto, peer, low, high)."""
    rules: set[Rule] = set()
    for rule in ET.fromstring(f"<filter>{body}</filter>").iter("rule"):
        if rule.get("action") != "accept":
            continue
        for match in rule:
            attr = "src" if rule.get("direction") == "in" else "dst"
            ip = match.get(f"{attr}ipaddr")
            if ip is None:
                continue
            peer = f"{ip}/{match.get(f'{attr}ipmask')}"
            low = int(match.get("dstportstart", 0))
            high = int(match.get("dstportend", low))
            rules.add((str(rule.get("direction")), match.tag, peer, low, high))
    return rules


def nwfilter(prog: Program, tenant: str, host: str, group: str) -> tuple[str, set[Rule]]:
    res = prog.named(f"{tenant}-{host}-firewall-{group}", "NwFilter")
    assert res.inputs["name"] == names.filter_name(tenant, group), res.urn
    body = str(res.inputs["body"])
    assert "<filterref filter='clean-traffic'/>" in body, f"{res.urn}: no anti-spoofing"
    assert body.rstrip().endswith("</rule>") and "action='drop'" in body, res.urn
    return res.urn, filter_rules(body)


def test_declared_cross_tenant_flow_opens_both_filters(build: Build) -> None:
    inputs, prog = build("local")
    seg = {t.name: t.segment for t in inputs.plan.tenants}
    hr_web = inputs.plan.tenants[0].machines[0].address
    urn, hr = nwfilter(prog, "hr", "local", "web")
    assert ("in", "tcp", seg["tourism"].cidr, 8443, 8443) in hr, f"{urn}: tourism->hr 8443"
    assert ("in", "tcp", "10.255.1.0/24", 443, 443) in hr, f"{urn}: intranet 443"
    urn, tourism = nwfilter(prog, "tourism", "local", "web")
    assert ("out", "tcp", f"{hr_web}/32", 8443, 8443) in tourism, f"{urn}: egress to hr/web"
    assert ("in", "tcp", "10.255.2.0/24", 80, 80) in tourism, urn
    # nothing else crosses between the two segments
    assert not {r for r in hr if r[2] == seg["tourism"].cidr and r[3] != 8443}, urn


def test_flows_of_dc_east_examples(build: Build) -> None:
    inputs, prog = build("dc-east")
    t = {x.name: x for x in inputs.plan.tenants}
    app = [
        ipaddress.IPv4Network(m.address) for m in t["family-planning"].machines if m.group == "app"
    ]
    fp_app = {str(n) for n in ipaddress.collapse_addresses(app)}  # consecutive: one block
    for host in t["finance"].segment.hosts:
        groups = {m.group for m in t["finance"].machines if m.host == host}
        if "web" in groups:
            urn, web = nwfilter(prog, "finance", host, "web")
            assert {r[2] for r in web if r[3] == 8443} == fp_app, f"{urn}: 8443 only from fp/app"
        if "db" in groups:
            urn, db = nwfilter(prog, "finance", host, "db")
            assert ("out", "tcp", "10.8.0.0/24", 873, 873) in db, f"{urn}: backup egress"
            assert not any(r[3] == 8443 for r in db), f"{urn}: web flow leaked to db"
    for host in t["family-planning"].segment.hosts:
        groups = {m.group for m in t["family-planning"].machines if m.host == host}
        if "db" in groups:
            urn, db = nwfilter(prog, "family-planning", host, "db")
            assert not any(r[0] == "out" and r[3] == 8443 for r in db), f"{urn}: app-only egress"


def test_one_sided_and_undeclared_flows_stay_closed(build: Build, project: Path) -> None:
    """audit asks for hr's traffic on 9000 and sends to tourism on 7000: neither agrees."""
    write_tenant(
        project,
        tenant_doc(
            "audit",
            ingress=[{"from": "hr", "ports": ["9000/tcp"]}],
            egress=[{"to": "tourism", "ports": ["7000/tcp"]}],
        ),
    )
    inputs, prog = build("local", root=project)
    seg = {t.name: t.segment.cidr for t in inputs.plan.tenants}
    urn, audit = nwfilter(prog, "audit", "local", "app")
    assert not any(r[3] in (9000, 7000) for r in audit), f"{urn}: one-sided flow opened: {audit}"
    peers = {r[2] for r in audit}
    assert seg["hr"] not in peers and seg["tourism"] not in peers, urn
    for tenant, group in (("hr", "web"), ("tourism", "web")):
        urn, rules = nwfilter(prog, tenant, "local", group)
        assert not any(r[2] == seg["audit"] for r in rules), f"{urn}: undeclared peer audit"
        assert not any(r[3] in (9000, 7000) for r in rules), urn
    for fw in prog.of_kind("HostFirewall"):
        ruleset = str(fw.inputs["ruleset"])
        assert "9000" not in ruleset and "7000" not in ruleset, f"{fw.urn}: host opened it"


@pytest.mark.parametrize("site", SITES)
def test_one_hypervisor_per_host_with_pools_and_firewall(build: Build, site: str) -> None:
    inputs, prog = build(site)
    plan = inputs.plan
    hypervisors = {r.name: r for r in prog.of_kind("Hypervisor")}
    assert sorted(hypervisors) == sorted(h.name for h in inputs.site.hosts)
    for host in inputs.site.hosts:
        hyper = hypervisors[host.name]
        assert prog.parent_of(hyper) is None, f"{hyper.urn}: not at the stack root"
        kids = prog.children(hyper)
        pools = {c.inputs["name"]: c for c in kids if c.kind == "StoragePool"}
        assert pools.keys() == {f"tenancy-{plan.site}-{p.name}" for p in host.pools}, hyper.urn
        for p in host.pools:
            pool = pools[f"tenancy-{plan.site}-{p.name}"]
            assert (pool.inputs["path"], pool.inputs["uri"]) == (p.path, host.uri), pool.urn
        [fw] = [c for c in kids if c.kind == "HostFirewall"]
        assert fw.inputs["table"] == table_name(plan.site), fw.urn
        services = guest_host_services(inputs.site.ntp_servers)
        assert fw.inputs["ruleset"] == render_host_nftables(plan, host.name, services), fw.urn
        # a site without time servers: its guests get the time from the gateway (this host)
        assert ("udp dport 123 accept" in fw.inputs["ruleset"]) == (not inputs.site.ntp_servers), (
            fw.urn
        )
        assert fw.inputs["uri"] == host.uri, fw.urn
        base = sorted(c.inputs["name"] for c in kids if c.kind == "Volume")
        stems = [f"base-{n}-0123456789abcdef" for n in sorted(inputs.images)]
        assert base == sorted(f"{s}.{e}" for s in stems for e in ("initrd", "qcow2", "vmlinuz"))
        for c in kids:
            if c.kind == "Volume":
                assert c.inputs["pool"] == f"tenancy-{plan.site}-{host.pools[0].name}", c.urn
                assert not c.protect, c.urn
    for _, m in machines(plan):
        dom = vm_child(prog, m, "-domain", "Domain")
        assert dom.inputs["uri"] == next(h.uri for h in inputs.site.hosts if h.name == m.host)


# --- protection -------------------------------------------------------------------------


def test_protected_machines_and_data_volumes(build: Build) -> None:
    inputs, prog = build("dc-east")
    protected = {m.domain for _, m in machines(inputs.plan) if m.protect}
    assert protected == {"family-planning-db-1", "finance-db-1"}
    for _, m in machines(inputs.plan):
        dom = vm_child(prog, m, "-domain", "Domain")
        root = vm_child(prog, m, "-root", "Volume")
        seed = vm_child(prog, m, "-seed", "CloudInitDisk")
        assert dom.protect is m.protect, f"{dom.urn}: protect={dom.protect}"
        assert root.protect is m.protect, f"{root.urn}: protect={root.protect}"
        assert not seed.protect, f"{seed.urn}: a seed is rebuilt, never protected"
        for vol in m.volumes:
            data = vm_child(prog, m, f"-{vol.name}-vol", "Volume")
            assert data.protect, f"{data.urn}: data volumes are always protected"


def test_approval_lifts_protection_of_that_machine_only(build: Build) -> None:
    inputs, prog = build("dc-east", approve=("finance-db-1", "culture-tourism-portal-web-2"))
    for _, m in machines(inputs.plan):
        approved = m.domain in ("finance-db-1", "culture-tourism-portal-web-2")
        dom = vm_child(prog, m, "-domain", "Domain")
        root = vm_child(prog, m, "-root", "Volume")
        assert dom.protect is (m.protect and not approved), dom.urn
        assert root.protect is (m.protect and not approved), root.urn
        for vol in m.volumes:
            data = vm_child(prog, m, f"-{vol.name}-vol", "Volume")
            assert data.protect is not approved, f"{data.urn}: protect={data.protect}"


# --- component outputs ------------------------------------------------------------------


@pytest.mark.parametrize("site", SITES)
def test_tenant_hosting_outputs(build: Build, site: str) -> None:
    inputs, prog = build(site)
    for t in inputs.plan.tenants:
        th = prog.named(t.name, "TenantHosting")
        assert th.outputs["machines"] == {m.domain: m.address for m in t.machines}, th.urn
        assert th.outputs["filters"] == [
            names.filter_name(t.name, g) for g in sorted({m.group for m in t.machines})
        ], th.urn
        assert th.outputs["quota"] == t.quota, f"{th.urn}: quota not visible to policies"
        vms = prog.descendants(th, "VirtualMachine")
        assert sorted(v.name for v in vms) == sorted(m.domain for m in t.machines), th.urn


# --- hardening runs ---------------------------------------------------------------------


def test_policy_runs_come_from_the_programs_inputs(
    build: Build, project: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Each tenant's PolicyRun is rendered from the program's inputs, wherever it runs."""
    monkeypatch.chdir(tmp_path)  # no project here: nothing may be looked up from the cwd
    inputs, prog = build("local", root=project)
    runs = {r.inputs["tenant"]: r for r in prog.of_kind("PolicyRun")}
    assert sorted(runs) == sorted(t.name for t in inputs.plan.tenants if t.machines)
    for t in inputs.plan.tenants:
        got, urn = runs[t.name].inputs, runs[t.name].urn
        want = policy_run_args(
            inputs.project,
            inputs.site,
            inputs.plan,
            t.name,
            inputs.policy_sources,
            inputs.today,
            inputs.ssh_keys,
        )
        assert got["project"] == str(project.resolve()), urn
        assert got["state_dir"] == str(inputs.project.state_dir), urn
        assert got["hosts"] == {m.domain: m.address for m in t.machines}, urn
        assert got["policy_hash"] == want.policy_hash and len(want.policy_hash) == 64, urn
        assert list(got["inventory"]["all"]["children"]) == [t.name], urn
