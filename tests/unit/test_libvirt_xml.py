"""libvirt XML generation and the providers' check/diff rules, without libvirt."""

from __future__ import annotations

import struct
import xml.etree.ElementTree as ET
from typing import Any

import pytest

from tenancy.infra.dynamic._base import UNKNOWN, canonical
from tenancy.infra.dynamic.cloudinit import CloudInitDiskProvider, seed_content_sha256
from tenancy.infra.dynamic.domain import DomainProvider, domain_def
from tenancy.infra.dynamic.network import NetworkProvider, network_spec
from tenancy.infra.dynamic.nwfilter import NwFilterProvider
from tenancy.infra.dynamic.pool import StoragePoolProvider
from tenancy.infra.dynamic.volume import VolumeProvider
from tenancy.infra.dynamic.xml_domain import domain_xml, filter_parameters
from tenancy.infra.dynamic.xml_network import (
    DhcpHost,
    NwFilterDef,
    network_xml,
    nwfilter_xml,
    parse_dhcp_hosts,
)
from tenancy.infra.dynamic.xml_storage import (
    QCOW2_MAGIC,
    PoolDef,
    VolumeDef,
    image_format,
    pool_xml,
    qcow2_virtual_size,
    volume_xml,
)

URI = "qemu:///system"


def parse(doc: str) -> ET.Element:
    return ET.fromstring(doc)


# --- pool and volume ----------------------------------------------------------


def test_pool_xml_is_a_dir_pool_at_the_path() -> None:
    root = parse(pool_xml(PoolDef(name="tenants", path="/var/lib/tenancy/pools/t")))
    assert root.tag == "pool" and root.get("type") == "dir"
    assert root.findtext("name") == "tenants"
    assert root.findtext("target/path") == "/var/lib/tenancy/pools/t"


def test_volume_xml_plain_and_overlay() -> None:
    plain = parse(volume_xml(VolumeDef(name="data.qcow2", capacity=1 << 30)))
    assert plain.findtext("capacity") == str(1 << 30)
    assert plain.find("capacity").get("unit") == "bytes"  # type: ignore[union-attr]
    assert plain.find("target/format").get("type") == "qcow2"  # type: ignore[union-attr]
    assert plain.find("backingStore") is None

    overlay = parse(
        volume_xml(VolumeDef(name="vm.qcow2", capacity=3 << 30, backing_path="/p/base.qcow2"))
    )
    assert overlay.findtext("backingStore/path") == "/p/base.qcow2"
    assert overlay.find("backingStore/format").get("type") == "qcow2"  # type: ignore[union-attr]


def test_volume_xml_rejects_zero_capacity() -> None:
    with pytest.raises(ValueError, match="capacity"):
        volume_xml(VolumeDef(name="x", capacity=0))


def test_qcow2_header_parsing() -> None:
    header = QCOW2_MAGIC + struct.pack(">I", 3) + b"\0" * 16 + struct.pack(">Q", 3 << 30)
    assert image_format(header) == "qcow2"
    assert qcow2_virtual_size(header) == 3 << 30
    assert image_format(b"\x7fELF" + b"\0" * 60) == "raw"
    with pytest.raises(ValueError):
        qcow2_virtual_size(b"\x7fELF" + b"\0" * 60)


# --- network ------------------------------------------------------------------


def network_props(**overrides: Any) -> dict[str, Any]:
    props: dict[str, Any] = {
        "uri": URI,
        "name": "tn-finance",
        "bridge": "tn-finance",
        "address": "10.30.2.1",
        "prefix": 24,
        "dhcp_hosts": [],
        "dns": False,
        "autostart": True,
    }
    props.update(overrides)
    return props


def test_network_xml_is_open_mode_without_dns() -> None:
    root = parse(network_xml(network_spec(network_props())))
    assert root.find("forward").get("mode") == "open"  # type: ignore[union-attr]
    assert root.find("bridge").get("name") == "tn-finance"  # type: ignore[union-attr]
    assert root.find("dns").get("enable") == "no"  # type: ignore[union-attr]
    ip = root.find("ip")
    assert ip is not None and ip.get("address") == "10.30.2.1" and ip.get("prefix") == "24"
    assert ip.find("dhcp") is None, "no DHCP element without reservations or a range"


