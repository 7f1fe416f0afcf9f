"""Property: whatever validation accepts renders artefacts the real tools accept.

Tenant files are untrusted pull-request input. Hypothesis writes tenant files (and a
small site around them: 1-3 hosts, segmentPrefix, pools, ops and NTP settings) that
explore the edges of the contract: names of 32 characters with single hyphens, several
machines with counts, roles and volumes, ports and ranges, flows between the generated
tenants (groups too), keyword and CIDR endpoints, explicit segments inside the zone
pool, display names in any Unicode (control and bidi characters included). For every
input that validates, every artefact is rendered with the project's own functions, the
way the Pulumi program and the dynamic providers would (no engine, no libvirt
connection), and checked by the tools that will read it:

* each host's nftables table: ``nft -c`` (root; -c checks, it never loads),
* every domain, network and nwfilter document: ``virt-xml-validate`` (libvirt's RelaxNG
  schemas, see ``XML_CHECK``),
* every user-data: cloud-init's schema check (the code of ``cloud-init schema -c``;
  the command itself on one file per example), every network-config: cloud-init's
  v2 parser, strict, and its networkd renderer (as ``cloud-init devel net-convert``),
* the inventory: ``ansible-inventory --list``, each tenant's groups its own.

An input that does not validate must give located errors, never an exception. No VM,
no libvirtd: only the tools (``bash tools/test-deps.sh`` installs cloud-init).
``TENANCY_PROPERTY_EXAMPLES`` sets the number of examples (default 25).
"""

from __future__ import annotations

import ipaddress
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from tests.support.project import copy_project

from tenancy.contract.models import RESERVED_TENANT_NAMES, Site
from tenancy.infra.dynamic.cloudinit import CloudInitDiskProvider
from tenancy.infra.dynamic.domain import DomainProvider, domain_def
from tenancy.infra.dynamic.network import NetworkProvider, network_spec
from tenancy.infra.dynamic.nwfilter import NwFilterProvider, nwfilter_spec
from tenancy.infra.dynamic.volume import VolumeProvider
from tenancy.infra.dynamic.xml_domain import domain_xml
from tenancy.infra.dynamic.xml_network import network_xml, nwfilter_xml
from tenancy.infra.storage_volume import GIB
from tenancy.plan import names
from tenancy.plan.model import Plan
from tenancy.plan.planner import PlanResult, plan_paths
from tenancy.render.cloud_init import render_seed
from tenancy.render.firewall import (
    guest_host_services,
    render_host_nftables,
    render_nwfilter_body,
    table_name,
)
from tenancy.render.inventory import inventory

pytestmark = pytest.mark.integration

EXAMPLES = int(os.environ.get("TENANCY_PROPERTY_EXAMPLES", "25"))
SITE = "prop"
SSH_KEY = (
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFkz8XbQZ9n3mZz0p4bJ2wq7WcXKqvJ5Yk2d3fXo6u4r ops@prop"
)
CMDLINE = "root=/dev/vda rw console=ttyS0 net.ifnames=0"  # program_config's default
RECIPE = "0123456789abcdef"
SCHEMAS = Path("/usr/share/libvirt/schemas")  # where virt-xml-validate looks (SCHEMA=)
POOLS = {
    "default": "/var/lib/tenancy/pools/default",
    "bulk": "/srv/libvirt/bulk",
    "ssd": "/srv/ssd",
}
ALNUM = "abcdefghijklmnopqrstuvwxyz0123456789"
EDGE_DISPLAY = [
    "\u202eevil\u202c", "a\u0000b", "tab\there", "nl\nline", "\u0085\u2028\u2029", "\ufeffbom",
    "财政 部门", "\u200f\u200e\u2066x\u2069", "x" * 128, "é" * 128, "\U0001f600" * 40, "'\"<&>--",
    "{{ x }}", "- [a]: b", "x" * 129,
]  # fmt: skip
DOCUMENT_LEVEL = ("malformed YAML", "file too large", "empty document")

# --- strategies -----------------------------------------------------------------


@st.composite
def labels(draw: st.DrawFn, low: int = 1, high: int = 32) -> str:
    """A DNS label with single hyphens, often of the longest length allowed."""
    size = draw(st.one_of(st.just(high), st.integers(low, high)))
    rest = draw(st.lists(st.sampled_from(ALNUM + "-"), min_size=size - 1, max_size=size - 1))
    out = draw(st.sampled_from(ALNUM[:26]))
    for i, ch in enumerate(rest):
        if ch == "-" and (out[-1] == "-" or i == len(rest) - 1):
            ch = "a"
        out += ch
    return out


