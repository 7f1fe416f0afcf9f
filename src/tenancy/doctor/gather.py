"""Reads the facts the doctor's checks judge from this machine (read-only, bounded in time).

Nothing here changes the machine: it stats files, reads /proc and pid files,
and runs ``virsh version``, ``virsh list``, ``nft list tables``,
``pulumi version`` and ``systemctl is-active`` with timeouts, so a hung
libvirtd makes the doctor report it instead of hanging itself.
"""

from __future__ import annotations

import contextlib
import grp
import importlib
import os
import pwd
import shutil
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path, PurePosixPath
from urllib.parse import urlparse

from tenancy.contract.loader import load_site, site_file
from tenancy.doctor import checks
from tenancy.doctor.model import (
    CommandResult,
    DaemonFact,
    DiskFact,
    Facts,
    FileFact,
    MachineNeed,
    SiteFacts,
    UserFact,
)
from tenancy.plan.planner import plan_paths
from tenancy.process import run_captured

LIBVIRT_URI = "qemu:///system"
# the first call after a cold libvirtd start waits for its QEMU probe (tools/hypervisor.sh)
VIRSH_TIMEOUT = 20.0
COMMAND_TIMEOUT = 30.0
ENV_PREFIXES = ("TENANCY_", "PULUMI_")
ENV_KEYS = ("PATH", "HOME", "XDG_CACHE_HOME")
# tools/env.sh appends these; libvirt finds dnsmasq and ebtables there too
SBIN = ("/usr/sbin", "/sbin")


def relevant_env(environ: Mapping[str, str]) -> dict[str, str]:
    """Only what the checks read (no unrelated secrets or noise in the facts)."""
    return {k: v for k, v in environ.items() if k.startswith(ENV_PREFIXES) or k in ENV_KEYS}


def is_local_uri(uri: str) -> bool:
    """True for this machine's libvirt (``qemu:///system``, ``qemu+unix:///system``)."""
    parsed = urlparse(uri)
    return parsed.scheme in ("qemu", "qemu+unix") and not parsed.netloc


def run(argv: Sequence[str], timeout: float = COMMAND_TIMEOUT) -> CommandResult:
    start = time.monotonic()
    try:
        proc = run_captured(argv, timeout)
    except subprocess.TimeoutExpired:
        return CommandResult(None, "", "timed out", time.monotonic() - start)
    except OSError as exc:
        return CommandResult(None, "", str(exc), time.monotonic() - start)
    return CommandResult(proc.returncode, proc.stdout, proc.stderr, time.monotonic() - start)


def site_facts(root: Path, site: str) -> tuple[SiteFacts | None, str | None]:
    """The site's hosts, pools and planned machines; or why the site cannot be loaded."""
    path = site_file(root / "stacks", site)
    loaded, errors = load_site(path, site, root)
    if loaded is None:
        first = str(errors[0]) if errors else "unknown error"
        return None, f"stacks/{path.name}: {len(errors)} error(s); first: {first}"
    spec = loaded.model
    local = tuple(h.name for h in spec.hosts if is_local_uri(h.uri))
    remote = tuple(h.name for h in spec.hosts if not is_local_uri(h.uri))
    pools = {(h.name, p.name): p.path for h in spec.hosts for p in h.pools}
    keys = tuple(k if k.startswith("/") else str(root / k) for k in spec.ops.ssh_key_files)
    result = plan_paths(root, None, sites=[site])
    plan = result.plans.get(site) if result.ok else None
    machines = tuple(
        MachineNeed(
            domain=m.domain,
            host=m.host,
            memory_mib=m.memory_mib,
            disk_gib=m.disk_gib,
            root_pool=m.root_pool,
            volumes=tuple((v.pool, v.size_gib) for v in m.volumes),
        )
        for m in (plan.machines() if plan else [])
    )
    used = sorted({m.image for m in plan.machines()}) if plan else []
    sources = tuple(spec.images[n].source for n in used if n in spec.images)
    return (
        SiteFacts(
            name=spec.name,
            domain_type=spec.domain_type,
            local_hosts=local,
            remote_hosts=remote,
            pool_paths=pools,
            ssh_key_files=keys,
            image_sources=sources,
            machines=machines,
            plan_errors=tuple(str(e) for e in result.problems.errors),
            ntp_servers=tuple(spec.ntp_servers),
        ),
        None,
    )


def which_all(names: Sequence[str], path: str) -> dict[str, str | None]:
    dirs = [d for d in path.split(":") if d]
    search = ":".join([*dirs, *(d for d in SBIN if d not in dirs)])
    return {n: shutil.which(n, path=search) for n in names}


def stat_paths(paths: Sequence[str]) -> dict[str, FileFact]:
    """Stat each path and every directory above its real path (for permission walks)."""
    out: dict[str, FileFact] = {}

    def one(p: str) -> FileFact | None:
        try:
            st = Path(p).stat()
        except OSError:
            return None
        real = os.path.realpath(p)
        return FileFact(
            kind=FileFact.kind_of(st.st_mode),
            mode=st.st_mode & 0o7777,
            uid=st.st_uid,
            gid=st.st_gid,
            size=st.st_size,
            realpath=real if real != p else "",
        )

    for p in paths:
        fact = one(p)
        if fact is None:
            continue
        out[p] = fact
        real = fact.realpath or p
        for q in [real, *map(str, PurePosixPath(real).parents)]:
            if q not in out:
                extra = one(q)
                if extra is not None:
                    out[q] = extra
    return out