def test_network_xml_dns_on_request_and_dhcp_reservations() -> None:
    hosts = [{"mac": "52:54:00:aa:bb:01", "ip": "10.30.2.10", "hostname": "app-1"}]
    root = parse(network_xml(network_spec(network_props(dns=True, dhcp_hosts=hosts))))
    assert root.find("dns") is None
    host = root.find("ip/dhcp/host")
    assert host is not None
    assert (host.get("mac"), host.get("ip"), host.get("name")) == (
        "52:54:00:aa:bb:01",
        "10.30.2.10",
        "app-1",
    )
    assert root.find("ip/dhcp/range") is None
    # round trip through the parser used by read()
    assert parse_dhcp_hosts(network_xml(network_spec(network_props(dhcp_hosts=hosts)))) == (
        DhcpHost("52:54:00:aa:bb:01", "10.30.2.10", "app-1"),
    )


@pytest.mark.parametrize(
    ("overrides", "needle"),
    [
        ({"bridge": "a-bridge-name-too-long"}, "bridge name"),
        ({"address": "10.30.2.0"}, "network or broadcast"),
        ({"address": "10.30.2.300"}, "address/prefix"),
        ({"dhcp_hosts": [{"mac": "52:54:00:aa:bb:01", "ip": "10.31.0.5"}]}, "not a usable"),
        ({"dhcp_hosts": [{"mac": "53:54:00:aa:bb:01", "ip": "10.30.2.5"}]}, "multicast"),
        ({"dhcp_hosts": [{"mac": "52:54:00:AA:BB:01", "ip": "10.30.2.5"}]}, None),
    ],
)
def test_network_validation(overrides: dict[str, Any], needle: str | None) -> None:
    result = NetworkProvider().check({}, network_props(**overrides))
    reasons = " | ".join(f.reason for f in result.failures)
    if needle is None:
        assert not result.failures, reasons
    else:
        assert needle in reasons, reasons


def test_network_diff_names_replacements_precisely() -> None:
    provider = NetworkProvider()
    hosts = [{"mac": "52:54:00:aa:bb:01", "ip": "10.30.2.10"}]
    olds = {**network_props(dhcp_hosts=hosts), "uuid": "u", "active": True}

    same = provider.diff("tn-finance", olds, network_props(dhcp_hosts=hosts))
    assert same.changes is False and same.replaces == []

    more = [*hosts, {"mac": "52:54:00:aa:bb:02", "ip": "10.30.2.11"}]
    update = provider.diff("tn-finance", olds, network_props(dhcp_hosts=more))
    assert update.changes is True and update.replaces == [], "reservations are edited live"

    none = provider.diff("tn-finance", olds, network_props(dhcp_hosts=[]))
    assert none.replaces == ["dhcp_hosts"], "switching DHCP off restarts dnsmasq: replace"

    moved = provider.diff("tn-finance", olds, network_props(dhcp_hosts=hosts, prefix=25))
    assert moved.replaces == ["prefix"] and moved.delete_before_replace is True

    stopped = provider.diff(
        "tn-finance", {**olds, "active": False}, network_props(dhcp_hosts=hosts)
    )
    assert stopped.changes is True and stopped.replaces == [], "refresh saw it stopped: start"


# --- nwfilter -----------------------------------------------------------------


def test_nwfilter_xml_keeps_uuid_and_body() -> None:
    body = (
        "<filterref filter='clean-traffic'/>"
        "<rule action='accept' direction='in' priority='500'>"
        "<tcp dstportstart='22'/></rule>"
    )
    root = parse(nwfilter_xml(NwFilterDef(name="tn-app", body=body, uuid="1234")))
    assert root.get("name") == "tn-app" and root.get("chain") == "root"
    assert root.findtext("uuid") == "1234"
    assert [child.tag for child in root] == ["uuid", "filterref", "rule"]
    assert root.find("rule/tcp").get("dstportstart") == "22"  # type: ignore[union-attr]