@st.composite
def port_specs(draw: st.DrawFn) -> str:
    proto = draw(st.sampled_from(["tcp", "udp"]))
    low = draw(st.one_of(st.sampled_from([1, 22, 53, 443, 8000, 65535]), st.integers(1, 65535)))
    if draw(st.booleans()):
        span = draw(st.sampled_from([0, 9, 65535]))
        return f"{low}-{draw(st.integers(low, min(65535, low + span)))}/{proto}"
    return f"{low}/{proto}"


@st.composite
def cidrs(draw: st.DrawFn) -> str:
    prefix = draw(st.one_of(st.sampled_from([0, 8, 24, 32]), st.integers(8, 32)))
    address = draw(st.integers(0, 2**32 - 1))
    return str(ipaddress.IPv4Network((address, prefix), strict=False))


def host_doc(i: int, pools: list[str]) -> dict[str, Any]:
    uri = "qemu:///system" if i == 1 else f"qemu+ssh://tenancy@kvm-{i}.example.gov/system"
    return {
        "name": f"kvm-{i}",
        "uri": uri,
        "vcpus": 64,
        "memoryGiB": 256,
        "pools": [{"name": p, "capacityGiB": 4000, "path": POOLS[p]} for p in pools],
    }


def site_doc(hosts: list[dict[str, Any]], segment_prefix: int, **changes: Any) -> dict[str, Any]:
    """The generated site: what the strategy varies comes in, the rest is fixed."""
    site: dict[str, Any] = {
        "name": SITE,
        "domainType": "qemu",
        "hosts": hosts,
        "addressPools": {
            "intranet": "10.30.0.0/16",
            "extranet": "10.40.0.0/16",
            "segmentPrefix": segment_prefix,
        },
        "external": {
            "intranet": ["10.255.1.0/24"],
            "extranet": ["10.255.2.0/24", "172.16.0.0/14"],
            "internet": ["0.0.0.0/0"],
        },
        "reserved": ["10.30.255.0/24"],
        "flavors": {
            "tiny": {"vcpus": 1, "memoryMiB": 512},
            "small": {"vcpus": 2, "memoryMiB": 2048},
        },
        "images": {"debian-12": {"os": "debian-12", "source": "builtin:debian-12"}},
        "defaultQuota": {
            "vcpus": 512,
            "memoryGiB": 2048,
            "storageGiB": 100000,
            "machines": 1000,
            "addresses": 65536,
        },
        "backupSchedules": ["none", "daily", "weekly"],
        "ops": {"user": "ops", "sshKeys": [SSH_KEY], "cidrs": changes.pop("ops_cidrs", [])},
        "ntpServers": [],
    }
    if changes.pop("open_zones", False) and "zone_rules" in Site.model_fields:
        every = {"intranet": "any", "extranet": "any", "internet": "any"}
        site["zoneRules"] = {"intranet": every, "extranet": dict(every)}  # no YAML alias
    site.update(changes)
    return site


@st.composite
def sites(draw: st.DrawFn) -> dict[str, Any]:
    hosts = [
        host_doc(i, ["default", *draw(st.lists(st.sampled_from(["bulk", "ssd"]), unique=True))])
        for i in range(1, draw(st.integers(1, 3)) + 1)
    ]
    site = site_doc(
        hosts,
        draw(st.one_of(st.just(24), st.integers(16, 28))),
        domainType=draw(st.sampled_from(["qemu", "kvm"])),
        ops_cidrs=draw(st.sampled_from([[], ["192.168.50.0/26"]])),
        ntpServers=draw(st.sampled_from([[], ["ntp1.example.gov"]])),
        open_zones=draw(st.booleans()),  # else the site's default zone rules
    )
    site["external"]["internet"] = [draw(st.sampled_from(["0.0.0.0/0", "10.255.3.0/24"]))]
    if draw(st.booleans()):
        site["packageMirror"] = "http://mirror.example.gov/debian"
    return site


@st.composite
def machines(draw: st.DrawFn, pools: list[str]) -> list[dict[str, Any]]:
    out = []
    short_or_long = st.one_of(labels(1, 8), labels(1, 8), labels(1, 8), labels(1, 32))
    for name in draw(st.lists(short_or_long, unique=True, max_size=3)):
        m: dict[str, Any] = {
            "name": name,
            "count": draw(st.integers(1, 3)),
            "flavor": draw(st.sampled_from(["tiny", "small"])),
            "image": "debian-12",
            "diskGiB": draw(st.integers(3, 40)),
        }
        if draw(st.booleans()):
            m["role"] = draw(labels(1, 12))
        if draw(st.booleans()):
            m["protect"] = True
        vol_names = draw(st.lists(labels(1, 12), unique=True, max_size=2))
        if vol_names:
            m["volumes"] = [
                {
                    "name": v,
                    "sizeGiB": draw(st.integers(1, 50)),
                    "pool": draw(st.sampled_from(pools)),
                    "backup": draw(st.sampled_from(["none", "daily", "weekly"])),
                }
                for v in vol_names
            ]
        out.append(m)
    return out


