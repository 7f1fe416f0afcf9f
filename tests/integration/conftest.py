"""Fixtures of the integration tests: real libvirt, the real Pulumi engine, real VMs.

These tests expect the environment of ``make test``: ``tools/env.sh`` sourced
(PATH, PULUMI_HOME, ...), the hypervisor up (``make hypervisor-up``), the
guest image built (``make image``) and the Pulumi CLI built (``make engine``).
When a piece is missing they fail with a message naming it; they never skip.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import secrets
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

LIBVIRT_URI = os.environ.get("TENANCY_TEST_LIBVIRT_URI", "qemu:///system")
POOL_ROOT = Path(os.environ.get("TENANCY_TEST_POOL_ROOT", "/var/lib/libvirt/images"))


def _need(condition: bool, message: str) -> None:
    if not condition:
        pytest.fail(f"integration prerequisite missing: {message}", pytrace=False)


# --- environment ----------------------------------------------------------------


@pytest.fixture(scope="session")
def libvirt_uri() -> str:
    """The hypervisor under test; fails when libvirt does not answer."""
    _need(
        bool(os.environ.get("TENANCY_ROOT")),
        "TENANCY_ROOT is not set: run through `make test` or `source tools/env.sh` first",
    )
    try:
        import libvirt
    except ImportError:
        pytest.fail(
            "integration prerequisite missing: the libvirt Python binding "
            "(libvirt-python in .venv: `make python-env`)",
            pytrace=False,
        )
    try:
        conn = libvirt.open(LIBVIRT_URI)
    except libvirt.libvirtError as exc:
        pytest.fail(
            f"integration prerequisite missing: libvirt at {LIBVIRT_URI} does not answer "
            f"({exc.get_error_message()}); start it with `make hypervisor-up`",
            pytrace=False,
        )
    conn.close()
    _need(shutil.which("genisoimage") is not None, "genisoimage (Debian package genisoimage)")
    _need(shutil.which("qemu-img") is not None, "qemu-img (Debian package qemu-utils)")
    return LIBVIRT_URI


@dataclass(frozen=True)
class PulumiEnv:
    """Where the engine pieces are, as tools/env.sh sets them."""

    root: Path
    prefix: Path
    home: Path
    venv: Path

    @property
    def cli(self) -> Path:
        return self.prefix / "bin" / "pulumi"


@pytest.fixture(scope="session")
def pulumi_env(libvirt_uri: str) -> PulumiEnv:
    """The Pulumi CLI and the dynamic provider plugin from tools/ (``make engine``)."""
    missing = [
        name
        for name in ("TENANCY_ROOT", "PULUMI_PREFIX", "PULUMI_HOME")
        if not os.environ.get(name)
    ]
    _need(not missing, f"{', '.join(missing)} not set: run `source tools/env.sh` (make test does)")
    env = PulumiEnv(
        root=Path(os.environ["TENANCY_ROOT"]),
        prefix=Path(os.environ["PULUMI_PREFIX"]),
        home=Path(os.environ["PULUMI_HOME"]),
        venv=Path(os.environ["TENANCY_ROOT"]) / ".venv",
    )
    _need(env.cli.is_file(), f"the Pulumi CLI at {env.cli}: build it with `make engine`")
    plugin = env.prefix / "bin" / "pulumi-resource-pulumi-python"
    _need(plugin.is_file(), f"the dynamic provider plugin {plugin}: `make engine`")
    found = shutil.which("pulumi-resource-pulumi-python")
    _need(
        found is not None and Path(found).resolve() == plugin.resolve(),
        f"{plugin.parent} must be on PATH before any other Pulumi (source tools/env.sh)",
    )
    _need((env.venv / "bin" / "python").is_file(), f"the project venv {env.venv}")
    return env


@pytest.fixture(scope="session")
def pool_root() -> Path:
    """Directory under which test pools are created (QEMU must be able to read it)."""
    return POOL_ROOT


# --- guest image ----------------------------------------------------------------


@dataclass(frozen=True)
class GuestImage:
    """The output of tools/guest-image.sh (resolved paths, readable by QEMU)."""

    qcow2: Path
    kernel: Path
    initrd: Path
    cmdline: str
    info: dict[str, Any] = field(default_factory=dict)


@pytest.fixture(scope="session")
def guest_image() -> GuestImage:
    """The current guest image; fails with the command that builds it."""
    cache = os.environ.get("TENANCY_CACHE")
    _need(bool(cache), "TENANCY_CACHE is not set: run `source tools/env.sh` (make test does)")
    current = Path(str(cache)) / "images" / "current"
    hint = "build it with `make image` (bash tools/guest-image.sh)"
    _need(current.exists(), f"the guest image {current}: {hint}")
    base = current.resolve()
    info_file = base / "build-info.json"
    _need(info_file.is_file(), f"{info_file}: {hint}")
    info = json.loads(info_file.read_text())
    paths = {name: base / name for name in ("debian-12.qcow2", "vmlinuz", "initrd.img")}
    for path in paths.values():
        _need(path.is_file(), f"{path}: {hint}")
    cmdline = (info.get("boot") or {}).get("kernel_cmdline")
    _need(bool(cmdline), f"boot.kernel_cmdline in {info_file}: {hint}")
    return GuestImage(
        qcow2=paths["debian-12.qcow2"],
        kernel=paths["vmlinuz"],
        initrd=paths["initrd.img"],
        cmdline=str(cmdline),
        info=info,
    )


@dataclass(frozen=True)
class SshKey:
    private: Path
    public: Path

    @property
    def public_text(self) -> str:
        return self.public.read_text().strip()


@pytest.fixture(scope="session")
def ssh_keypair(tmp_path_factory: pytest.TempPathFactory) -> SshKey:
    """A fresh ed25519 key pair for the test VMs."""
    _need(shutil.which("ssh-keygen") is not None, "ssh-keygen (Debian package openssh-client)")
    directory = tmp_path_factory.mktemp("ssh")
    private = directory / "id_ed25519"
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "tenancy-it", "-f", str(private)],
        check=True,
    )
    return SshKey(private=private, public=directory / "id_ed25519.pub")


# --- names, addresses, leftovers ------------------------------------------------


@pytest.fixture(scope="session")
def test_prefix() -> str:
    """A unique prefix for every libvirt object a test run creates."""
    return f"tnt-it-{secrets.token_hex(3)}"


def _routed_networks() -> list[ipaddress.IPv4Network]:
    out = subprocess.run(
        ["ip", "-j", "-4", "route", "show", "table", "all"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    nets = []
    for route in json.loads(out or "[]"):
        dst = route.get("dst", "")
        if dst and dst != "default":
            try:
                nets.append(ipaddress.IPv4Network(dst, strict=False))
            except ValueError:
                continue
    return nets


@pytest.fixture
def free_subnet() -> Callable[[], ipaddress.IPv4Network]:
    """Picks a /24 in 10.254.0.0/16 that no route on this host overlaps."""

    def pick() -> ipaddress.IPv4Network:
        taken = _routed_networks()
        candidates = list(ipaddress.IPv4Network("10.254.0.0/16").subnets(new_prefix=24))
        secrets.SystemRandom().shuffle(candidates)
        for net in candidates:
            if not any(net.overlaps(t) for t in taken):
                return net
        pytest.fail("no free /24 in 10.254.0.0/16 for a test network", pytrace=False)

    return pick


def libvirt_objects(uri: str, prefix: str) -> dict[str, list[str]]:
    """Names of every libvirt object whose name starts with ``prefix``."""
    import libvirt

    conn = libvirt.open(uri)
    try:
        found: dict[str, list[str]] = {
            "domains": [d.name() for d in conn.listAllDomains(0)],
            "networks": [n.name() for n in conn.listAllNetworks(0)],
            "pools": [p.name() for p in conn.listAllStoragePools(0)],
            "nwfilters": [f.name() for f in conn.listAllNWFilters(0)],
            "volumes": [],
        }
        for pool in conn.listAllStoragePools(0):
            if pool.isActive():
                pool.refresh(0)
                found["volumes"].extend(v.name() for v in pool.listAllVolumes(0))
        return {
            kind: sorted(n for n in names if n.startswith(prefix)) for kind, names in found.items()
        }
    finally:
        conn.close()


def sweep(uri: str, prefix: str) -> dict[str, list[str]]:
    """Remove every libvirt object named ``prefix*`` (safety net after a failure).

    Returns what was found before removing it.
    """
    import libvirt

    found = libvirt_objects(uri, prefix)
    conn = libvirt.open(uri)
    try:
        for dom in conn.listAllDomains(0):
            if dom.name().startswith(prefix):
                if dom.isActive():
                    dom.destroy()
                dom.undefineFlags(libvirt.VIR_DOMAIN_UNDEFINE_NVRAM)
        for net in conn.listAllNetworks(0):
            if net.name().startswith(prefix):
                if net.isActive():
                    net.destroy()
                net.undefine()
        for nwf in conn.listAllNWFilters(0):
            if nwf.name().startswith(prefix):
                nwf.undefine()
        for pool in conn.listAllStoragePools(0):
            if not pool.isActive():
                continue
            for vol in pool.listAllVolumes(0):
                if vol.name().startswith(prefix):
                    vol.delete(0)
        for pool in conn.listAllStoragePools(0):
            if pool.name().startswith(prefix):
                if pool.isActive():
                    pool.destroy()
                with contextlib.suppress(libvirt.libvirtError):
                    pool.delete(0)
                pool.undefine()
    finally:
        conn.close()
    return found


@pytest.fixture(scope="session")
def libvirt_sweeper(
    libvirt_uri: str, test_prefix: str
) -> Iterator[Callable[[], dict[str, list[str]]]]:
    """``libvirt_objects`` for this run's prefix; sweeps leftovers at session end."""
    yield lambda: libvirt_objects(libvirt_uri, test_prefix)
    leftovers = sweep(libvirt_uri, test_prefix)
    if any(leftovers.values()):
        print(f"\nswept leftovers of {test_prefix}: {leftovers}")