@pytest.mark.parametrize("body", ["<rule action='accept'", "<domain/>"])
def test_nwfilter_body_is_checked(body: str) -> None:
    result = NwFilterProvider().check({}, {"uri": URI, "name": "f", "body": body})
    assert result.failures and result.failures[0].property == "body"


def test_nwfilter_diff_updates_body_in_place_and_replaces_on_rename() -> None:
    provider = NwFilterProvider()
    olds = {"uri": URI, "name": "f", "body": "<filterref filter='clean-traffic'/>", "chain": "root"}
    body = provider.diff("f", olds, {**olds, "body": ""})
    assert body.changes is True and body.replaces == []
    renamed = provider.diff("f", olds, {**olds, "name": "g"})
    assert renamed.replaces == ["name"]


# --- storage providers --------------------------------------------------------


def test_pool_check_fills_defaults_and_diff_replaces_on_path() -> None:
    provider = StoragePoolProvider()
    checked = provider.check({}, {"uri": URI, "name": "p", "path": "/var/lib/p"})
    assert not checked.failures and checked.inputs["autostart"] is True
    olds = {**checked.inputs, "uuid": "u", "active": True}
    assert provider.diff("p", olds, {**checked.inputs, "path": "/srv/p"}).replaces == ["path"]
    flip = provider.diff("p", olds, {**checked.inputs, "autostart": False})
    assert flip.changes is True and flip.replaces == []
    relative = provider.check({}, {"uri": URI, "name": "p", "path": "p"})
    assert relative.failures[0].property == "path"


def test_volume_capacity_grows_in_place_but_shrinking_replaces() -> None:
    provider = VolumeProvider()
    news = {"uri": URI, "pool": "p", "name": "d.qcow2", "format": "qcow2", "capacity": 2 << 30}
    olds = {**news, "capacity": float(1 << 30), "actual_capacity": float(1 << 30), "path": "/x"}
    grow = provider.diff("/x", olds, news)
    assert grow.changes is True and grow.replaces == []
    shrink = provider.diff("/x", {**olds, "capacity": 4 << 30, "actual_capacity": 4 << 30}, news)
    assert shrink.replaces == ["capacity"]
    unknown = provider.diff("/x", olds, {**news, "capacity": UNKNOWN})
    assert unknown.replaces == ["capacity"]


def test_volume_source_digest_replaces_but_path_move_does_not() -> None:
    provider = VolumeProvider()
    olds = {
        "uri": URI,
        "pool": "p",
        "name": "base.qcow2",
        "format": "qcow2",
        "source": "/images/a/debian-12.qcow2",
        "source_sha256": "a" * 64,
        "backing_format": "qcow2",
        "path": "/p/base.qcow2",
        "actual_capacity": 3 << 30,
    }
    moved = provider.diff("/p/base.qcow2", olds, {**olds, "source": "/images/b/debian-12.qcow2"})
    assert moved.changes is True and moved.replaces == []
    changed = provider.diff("/p/base.qcow2", olds, {**olds, "source_sha256": "b" * 64})
    assert changed.replaces == ["source_sha256"]


def test_volume_check_shapes() -> None:
    provider = VolumeProvider()
    data = provider.check({}, {"uri": URI, "pool": "p", "name": "d"})
    assert any("capacity" in f.reason for f in data.failures)
    both = provider.check(
        {}, {"uri": URI, "pool": "p", "name": "d", "source": "/nonexistent", "backing_volume": "/b"}
    )
    assert any("either source" in f.reason for f in both.failures)
    overlay = provider.check(
        {}, {"uri": URI, "pool": "p", "name": "o", "backing_volume": "/b", "format": "raw"}
    )
    assert any("must be qcow2" in f.reason for f in overlay.failures)