def user_fact(name: str) -> UserFact | None:
    try:
        pw = pwd.getpwnam(name)
    except KeyError:
        return None
    gids = set(os.getgrouplist(name, pw.pw_gid))
    gids |= {g.gr_gid for g in grp.getgrall() if name in g.gr_mem}
    return UserFact(name=name, uid=pw.pw_uid, gids=frozenset(gids))


def _read(path: str) -> str | None:
    try:
        return Path(path).read_text(errors="replace")
    except OSError:
        return None


def daemon_fact(name: str, systemd: bool) -> DaemonFact:
    text = _read(f"/run/{name}.pid")
    digits = "".join(c for c in text or "" if c.isdigit())
    pid = int(digits) if digits else None
    comm = _read(f"/proc/{pid}/comm") if pid else None
    active: bool | None = None
    if systemd:
        units = [f"{name}.service"] + ([f"{name}.socket"] if name != "libvirtd" else [])
        active = any(run(["systemctl", "is-active", "--quiet", u], 10).ok for u in units)
    return DaemonFact(
        name=name,
        pid=pid,
        comm=comm.strip() if comm is not None else None,
        systemd_active=active,
    )


def import_error(module: str) -> str | None:
    try:
        importlib.import_module(module)
    except Exception as exc:  # any import failure is the finding, whatever its type
        return f"{type(exc).__name__}: {exc}"
    return None


def meminfo() -> dict[str, int]:
    out: dict[str, int] = {}
    for line in (_read("/proc/meminfo") or "").splitlines():
        key, _, rest = line.partition(":")
        fields = rest.split()
        if fields and fields[0].isdigit():
            out[key.strip()] = int(fields[0])
    return out


def disk_fact(path: str) -> DiskFact | None:
    at = PurePosixPath(os.path.realpath(path))
    while not Path(at).exists() and at != at.parent:
        at = at.parent
    try:
        st = os.statvfs(at)
        dev = Path(at).stat().st_dev
        mount = at  # the mount point: the topmost ancestor on the same device
        while mount != mount.parent and Path(mount.parent).stat().st_dev == dev:
            mount = mount.parent
    except OSError:
        return None
    return DiskFact(
        path=path, measured_at=str(mount), device=dev, free_bytes=st.f_bavail * st.f_frsize
    )


def udp_ports() -> frozenset[int] | None:
    """Local ports of the UDP sockets in /proc/net/udp{,6} (hex ``addr:port`` column)."""
    ports: set[int] = set()
    seen = False
    for table in ("/proc/net/udp", "/proc/net/udp6"):
        text = _read(table)
        if text is None:
            continue
        seen = True
        for line in text.splitlines()[1:]:
            fields = line.split()
            if len(fields) > 1 and ":" in fields[1]:
                with contextlib.suppress(ValueError):
                    ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return frozenset(ports) if seen else None


def gather_facts(root: Path, site: str | None, environ: Mapping[str, str] | None = None) -> Facts:
    """Everything the checks need, from this machine; ``site`` None skips the site's checks."""
    env = relevant_env(os.environ if environ is None else environ)
    facts = Facts(root=str(root), env=env)
    site_info, site_error = site_facts(root, site) if site else (None, None)
    facts = replace(facts, site=site_info, site_error=site_error)

    names = [t for t, _, _ in checks.TOOLS] + list(checks.BROWSERS)
    names += ["pulumi", "pulumi-language-python", "systemctl"]
    which = which_all(names, env.get("PATH", ""))
    facts = replace(facts, which=which)

    systemd = (_read("/proc/1/comm") or "").strip() == "systemd"
    virsh, nft, pulumi = which.get("virsh"), which.get("nft"), which.get("pulumi")
    virsh_version = run([virsh, "-c", LIBVIRT_URI, "version"], VIRSH_TIMEOUT) if virsh else None
    running: frozenset[str] | None = None
    if virsh and virsh_version is not None and virsh_version.ok:
        listed = run([virsh, "-c", LIBVIRT_URI, "list", "--name"], VIRSH_TIMEOUT)
        if listed.ok:
            running = frozenset(n.strip() for n in listed.stdout.splitlines() if n.strip())
    users = {checks.QEMU_USER: u} if (u := user_fact(checks.QEMU_USER)) else {}
    facts = replace(
        facts,
        files=stat_paths(checks.wanted_paths(facts)),
        users=users,
        systemd=systemd,
        daemons={d: daemon_fact(d, systemd) for d, _, _ in checks.DAEMONS},
        virsh_version=virsh_version,
        running_domains=running,
        nft_tables=run([nft, "list", "tables"], 10) if nft else None,
        pulumi_version=run([pulumi, "version"]) if pulumi else None,
        imports={m: import_error(m) for m in checks.PYTHON_MODULES},
        python_prefix=sys.prefix,
        meminfo_kib=meminfo(),
        udp_ports=udp_ports(),
    )
    disks: dict[str, DiskFact] = {}
    for path in checks.disk_paths(facts):
        with contextlib.suppress(OSError):
            fact = disk_fact(path)
            if fact is not None:
                disks[path] = fact
    return replace(facts, disks=disks)