def _groups(doc: dict[str, Any]) -> list[str]:
    return sorted({m.get("role", m["name"]) for m in doc["spec"]["machines"]})


@st.composite
def endpoints(draw: st.DrawFn, me: str, docs: dict[str, dict[str, Any]]) -> str:
    others = [n for n in docs if n != me]
    kinds = ["keyword", "cidr"] + (["tenant", "group"] if others else [])
    kind = draw(st.sampled_from(kinds))
    if kind == "keyword":
        return draw(st.sampled_from(["intranet", "extranet", "internet"]))
    if kind == "cidr":
        return draw(cidrs())
    other = draw(st.sampled_from(others))
    groups = _groups(docs[other])
    if kind == "group" and groups:
        return f"{other}/{draw(st.sampled_from(groups))}"
    return other


@st.composite
def rules(
    draw: st.DrawFn, me: str, docs: dict[str, dict[str, Any]], direction: str
) -> dict[str, Any]:
    peer_key, local_key = ("from", "to") if direction == "ingress" else ("to", "from")
    rule: dict[str, Any] = {peer_key: draw(endpoints(me, docs))}
    groups = _groups(docs[me])
    narrowed = draw(st.booleans())
    if groups and narrowed:
        rule[local_key] = draw(st.sampled_from(groups))
    rule["ports"] = draw(st.lists(port_specs(), min_size=1, max_size=4))
    return rule


@st.composite
def explicit_cidrs(draw: st.DrawFn, zone: str, segment_prefix: int) -> str:
    pool = ipaddress.IPv4Network("10.30.0.0/16" if zone == "intranet" else "10.40.0.0/16")
    prefix = draw(st.integers(max(16, segment_prefix - 2), 28))
    index = draw(st.integers(0, 2 ** (prefix - 16) - 1))
    start = int(pool.network_address) + index * 2 ** (32 - prefix)
    return str(ipaddress.IPv4Network((start, prefix)))


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """A site and 1-3 tenant documents on it, which may refer to each other."""
    site = draw(sites())
    pools = sorted({p["name"] for h in site["hosts"] for p in h["pools"]})
    tenant_names = draw(
        st.lists(
            labels(2, 32).filter(lambda n: n not in RESERVED_TENANT_NAMES),
            min_size=1,
            max_size=3,
            unique=True,
        )
    )
    docs: dict[str, dict[str, Any]] = {}
    for name in tenant_names:
        display = draw(st.one_of(st.text(min_size=1, max_size=128), st.sampled_from(EDGE_DISPLAY)))
        zone = draw(st.sampled_from(["intranet", "extranet"]))
        spec: dict[str, Any] = {"site": SITE, "zone": zone, "machines": draw(machines(pools))}
        if draw(st.integers(0, 3)) == 0:
            prefix = site["addressPools"]["segmentPrefix"]
            spec["network"] = {"cidr": draw(explicit_cidrs(zone, prefix))}
        docs[name] = {
            "apiVersion": "tenancy/v1",
            "kind": "Tenant",
            "metadata": {"name": name, "displayName": display, "owner": f"ops@{name}.example.gov"},
            "spec": spec,
        }
    for name, doc in docs.items():
        doc["spec"]["firewall"] = {
            d: draw(st.lists(rules(name, docs, d), max_size=3)) for d in ("ingress", "egress")
        }
    return site, docs


# --- rendering, as the program and the dynamic providers do it -------------------


@dataclass
class Artefacts:
    """Files by kind (nft, domain, network, nwfilter, user-data, network-config, meta-data)."""

    files: dict[str, list[Path]] = field(default_factory=dict)
    networks: dict[str, dict[str, str]] = field(default_factory=dict)  # network-config: expected
    hostnames: dict[str, str] = field(default_factory=dict)  # meta-data file: its host name
    provider_failures: list[str] = field(default_factory=list)
    inventory: Path | None = None

    def write(self, kind: str, path: Path, text: str) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        self.files.setdefault(kind, []).append(path)
        return path


def checked(provider: Any, props: dict[str, Any], art: Artefacts, where: str) -> dict[str, Any]:
    """The provider's own check (defaults and validate), as the engine runs it before create."""
    result = provider.check({}, props)
    art.provider_failures += [f"{where}: {f.reason}" for f in result.failures]
    return dict(result.inputs)