@pytest.fixture(scope="session")
def libvirt_leftovers(libvirt_uri: str) -> Callable[[str], dict[str, list[str]]]:
    """``leftovers(prefix)``: names of the libvirt objects starting with ``prefix``."""
    return lambda prefix: libvirt_objects(libvirt_uri, prefix)


@pytest.fixture(scope="session")
def libvirt_sweep(libvirt_uri: str) -> Callable[[str], dict[str, list[str]]]:
    """``sweep(prefix)``: removes those objects, returns what it found."""
    return lambda prefix: sweep(libvirt_uri, prefix)


# --- timings ----------------------------------------------------------------------


class StepTimer:
    """Times named steps, prints each one, and writes a report file at the end."""

    def __init__(self, title: str, report: Path) -> None:
        self.title = title
        self.report = report
        self.steps: list[tuple[str, float, str]] = []

    def step(self, name: str) -> _Step:
        return _Step(self, name)

    def record(self, name: str, seconds: float, outcome: str) -> None:
        self.steps.append((name, seconds, outcome))
        print(f"[{self.title}] {name}: {seconds:.1f} s ({outcome})", flush=True)

    def write(self) -> None:
        self.report.parent.mkdir(parents=True, exist_ok=True)
        lines = [f"{self.title} ({time.strftime('%Y-%m-%d %H:%M:%S')})"]
        lines += [
            f"  {name:<32} {seconds:8.1f} s  {outcome}" for name, seconds, outcome in self.steps
        ]
        lines.append(f"  {'total':<32} {sum(s for _, s, _ in self.steps):8.1f} s")
        self.report.write_text("\n".join(lines) + "\n")
        self.report.with_suffix(".json").write_text(
            json.dumps(
                [{"step": n, "seconds": round(s, 2), "outcome": o} for n, s, o in self.steps],
                indent=2,
            )
            + "\n"
        )
        print(f"[{self.title}] report: {self.report}", flush=True)