def test_an_uploaded_volumes_source_file_is_not_needed_again() -> None:
    # an older image version's files may be cleaned up while machines still use it
    provider = VolumeProvider()
    base = {
        "uri": URI,
        "pool": "p",
        "name": "base-debian-12-fedcba9876543210.qcow2",
        "format": "qcow2",
        "source": "/images/fedcba9876543210/debian-12.qcow2",
        "source_sha256": "a" * 64,
    }
    fresh = provider.check({}, base)
    assert any("cannot read image" in f.reason for f in fresh.failures), "a create needs it"
    kept = provider.check(dict(base), dict(base))
    assert not kept.failures, kept.failures


def test_cloud_init_disk_hash_is_an_input_identity_replaces_user_data_rewrites() -> None:
    provider = CloudInitDiskProvider()
    news = {
        "uri": URI,
        "pool": "p",
        "name": "seed.iso",
        "user_data": "#cloud-config\n{}\n",
        "meta_data": "instance-id: a\n",
    }
    checked = provider.check({}, news).inputs
    assert checked["content_sha256"] == seed_content_sha256(
        news["user_data"], news["meta_data"], None
    )
    olds = {**checked, "path": "/p/seed.iso", "size": 4096}
    edited = provider.check({}, {**news, "meta_data": "instance-id: b\n"}).inputs
    diff = provider.diff("/p/seed.iso", olds, edited)
    assert sorted(diff.replaces or []) == ["meta_data"]
    # user-data (keys, proxy) is the baseline's after first boot: rewritten in place,
    # the path stays known in a preview so the domain shows no change
    rekeyed = provider.check({}, {**news, "user_data": "#cloud-config\nusers: []\n"}).inputs
    diff = provider.diff("/p/seed.iso", olds, rekeyed)
    assert diff.changes and not diff.replaces
    assert "path" in (diff.stables or []) and "name" in (diff.stables or [])
    pending = provider.check({}, {**news, "user_data": UNKNOWN}).inputs
    assert "content_sha256" not in pending, "no digest of an unknown value"


# --- domain -------------------------------------------------------------------


def domain_props(**overrides: Any) -> dict[str, Any]:
    props: dict[str, Any] = {
        "uri": URI,
        "name": "finance-app-1",
        "domain_type": "qemu",
        "memory_mib": 768,
        "vcpus": 2,
        "kernel": "/p/vmlinuz",
        "initrd": "/p/initrd.img",
        "cmdline": "root=/dev/vda rw console=ttyS0 net.ifnames=0",
        "disks": [
            {"path": "/p/app-1.qcow2", "target": "vda"},
            {"path": "/p/app-1-seed.iso", "target": "vdb", "format": "raw", "readonly": True},
        ],
        "interfaces": [
            {
                "network": "tn-finance",
                "mac": "52:54:00:aa:bb:01",
                "filter": "tn-finance-app",
                "filter_parameters": {"IP": "10.30.2.10"},
            }
        ],
        "console_log": "/var/log/libvirt/qemu/finance-app-1-console.log",
    }
    props.update(overrides)
    return props


def test_domain_xml_direct_kernel_boot_disks_and_filtered_nic() -> None:
    root = parse(domain_xml(domain_def(domain_props())))
    assert root.get("type") == "qemu"
    assert root.findtext("memory") == "768" and root.find("memory").get("unit") == "MiB"  # type: ignore[union-attr]
    assert root.findtext("vcpu") == "2"
    assert root.findtext("os/kernel") == "/p/vmlinuz"
    assert root.findtext("os/initrd") == "/p/initrd.img"
    assert "console=ttyS0" in (root.findtext("os/cmdline") or "")
    assert root.find("os/boot") is None
    assert root.find("features/acpi") is not None, "ACPI is needed for graceful shutdown"
    disks = root.findall("devices/disk")
    assert [d.find("target").get("dev") for d in disks] == ["vda", "vdb"]  # type: ignore[union-attr]
    assert disks[0].find("driver").get("type") == "qcow2"  # type: ignore[union-attr]
    assert disks[0].find("readonly") is None
    assert disks[1].find("driver").get("type") == "raw"  # type: ignore[union-attr]
    assert disks[1].find("readonly") is not None
    iface = root.find("devices/interface")
    assert iface is not None and iface.get("type") == "network"
    assert iface.find("source").get("network") == "tn-finance"  # type: ignore[union-attr]
    assert iface.find("mac").get("address") == "52:54:00:aa:bb:01"  # type: ignore[union-attr]
    ref = iface.find("filterref")
    assert ref is not None and ref.get("filter") == "tn-finance-app"
    assert [(p.get("name"), p.get("value")) for p in ref.findall("parameter")] == [
        ("IP", "10.30.2.10")
    ]
    log = root.find("devices/serial/log")
    assert log is not None and log.get("file", "").endswith("finance-app-1-console.log")