def render_all(plan: Plan, site: Site, out: Path) -> Artefacts:
    """Every artefact of the plan, with the runtime values the providers would fill in."""
    art = Artefacts()
    hosts = {h.name: h for h in site.hosts}
    for host in site.hosts:
        text = render_host_nftables(plan, host.name, guest_host_services(site.ntp_servers))
        art.write("nft", out / "nft" / f"{host.name}.nft", text)
    for t in plan.tenants:
        for host_name in t.segment.hosts:
            uri, seg = hosts[host_name].uri, t.segment
            props: dict[str, Any] = {"uri": uri, "name": seg.network, "bridge": seg.bridge}
            props |= {"address": seg.gateway, "prefix": seg.prefix, "dns": False}
            inputs = checked(NetworkProvider(), props, art, f"network {seg.network}")
            art.write(
                "network", out / host_name / f"{seg.network}.xml", network_xml(network_spec(inputs))
            )
            for group in sorted({m.group for m in t.machines if m.host == host_name}):
                name = names.filter_name(t.name, group)
                body = render_nwfilter_body(t, group, list(site.ops.cidrs))
                inputs = checked(
                    NwFilterProvider(), {"uri": uri, "name": name, "body": body}, art, name
                )
                art.write(
                    "nwfilter", out / host_name / f"{name}.xml", nwfilter_xml(nwfilter_spec(inputs))
                )
        for m in t.machines:
            render_machine(plan, site, t, m, art, out)
    art.inventory = out / "inventory.yaml"
    art.inventory.write_text(
        yaml.safe_dump(inventory(plan, site.ops.user), sort_keys=True, allow_unicode=True),
        encoding="utf-8",
    )
    return art


def render_machine(plan: Plan, site: Site, t: Any, m: Any, art: Artefacts, out: Path) -> None:
    """Seed, volumes and domain of one machine (paths as libvirt's dir pools give them)."""
    host = next(h for h in site.hosts if h.name == m.host)
    pool_dir = {p.name: p.path.rstrip("/") for p in host.pools}
    base = f"{pool_dir[host.pools[0].name]}/base-{m.image}-{RECIPE}"
    seed = render_seed(m, t.segment, list(site.ops.ssh_keys), site.ops.user, site.package_mirror)
    where = out / "seeds" / m.domain
    art.write("user-data", where / "user-data", seed.user_data)
    net = art.write("network-config", where / "network-config", seed.network_config)
    meta = art.write("meta-data", where / "meta-data", seed.meta_data)
    art.networks[str(net)] = {
        "mac": m.mac, "address": f"{m.address}/{t.segment.prefix}", "gateway": t.segment.gateway,
    }  # fmt: skip
    art.hostnames[str(meta)] = m.domain
    pool = f"tenancy-{plan.site}-{m.root_pool}"
    seed_name = f"{m.domain}-seed-{seed.identity[:8]}.iso"
    uri = host.uri
    seed_props = {"uri": uri, "pool": pool, "name": seed_name, "user_data": seed.user_data}
    seed_props |= {"meta_data": seed.meta_data, "network_config": seed.network_config}
    checked(CloudInitDiskProvider(), seed_props, art, seed_name)
    root_name = f"{m.domain}-root.qcow2"
    root_props = {"uri": uri, "pool": pool, "name": root_name, "backing_volume": f"{base}.qcow2"}
    checked(VolumeProvider(), root_props | {"capacity": m.disk_gib * GIB}, art, root_name)
    disks: list[dict[str, Any]] = [
        {"path": f"{pool_dir[m.root_pool]}/{root_name}", "target": "vda", "format": "qcow2"},
        {"path": f"{pool_dir[m.root_pool]}/{seed_name}", "target": "vdb", "format": "raw"},
    ]
    disks[1]["readonly"] = True
    for index, vol in enumerate(m.volumes):
        vol_name = f"{m.domain}-{vol.name}.qcow2"
        vol_props = {"uri": uri, "pool": f"tenancy-{plan.site}-{vol.pool}", "name": vol_name}
        checked(VolumeProvider(), vol_props | {"capacity": vol.size_gib * GIB}, art, vol_name)
        path = f"{pool_dir[vol.pool]}/{vol_name}"
        disks.append({"path": path, "target": f"vd{chr(ord('c') + index)}", "format": "qcow2"})
    nic = {"network": t.segment.network, "mac": m.mac, "filter": names.filter_name(t.name, m.group)}
    nic["filter_parameters"] = {"IP": m.address}
    props: dict[str, Any] = {"uri": uri, "name": m.domain, "domain_type": plan.domain_type}
    props |= {"memory_mib": m.memory_mib, "vcpus": m.vcpus, "disks": disks, "interfaces": [nic]}
    props |= {"kernel": f"{base}.vmlinuz", "initrd": f"{base}.initrd", "cmdline": CMDLINE}
    props["console_log"] = f"/var/log/libvirt/qemu/{m.domain}-console.log"
    inputs = checked(DomainProvider(), props, art, m.domain)
    art.write("domain", out / m.host / f"{m.domain}.xml", domain_xml(domain_def(inputs)))


# --- the tools ---------------------------------------------------------------------

