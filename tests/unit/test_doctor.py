"""`tenancy doctor`: every check with made-up facts, healthy and broken, plus the CLI's formats."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path, PurePosixPath

import pytest
from tests.support.cli import CliResult

from tenancy.cli import doctor as cli_doctor
from tenancy.cli.errors import EXIT_INVALID, EXIT_OK, EXIT_USAGE
from tenancy.doctor import checks as c
from tenancy.doctor.gather import disk_fact, is_local_uri, relevant_env, site_facts, stat_paths
from tenancy.doctor.model import (
    Check,
    CommandResult,
    DaemonFact,
    DiskFact,
    Facts,
    FileFact,
    MachineNeed,
    SiteFacts,
    UserFact,
)

Cli = Callable[..., CliResult]

ROOT = "/srv/tenancy"
CACHE = "/root/.cache/tenancy"
PREFIX = f"{CACHE}/pulumi-v3.274.1"
STATE = f"{ROOT}/.tenancy"
IMAGES = "/var/lib/tenancy/images/37616d46b4fb2ebf"
CURRENT = f"{CACHE}/images/current"
POOL_DEFAULT = "/var/lib/tenancy/pools/default"
POOL_BULK = "/var/lib/tenancy/pools/bulk"
KVM_GID = 107
QEMU = UserFact("libvirt-qemu", 64055, frozenset({KVM_GID, 64055}))
GIB = 1 << 30
IMAGE_BYTES = {"debian-12.qcow2": 800 << 20, "vmlinuz": 8 << 20, "initrd.img": 36 << 20}


def d(mode: int = 0o755, uid: int = 0, gid: int = 0, real: str = "") -> FileFact:
    return FileFact("dir", mode, uid, gid, 4096, real)


def f(mode: int = 0o644, size: int = 100, uid: int = 0, gid: int = 0, real: str = "") -> FileFact:
    return FileFact("file", mode, uid, gid, size, real)


def add(files: dict[str, FileFact], path: str, fact: FileFact) -> None:
    """Record a path and, as 0755 root directories, every ancestor not recorded yet."""
    files[path] = fact
    for parent in PurePosixPath(fact.realpath or path).parents:
        files.setdefault(str(parent), d())


def healthy_files() -> dict[str, FileFact]:
    files: dict[str, FileFact] = {}
    for path, _ in c.STATE_DIRS:
        add(files, path, d())
    add(files, c.TUN, FileFact("char", 0o600, 0, 0))
    add(files, c.KVM, FileFact("char", 0o660, 0, KVM_GID))
    add(files, IMAGES, d())
    add(files, CURRENT, d(real=IMAGES))
    for name in c.IMAGE_FILES:
        size = IMAGE_BYTES.get(name, 1614)
        add(files, f"{IMAGES}/{name}", f(size=size))
        add(files, f"{CURRENT}/{name}", f(size=size, real=f"{IMAGES}/{name}"))
    add(files, f"{STATE}/passphrase", f(0o600, 45))
    add(files, f"{STATE}/pulumi", d(0o700))
    add(files, f"{STATE}/ssh/ops_ed25519", f(0o600, 411))
    add(files, f"{STATE}/ssh/ops_ed25519.pub", f(0o600, 96))
    for shim in ("pulumi", "pulumi-language-python", *c.ENGINE_SHIMS):
        add(files, f"{PREFIX}/bin/{shim}", f(0o755))
    for ns in c.STANDINS:
        add(files, f"/run/netns/{ns}", f(0o444, 0))
    return files


def local_site(**changes: object) -> SiteFacts:
    site = SiteFacts(
        name="local",
        domain_type="qemu",
        local_hosts=("local",),
        remote_hosts=(),
        pool_paths={("local", "default"): POOL_DEFAULT, ("local", "bulk"): POOL_BULK},
        ssh_key_files=(f"{STATE}/ssh/ops_ed25519.pub",),
        image_sources=("builtin:debian-12",),
        machines=(
            MachineNeed("hr-portal-1", "local", 512, 4, "default"),
            MachineNeed("tourism-web-1", "local", 768, 8, "default", (("bulk", 20),)),
        ),
    )
    return replace(site, **changes)  # type: ignore[arg-type]


def healthy(**changes: object) -> Facts:
    """A machine where every journey works (like this one after `make setup`)."""
    which: dict[str, str | None] = {tool: f"/usr/bin/{tool}" for tool, _, _ in c.TOOLS}
    which |= {"chromium": "/usr/bin/chromium", "chromium-browser": None, "google-chrome": None}
    which |= {
        "pulumi": f"{PREFIX}/bin/pulumi",
        "pulumi-language-python": f"{PREFIX}/bin/pulumi-language-python",
    }
    facts = Facts(
        root=ROOT,
        env={
            "TENANCY_ROOT": ROOT,
            "TENANCY_CACHE": CACHE,
            "TENANCY_STATE": STATE,
            "PULUMI_VERSION": "3.274.1",
            "PULUMI_PREFIX": PREFIX,
            "PULUMI_BACKEND_URL": f"file://{STATE}/pulumi",
            "PULUMI_CONFIG_PASSPHRASE_FILE": f"{STATE}/passphrase",
            "PATH": f"{ROOT}/.venv/bin:{PREFIX}/bin:/usr/sbin:/sbin:/usr/bin:/bin",
            "HOME": "/root",
        },
        which=which,
        files=healthy_files(),
        users={"libvirt-qemu": QEMU},
        systemd=False,
        daemons={
            "libvirtd": DaemonFact("libvirtd", 13349, "libvirtd"),
            "virtlogd": DaemonFact("virtlogd", 13314, "virtlogd"),
            "virtlockd": DaemonFact("virtlockd", 13333, "virtlockd"),
        },
        virsh_version=CommandResult(
            0,
            "Compiled against library: libvirt 9.0.0\nUsing library: libvirt 9.0.0\n"
            "Using API: QEMU 9.0.0\nRunning hypervisor: QEMU 7.2.22\n",
            "",
            0.05,
        ),
        running_domains=frozenset(),
        nft_tables=CommandResult(0, "table inet tenancy_guard\ntable bridge tenancy_guard\n"),
        pulumi_version=CommandResult(0, "v3.274.1\n"),
        imports={m: None for m in c.PYTHON_MODULES},
        python_prefix=f"{ROOT}/.venv",
        meminfo_kib={"MemTotal": 24 << 20, "MemAvailable": 8 << 20},
        disks={p: DiskFact(p, "/", 1, 50 * GIB) for p in (CURRENT, POOL_DEFAULT, POOL_BULK)},
        site=local_site(),
        udp_ports=frozenset({123, 5353}),
    )
    return replace(facts, **changes)  # type: ignore[arg-type]


def without(facts: Facts, *paths: str) -> Facts:
    return replace(facts, files={k: v for k, v in facts.files.items() if k not in paths})


def with_file(facts: Facts, path: str, fact: FileFact) -> Facts:
    return replace(facts, files={**facts.files, path: fact})


def with_env(facts: Facts, **env: str | None) -> Facts:
    merged = {**facts.env, **env}
    return replace(facts, env={k: v for k, v in merged.items() if v is not None})


def only(checks: list[Check], name: str) -> Check:
    found = [x for x in checks if x.name == name]
    assert len(found) == 1, f"expected one check {name!r}, got {found}"
    return found[0]


def problems(checks: list[Check]) -> list[Check]:
    return [x for x in checks if x.status in ("fail", "warn")]


# --------------------------------------------------------------------------- all together


def test_healthy_machine_passes_every_check() -> None:
    result = c.run_checks(healthy())
    assert problems(result) == []
    assert not c.failed(result)
    assert c.fixes(result) == []
    assert {x.status for x in result} <= {"ok", "info"}


@pytest.mark.parametrize("check", c.CHECKS, ids=lambda fn: fn.__name__)
def test_every_check_reports_on_a_healthy_machine(check: Callable[[Facts], list[Check]]) -> None:
    result = check(healthy())
    assert result, f"{check.__name__} said nothing"
    assert all(x.status in ("ok", "info") for x in result), result


def test_every_failure_and_warning_names_a_fix() -> None:
    broken = healthy(
        daemons={},
        files={},
        which={},
        imports={m: "ImportError: nope" for m in c.PYTHON_MODULES},
        virsh_version=CommandResult(1, "", "error: failed to connect"),
        nft_tables=None,
        pulumi_version=None,
    )
    result = c.run_checks(broken)
    assert c.failed(result)
    for x in problems(result):
        assert x.fix, f"{x.name}: no fix"


def test_fixes_are_distinct_and_in_setup_order() -> None:
    facts = without(
        healthy(daemons={}), f"{CURRENT}/debian-12.qcow2", f"/run/netns/{c.STANDINS[0]}"
    )
    assert c.fixes(c.run_checks(facts)) == [
        "make hypervisor-up",
        "make image",
        "bash tools/standins.sh up",
    ]


def test_warnings_alone_do_not_fail() -> None:
    facts = without(healthy(), *(f"/run/netns/{ns}" for ns in c.STANDINS))
    result = c.run_checks(facts)
    assert [x.status for x in problems(result)] == ["warn"]
    assert not c.failed(result)


# --------------------------------------------------------------------------- environment, site


def test_environment_not_sourced() -> None:
    facts = with_env(healthy(), TENANCY_ROOT=None, PULUMI_VERSION=None, PATH="/usr/bin:/bin")
    (check,) = c.check_environment(facts)
    assert check.status == "fail"
    assert "TENANCY_ROOT" in check.detail and ".venv/bin on PATH" in check.detail
    assert check.fix == "source tools/env.sh"


def test_environment_of_another_clone_warns() -> None:
    (check,) = c.check_environment(with_env(healthy(), TENANCY_ROOT="/elsewhere"))
    assert check.status == "warn"
    assert "/elsewhere" in check.detail


def test_site_that_does_not_load_fails() -> None:
    (check,) = c.check_site(healthy(site=None, site_error="stacks/Pulumi.local.yaml: 1 error(s)"))
    assert check.status == "fail"
    assert check.fix == "tenancy validate tenants/"


def test_site_without_a_plan_warns() -> None:
    site = local_site(machines=(), plan_errors=("tenants/hr.yaml:3:1: error: ...",))
    (check,) = c.check_site(healthy(site=site))
    assert check.status == "warn"
    assert "1 error(s)" in check.detail


# --------------------------------------------------------------------------- python, engine


@pytest.mark.parametrize("module", c.PYTHON_MODULES)
def test_python_module_that_does_not_import(module: str) -> None:
    facts = healthy(imports={**healthy().imports, module: "ModuleNotFoundError: no " + module})
    check = only(c.check_python(facts), f"import {module}")
    assert check.status == "fail"
    assert check.fix == "make python-env"


def test_python_outside_the_project_venv_warns() -> None:
    check = only(c.check_python(healthy(python_prefix="/usr")), "interpreter")
    assert check.status == "warn"
    assert check.fix == "source tools/env.sh"


def test_engine_version_mismatch() -> None:
    facts = healthy(pulumi_version=CommandResult(0, "v3.200.0\n"))
    check = only(c.check_engine(facts), "pulumi version")
    assert check.status == "fail"
    assert "v3.200.0" in check.detail and "pinned v3.274.1" in check.detail
    assert check.fix == "make engine"


def test_engine_other_pulumi_first_on_path() -> None:
    facts = healthy(
        which={**healthy().which, "pulumi": "/usr/local/bin/pulumi"},
        pulumi_version=CommandResult(0, "v3.100.0\n"),
    )
    check = only(c.check_engine(facts), "pulumi version")
    assert check.status == "fail"
    assert check.fix == f'export PATH="{PREFIX}/bin:$PATH"'


def test_engine_missing() -> None:
    facts = healthy(which={**healthy().which, "pulumi": None}, pulumi_version=None)
    (check,) = c.check_engine(facts)
    assert (check.status, check.fix) == ("fail", "make engine")


def test_engine_version_command_fails() -> None:
    facts = healthy(pulumi_version=CommandResult(None, "", "timed out", 30.0))
    check = only(c.check_engine(facts), "pulumi version")
    assert check.status == "fail"
    assert "timed out" in check.detail


def test_engine_without_pin() -> None:
    check = only(c.check_engine(with_env(healthy(), PULUMI_VERSION=None)), "pulumi version")
    assert (check.status, check.fix) == ("fail", "source tools/env.sh")


def test_language_host_missing() -> None:
    facts = healthy(which={**healthy().which, "pulumi-language-python": None})
    check = only(c.check_engine(facts), "pulumi-language-python")
    assert (check.status, check.fix) == ("fail", "make engine")


def test_language_host_not_next_to_the_engine_warns() -> None:
    facts = healthy(which={**healthy().which, "pulumi-language-python": "/usr/bin/x/launcher"})
    check = only(c.check_engine(facts), "pulumi-language-python")
    assert check.status == "warn"


def test_engine_shims_missing() -> None:
    facts = without(healthy(), f"{PREFIX}/bin/pulumi-resource-pulumi-python")
    check = only(c.check_engine(facts), "python shims")
    assert check.status == "fail"
    assert "pulumi-resource-pulumi-python" in check.detail


# --------------------------------------------------------------------------- tools


@pytest.mark.parametrize(("tool", "package"), [(t, p) for t, p, _ in c.TOOLS])
def test_missing_tool_names_its_debian_package(tool: str, package: str) -> None:
    facts = healthy(which={**healthy().which, tool: None})
    check = only(c.check_tools(facts), tool)
    assert check.status == "fail"
    assert f"Debian package {package}" in check.detail
    assert check.fix == "make hypervisor-up"


def test_missing_chromium_only_warns() -> None:
    facts = healthy(which={**healthy().which, "chromium": None})
    check = only(c.check_tools(facts), "chromium")
    assert (check.status, check.fix) == ("warn", "make test-deps")


def test_chromium_under_another_name() -> None:
    which = {**healthy().which, "chromium": None, "google-chrome": "/opt/google/chrome"}
    assert only(c.check_tools(healthy(which=which)), "chromium").status == "ok"


# --------------------------------------------------------------------------- libvirt


def test_libvirtd_stopped() -> None:
    facts = healthy(daemons={**healthy().daemons, "libvirtd": DaemonFact("libvirtd")})
    check = only(c.check_daemons(facts), "libvirtd")
    assert check.status == "fail"
    assert "no /run/libvirtd.pid" in check.detail
    assert check.fix == "make hypervisor-up"


def test_libvirtd_stale_pid_file() -> None:
    facts = healthy(daemons={**healthy().daemons, "libvirtd": DaemonFact("libvirtd", 4242)})
    check = only(c.check_daemons(facts), "libvirtd")
    assert check.status == "fail"
    assert "stale" in check.detail and "4242" in check.detail


def test_libvirtd_pid_reused_by_another_process() -> None:
    daemon = DaemonFact("libvirtd", 4242, "bash")
    check = only(c.check_daemons(healthy(daemons={"libvirtd": daemon})), "libvirtd")
    assert check.status == "fail"
    assert "'bash'" in check.detail


def test_virtlockd_stopped_only_warns() -> None:
    facts = healthy(daemons={**healthy().daemons, "virtlockd": DaemonFact("virtlockd")})
    assert only(c.check_daemons(facts), "virtlockd").status == "warn"
    assert only(c.check_daemons(facts), "libvirtd").status == "ok"


def test_daemons_under_systemd() -> None:
    daemons = {n: DaemonFact(n, systemd_active=True) for n, _, _ in c.DAEMONS}
    assert all(x.status == "ok" for x in c.check_daemons(healthy(systemd=True, daemons=daemons)))
    daemons["libvirtd"] = DaemonFact("libvirtd", systemd_active=False)
    check = only(c.check_daemons(healthy(systemd=True, daemons=daemons)), "libvirtd")
    assert check.status == "fail"
    assert "inactive (systemd)" in check.detail


def test_libvirt_answers() -> None:
    (check,) = c.check_libvirt(healthy())
    assert check.status == "ok"
    assert "libvirt 9.0.0, QEMU 7.2.22" in check.detail


def test_libvirt_not_answering() -> None:
    result = CommandResult(1, "", "error: failed to connect to the hypervisor\n")
    (check,) = c.check_libvirt(healthy(virsh_version=result))
    assert check.status == "fail"
    assert "failed to connect" in check.detail
    assert check.fix == "make hypervisor-up"


def test_libvirt_timeout() -> None:
    (check,) = c.check_libvirt(healthy(virsh_version=CommandResult(None, "", "timed out", 20.0)))
    assert check.status == "fail"
    assert "within 20 s" in check.detail


def test_libvirt_slow_answer_warns() -> None:
    slow = replace(healthy().virsh_version, seconds=4.2)  # type: ignore[type-var]
    (check,) = c.check_libvirt(healthy(virsh_version=slow))
    assert check.status == "warn"
    assert "/dev/kvm" in check.detail


def test_dnsmasq_dir_missing() -> None:
    facts = without(healthy(), "/var/lib/libvirt/dnsmasq")
    check = only(c.check_state_dirs(facts), "/var/lib/libvirt/dnsmasq")
    assert check.status == "fail"
    assert "macs.new" in check.detail
    assert check.fix == "make hypervisor-up"


def test_tun_device_missing() -> None:
    check = only(c.check_state_dirs(without(healthy(), c.TUN)), c.TUN)
    assert (check.status, check.fix) == ("fail", "make hypervisor-up")


def test_state_dir_that_is_a_file() -> None:
    facts = with_file(healthy(), "/run/libvirt", f())
    check = only(c.check_state_dirs(facts), "/run/libvirt")
    assert check.status == "fail"
    assert "not a directory" in check.detail


# --------------------------------------------------------------------------- acceleration


def test_tcg_without_kvm_is_info() -> None:
    (check,) = c.check_acceleration(without(healthy(), c.KVM))
    assert check.status == "info"
    assert "TCG" in check.detail and "domainType: qemu" in check.detail


def test_root_only_kvm_device_warns_under_tcg() -> None:
    facts = with_file(healthy(), c.KVM, FileFact("char", 0o600, 0, 0))
    (check,) = c.check_acceleration(facts)
    assert check.status == "warn"
    assert check.fix == "make hypervisor-up"


def test_kvm_site_without_kvm_fails() -> None:
    facts = without(healthy(site=local_site(domain_type="kvm")), c.KVM)
    (check,) = c.check_acceleration(facts)
    assert check.status == "fail"
    assert check.fix is not None and "domainType: qemu" in check.fix


def test_kvm_site_with_usable_kvm() -> None:
    (check,) = c.check_acceleration(healthy(site=local_site(domain_type="kvm")))
    assert check.status == "ok"


def test_remote_site_acceleration_is_not_judged_here() -> None:
    site = local_site(domain_type="kvm", local_hosts=(), remote_hosts=("kvm-01",))
    (check,) = c.check_acceleration(without(healthy(site=site), c.KVM))
    assert check.status == "info"


# --------------------------------------------------------------------------- guard, stand-ins


def test_guard_not_loaded() -> None:
    (check,) = c.check_guard(healthy(nft_tables=CommandResult(0, "table inet filter\n")))
    assert check.status == "fail"
    assert "inet tenancy_guard" in check.detail
    assert check.fix == "make hypervisor-up"


def test_guard_without_bridge_table_warns() -> None:
    (check,) = c.check_guard(healthy(nft_tables=CommandResult(0, "table inet tenancy_guard\n")))
    assert check.status == "warn"


def test_guard_unreadable() -> None:
    result = CommandResult(1, "", "Error: Operation not permitted\n")
    (check,) = c.check_guard(healthy(nft_tables=result))
    assert check.status == "fail"
    assert "Operation not permitted" in check.detail


def test_standins_missing_warns() -> None:
    (check,) = c.check_standins(without(healthy(), "/run/netns/tn-internet"))
    assert check.status == "warn"
    assert "tn-internet" in check.detail and "tn-intranet" not in check.detail
    assert check.fix == "bash tools/standins.sh up"


# --------------------------------------------------------------------------- image


@pytest.mark.parametrize("name", c.IMAGE_FILES)
def test_image_file_missing(name: str) -> None:
    (check,) = c.check_image(without(healthy(), f"{CURRENT}/{name}"))
    assert check.status == "fail"
    assert name in check.detail
    assert check.fix == "make image"


def test_image_dir_not_traversable_by_qemu() -> None:
    facts = with_file(healthy(), "/var/lib/tenancy/images", d(0o700))
    check = only(c.check_image(facts), "readable by libvirt-qemu")
    assert check.status == "fail"
    assert "traverse /var/lib/tenancy/images" in check.detail
    assert check.fix == "chmod o+x /var/lib/tenancy/images"


def test_image_file_not_readable_by_qemu() -> None:
    facts = with_file(healthy(), f"{IMAGES}/vmlinuz", f(0o600))
    check = only(c.check_image(facts), "readable by libvirt-qemu")
    assert check.status == "fail"
    assert check.fix == f"chmod o+r {IMAGES}/vmlinuz"


def test_image_readable_through_group() -> None:
    facts = with_file(healthy(), "/var/lib/tenancy/images", d(0o750, gid=KVM_GID))
    assert only(c.check_image(facts), "readable by libvirt-qemu").status == "ok"


def test_image_without_qemu_user() -> None:
    check = only(c.check_image(healthy(users={})), "readable by libvirt-qemu")
    assert (check.status, check.fix) == ("fail", "make hypervisor-up")


def test_plan_image_given_as_a_path() -> None:
    site = local_site(image_sources=("/srv/images/custom.qcow2",))
    (check,) = c.check_image(healthy(site=site))
    assert check.status == "fail"
    assert "/srv/images/custom.qcow2" in check.detail


# --------------------------------------------------------------------------- state


def test_passphrase_world_readable() -> None:
    facts = with_file(healthy(), f"{STATE}/passphrase", f(0o644, 45))
    check = only(c.check_state(facts), "passphrase")
    assert check.status == "fail"
    assert "0644" in check.detail
    assert check.fix == "chmod 600 .tenancy/passphrase"


@pytest.mark.parametrize("broken", ["missing", "empty"])
def test_passphrase_missing_or_empty(broken: str) -> None:
    path = f"{STATE}/passphrase"
    facts = (
        without(healthy(), path) if broken == "missing" else with_file(healthy(), path, f(0o600, 0))
    )
    check = only(c.check_state(facts), "passphrase")
    assert check.status == "fail"
    assert broken in check.detail
    assert check.fix == "make state"


def test_passphrase_from_the_environment() -> None:
    facts = without(with_env(healthy(), PULUMI_CONFIG_PASSPHRASE="s3cret"), f"{STATE}/passphrase")
    assert only(c.check_state(facts), "passphrase").status == "ok"


def test_custom_passphrase_file_missing() -> None:
    facts = with_env(healthy(), PULUMI_CONFIG_PASSPHRASE_FILE="/etc/tenancy/passphrase")
    check = only(c.check_state(facts), "passphrase")
    assert check.status == "fail"
    assert check.fix is not None and "unset PULUMI_CONFIG_PASSPHRASE_FILE" in check.fix


def test_backend_dir_missing() -> None:
    check = only(c.check_state(without(healthy(), f"{STATE}/pulumi")), "backend")
    assert (check.status, check.fix) == ("fail", "make state")


def test_backend_not_a_file_backend_is_info() -> None:
    facts = with_env(healthy(), PULUMI_BACKEND_URL="s3://tenancy-state?region=eu")
    assert only(c.check_state(facts), "backend").status == "info"


def test_backend_in_home() -> None:
    facts = with_file(
        with_env(healthy(), PULUMI_BACKEND_URL="file://~/.pulumi"), "/root/.pulumi", d()
    )
    assert only(c.check_state(facts), "backend").status == "ok"


def test_ssh_key_mode_too_open() -> None:
    facts = with_file(healthy(), f"{STATE}/ssh/ops_ed25519", f(0o644, 411))
    check = only(c.check_state(facts), "ops ssh key")
    assert check.status == "fail"
    assert check.fix == "chmod 600 .tenancy/ssh/ops_ed25519"


def test_ssh_key_missing() -> None:
    check = only(c.check_state(without(healthy(), f"{STATE}/ssh/ops_ed25519")), "ops ssh key")
    assert (check.status, check.fix) == ("fail", "make state")


def test_site_public_key_missing() -> None:
    check = only(c.check_state(without(healthy(), f"{STATE}/ssh/ops_ed25519.pub")), "ops key file")
    assert (check.status, check.fix) == ("fail", "make state")


# --------------------------------------------------------------------------- resources


def mem(mib: int) -> dict[str, int]:
    return {"MemAvailable": mib * 1024}


def test_not_enough_memory() -> None:
    (check,) = c.check_memory(healthy(meminfo_kib=mem(1000)))
    assert check.status == "fail"
    # 512 + 768 flavor memory + 2 x 128 MiB QEMU overhead
    assert "1536 MiB" in check.detail and "1000 MiB available" in check.detail
    assert check.fix is not None and "536 MiB" in check.fix


def test_memory_without_headroom_warns() -> None:
    (check,) = c.check_memory(healthy(meminfo_kib=mem(2000)))
    assert check.status == "warn"


def test_running_vms_need_no_more_memory() -> None:
    facts = healthy(meminfo_kib=mem(700), running_domains=frozenset({"tourism-web-1"}))
    (check,) = c.check_memory(facts)
    assert check.status == "warn"  # 640 MiB for hr-portal-1 fit, without headroom
    assert "1 VM(s)" in check.detail


def test_all_vms_running_memory_ok() -> None:
    running = frozenset({"hr-portal-1", "tourism-web-1"})
    (check,) = c.check_memory(healthy(meminfo_kib=mem(100), running_domains=running))
    assert check.status == "ok"


def test_remote_hosts_need_no_memory_here() -> None:
    site = local_site(local_hosts=(), remote_hosts=("local",))
    (check,) = c.check_memory(healthy(site=site, meminfo_kib=mem(100)))
    assert check.status == "ok"


def test_memory_unknown_warns() -> None:
    (check,) = c.check_memory(healthy(meminfo_kib={}))
    assert check.status == "warn"


def test_disk_rule() -> None:
    needs = c.disk_needs(healthy())
    base = sum(IMAGE_BYTES.values()) / GIB
    # both machines root on `default`: one base image copy + 1 GiB growth each;
    # the 20 GiB data volume on `bulk`: 5 % of it
    assert needs[POOL_DEFAULT] == pytest.approx(base + 2 * c.ROOT_GROWTH_GIB)
    assert needs[POOL_BULK] == pytest.approx(20 * c.DATA_GROWTH_FRACTION)
    assert needs[CURRENT] == 0.0
    (check,) = c.check_disk(healthy())
    assert check.status == "ok"
    total = base + 2 + 1 + c.DISK_RESERVE_GIB
    assert f"needs {total:.1f} GiB" in check.detail


def test_disk_small_root_disk_grows_at_most_its_size() -> None:
    site = local_site(machines=(MachineNeed("a-1", "local", 512, 1, "default"),))
    needs = c.disk_needs(healthy(site=site, running_domains=None))
    assert needs[POOL_DEFAULT] == pytest.approx(sum(IMAGE_BYTES.values()) / GIB + 1)


def test_not_enough_disk() -> None:
    disks = {p: DiskFact(p, "/", 1, 5 * GIB) for p in (CURRENT, POOL_DEFAULT, POOL_BULK)}
    (check,) = c.check_disk(healthy(disks=disks))
    assert check.status == "fail"
    assert "not enough disk on /" in check.detail


def test_disk_per_filesystem() -> None:
    disks = {
        CURRENT: DiskFact(CURRENT, "/", 1, 50 * GIB),
        POOL_DEFAULT: DiskFact(POOL_DEFAULT, "/var/lib/tenancy", 2, 4 * GIB),
        POOL_BULK: DiskFact(POOL_BULK, "/var/lib/tenancy", 2, 4 * GIB),
    }
    result = c.check_disk(healthy(disks=disks))
    assert [x.status for x in result] == ["ok", "fail"]
    assert "/var/lib/tenancy" in result[1].detail


def test_missing_image_needs_room_to_build() -> None:
    facts = without(healthy(), f"{CURRENT}/debian-12.qcow2")
    assert c.disk_needs(facts)[CURRENT] == c.IMAGE_BUILD_GIB


def test_disk_unknown_warns() -> None:
    result = c.check_disk(healthy(disks={}))
    assert {x.status for x in result} == {"warn"}


# --------------------------------------------------------------------------- permissions


def test_access_blocker_classes() -> None:
    files = {"/": d(), "/a": d(0o750, uid=1, gid=KVM_GID), "/a/f": f(0o640, gid=KVM_GID)}
    facts = healthy(files=files)
    assert c.access_blocker(facts, "/a/f", QEMU, 4) is None
    other = UserFact("other", 999, frozenset({999}))
    assert c.access_blocker(facts, "/a/f", other, 4) == ("/a", "chmod o+x /a")
    owner = UserFact("owner", 1, frozenset({1}))
    facts = healthy(files={**files, "/a": d(0o050, uid=1, gid=KVM_GID)})
    assert c.access_blocker(facts, "/a/f", owner, 4) == ("/a", "chmod u+x /a")
    root = UserFact("root", 0, frozenset({0}))
    assert c.access_blocker(facts, "/a/f", root, 4) is None


def test_wanted_paths_cover_what_the_checks_read() -> None:
    wanted = set(c.wanted_paths(healthy()))
    for path in (
        "/var/lib/libvirt/dnsmasq",
        c.TUN,
        c.KVM,
        f"{CURRENT}/debian-12.qcow2",
        f"{STATE}/passphrase",
        f"{STATE}/pulumi",
        f"{STATE}/ssh/ops_ed25519",
        f"{STATE}/ssh/ops_ed25519.pub",
        f"{PREFIX}/bin/pulumi-resource-pulumi-python",
        "/run/netns/tn-intranet",
    ):
        assert path in wanted, path


def test_env_defaults_follow_tools_env_sh() -> None:
    facts = Facts(root=ROOT, env={"HOME": "/home/op"})
    assert c.image_dir(facts) == "/home/op/.cache/tenancy/images/current"
    assert c.passphrase_file(facts) == f"{ROOT}/.tenancy/passphrase"
    assert c.backend_dir(facts) == f"{ROOT}/.tenancy/pulumi"


# --------------------------------------------------------------------------- gathering (files only)


def test_site_facts_of_the_example_site(project: Path) -> None:
    site, error = site_facts(project, "local")
    assert error is None and site is not None
    assert site.domain_type == "qemu"
    assert site.local_hosts == ("local",)
    assert {m.domain for m in site.machines} >= {"hr-portal-1"}
    assert site.pool_paths[("local", "default")] == POOL_DEFAULT
    assert site.ssh_key_files == (str(project / ".tenancy/ssh/ops_ed25519.pub"),)


def test_site_facts_of_a_broken_site(project: Path) -> None:
    (project / "stacks" / "Pulumi.local.yaml").write_text("config: {}\n")
    site, error = site_facts(project, "local")
    assert site is None
    assert error is not None and "Pulumi.local.yaml" in error


def test_stat_paths_records_real_paths_and_their_parents(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir()
    (real / "disk.qcow2").write_bytes(b"x" * 10)
    (tmp_path / "current").symlink_to(real)
    (real / "disk.qcow2").chmod(0o600)
    files = stat_paths([str(tmp_path / "current" / "disk.qcow2"), str(tmp_path / "absent")])
    fact = files[str(tmp_path / "current" / "disk.qcow2")]
    assert (fact.kind, fact.mode, fact.size) == ("file", 0o600, 10)
    assert fact.realpath == str(real / "disk.qcow2")
    assert str(real) in files and "/" in files
    assert str(tmp_path / "absent") not in files


def test_disk_fact_of_a_path_not_created_yet(tmp_path: Path) -> None:
    fact = disk_fact(str(tmp_path / "pools" / "default"))
    assert fact is not None
    assert fact.free_bytes > 0
    assert Path(fact.measured_at).stat().st_dev == tmp_path.stat().st_dev


def test_local_uris() -> None:
    assert is_local_uri("qemu:///system")
    assert is_local_uri("qemu+unix:///system")
    assert not is_local_uri("qemu+ssh://tenancy@kvm-east-01/system")


def test_relevant_env_keeps_only_what_the_checks_read() -> None:
    env = relevant_env({"PATH": "/bin", "PULUMI_HOME": "/p", "AWS_SECRET_ACCESS_KEY": "x"})
    assert env == {"PATH": "/bin", "PULUMI_HOME": "/p"}


# --------------------------------------------------------------------------- CLI


@pytest.fixture
def fake_machine(monkeypatch: pytest.MonkeyPatch) -> Callable[[Facts], None]:
    def use(facts: Facts) -> None:
        monkeypatch.setattr(cli_doctor, "gather_facts", lambda root, site: facts)

    return use


def test_cli_healthy(cli: Cli, project: Path, fake_machine: Callable[[Facts], None]) -> None:
    fake_machine(healthy())
    result = cli("--root", project, "doctor", "--site", "local")
    assert result.code == EXIT_OK, result
    assert result.out.startswith("tenancy doctor: site local\n")
    assert "ready: " in result.out and "to fix" not in result.out


def test_cli_broken(cli: Cli, project: Path, fake_machine: Callable[[Facts], None]) -> None:
    fake_machine(without(healthy(daemons={}), "/var/lib/libvirt/dnsmasq"))
    result = cli("--root", project, "doctor")
    assert result.code == EXIT_INVALID, result
    assert "FAIL  libvirtd" in result.out
    assert "fix: make hypervisor-up" in result.out
    assert result.out.rstrip().endswith("to fix, in this order:\n  make hypervisor-up")


def test_cli_json(cli: Cli, project: Path, fake_machine: Callable[[Facts], None]) -> None:
    facts = with_file(healthy(), f"{STATE}/passphrase", f(0o644, 45))
    fake_machine(facts)
    result = cli("--root", project, "doctor", "--format", "json")
    assert result.code == EXIT_INVALID
    doc = json.loads(result.out)
    assert doc["ok"] is False and doc["site"] == "local"
    assert doc["counts"]["fail"] == 1
    assert doc["fixes"] == ["chmod 600 .tenancy/passphrase"]
    (bad,) = [x for x in doc["checks"] if x["status"] == "fail"]
    assert bad == {
        "group": "state",
        "name": "passphrase",
        "status": "fail",
        "detail": ".tenancy/passphrase has mode 0644: open to group/others, expected 0600",
        "fix": "chmod 600 .tenancy/passphrase",
    }


def test_cli_unknown_site(cli: Cli, project: Path, fake_machine: Callable[[Facts], None]) -> None:
    fake_machine(healthy())
    result = cli("--root", project, "doctor", "--site", "nowhere")
    assert result.code == EXIT_USAGE
    assert "unknown site 'nowhere'" in result.err


# --------------------------------------------------------------------------- time service


def test_time_service_serves_the_guests_of_a_site_without_ntp_servers() -> None:
    [check] = c.check_time_service(healthy())
    assert check.status == "ok", check


def test_time_service_missing_fails_with_the_hypervisor_fix() -> None:
    [check] = c.check_time_service(healthy(udp_ports=frozenset({5353})))
    assert check.status == "fail"
    assert "udp/123" in check.detail and "BASE-TIME-02" in check.detail
    assert check.fix == "make hypervisor-up"


def test_time_service_is_not_needed_when_the_site_names_servers() -> None:
    site = local_site(ntp_servers=("10.0.0.123",))
    assert c.check_time_service(healthy(site=site, udp_ports=frozenset())) == []