def test_domain_xml_boots_from_disk_without_kernel() -> None:
    props = domain_props(kernel=None, initrd=None, cmdline=None)
    root = parse(domain_xml(domain_def(props)))
    assert root.find("os/kernel") is None
    assert root.find("os/boot").get("dev") == "hd"  # type: ignore[union-attr]


def test_filter_parameters_repeat_list_values() -> None:
    assert filter_parameters({"IP": ["10.0.0.5", "10.0.0.6"], "A": "x"}) == (
        ("A", "x"),
        ("IP", "10.0.0.5"),
        ("IP", "10.0.0.6"),
    )


@pytest.mark.parametrize(
    ("overrides", "needle"),
    [
        ({"domain_type": "xen"}, "domain type"),
        ({"memory_mib": 16}, "below 64"),
        ({"kernel": None}, "need a kernel"),
        ({"disks": [{"path": "/a", "target": "vda"}, {"path": "/b", "target": "vda"}]}, "twice"),
        ({"console_log": "relative.log"}, "absolute"),
    ],
)
def test_domain_validation(overrides: dict[str, Any], needle: str) -> None:
    result = DomainProvider().check({}, domain_props(**overrides))
    reasons = " | ".join(f.reason for f in result.failures)
    assert needle in reasons, reasons


def test_domain_diff_filter_swap_is_live_but_nic_identity_replaces() -> None:
    provider = DomainProvider()
    inputs = provider.check({}, domain_props()).inputs
    assert inputs["disks"][0]["format"] == "qcow2", "nested defaults are spelled out"
    olds = {**inputs, "uuid": "u"}
    assert provider.diff("finance-app-1", olds, inputs).changes is False

    def with_iface(**change: Any) -> dict[str, Any]:
        ifaces = [{**inputs["interfaces"][0], **change}]
        return provider.check({}, domain_props(interfaces=ifaces)).inputs

    swap = provider.diff("finance-app-1", olds, with_iface(filter="tn-finance-web"))
    assert swap.changes is True and swap.replaces == []
    params = provider.diff("finance-app-1", olds, with_iface(filter_parameters={"IP": "10.30.2.9"}))
    assert params.replaces == []
    mac = provider.diff("finance-app-1", olds, with_iface(mac="52:54:00:aa:bb:09"))
    assert mac.replaces == ["interfaces"]
    net = provider.diff("finance-app-1", olds, with_iface(network=UNKNOWN))
    assert net.replaces == ["interfaces"], "a replaced network (unknown name) replaces the VM"

    memory = provider.diff("finance-app-1", olds, {**inputs, "memory_mib": 1024})
    assert memory.replaces == ["memory_mib"] and memory.delete_before_replace is True
    stop = provider.diff("finance-app-1", olds, {**inputs, "running": False})
    assert stop.changes is True and stop.replaces == []


def test_canonical_ignores_float_ints_and_missing_none() -> None:
    assert canonical({"a": 1.0, "b": None, "c": [2.0, "x"]}) == {"a": 1, "c": [2, "x"]}
    assert canonical(1.5) == 1.5
    assert canonical(True) is True