# `virt-xml-validate FILE KIND` over the files of one kind, in one shell: it stops at
# the first file libvirt's schema refuses and names it.
XML_CHECK = """kind=$1; shift
for f in "$@"; do
  if ! virt-xml-validate "$f" "$kind" > /dev/null 2>&1; then
    echo "$f"; virt-xml-validate "$f" "$kind"; exit 1
  fi
done"""

# cloud-init's own code paths, strict: `cloud-init schema -c` for user-data; for
# network-config (22.4 has no `schema --schema-type network-config`) what `cloud-init
# devel net-convert -k yaml -O networkd` runs, but refusing broken parts (skip_broken)
# and reporting any warning; meta-data as NoCloud reads it.
CLOUD_CHECK = r"""
import json, logging, sys
from cloudinit import distros, safeyaml, util
from cloudinit.config.schema import SchemaValidationError, get_schema, validate_cloudconfig_file
from cloudinit.net import network_state, networkd

class Collect(logging.Handler):
    records = []
    def emit(self, record):
        self.records.append(f"{record.levelname}: {record.getMessage()}")
handler = Collect(logging.WARNING)
logging.getLogger().addHandler(handler)
job = json.load(open(sys.argv[1]))
schema, out = get_schema(), {}
for path in job["user-data"]:
    handler.records.clear()
    try:
        validate_cloudconfig_file(path, schema)
        out[path] = list(handler.records)
    except (SchemaValidationError, RuntimeError) as exc:
        out[path] = [str(exc), *handler.records]
config = distros.fetch("debian")("debian", {}, None).renderer_configs.get("networkd")
for path, target in job["network-config"].items():
    handler.records.clear()
    try:
        renderer = networkd.Renderer(config=config)
        data = safeyaml.load(open(path, encoding="utf-8").read())
        state = network_state.parse_net_config_data(data, skip_broken=False, renderer=renderer)
        renderer.render_network_state(network_state=state, target=target)
        out[path] = list(handler.records)
    except Exception as exc:
        out[path] = [f"{type(exc).__name__}: {exc}", *handler.records]
for path in job["meta-data"]:
    data = util.load_yaml(open(path, encoding="utf-8").read())
    out[path] = [] if isinstance(data, dict) else [f"not a mapping: {data!r}"]
    out[path + "#hostname"] = data.get("local-hostname") if isinstance(data, dict) else None
with open(sys.argv[2], "w", encoding="utf-8") as fh:  # stdout carries the module's own notes
    json.dump(out, fh)
"""


@dataclass(frozen=True)
class Tools:
    nft: str
    cloud_init: str
    cloud_python: str
    ansible_inventory: str


@dataclass(frozen=True)
class Run:
    code: int
    out: str
    err: str


