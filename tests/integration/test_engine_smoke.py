"""Engine smoke test: the real Pulumi CLI drives the libvirt dynamic providers.

Through the Automation API (inline program, file backend under tmp_path,
passphrase secrets): ``up`` creates a pool, a base volume uploaded from the
guest image, kernel and initrd volumes, a qcow2 overlay, a cloud-init seed,
an isolated network, an nwfilter and ONE TCG VM with a static address; the VM
must answer SSH with a key generated for the test; ``refresh`` and a second
``up`` must change nothing; ``destroy`` must leave nothing in libvirt.
Each step is timed, printed (pytest -s) and written to
``$TENANCY_STATE/reports/test_engine_smoke.txt``.
"""

from __future__ import annotations

import ipaddress
import subprocess
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, cast

import libvirt
import pulumi
import pytest
import yaml
from pulumi import automation as auto

from tenancy.infra.dynamic import (
    CloudInitDisk,
    CloudInitDiskArgs,
    Domain,
    DomainArgs,
    Network,
    NetworkArgs,
    NwFilter,
    NwFilterArgs,
    StoragePool,
    StoragePoolArgs,
    Volume,
    VolumeArgs,
)
from tenancy.policy.reachability import READY_PROBE
from tenancy.ssh import SshOptions

pytestmark = pytest.mark.integration

SSH_TIMEOUT = 480.0  # bound on waiting for first boot under TCG (about 105 s seen unloaded)
PROJECT = "tenancy-smoke"
STACK = "smoke"


def seed_documents(
    hostname: str, mac: str, address: str, prefix: int, ssh_key: str
) -> tuple[str, str, str]:
    """user-data, meta-data and network-config (v2, static address) for the VM."""
    user = {
        "users": [
            {
                "name": "ops",
                "shell": "/bin/bash",
                "sudo": "ALL=(ALL) NOPASSWD:ALL",
                "lock_passwd": True,
                "ssh_authorized_keys": [ssh_key],
            }
        ],
        "ssh_pwauth": False,
    }
    user_data = "#cloud-config\n" + yaml.safe_dump(user, sort_keys=False)
    meta_data = yaml.safe_dump({"instance-id": f"{hostname}-1", "local-hostname": hostname})
    network = {
        "version": 2,
        "ethernets": {
            "eth0": {
                "match": {"macaddress": mac},
                "set-name": "eth0",
                "addresses": [f"{address}/{prefix}"],
            }
        },
    }
    return user_data, meta_data, yaml.safe_dump(network, sort_keys=False)


def smoke_program(
    uri: str,
    prefix: str,
    pool_dir: Path,
    image: Any,
    subnet: ipaddress.IPv4Network,
    ssh_key: str,
) -> Callable[[], None]:
    """The inline Pulumi program: one VM on one isolated segment."""
    hosts = list(subnet.hosts())
    gateway, address = str(hosts[0]), str(hosts[9])
    mac = "52:54:00:5e:00:0a"
    vm = f"{prefix}-vm1"

    def program() -> None:
        pool = StoragePool(
            "pool", StoragePoolArgs(uri=uri, name=f"{prefix}-pool", path=str(pool_dir))
        )

        def image_volume(name: str, source: Path, fmt: str) -> Volume:
            return Volume(
                name,
                VolumeArgs(
                    uri=uri,
                    pool=pool.name,
                    name=f"{prefix}-{source.name}",
                    format=fmt,
                    source=str(source),
                ),
            )

        base = image_volume("base", image.qcow2, "qcow2")
        kernel = image_volume("kernel", image.kernel, "raw")
        initrd = image_volume("initrd", image.initrd, "raw")
        root = Volume(
            "root",
            VolumeArgs(uri=uri, pool=pool.name, name=f"{vm}.qcow2", backing_volume=base.path),
        )
        user_data, meta_data, network_config = seed_documents(
            vm, mac, address, subnet.prefixlen, ssh_key
        )
        seed = CloudInitDisk(
            "seed",
            CloudInitDiskArgs(
                uri=uri,
                pool=pool.name,
                name=f"{vm}-seed.iso",
                user_data=user_data,
                meta_data=meta_data,
                network_config=network_config,
            ),
        )
        net = Network(
            "net",
            NetworkArgs(
                uri=uri,
                name=f"{prefix}-net",
                bridge=f"tnsm{prefix[-8:-2]}",
                address=gateway,
                prefix=subnet.prefixlen,
            ),
        )
        nwfilter = NwFilter(
            "filter",
            NwFilterArgs(uri=uri, name=f"{prefix}-vm", body="<filterref filter='clean-traffic'/>"),
        )
        domain = Domain(
            "vm",
            DomainArgs(
                uri=uri,
                name=vm,
                domain_type="qemu",
                memory_mib=768,
                vcpus=2,
                kernel=kernel.path,
                initrd=initrd.path,
                cmdline=image.cmdline,
                disks=[
                    {"path": root.path, "target": "vda"},
                    {"path": seed.path, "target": "vdb", "format": "raw", "readonly": True},
                ],
                interfaces=[
                    {
                        "network": net.name,
                        "mac": mac,
                        "filter": nwfilter.name,
                        "filter_parameters": {"IP": address},
                    }
                ],
                console_log=f"/var/log/libvirt/qemu/{vm}-console.log",
                shutdown_timeout=60,
            ),
        )
        pulumi.export("address", address)
        pulumi.export("domain", domain.name)
        pulumi.export("root_volume", root.path)

    return program


