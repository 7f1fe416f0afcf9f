"""The libvirt dynamic providers called directly (no engine) against real libvirt.

Each test drives one resource kind through check → create → read → diff →
update → delete, checks that ``read`` notices an object removed behind the
provider's back, and that a second delete succeeds. Every object is named with
the session's unique prefix; a session fixture sweeps leftovers.
"""

from __future__ import annotations

import ipaddress
import subprocess
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import libvirt
import pytest

from tenancy.infra import libvirt_conn
from tenancy.infra.dynamic.cloudinit import CloudInitDiskProvider
from tenancy.infra.dynamic.domain import DomainProvider
from tenancy.infra.dynamic.network import NetworkProvider
from tenancy.infra.dynamic.nwfilter import NwFilterProvider
from tenancy.infra.dynamic.pool import StoragePoolProvider
from tenancy.infra.dynamic.volume import VolumeProvider

pytestmark = pytest.mark.integration

MiB = 1024 * 1024


def checked(
    provider: Any, news: dict[str, Any], olds: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Run check like the engine does; fail on validation errors."""
    result = provider.check(olds or {}, news)
    assert not result.failures, [f"{f.property}: {f.reason}" for f in result.failures]
    return dict(result.inputs)


def conn(uri: str) -> Any:
    return libvirt_conn.connect(uri)


@pytest.fixture(scope="module")
def pool(
    libvirt_uri: str, test_prefix: str, pool_root: Path, libvirt_sweeper: Any
) -> Iterator[dict[str, Any]]:
    """A pool created through the provider, shared by the volume and domain tests."""
    provider = StoragePoolProvider()
    name = f"{test_prefix}-pool"
    inputs = checked(provider, {"uri": libvirt_uri, "name": name, "path": str(pool_root / name)})
    created = provider.create(inputs)
    assert created.outs is not None
    yield created.outs
    provider.delete(created.id, created.outs)


def test_pool_lifecycle(
    libvirt_uri: str, test_prefix: str, pool_root: Path, libvirt_sweeper: Any
) -> None:
    provider = StoragePoolProvider()
    name = f"{test_prefix}-lifecycle"
    path = pool_root / name
    inputs = checked(provider, {"uri": libvirt_uri, "name": name, "path": str(path)})

    created = provider.create(inputs)
    assert created.id == name and created.outs is not None
    assert path.is_dir(), "build creates the directory"
    pool = conn(libvirt_uri).storagePoolLookupByName(name)
    assert pool.isActive() and pool.autostart()

    read = provider.read(created.id, created.outs)
    assert read.id == name and read.outs is not None
    assert provider.diff(name, read.outs, inputs).changes is False
    with pytest.raises(RuntimeError, match="already exists"):
        provider.create(inputs)

    no_autostart = checked(provider, {**inputs, "autostart": False})
    diff = provider.diff(name, read.outs, no_autostart)
    assert diff.changes is True and diff.replaces == []
    updated = provider.update(name, read.outs, no_autostart)
    assert not conn(libvirt_uri).storagePoolLookupByName(name).autostart()

    # stopped behind our back: refresh records it, diff asks for an update, update starts it
    pool.destroy()
    stopped = provider.read(name, updated.outs or {})
    assert stopped.outs is not None and stopped.outs["active"] is False
    assert provider.diff(name, stopped.outs, no_autostart).changes is True
    provider.update(name, stopped.outs, no_autostart)
    assert conn(libvirt_uri).storagePoolLookupByName(name).isActive()

    assert provider.diff(name, read.outs, {**inputs, "path": "/srv/x"}).replaces == ["path"]

    provider.delete(name, created.outs)
    assert provider.read(name, created.outs).id == ""
    assert not path.exists(), "the empty directory is removed with the pool"
    provider.delete(name, created.outs)  # already gone: success


def test_volumes_data_base_overlay(
    libvirt_uri: str, test_prefix: str, pool: dict[str, Any], tmp_path: Path
) -> None:
    provider = VolumeProvider()
    common = {"uri": libvirt_uri, "pool": pool["name"]}

    # data volume, then grown in place
    data_in = checked(
        provider, {**common, "name": f"{test_prefix}-data.qcow2", "capacity": 16 * MiB}
    )
    data = provider.create(data_in)
    assert data.outs is not None and data.outs["actual_capacity"] == 16 * MiB
    assert data.id == data.outs["path"] and Path(data.id).is_file()
    bigger = checked(provider, {**data_in, "capacity": 32 * MiB})
    diff = provider.diff(data.id, data.outs, bigger)
    assert diff.changes is True and diff.replaces == []
    grown = provider.update(data.id, data.outs, bigger)
    assert grown.outs is not None and grown.outs["actual_capacity"] == 32 * MiB
    smaller = checked(provider, {**data_in, "capacity": 8 * MiB})
    assert provider.diff(data.id, grown.outs, smaller).replaces == ["capacity"]

    # base volume uploaded from a local qcow2
    image = tmp_path / "tiny.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(image), "64M"], check=True)
    base_in = checked(
        provider, {**common, "name": f"{test_prefix}-base.qcow2", "source": str(image)}
    )
    assert len(base_in["source_sha256"]) == 64, "check fills in the digest of the source"
    base = provider.create(base_in)
    assert base.outs is not None and base.outs["actual_capacity"] == 64 * MiB
    info = subprocess.run(
        ["qemu-img", "info", "--output=json", base.outs["path"]],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    assert '"format": "qcow2"' in info and '"virtual-size": 67108864' in info
    moved = {**base_in, "source": "/elsewhere/tiny.qcow2"}
    assert provider.diff(base.id, base.outs, moved).replaces == []
    assert provider.diff(base.id, base.outs, {**base_in, "source_sha256": "0" * 64}).replaces == [
        "source_sha256"
    ]
    wrong = {**base_in, "name": f"{test_prefix}-wrong.qcow2", "source_sha256": "0" * 64}
    with pytest.raises(RuntimeError, match="sha256"):
        provider.create(wrong)
    assert (
        libvirt_conn.lookup(
            conn(libvirt_uri).storagePoolLookupByName(pool["name"]).storageVolLookupByName,
            wrong["name"],
        )
        is None
    ), "a failed upload leaves no volume behind"

    # overlay on the base, capacity taken from the base
    overlay_in = checked(
        provider,
        {**common, "name": f"{test_prefix}-vm.qcow2", "backing_volume": base.outs["path"]},
    )
    overlay = provider.create(overlay_in)
    assert overlay.outs is not None and overlay.outs["actual_capacity"] == 64 * MiB
    xml = ET.fromstring(conn(libvirt_uri).storageVolLookupByPath(overlay.id).XMLDesc(0))
    assert xml.findtext("backingStore/path") == base.outs["path"]
    assert provider.read(overlay.id, overlay.outs).id == overlay.id

    # removed behind our back: read says gone, delete still succeeds
    conn(libvirt_uri).storageVolLookupByPath(overlay.id).delete(0)
    assert provider.read(overlay.id, overlay.outs).id == ""
    provider.delete(overlay.id, overlay.outs)

    for result in (base, data):
        provider.delete(result.id, result.outs or {})
        assert provider.read(result.id, result.outs or {}).id == ""
        provider.delete(result.id, result.outs or {})


def test_network_lifecycle(
    libvirt_uri: str,
    test_prefix: str,
    libvirt_sweeper: Any,
    free_subnet: Callable[[], ipaddress.IPv4Network],
) -> None:
    provider = NetworkProvider()
    subnet = free_subnet()
    hosts = list(subnet.hosts())
    name = f"{test_prefix}-net"
    bridge = f"tnit{test_prefix[-6:]}"
    first = {"mac": "52:54:00:7e:00:01", "ip": str(hosts[9])}
    inputs = checked(
        provider,
        {
            "uri": libvirt_uri,
            "name": name,
            "bridge": bridge,
            "address": str(hosts[0]),
            "prefix": subnet.prefixlen,
            "dhcp_hosts": [first],
        },
    )
    created = provider.create(inputs)
    net = conn(libvirt_uri).networkLookupByName(name)
    assert net.isActive() and net.autostart() and net.bridgeName() == bridge
    doc = ET.fromstring(net.XMLDesc(0))
    assert doc.find("forward").get("mode") == "open"  # type: ignore[union-attr]
    assert doc.find("dns").get("enable") == "no"  # type: ignore[union-attr]

    read = provider.read(name, created.outs or {})
    assert read.outs is not None
    assert provider.diff(name, read.outs, inputs).changes is False, "read round-trips"

    # a second reservation is added live
    second = {"mac": "52:54:00:7e:00:02", "ip": str(hosts[10]), "hostname": "two"}
    more = checked(provider, {**inputs, "dhcp_hosts": [first, second]})
    diff = provider.diff(name, read.outs, more)
    assert diff.changes is True and diff.replaces == []
    updated = provider.update(name, read.outs, more)
    hosts_now = [h.get("mac") for h in ET.fromstring(net.XMLDesc(0)).findall("ip/dhcp/host")]
    assert hosts_now == [first["mac"], second["mac"]]
    inactive = ET.fromstring(net.XMLDesc(libvirt.VIR_NETWORK_XML_INACTIVE))
    assert len(inactive.findall("ip/dhcp/host")) == 2, "the persistent definition is updated too"

    # edited by hand: refresh shows the drift, update repairs it
    net.update(
        libvirt.VIR_NETWORK_UPDATE_COMMAND_DELETE,
        libvirt.VIR_NETWORK_SECTION_IP_DHCP_HOST,
        -1,
        f"<host mac='{second['mac']}' ip='{second['ip']}' name='two'/>",
        libvirt.VIR_NETWORK_UPDATE_AFFECT_LIVE | libvirt.VIR_NETWORK_UPDATE_AFFECT_CONFIG,
    )
    drifted = provider.read(name, updated.outs or {})
    assert drifted.outs is not None
    assert provider.diff(name, drifted.outs, more).changes is True
    repaired = provider.update(name, drifted.outs, more)
    assert len(ET.fromstring(net.XMLDesc(0)).findall("ip/dhcp/host")) == 2

    # stopped behind our back: started again by update
    net.destroy()
    stopped = provider.read(name, repaired.outs or {})
    assert stopped.outs is not None and stopped.outs["active"] is False
    assert provider.diff(name, stopped.outs, more).changes is True
    provider.update(name, stopped.outs, more)
    assert conn(libvirt_uri).networkLookupByName(name).isActive()

    assert provider.diff(name, read.outs, {**inputs, "prefix": 25}).replaces == ["prefix"]
    assert provider.diff(name, read.outs, {**inputs, "dhcp_hosts": []}).replaces == ["dhcp_hosts"]

    provider.delete(name, created.outs or {})
    assert provider.read(name, created.outs or {}).id == ""
    provider.delete(name, created.outs or {})


def test_nwfilter_lifecycle(libvirt_uri: str, test_prefix: str, libvirt_sweeper: Any) -> None:
    provider = NwFilterProvider()
    name = f"{test_prefix}-filter"
    inputs = checked(
        provider,
        {"uri": libvirt_uri, "name": name, "body": "<filterref filter='clean-traffic'/>"},
    )
    created = provider.create(inputs)
    assert created.outs is not None
    uuid = created.outs["uuid"]
    read = provider.read(name, created.outs)
    assert read.outs is not None and provider.diff(name, read.outs, inputs).changes is False

    body = (
        "<filterref filter='clean-traffic'/>"
        "<rule action='accept' direction='in' priority='500'>"
        "<tcp dstportstart='22'/></rule>"
        "<rule action='drop' direction='inout' priority='1000'><all/></rule>"
    )
    new = checked(provider, {**inputs, "body": body})
    diff = provider.diff(name, read.outs, new)
    assert diff.changes is True and diff.replaces == []
    updated = provider.update(name, read.outs, new)
    assert updated.outs is not None and updated.outs["uuid"] == uuid, "update keeps the uuid"
    doc = ET.fromstring(conn(libvirt_uri).nwfilterLookupByName(name).XMLDesc(0))
    assert doc.find("rule/tcp").get("dstportstart") == "22"  # type: ignore[union-attr]

    conn(libvirt_uri).nwfilterLookupByName(name).undefine()
    assert provider.read(name, updated.outs).id == ""
    provider.delete(name, updated.outs)


def test_cloud_init_disk(libvirt_uri: str, test_prefix: str, pool: dict[str, Any]) -> None:
    provider = CloudInitDiskProvider()
    inputs = checked(
        provider,
        {
            "uri": libvirt_uri,
            "pool": pool["name"],
            "name": f"{test_prefix}-seed.iso",
            "user_data": "#cloud-config\nusers: []\n",
            "meta_data": "instance-id: it-1\nlocal-hostname: it-1\n",
            "network_config": "version: 2\nethernets: {}\n",
        },
    )
    created = provider.create(inputs)
    assert created.outs is not None
    path = Path(created.outs["path"])
    iso = path.read_bytes()
    assert iso[0x8001:0x8006] == b"CD001", "an ISO 9660 image"
    assert iso[0x8028:0x8030].rstrip() == b"cidata", "volume id cidata (NoCloud)"
    assert created.outs["size"] == len(iso)

    read = provider.read(created.id, created.outs)
    assert read.outs is not None and provider.diff(created.id, read.outs, inputs).changes is False
    # new keys or proxy (user-data): the same volume, rewritten in place
    edited = checked(provider, {**inputs, "user_data": "#cloud-config\nusers: [default]\n"})
    in_place = provider.diff(created.id, read.outs, edited)
    assert in_place.changes and not in_place.replaces, in_place.replaces
    updated = provider.update(created.id, read.outs, edited)
    assert updated.outs is not None and updated.outs["path"] == str(path)
    assert b"users: [default]" in path.read_bytes()
    assert updated.outs["content_sha256"] == edited["content_sha256"]
    # a new identity (meta-data) is a new machine
    renamed = checked(provider, {**inputs, "meta_data": "instance-id: it-2\n"})
    assert provider.diff(created.id, updated.outs, renamed).replaces == ["meta_data"]
    provider.delete(created.id, created.outs)
    assert provider.read(created.id, created.outs).id == ""
    provider.delete(created.id, created.outs)


def test_domain_defined_then_started_and_bounded_delete(
    libvirt_uri: str,
    test_prefix: str,
    pool: dict[str, Any],
    libvirt_sweeper: Any,
    free_subnet: Callable[[], ipaddress.IPv4Network],
) -> None:
    """A VM with an empty disk: defined, filters swapped, started, deleted.

    The guest has no OS, so it ignores ACPI shutdown: delete must give up after
    shutdown_timeout and destroy it.
    """
    subnet = free_subnet()
    gateway, vm_ip = (str(h) for h in list(subnet.hosts())[:2])
    net_provider = NetworkProvider()
    net = net_provider.create(
        checked(
            net_provider,
            {
                "uri": libvirt_uri,
                "name": f"{test_prefix}-dnet",
                "bridge": f"tnid{test_prefix[-6:]}",
                "address": gateway,
                "prefix": subnet.prefixlen,
            },
        )
    )
    filter_provider = NwFilterProvider()
    filters = [
        filter_provider.create(
            checked(
                filter_provider,
                {"uri": libvirt_uri, "name": f"{test_prefix}-{suffix}", "body": body},
            )
        )
        for suffix, body in (
            ("vm-a", "<filterref filter='clean-traffic'/>"),
            ("vm-b", "<filterref filter='no-ip-spoofing'/>"),
        )
    ]
    vol_provider = VolumeProvider()
    disk = vol_provider.create(
        checked(
            vol_provider,
            {
                "uri": libvirt_uri,
                "pool": pool["name"],
                "name": f"{test_prefix}-dom.qcow2",
                "capacity": 16 * MiB,
            },
        )
    )
    provider = DomainProvider()
    name = f"{test_prefix}-dom"
    mac = "52:54:00:7e:01:01"
    inputs = checked(
        provider,
        {
            "uri": libvirt_uri,
            "name": name,
            "domain_type": "qemu",
            "memory_mib": 128,
            "vcpus": 1,
            "disks": [{"path": disk.id, "target": "vda"}],
            "interfaces": [
                {
                    "network": f"{test_prefix}-dnet",
                    "mac": mac,
                    "filter": f"{test_prefix}-vm-a",
                    "filter_parameters": {"IP": vm_ip},
                }
            ],
            "console_log": f"/var/log/libvirt/qemu/{name}-console.log",
            "running": False,
            "autostart": False,
            "shutdown_timeout": 3,
        },
    )
    try:
        created = provider.create(inputs)
        dom = conn(libvirt_uri).lookupByName(name)
        assert not dom.isActive() and not dom.autostart()
        read = provider.read(name, created.outs or {})
        assert read.outs is not None and provider.diff(name, read.outs, inputs).changes is False

        # swap the filter and its parameter: an update, not a replace
        iface = {**inputs["interfaces"][0], "filter": f"{test_prefix}-vm-b"}
        swapped = checked(provider, {**inputs, "interfaces": [iface]})
        diff = provider.diff(name, read.outs, swapped)
        assert diff.changes is True and diff.replaces == []
        updated = provider.update(name, read.outs, swapped)
        ref = ET.fromstring(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)).find(
            "devices/interface/filterref"
        )
        assert ref is not None and ref.get("filter") == f"{test_prefix}-vm-b"
        other_mac = checked(
            provider, {**inputs, "interfaces": [{**iface, "mac": "52:54:00:7e:01:02"}]}
        )
        assert provider.diff(name, read.outs, other_mac).replaces == ["interfaces"]

        # start through update (running: true), the TCG guest has no OS
        running = checked(provider, {**swapped, "running": True})
        started = provider.update(name, updated.outs or {}, running)
        assert dom.isActive()
        observed = provider.read(name, started.outs or {})
        assert observed.outs is not None and observed.outs["running"] is True

        # destroyed behind our back: refresh records running=false, up would start it
        dom.destroy()
        stopped = provider.read(name, started.outs or {})
        assert stopped.outs is not None and stopped.outs["running"] is False
        assert provider.diff(name, stopped.outs, running).changes is True
        provider.update(name, stopped.outs, running)
        assert dom.isActive()

        t0 = time.monotonic()
        provider.delete(name, started.outs or {})
        elapsed = time.monotonic() - t0
        assert 2.5 <= elapsed < 20, f"bounded graceful shutdown took {elapsed:.1f} s"
        assert provider.read(name, started.outs or {}).id == ""
        provider.delete(name, started.outs or {})
    finally:
        provider.delete(name, inputs)
        vol_provider.delete(disk.id, disk.outs or {})
        for f in filters:
            filter_provider.delete(f.id, f.outs or {})
        net_provider.delete(net.id, net.outs or {})


def test_nothing_left_behind(libvirt_sweeper: Callable[[], dict[str, list[str]]]) -> None:
    """Runs last in this module (pytest keeps file order): only the shared pool remains."""
    left = libvirt_sweeper()
    left["pools"] = [p for p in left["pools"] if not p.endswith("-pool")]
    assert not any(left.values()), f"left behind: {left}"