def run_tools(tools: Tools, art: Artefacts, out: Path) -> dict[str, Run]:
    """Every check of one example, started together (one process per tool and schema)."""
    argv: dict[str, list[str]] = {}
    master = out / "all.nft"  # one nft run: the host tables as includes (errors name the file)
    master.write_text("".join(f'include "{p}"\n' for p in art.files["nft"]), encoding="utf-8")
    argv["nft"] = [tools.nft, "-c", "-f", str(master)]
    for kind in ("domain", "network", "nwfilter"):
        if art.files.get(kind):
            files = [str(f) for f in art.files[kind]]
            argv[kind] = ["bash", "-c", XML_CHECK, "xml-check", kind, *files]
    if art.files.get("user-data"):
        job = {
            "user-data": [str(p) for p in art.files["user-data"]],
            "network-config": {
                str(p): str(p.parent / "networkd") for p in art.files["network-config"]
            },
            "meta-data": [str(p) for p in art.files["meta-data"]],
        }
        (out / "cloud-init.json").write_text(json.dumps(job), encoding="utf-8")
        job_file, verdicts = str(out / "cloud-init.json"), str(out / "cloud-init-verdicts.json")
        argv["cloud-init"] = [tools.cloud_python, "-c", CLOUD_CHECK, job_file, verdicts]
        first = str(art.files["user-data"][0])
        argv["cloud-init schema"] = [tools.cloud_init, "schema", "--config-file", first]
    assert art.inventory is not None
    argv["ansible-inventory"] = [tools.ansible_inventory, "-i", str(art.inventory), "--list"]
    env = {**os.environ, "ANSIBLE_INVENTORY_UNPARSED_FAILED": "True"}
    (out / "ansible.cfg").write_text("[defaults]\n", encoding="utf-8")  # no other config
    env |= {"ANSIBLE_INVENTORY_ENABLED": "yaml", "ANSIBLE_CONFIG": str(out / "ansible.cfg")}
    procs = {
        k: subprocess.Popen(
            a, cwd=out, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        for k, a in argv.items()
    }
    runs = {}
    for k, p in procs.items():
        stdout, stderr = p.communicate(timeout=300)
        runs[k] = Run(p.returncode, stdout, stderr)
    return runs


def tool_problems(art: Artefacts, plan: Plan, runs: dict[str, Run], out: Path) -> list[str]:
    """What the tools refused, one line each (empty: every artefact is accepted)."""
    problems = [
        f"{k}: exit {r.code}: {(r.err or r.out).strip()[:2000]}"
        for k, r in runs.items()
        if r.code != 0 and k != "cloud-init"
    ]
    if runs["nft"].code == 0 and runs["nft"].err.strip():  # a warning is a problem too
        problems.append(f"nft: {runs['nft'].err.strip()}")
    if "cloud-init" in runs:
        run = runs["cloud-init"]
        if run.code != 0:
            return [*problems, f"cloud-init checks: exit {run.code}: {run.err.strip()[-2000:]}"]
        verdicts = json.loads((out / "cloud-init-verdicts.json").read_text(encoding="utf-8"))
        for path, found in verdicts.items():
            if not path.endswith("#hostname") and found:
                problems.append(f"cloud-init: {path}: {found}")
        for meta, host in art.hostnames.items():
            if verdicts.get(meta + "#hostname") != host:
                problems.append(f"meta-data {meta}: local-hostname is not {host}")
        problems += networkd_problems(art)
    problems += inventory_problems(plan, runs["ansible-inventory"])
    return problems


def networkd_problems(art: Artefacts) -> list[str]:
    """The address, gateway and MAC each seed asks for are in cloud-init's networkd file."""
    problems = []
    for path, want in art.networks.items():
        rendered = list((Path(path).parent / "networkd").rglob("*.network"))
        text = "".join(p.read_text(encoding="utf-8") for p in rendered)
        expected = [
            f"Address={want['address']}",
            f"Gateway={want['gateway']}",
            f"MACAddress={want['mac']}",
        ]
        missing = [e for e in expected if e not in text]
        if not rendered or missing:
            problems.append(
                f"network-config {path}: networkd output lacks {missing or 'a .network file'}"
            )
    return problems


def reachable(listed: dict[str, Any], group: str) -> tuple[set[str], set[str]]:
    """The groups and hosts under ``group`` in ``ansible-inventory --list`` output."""
    groups: set[str] = set()
    hosts: set[str] = set()
    todo = [group]
    while todo:
        name = todo.pop()
        if name not in groups:
            groups.add(name)
            hosts.update(listed.get(name, {}).get("hosts", []))
            todo += listed.get(name, {}).get("children", [])
    return groups, hosts


def inventory_problems(plan: Plan, run: Run) -> list[str]:
    """ansible-inventory parsed it; each tenant's groups are its own and hold its hosts only."""
    if run.code != 0:
        return []  # reported with the exit code
    problems = [f"ansible-inventory: {line}" for line in run.err.splitlines() if "WARNING" in line]
    listed = json.loads(run.out)
    hostvars = listed.get("_meta", {}).get("hostvars", {})
    owner: dict[str, str] = {}
    for t in (t for t in plan.tenants if t.machines):
        top = names.group_name(t.name)
        groups, hosts = reachable(listed, top)
        want = {top} | {names.group_name(t.name, m.group) for m in t.machines}
        if groups != want:
            problems.append(f"tenant {t.name}: groups {sorted(groups)} are not {sorted(want)}")
        if hosts != {m.domain for m in t.machines}:
            problems.append(f"tenant {t.name}: its groups hold {sorted(hosts)}")
        for group in sorted(groups):
            if group in owner:
                problems.append(f"group {group} of tenant {t.name} is also tenant {owner[group]}'s")
            owner[group] = t.name
        for m in t.machines:
            if hostvars.get(m.domain, {}).get("ansible_host") != m.address:
                problems.append(f"{m.domain}: ansible_host is not {m.address}")
    return problems


# --- the property ------------------------------------------------------------------


def _need(condition: bool, message: str) -> None:
    if not condition:
        pytest.fail(f"rendered-artefact checks need {message}", pytrace=False)


@pytest.fixture(scope="session")
def tools() -> Tools:
    """The checking tools; fails naming what installs a missing one (never skips)."""
    nft = shutil.which("nft") or "/usr/sbin/nft"
    _need(Path(nft).is_file(), "nft (Debian package nftables)")
    _need(os.geteuid() == 0, "root: `nft -c` checks against the kernel's netlink")
    cloud_init = shutil.which("cloud-init")
    _need(cloud_init is not None, "cloud-init (Debian package cloud-init: bash tools/test-deps.sh)")
    assert cloud_init is not None
    shebang = Path(cloud_init).read_text(encoding="utf-8").splitlines()[0]
    ansible = shutil.which("ansible-inventory") or str(
        Path(sys.executable).parent / "ansible-inventory"
    )
    _need(Path(ansible).is_file(), "ansible-inventory (the project venv: make python-env)")
    _need((SCHEMAS / "domain.rng").is_file(), f"libvirt's schemas in {SCHEMAS} (libvirt-clients)")
    _need(shutil.which("virt-xml-validate") is not None, "virt-xml-validate (libvirt-clients)")
    _need(shutil.which("xmllint") is not None, "xmllint (libxml2-utils: bash tools/test-deps.sh)")
    return Tools(nft, cloud_init, shebang.removeprefix("#!").strip(), ansible)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project copy with only the generated site and tenants (rewritten per example)."""
    root = copy_project(tmp_path_factory.mktemp("rendered") / "project")
    for path in (root / "tenants").glob("*.yaml"):
        path.unlink()
    return root


def plan_scenario(root: Path, site: dict[str, Any], docs: dict[str, dict[str, Any]]) -> PlanResult:
    for path in (root / "tenants").glob("*.yaml"):
        path.unlink()
    stack = {"config": {"tenancy:site": site}}
    text = "---\n" + yaml.safe_dump(stack, sort_keys=False, allow_unicode=True)
    (root / "stacks" / f"Pulumi.{SITE}.yaml").write_text(text, encoding="utf-8")
    for name, doc in docs.items():
        text = yaml.safe_dump(doc, sort_keys=False, allow_unicode=True)
        (root / "tenants" / f"{name}.yaml").write_text(text, encoding="utf-8")
    return plan_paths(root)


def assert_located(result: PlanResult) -> None:
    """Refused input: errors only, each at a file, a line and (below the document) a field."""
    assert result.plans == {} and result.ledgers == {}, "partial plan next to errors"
    for e in result.problems.errors:
        assert e.location.file.endswith(".yaml") and e.location.line >= 1, str(e)
        assert e.message and (e.field or e.message.startswith(DOCUMENT_LEVEL)), str(e)


@dataclass(frozen=True)
class Rendered:
    plan: Plan
    art: Artefacts
    out: Path


def render_scenario(
    root: Path, site: dict[str, Any], docs: dict[str, dict[str, Any]]
) -> Rendered | None:
    """Plan; refused input: located errors and None; validated: every artefact rendered."""
    result = plan_scenario(root, site, docs)
    if not result.ok:
        assert_located(result)
        return None
    plan, model = result.plans[SITE], result.sites[SITE].model
    out = root / "out"
    shutil.rmtree(out, ignore_errors=True)
    art = render_all(plan, model, out)
    assert not art.provider_failures, "\n".join(art.provider_failures)
    return Rendered(plan, art, out)


def check_with_tools(tools: Tools, rendered: Rendered) -> None:
    """Every artefact passes its tool, and ``nft -c`` left the host's ruleset alone."""
    runs = run_tools(tools, rendered.art, rendered.out)
    problems = tool_problems(rendered.art, rendered.plan, runs, rendered.out)
    assert not problems, "\n".join(problems)
    listed = subprocess.run(
        [tools.nft, "list", "table", "inet", table_name(SITE)], capture_output=True, check=False
    )
    assert listed.returncode != 0, "nft -c loaded the table"


def features(docs: dict[str, dict[str, Any]]) -> Iterator[str]:
    """What a validated example exercised (pytest --hypothesis-show-statistics lists them)."""
    for doc in docs.values():
        spec = doc["spec"]
        if "network" in spec:
            yield "explicit network.cidr"
        if any(m.get("volumes") for m in spec["machines"]):
            yield "volumes"
        fw = spec["firewall"]
        for peer in [r["from"] for r in fw["ingress"]] + [r["to"] for r in fw["egress"]]:
            if peer in ("intranet", "extranet", "internet"):
                yield "keyword endpoint"
            elif peer[0].isdigit():
                yield "CIDR endpoint"
            else:
                yield "group endpoint" if "/" in peer else "tenant endpoint"


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.filter_too_much,
    ],
)
@given(scenario=scenarios())
def test_validated_tenant_files_render_artefacts_the_tools_accept(
    workspace: Path, tools: Tools, scenario: tuple[dict[str, Any], dict[str, dict[str, Any]]]
) -> None:
    site, docs = scenario
    rendered = render_scenario(workspace, site, docs)
    if rendered is None:
        event("refused")
        return
    event("validated")
    for feature in sorted(set(features(docs))):
        event(f"validated with {feature}")
    check_with_tools(tools, rendered)