def wait_for_ssh(address: str, key: Any, timeout: float) -> int:
    """Poll until SSH works and cloud-init has finished (it restarts sshd on its way:
    a first answer before that was followed by "Connection refused"); returns the
    number of attempts."""
    deadline = time.monotonic() + timeout
    attempts = 0
    last = ""
    while time.monotonic() < deadline:
        attempts += 1
        result = ssh(address, key, READY_PROBE, timeout=20)
        if result.returncode == 0:
            return attempts
        last = (result.stderr or "").strip()
        time.sleep(3)
    raise AssertionError(f"no SSH to ops@{address} within {timeout:.0f} s; last error: {last}")


def ssh(address: str, key: Any, command: str, timeout: float = 60) -> Any:
    try:
        return subprocess.run(
            SshOptions(private_key=Path(key.private), connect_timeout=5).argv(
                "ops", address, command
            ),
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired as exc:
        return subprocess.CompletedProcess(exc.cmd, 255, "", f"timeout after {timeout} s")


def console_tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError as exc:
        return f"(no console log: {exc})"


def op_counts(changes: auto.OpMap | None) -> Mapping[str, int]:
    """The change counts of an update summary, by operation name.

    Pulumi annotates the keys as ``OpType`` but fills the map straight from the engine's
    JSON, so they are the plain operation names.
    """
    return cast("Mapping[str, int]", changes or {})


def only_same(changes: auto.OpMap | None) -> bool:
    return bool(changes) and set(op_counts(changes)) == {"same"}


def test_engine_smoke(
    pulumi_env: Any,
    guest_image: Any,
    ssh_keypair: Any,
    libvirt_uri: str,
    test_prefix: str,
    pool_root: Path,
    free_subnet: Callable[[], ipaddress.IPv4Network],
    tmp_path: Path,
    step_timer: Any,
    libvirt_leftovers: Callable[[str], dict[str, list[str]]],
    libvirt_sweep: Callable[[str], dict[str, list[str]]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    prefix = f"{test_prefix}-e"
    subnet = free_subnet()
    vm_address = str(list(subnet.hosts())[9])
    console_log = Path(f"/var/log/libvirt/qemu/{prefix}-vm1-console.log")
    engine_log = step_timer.report.with_suffix(".engine.log")
    engine_log.parent.mkdir(parents=True, exist_ok=True)
    engine_log.write_text("")

    def on_output(line: str) -> None:
        with engine_log.open("a") as fh:
            fh.write(line + "\n")

    # The CLI runs with the test's own state backend and passphrase.
    env = {
        "PULUMI_BACKEND_URL": f"file://{tmp_path / 'state'}",
        "PULUMI_CONFIG_PASSPHRASE": "tenancy-engine-smoke",
        "PULUMI_RUNTIME_VIRTUALENV": str(pulumi_env.venv),
        "PULUMI_HOME": str(pulumi_env.home),
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("PULUMI_CONFIG_PASSPHRASE_FILE", raising=False)
    (tmp_path / "state").mkdir()

    program = smoke_program(
        libvirt_uri,
        prefix,
        pool_root / f"{prefix}-pool",
        guest_image,
        subnet,
        ssh_keypair.public_text,
    )
    opts = auto.LocalWorkspaceOptions(
        work_dir=str(tmp_path),
        pulumi_home=str(pulumi_env.home),
        pulumi_command=auto.PulumiCommand(root=str(pulumi_env.prefix), skip_version_check=True),
        env_vars=env,
        secrets_provider="passphrase",
        project_settings=auto.ProjectSettings(
            name=PROJECT,
            runtime="python",
            backend=auto.ProjectBackend(url=env["PULUMI_BACKEND_URL"]),
        ),
    )
    destroyed = False
    with step_timer.step("stack init"):
        stack = auto.create_stack(STACK, project_name=PROJECT, program=program, opts=opts)
    try:
        with step_timer.step("up (create)"):
            first = stack.up(on_output=on_output, color="never")
        created = first.summary.resource_changes or {}
        # 9 libvirt resources + the stack itself
        assert created == {"create": 10}, f"first up: {created} (log: {engine_log})"
        assert first.outputs["address"].value == vm_address

        with step_timer.step("VM answers SSH"):
            try:
                attempts = wait_for_ssh(vm_address, ssh_keypair, SSH_TIMEOUT)
            except AssertionError as exc:
                raise AssertionError(
                    f"{exc}\n--- console ---\n{console_tail(console_log)}"
                ) from exc
        print(f"[{step_timer.title}] SSH after {attempts} attempts", flush=True)

        with step_timer.step("static address check"):
            result = ssh(vm_address, ssh_keypair, "hostname; ip -4 -o addr show dev eth0")
            assert result.returncode == 0, result.stderr
            assert f"{prefix}-vm1" in result.stdout and f"{vm_address}/" in result.stdout, (
                result.stdout
            )

        with step_timer.step("refresh (no drift)"):
            refreshed = stack.refresh(on_output=on_output, color="never")
        assert only_same(refreshed.summary.resource_changes), (
            f"refresh found drift: {refreshed.summary.resource_changes} (log: {engine_log})"
        )

        with step_timer.step("up (no changes)"):
            second = stack.up(on_output=on_output, color="never")
        assert only_same(second.summary.resource_changes), (
            f"second up changed something: {second.summary.resource_changes} (log: {engine_log})"
        )

        # Drift behind Pulumi's back: refresh records it, up repairs it.
        conn = libvirt.open(libvirt_uri)
        try:
            conn.networkLookupByName(f"{prefix}-net").setAutostart(0)
            with step_timer.step("refresh (drift: net autostart off)"):
                drifted = stack.refresh(on_output=on_output, color="never")
            assert op_counts(drifted.summary.resource_changes).get("update") == 1, (
                f"refresh missed the drift: {drifted.summary.resource_changes}"
            )
            with step_timer.step("up (repairs drift)"):
                repaired = stack.up(on_output=on_output, color="never")
            assert op_counts(repaired.summary.resource_changes).get("update") == 1, (
                f"up did not repair: {repaired.summary.resource_changes}"
            )
            assert conn.networkLookupByName(f"{prefix}-net").autostart() == 1
        finally:
            conn.close()

        with step_timer.step("destroy"):
            stack.destroy(on_output=on_output, color="never")
        destroyed = True
        left = libvirt_leftovers(prefix)
        assert not any(left.values()), f"destroy left libvirt objects behind: {left}"
        assert not (pool_root / f"{prefix}-pool").exists(), "pool directory left behind"
    finally:
        if not destroyed:
            with step_timer.step("destroy (cleanup after failure)"):
                try:
                    stack.destroy(on_output=on_output, color="never")
                except auto.errors.CommandError as exc:
                    print(f"cleanup destroy failed: {exc}", flush=True)
        try:
            stack.workspace.remove_stack(STACK)
        except auto.errors.CommandError as exc:
            print(f"remove stack failed: {exc}", flush=True)
        swept = libvirt_sweep(prefix)
        if any(swept.values()):
            print(f"swept leftovers: {swept}", flush=True)