class _Step:
    def __init__(self, timer: StepTimer, name: str) -> None:
        self.timer = timer
        self.name = name
        self.start = 0.0

    def __enter__(self) -> _Step:
        self.start = time.monotonic()
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        outcome = (
            "ok"
            if exc_type is None
            else f"FAILED: {exc_type.__name__ if isinstance(exc_type, type) else exc_type}"
        )
        self.timer.record(self.name, time.monotonic() - self.start, outcome)


@pytest.fixture
def step_timer(request: pytest.FixtureRequest) -> Iterator[StepTimer]:
    """Per-test step timings, printed (pytest -s) and written under $TENANCY_STATE/reports/."""
    state = Path(os.environ.get("TENANCY_STATE") or Path.cwd() / ".tenancy")
    timer = StepTimer(request.node.name, state / "reports" / f"{request.node.name}.txt")
    yield timer
    timer.write()


# --- stand-in clients (network namespaces) -------------------------------------------------


@dataclass(frozen=True)
class Standins:
    """The intranet/extranet/internet stand-ins of tools/standins.sh (namespace, address)."""

    hosts: dict[str, tuple[str, str]]  # keyword -> (namespace, address)
    created: bool  # this session brought them up (and takes them down)


STANDIN_HOSTS = {
    "intranet": ("tn-intranet", "10.255.1.2"),
    "extranet": ("tn-extranet", "10.255.2.2"),
    "internet": ("tn-internet", "10.255.3.2"),
}


def _standins_present() -> bool:
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=False)
    names = {line.split()[0] for line in listed.stdout.splitlines() if line.strip()}
    return all(ns in names for ns, _ in STANDIN_HOSTS.values())


@pytest.fixture(scope="session")
def standins(libvirt_uri: str) -> Iterator[Standins]:
    """tools/standins.sh up for the session; down at the end only if this session made them."""
    root = Path(os.environ["TENANCY_ROOT"])
    created = not _standins_present()
    up = subprocess.run(
        ["bash", str(root / "tools" / "standins.sh"), "up"],
        capture_output=True,
        text=True,
        check=False,
    )
    _need(up.returncode == 0, f"tools/standins.sh up failed: {up.stderr.strip()}")
    yield Standins(hosts=dict(STANDIN_HOSTS), created=created)
    if created:
        subprocess.run(
            ["bash", str(root / "tools" / "standins.sh"), "down"], capture_output=True, check=False
        )