# --- a fixed scenario: it validates, and the checks can fail --------------------------

LONG = "records-archive-department-00001"  # 32 characters


def known_scenario() -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """Two hosts, two tenants (one named at the maximum length) with flows both ways."""
    site = site_doc(
        [host_doc(1, list(POOLS)), host_doc(2, list(POOLS))],
        26,
        domainType="kvm",
        ops_cidrs=["192.168.50.0/26"],
        packageMirror="http://mirror.example.gov/debian",
        open_zones=True,
    )
    volume = {"name": "data", "sizeGiB": 20, "pool": "bulk", "backup": "daily"}
    archive = {
        "site": SITE,
        "zone": "intranet",
        "network": {"cidr": "10.30.4.0/25"},
        "machines": [
            {"name": "db", "count": 2, "role": "storage", "flavor": "small", "image": "debian-12",
             "diskGiB": 10, "protect": True, "volumes": [volume]},
            {"name": "web", "count": 3, "flavor": "tiny", "image": "debian-12", "diskGiB": 3},
        ],
        "firewall": {
            "ingress": [
                {"from": "portal/front", "to": "web", "ports": ["443/tcp", "8000-8080/tcp"]},
                {"from": "203.0.113.0/24", "ports": ["22/tcp", "65535/udp"]},
            ],
            "egress": [
                {"to": "internet", "ports": ["443/tcp"]},
                {"to": "extranet", "ports": ["53/udp"]},
            ],
        },
    }  # fmt: skip
    portal = {
        "site": SITE,
        "zone": "extranet",
        "machines": [
            {"name": "front", "count": 2, "flavor": "tiny", "image": "debian-12", "diskGiB": 3}
        ],
        "firewall": {
            "ingress": [{"from": "internet", "ports": ["80/tcp", "443/tcp"]}],
            "egress": [{"to": f"{LONG}/web", "ports": ["443/tcp", "8000-8080/tcp"]}],
        },
    }
    docs = {}
    for name, spec, display in ((LONG, archive, "\u202e档案\u202c 馆"), ("portal", portal, "门户")):
        meta = {"name": name, "displayName": display, "owner": f"ops@{name}.example.gov"}
        docs[name] = {"apiVersion": "tenancy/v1", "kind": "Tenant", "metadata": meta, "spec": spec}
    return site, docs


def test_a_known_scenario_validates_and_its_artefacts_pass(workspace: Path, tools: Tools) -> None:
    site, docs = known_scenario()
    rendered = render_scenario(workspace, site, docs)
    assert rendered is not None, "the known scenario no longer validates"
    count = sum(m["count"] for d in docs.values() for m in d["spec"]["machines"])
    assert len(rendered.art.files["domain"]) == len(rendered.art.files["user-data"]) == count
    assert len(rendered.art.files["nft"]) == len(site["hosts"])
    check_with_tools(tools, rendered)


def test_the_checks_refuse_broken_artefacts(workspace: Path, tools: Tools) -> None:
    """One broken file of each kind: each tool says so (the property is not vacuous)."""
    site, docs = known_scenario()
    rendered = render_scenario(workspace, site, docs)
    assert rendered is not None
    art = rendered.art
    edits = {
        "nft": ("ct state new accept", "ct state new acept"),
        "domain": ('<memory unit="MiB">', '<memory unit="MiB">x'),
        "network": ('mode="open"', 'mode="opened"'),
        "nwfilter": ('action="drop"', 'action="dropped"'),
        "user-data": ("ssh_pwauth: false", "ssh_pwauth: [1]"),
        "network-config": ("addresses: [", "addresses: [10.30.0.300/26, "),
        "meta-data": ("local-hostname: ", "local-hostname: x"),
    }
    for kind, (old, new) in edits.items():
        path = art.files[kind][0]
        text = path.read_text(encoding="utf-8")
        assert old in text, f"{kind}: {old!r} not in {path}"
        path.write_text(text.replace(old, new, 1), encoding="utf-8")
    gateway = next(iter(art.networks.values()))
    gateway["gateway"] = "192.0.2.1"  # what the seed asked for is not what networkd got
    shared = yaml.safe_load(art.inventory.read_text(encoding="utf-8")) if art.inventory else {}
    children = shared["all"]["children"]
    first, second = sorted(children)[:2]
    children[first]["children"].update(children[second]["children"])  # a group in two tenants
    assert art.inventory is not None
    art.inventory.write_text(yaml.safe_dump(shared), encoding="utf-8")
    problems = tool_problems(art, rendered.plan, run_tools(tools, art, rendered.out), rendered.out)
    text = "\n".join(problems)
    for kind in ("nft", "domain", "network", "nwfilter"):
        assert any(p.startswith(f"{kind}: ") for p in problems), f"{kind} not refused:\n{text}"
    for kind in ("user-data", "network-config"):
        assert any(f"/{kind}: " in p for p in problems), f"{kind} not refused:\n{text}"
    assert "meta-data" in text and "192.0.2.1" in text, text
    assert "is also tenant" in text and "its groups hold" in text, text
    broken = art.files["user-data"][0]
    run = subprocess.run([tools.cloud_init, "schema", "--config-file", str(broken)], check=False)
    assert run.returncode != 0, "cloud-init schema accepted a broken user-data"
