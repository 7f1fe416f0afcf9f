"""The doctor's checks: pure functions from :class:`Facts` to :class:`Check` verdicts.

Each check says what is wrong and the one command that repairs it, so a
failed ``make demo`` points at ``make image`` instead of a libvirt stack
trace. Paths follow ``tools/env.sh`` (its defaults apply when a variable is
unset), and fixes are the setup steps of the README in their order:
``make python-env``, ``make engine``, ``make hypervisor-up``, ``make image``,
``make state``, ``bash tools/standins.sh up``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from pathlib import PurePosixPath
from urllib.parse import unquote, urlparse

from tenancy.doctor.model import Check, DaemonFact, Facts, FileFact, MachineNeed, Status, UserFact

GIB = 1 << 30
QEMU_USER = "libvirt-qemu"

# (command, Debian package, needed for); all come with `make hypervisor-up`
TOOLS: tuple[tuple[str, str, str], ...] = (
    ("virsh", "libvirt-clients", "talking to libvirt"),
    ("qemu-system-x86_64", "qemu-system-x86", "running the VMs"),
    ("qemu-img", "qemu-utils", "disk images"),
    ("nft", "nftables", "the network guard and host firewalls"),
    ("dnsmasq", "dnsmasq-base", "DHCP/DNS of the tenant segments"),
    ("genisoimage", "genisoimage", "cloud-init seed images"),
    ("ssh", "openssh-client", "Ansible and the audit over SSH"),
    ("ssh-keygen", "openssh-client", "the ops SSH key (make state)"),
    ("ebtables", "ebtables", "libvirt nwfilter (anti-spoofing)"),
    ("ip", "iproute2", "bridges and the stand-in namespaces"),
    ("debootstrap", "debootstrap", "building the guest image"),
)
BROWSERS = ("chromium", "chromium-browser", "google-chrome")

# daemon -> (severity when down, why)
DAEMONS: tuple[tuple[str, str, str], ...] = (
    ("libvirtd", "fail", "every tenancy up/preview/destroy talks to it"),
    ("virtlogd", "fail", "QEMU's console logs go through it; domains do not start without it"),
    ("virtlockd", "warn", "only used when a lock manager is configured"),
)

# state directories and devices libvirt needs but only systemd, udev or a first
# `default` network would create (tools/hypervisor.sh ensure_host_prerequisites)
STATE_DIRS: tuple[tuple[str, str], ...] = (
    (
        "/var/lib/libvirt/dnsmasq",
        'without it `tenancy up` fails with "Failed to create file '
        "'/var/lib/libvirt/dnsmasq/...macs.new'\"",
    ),
    ("/var/lib/libvirt/images", "libvirt's default image directory"),
    ("/var/log/libvirt/qemu", "domain logs; domains do not start without it"),
    ("/var/cache/libvirt/qemu", "the QEMU capabilities cache"),
    ("/run/libvirt", "libvirt's sockets and runtime state"),
)
TUN = "/dev/net/tun"
KVM = "/dev/kvm"
IMAGE_FILES = ("debian-12.qcow2", "vmlinuz", "initrd.img", "build-info.json")
STANDINS = ("tn-intranet", "tn-extranet", "tn-internet")
GUARD_TABLES = ("inet tenancy_guard", "bridge tenancy_guard")
PYTHON_MODULES = ("libvirt", "pulumi", "ansible_runner")
ENGINE_SHIMS = ("pulumi-resource-pulumi-python", "pulumi-language-python-exec")
SLOW_LIBVIRT_SECONDS = 3.0

# resource rule (see check_memory / check_disk)
QEMU_OVERHEAD_MIB = 128
MEMORY_HEADROOM_MIB = 1024
DISK_RESERVE_GIB = 4.0
ROOT_GROWTH_GIB = 1.0
DATA_GROWTH_FRACTION = 0.05
BASE_IMAGE_FALLBACK_GIB = 1.0
IMAGE_BUILD_GIB = 5.0

FIX_ENV = "source tools/env.sh"
FIX_PYTHON = "make python-env"
FIX_ENGINE = "make engine"
FIX_HYPERVISOR = "make hypervisor-up"
FIX_IMAGE = "make image"
FIX_STATE = "make state"
FIX_STANDINS = "bash tools/standins.sh up"
FIX_TEST_DEPS = "make test-deps"


# --------------------------------------------------------------------------- paths


def state_dir(facts: Facts) -> str:
    """Per-clone state (TENANCY_STATE, default <root>/.tenancy), as tools/env.sh sets it."""
    return facts.env.get("TENANCY_STATE") or f"{facts.root}/.tenancy"


def cache_dir(facts: Facts) -> str:
    """Shared toolchains and images (TENANCY_CACHE, default $XDG_CACHE_HOME/tenancy)."""
    if facts.env.get("TENANCY_CACHE"):
        return facts.env["TENANCY_CACHE"]
    xdg = facts.env.get("XDG_CACHE_HOME") or f"{facts.env.get('HOME', '/root')}/.cache"
    return f"{xdg}/tenancy"


def image_dir(facts: Facts) -> str:
    return f"{cache_dir(facts)}/images/current"


def passphrase_file(facts: Facts) -> str | None:
    """The passphrase file pulumi reads; None when PULUMI_CONFIG_PASSPHRASE is set instead."""
    if "PULUMI_CONFIG_PASSPHRASE" in facts.env:
        return None
    return facts.env.get("PULUMI_CONFIG_PASSPHRASE_FILE") or f"{state_dir(facts)}/passphrase"


def backend_url(facts: Facts) -> str:
    return facts.env.get("PULUMI_BACKEND_URL") or f"file://{state_dir(facts)}/pulumi"


def backend_dir(facts: Facts) -> str | None:
    """The directory of a file:// backend (``~`` is the home directory), else None."""
    url = backend_url(facts)
    if not url.startswith("file://"):
        return None
    raw = unquote(urlparse(url).netloc + urlparse(url).path)
    if raw.startswith("~"):
        raw = facts.env.get("HOME", "/root") + raw[1:]
    return raw


def ssh_key(facts: Facts) -> str:
    return f"{state_dir(facts)}/ssh/ops_ed25519"


def show(facts: Facts, path: str) -> str:
    """A path as the operator types it in the project directory (relative inside the root)."""
    root = facts.root.rstrip("/") + "/"
    return path[len(root) :] if path.startswith(root) else path


def image_paths(facts: Facts) -> list[str]:
    """The files the guest image journey needs: the built image, plus plan-named qcow2 files."""
    paths = [f"{image_dir(facts)}/{name}" for name in IMAGE_FILES]
    for source in facts.site.image_sources if facts.site else ():
        if source.startswith("/"):
            parent = str(PurePosixPath(source).parent)
            paths += [source, f"{parent}/vmlinuz", f"{parent}/initrd.img"]
    return paths


def wanted_paths(facts: Facts) -> list[str]:
    """Every path the checks look up, so the gatherer can stat exactly these (and ancestors)."""
    paths = [d for d, _ in STATE_DIRS]
    paths += [TUN, KVM, image_dir(facts), *image_paths(facts), ssh_key(facts)]
    passphrase = passphrase_file(facts)
    if passphrase:
        paths.append(passphrase)
    backend = backend_dir(facts)
    if backend:
        paths.append(backend)
    pulumi = facts.which.get("pulumi")
    if pulumi:
        parent = str(PurePosixPath(pulumi).parent)
        paths += [f"{parent}/{shim}" for shim in ENGINE_SHIMS]
    prefix = facts.env.get("PULUMI_PREFIX")
    if prefix:
        paths.append(f"{prefix}/bin/pulumi")
    paths += [f"/run/netns/{ns}" for ns in STANDINS]
    if facts.site:
        paths += facts.site.ssh_key_files
    return list(dict.fromkeys(paths))


def disk_paths(facts: Facts) -> list[str]:
    """Directories whose filesystem must hold the image and this machine's pools."""
    paths = [image_dir(facts)]
    if facts.site:
        local = set(facts.site.local_hosts)
        paths += sorted({p for (host, _), p in facts.site.pool_paths.items() if host in local})
    return paths


# --------------------------------------------------------------------------- permissions


def _class_shift(f: FileFact, user: UserFact) -> int:
    if f.uid == user.uid:
        return 6
    if f.gid in user.gids:
        return 3
    return 0


def allowed(f: FileFact, user: UserFact, bits: int) -> bool:
    """Classic Unix permission check (owner, group, other; root passes; ACLs not considered)."""
    if user.uid == 0:
        return True
    return (f.mode >> _class_shift(f, user)) & bits == bits


def access_blocker(facts: Facts, path: str, user: UserFact, bits: int) -> tuple[str, str] | None:
    """The first component keeping ``user`` from ``bits`` on ``path``, with the chmod that helps.

    Walks the real path: every directory above needs search (x) permission.
    None means allowed.
    """
    f = facts.files.get(path)
    if f is None:
        return path, ""
    real = f.realpath or path
    for parent in reversed(PurePosixPath(real).parents):
        d = facts.files.get(str(parent))
        if d is None:
            return str(parent), ""
        if not allowed(d, user, 1):
            who = "ugo"[2 - _class_shift(d, user) // 3]
            return str(parent), f"chmod {who}+x {parent}"
    target = facts.files.get(real, f)
    if not allowed(target, user, bits):
        who = "ugo"[2 - _class_shift(target, user) // 3]
        perm = "".join(c for c, b in (("r", 4), ("w", 2), ("x", 1)) if bits & b)
        return real, f"chmod {who}+{perm} {real}"
    return None


# --------------------------------------------------------------------------- environment


def check_environment(facts: Facts) -> list[Check]:
    """tools/env.sh pins versions, PATH and the offline engine; without it nothing else holds."""
    missing = [v for v in ("TENANCY_ROOT", "PULUMI_VERSION") if not facts.env.get(v)]
    venv_bin = f"{facts.root}/.venv/bin"
    if venv_bin not in facts.env.get("PATH", "").split(":"):
        missing.append(f"{show(facts, venv_bin)} on PATH")
    if missing:
        return [
            Check(
                "environment",
                "tools/env.sh",
                "fail",
                f"not sourced: {', '.join(missing)} missing",
                FIX_ENV,
            )
        ]
    env_root = facts.env["TENANCY_ROOT"].rstrip("/")
    if env_root != facts.root.rstrip("/"):
        return [
            Check(
                "environment",
                "tools/env.sh",
                "warn",
                f"sourced from another clone: TENANCY_ROOT={env_root}, project {facts.root}",
                f"unset TENANCY_ROOT TENANCY_STATE PULUMI_BACKEND_URL && {FIX_ENV}",
            )
        ]
    return [Check("environment", "tools/env.sh", "ok", f"sourced (TENANCY_ROOT={env_root})")]


def check_site(facts: Facts) -> list[Check]:
    """The site must load, and its plan must exist, for the site-dependent checks to mean much."""
    if facts.site_error:
        return [Check("site", "site", "fail", facts.site_error, "tenancy validate tenants/")]
    site = facts.site
    if site is None:
        return []
    if site.plan_errors:
        first = site.plan_errors[0]
        return [
            Check(
                "site",
                f"plan {site.name}",
                "warn",
                f"no plan: {len(site.plan_errors)} error(s) (first: {first}); "
                "resource checks count no machines",
                "tenancy validate tenants/",
            )
        ]
    hosts = ", ".join(site.local_hosts) or "none"
    return [
        Check(
            "site",
            f"plan {site.name}",
            "ok",
            f"{len(site.machines)} machine(s) planned; hosts on this machine: {hosts}"
            + (f"; remote hosts: {', '.join(site.remote_hosts)}" if site.remote_hosts else ""),
        )
    ]


# --------------------------------------------------------------------------- python, engine


def check_python(facts: Facts) -> list[Check]:
    """The program, dynamic providers and Ansible run in the project venv."""
    checks = []
    for module in PYTHON_MODULES:
        error = facts.imports.get(module, "not checked")
        if error is None:
            checks.append(Check("python", f"import {module}", "ok", "imports"))
        else:
            checks.append(Check("python", f"import {module}", "fail", error, FIX_PYTHON))
    venv = f"{facts.root}/.venv"
    if facts.python_prefix and facts.python_prefix.rstrip("/") != venv:
        checks.append(
            Check(
                "python",
                "interpreter",
                "warn",
                f"tenancy runs from {facts.python_prefix}, not {show(facts, venv)} "
                "(the language host uses the project venv)",
                FIX_ENV,
            )
        )
    return checks


def check_engine(facts: Facts) -> list[Check]:
    """The pinned pulumi CLI and the project's language host must be the ones on PATH."""
    pulumi = facts.which.get("pulumi")
    if not pulumi:
        return [Check("engine", "pulumi", "fail", "pulumi is not on PATH", FIX_ENGINE)]
    checks: list[Check] = []
    pinned = facts.env.get("PULUMI_VERSION")
    want = f"v{pinned}" if pinned else None
    result = facts.pulumi_version
    prefix = facts.env.get("PULUMI_PREFIX")
    ours = f"{prefix}/bin/pulumi" if prefix else None
    if want is None:
        checks.append(
            Check("engine", "pulumi version", "fail", "no pinned version (PULUMI_VERSION)", FIX_ENV)
        )
    elif result is None or not result.ok:
        why = "timed out" if result is not None and result.returncode is None else "failed"
        err = _first_line(result.stderr) if result else ""
        checks.append(
            Check(
                "engine",
                "pulumi version",
                "fail",
                f"`{pulumi} version` {why}" + (f": {err}" if err else ""),
                FIX_ENGINE,
            )
        )
    elif result.stdout.strip() != want:
        fix = FIX_ENGINE
        if ours and pulumi != ours and ours in facts.files:
            fix = f'export PATH="{prefix}/bin:$PATH"'
        checks.append(
            Check(
                "engine",
                "pulumi version",
                "fail",
                f"{pulumi} is {result.stdout.strip() or '(no output)'}, pinned {want}",
                fix,
            )
        )
    else:
        checks.append(Check("engine", "pulumi version", "ok", f"{want} ({pulumi})"))
    bindir = str(PurePosixPath(pulumi).parent)
    launcher = facts.which.get("pulumi-language-python")
    if not launcher:
        checks.append(
            Check(
                "engine",
                "pulumi-language-python",
                "fail",
                "the language host launcher is not on PATH",
                FIX_ENGINE,
            )
        )
    elif str(PurePosixPath(launcher).parent) != bindir:
        checks.append(
            Check(
                "engine",
                "pulumi-language-python",
                "warn",
                f"{launcher} is not next to {pulumi}: the engine may start another host",
                FIX_ENGINE,
            )
        )
    else:
        checks.append(Check("engine", "pulumi-language-python", "ok", launcher))
    missing = [s for s in ENGINE_SHIMS if f"{bindir}/{s}" not in facts.files]
    if missing:
        checks.append(
            Check(
                "engine",
                "python shims",
                "fail",
                f"missing in {bindir}: {', '.join(missing)} (dynamic providers need them)",
                FIX_ENGINE,
            )
        )
    else:
        checks.append(Check("engine", "python shims", "ok", ", ".join(ENGINE_SHIMS)))
    return checks


# --------------------------------------------------------------------------- hypervisor


def check_tools(facts: Facts) -> list[Check]:
    """Commands the setup scripts, libvirt and the journeys call, with their Debian package."""
    checks = []
    for tool, package, why in TOOLS:
        found = facts.which.get(tool)
        if found:
            checks.append(Check("tools", tool, "ok", f"{found} ({package})"))
        else:
            checks.append(
                Check(
                    "tools",
                    tool,
                    "fail",
                    f"not on PATH: install Debian package {package} ({why})",
                    FIX_HYPERVISOR,
                )
            )
    browser = next((facts.which[b] for b in BROWSERS if facts.which.get(b)), None)
    if browser:
        checks.append(Check("tools", "chromium", "ok", f"{browser} (chromium)"))
    else:
        checks.append(
            Check(
                "tools",
                "chromium",
                "warn",
                "not on PATH: Debian package chromium (only the audit report's browser tests)",
                FIX_TEST_DEPS,
            )
        )
    return checks


def daemon_running(d: DaemonFact) -> bool:
    """Live when systemd says active, or the pid file names a process of that name."""
    if d.systemd_active:
        return True
    return d.pid is not None and d.comm == d.name


def check_daemons(facts: Facts) -> list[Check]:
    """libvirtd and its helpers, started by systemd or by tools/hypervisor.sh (pid files)."""
    checks: list[Check] = []
    for name, severity, why in DAEMONS:
        d = facts.daemons.get(name)
        if d is not None and daemon_running(d):
            how = "systemd: active" if d.systemd_active else f"pid {d.pid}"
            checks.append(Check("libvirt", name, "ok", f"running ({how})"))
            continue
        if d is None or (d.pid is None and not d.systemd_active):
            state = "inactive (systemd)" if facts.systemd else f"no /run/{name}.pid"
        elif d.comm is None:
            state = f"stale /run/{name}.pid (pid {d.pid} is gone)"
        else:
            state = f"/run/{name}.pid names pid {d.pid}, which is {d.comm!r}"
        status: Status = "fail" if severity == "fail" else "warn"
        checks.append(
            Check("libvirt", name, status, f"not running: {state}; {why}", FIX_HYPERVISOR)
        )
    return checks


def check_libvirt(facts: Facts) -> list[Check]:
    """qemu:///system must answer quickly; slow answers mean libvirt re-probes QEMU each call."""
    result = facts.virsh_version
    if result is None:
        return [Check("libvirt", "qemu:///system", "fail", "virsh is not on PATH", FIX_HYPERVISOR)]
    if result.returncode is None:
        return [
            Check(
                "libvirt",
                "qemu:///system",
                "fail",
                f"no answer to `virsh version` within {result.seconds:.0f} s",
                FIX_HYPERVISOR,
            )
        ]
    if not result.ok:
        return [
            Check(
                "libvirt",
                "qemu:///system",
                "fail",
                f"not answering: {_first_line(result.stderr) or f'exit {result.returncode}'}",
                FIX_HYPERVISOR,
            )
        ]
    versions = _virsh_versions(result.stdout)
    if result.seconds > SLOW_LIBVIRT_SECONDS:
        return [
            Check(
                "libvirt",
                "qemu:///system",
                "warn",
                f"answers, slowly ({result.seconds:.1f} s; {versions}): libvirt re-probes QEMU "
                f"on every call when {QEMU_USER} cannot open {KVM}",
                FIX_HYPERVISOR,
            )
        ]
    return [
        Check("libvirt", "qemu:///system", "ok", f"answers in {result.seconds:.1f} s ({versions})")
    ]


def _virsh_versions(stdout: str) -> str:
    found = {}
    for line in stdout.splitlines():
        key, _, value = line.partition(":")
        found[key.strip()] = value.strip()
    lib = found.get("Using library", "libvirt ?")
    hyp = found.get("Running hypervisor", "hypervisor ?")
    return f"{lib}, {hyp}"


def check_state_dirs(facts: Facts) -> list[Check]:
    """Directories and devices libvirt assumes systemd/udev made; tools/hypervisor.sh makes them."""
    checks = []
    for path, why in STATE_DIRS:
        f = facts.files.get(path)
        if f is not None and f.kind == "dir":
            checks.append(Check("libvirt", path, "ok", "exists"))
        else:
            what = "missing" if f is None else f"not a directory ({f.kind})"
            checks.append(Check("libvirt", path, "fail", f"{what}: {why}", FIX_HYPERVISOR))
    tun = facts.files.get(TUN)
    if tun is not None and tun.kind == "char":
        checks.append(Check("libvirt", TUN, "ok", "character device"))
    else:
        what = "missing" if tun is None else f"not a character device ({tun.kind})"
        checks.append(
            Check(
                "libvirt",
                TUN,
                "fail",
                f"{what}: QEMU's tap interfaces need it",
                FIX_HYPERVISOR,
            )
        )
    return checks


def check_acceleration(facts: Facts) -> list[Check]:
    """KVM or TCG, against what the site's domainType asks for."""
    kvm = facts.files.get(KVM)
    user = facts.users.get(QEMU_USER)
    usable = kvm is not None and kvm.kind == "char" and user is not None and allowed(kvm, user, 6)
    if kvm is None:
        state = f"no {KVM}: software emulation (TCG) only"
    elif usable:
        state = f"{KVM} usable by {QEMU_USER}"
    else:
        owner = f"uid {kvm.uid} gid {kvm.gid} mode {kvm.mode:04o}"
        state = f"{KVM} exists but {QEMU_USER} cannot open it ({owner})"
    site = facts.site
    if site is None or not site.local_hosts:
        where = "" if site is None else f" (site {site.name} has no host on this machine)"
        status: Status = "warn" if kvm is not None and not usable else "info"
        fix = FIX_HYPERVISOR if status == "warn" else None
        return [Check("hypervisor", "acceleration", status, state + where, fix)]
    expects = f"site {site.name} expects domainType: {site.domain_type}"
    if site.domain_type == "kvm":
        if usable:
            return [Check("hypervisor", "acceleration", "ok", f"{state}; {expects}")]
        fix = (
            FIX_HYPERVISOR
            if kvm is not None
            else f"sed -i 's/domainType: kvm/domainType: qemu/' stacks/Pulumi.{site.name}.yaml"
        )
        return [
            Check(
                "hypervisor",
                "acceleration",
                "fail",
                f"{state}; {expects}: its domains cannot start",
                fix,
            )
        ]
    if kvm is not None and not usable:
        return [
            Check(
                "hypervisor",
                "acceleration",
                "warn",
                f"{state}; {expects} (TCG), but libvirt re-probes QEMU on every call "
                "(`virsh define` hangs for minutes)",
                FIX_HYPERVISOR,
            )
        ]
    slow = "VMs boot slowly under emulation (minutes to SSH)"
    return [Check("hypervisor", "acceleration", "info", f"{state}; {expects} (TCG): {slow}")]


def check_guard(facts: Facts) -> list[Check]:
    """The nftables guard keeps every guest packet on this machine; never run VMs without it."""
    result = facts.nft_tables
    if result is None:
        return [Check("hypervisor", "guard", "fail", "nft is not on PATH", FIX_HYPERVISOR)]
    if not result.ok:
        err = _first_line(result.stderr) or f"exit {result.returncode}"
        return [
            Check("hypervisor", "guard", "fail", f"`nft list tables` failed: {err}", FIX_HYPERVISOR)
        ]
    tables = {line.strip().removeprefix("table ").strip() for line in result.stdout.splitlines()}
    missing = [t for t in GUARD_TABLES if t not in tables]
    if GUARD_TABLES[0] in missing:
        return [
            Check(
                "hypervisor",
                "guard",
                "fail",
                f"nft table {GUARD_TABLES[0]} not loaded: guest traffic could reach the uplink",
                FIX_HYPERVISOR,
            )
        ]
    if missing:
        return [
            Check(
                "hypervisor",
                "guard",
                "warn",
                f"nft table {missing[0]} not loaded (the inet table is)",
                FIX_HYPERVISOR,
            )
        ]
    return [Check("hypervisor", "guard", "ok", "nft tables " + ", ".join(GUARD_TABLES) + " loaded")]


# --------------------------------------------------------------------------- image, state


def check_image(facts: Facts) -> list[Check]:
    """The guest image tools/guest-image.sh builds, readable by the user QEMU runs as."""
    paths = image_paths(facts)
    missing = [p for p in paths if p not in facts.files]
    if missing:
        names = ", ".join(show(facts, p) for p in missing)
        return [Check("image", "guest image", "fail", f"missing: {names}", FIX_IMAGE)]
    current = facts.files[image_dir(facts)]
    where = current.realpath or image_dir(facts)
    checks = [Check("image", "guest image", "ok", f"{where}: " + ", ".join(IMAGE_FILES))]
    user = facts.users.get(QEMU_USER)
    if user is None:
        checks.append(
            Check(
                "image",
                f"readable by {QEMU_USER}",
                "fail",
                f"no user {QEMU_USER} (libvirt's QEMU driver is not installed)",
                FIX_HYPERVISOR,
            )
        )
        return checks
    for path in paths:
        blocked = access_blocker(facts, path, user, 4)
        if blocked is not None:
            where_blocked, fix = blocked
            real = facts.files[path].realpath or path
            verb = "read" if where_blocked == real else "traverse"
            checks.append(
                Check(
                    "image",
                    f"readable by {QEMU_USER}",
                    "fail",
                    f"{path}: {QEMU_USER} cannot {verb} {where_blocked}",
                    fix or FIX_IMAGE,
                )
            )
            return checks
    checks.append(Check("image", f"readable by {QEMU_USER}", "ok", f"{where} and its files"))
    return checks


def _secret_file(facts: Facts, group: str, name: str, path: str, why: str) -> Check:
    f = facts.files.get(path)
    if f is None or f.kind != "file":
        return Check(group, name, "fail", f"{show(facts, path)} missing ({why})", FIX_STATE)
    if f.size == 0:
        return Check(group, name, "fail", f"{show(facts, path)} is empty ({why})", FIX_STATE)
    if f.mode & 0o077:
        return Check(
            group,
            name,
            "fail",
            f"{show(facts, path)} has mode {f.mode:04o}: open to group/others, expected 0600",
            f"chmod 600 {show(facts, path)}",
        )
    return Check(group, name, "ok", f"{show(facts, path)} (mode {f.mode:04o})")


def check_state(facts: Facts) -> list[Check]:
    """Pulumi's backend and secrets passphrase, and the ops key the VMs trust (make state)."""
    checks: list[Check] = []
    url = backend_url(facts)
    directory = backend_dir(facts)
    if directory is None:
        checks.append(
            Check("state", "backend", "info", f"{url} (not a file backend: not checked here)")
        )
    elif facts.files.get(directory, None) is not None and facts.files[directory].kind == "dir":
        checks.append(Check("state", "backend", "ok", url))
    else:
        fix = FIX_STATE if directory == f"{state_dir(facts)}/pulumi" else f"mkdir -p {directory}"
        checks.append(Check("state", "backend", "fail", f"{url}: no such directory", fix))
    passphrase = passphrase_file(facts)
    if passphrase is None:
        checks.append(Check("state", "passphrase", "ok", "from PULUMI_CONFIG_PASSPHRASE"))
    else:
        check = _secret_file(facts, "state", "passphrase", passphrase, "secrets of every stack")
        if check.fix == FIX_STATE and passphrase != f"{state_dir(facts)}/passphrase":
            # make state only generates the default file; a custom one is the operator's
            check = Check(
                check.group,
                check.name,
                check.status,
                check.detail + "; PULUMI_CONFIG_PASSPHRASE_FILE points there",
                f"unset PULUMI_CONFIG_PASSPHRASE_FILE && {FIX_ENV} && {FIX_STATE}",
            )
        checks.append(check)
    checks.append(
        _secret_file(facts, "state", "ops ssh key", ssh_key(facts), "Ansible and audits log in")
    )
    site = facts.site
    for key_file in site.ssh_key_files if site else ():
        if key_file in facts.files:
            continue
        ours = key_file == f"{ssh_key(facts)}.pub"
        checks.append(
            Check(
                "state",
                "ops key file",
                "fail",
                f"{show(facts, key_file)} missing (site {site.name if site else ''} lists it in "
                "ops.sshKeyFiles; its VMs trust that key)",
                FIX_STATE if ours else f"install the site's ops public key as {key_file}",
            )
        )
    return checks


# --------------------------------------------------------------------------- resources


def pending_machines(facts: Facts) -> list[MachineNeed]:
    """Planned machines on this machine's hosts that are not running yet (they still need room)."""
    site = facts.site
    if site is None:
        return []
    local = set(site.local_hosts)
    running = facts.running_domains or frozenset()
    return [m for m in site.machines if m.host in local and m.domain not in running]


def check_memory(facts: Facts) -> list[Check]:
    """MemAvailable must cover every planned VM that is not running yet.

    Rule: each pending VM needs its flavor's memory plus QEMU_OVERHEAD_MIB
    (QEMU/TCG's own buffers); below that sum the check fails, and within
    MEMORY_HEADROOM_MIB of it (Pulumi, Ansible and the audit run beside the
    VMs) it warns. VMs already running are left out: MemAvailable already
    excludes their memory.
    """
    site = facts.site
    if site is None:
        return []
    avail_kib = facts.meminfo_kib.get("MemAvailable")
    if avail_kib is None:
        return [Check("resources", "memory", "warn", "MemAvailable unknown (/proc/meminfo)")]
    avail = avail_kib // 1024
    pending = pending_machines(facts)
    if not pending:
        return [
            Check(
                "resources",
                "memory",
                "ok",
                f"{avail} MiB available; no machine of site {site.name} waits to start here",
            )
        ]
    need = sum(m.memory_mib + QEMU_OVERHEAD_MIB for m in pending)
    what = (
        f"{avail} MiB available, {len(pending)} VM(s) of site {site.name} need {need} MiB "
        f"(flavor memory + {QEMU_OVERHEAD_MIB} MiB QEMU overhead each)"
    )
    if avail < need:
        return [
            Check(
                "resources",
                "memory",
                "fail",
                f"not enough memory: {what}",
                f"free {need - avail} MiB (stop other VMs: virsh -c qemu:///system list), "
                f"or plan fewer or smaller machines for site {site.name}",
            )
        ]
    if avail < need + MEMORY_HEADROOM_MIB:
        return [
            Check(
                "resources",
                "memory",
                "warn",
                f"tight: {what}; less than {MEMORY_HEADROOM_MIB} MiB left for Pulumi and Ansible",
            )
        ]
    return [Check("resources", "memory", "ok", what)]


def disk_needs(facts: Facts) -> dict[str, float]:
    """GiB each directory's filesystem must still take (before the reserve); see check_disk."""
    needs: dict[str, float] = {}
    image = image_dir(facts)
    image_present = all(p in facts.files for p in image_paths(facts))
    needs[image] = 0.0 if image_present else IMAGE_BUILD_GIB
    site = facts.site
    if site is None:
        return needs
    base = sum(facts.files[p].size for p in image_paths(facts)[:3] if p in facts.files)
    base_gib = base / GIB if image_present else BASE_IMAGE_FALLBACK_GIB
    hosts_with_base: set[str] = set()
    for m in pending_machines(facts):
        root_path = site.pool_paths.get((m.host, m.root_pool))
        if root_path is None:
            continue
        grow = min(float(m.disk_gib), ROOT_GROWTH_GIB)
        if m.host not in hosts_with_base:
            hosts_with_base.add(m.host)
            grow += base_gib
        needs[root_path] = needs.get(root_path, 0.0) + grow
        for pool, size_gib in m.volumes:
            path = site.pool_paths.get((m.host, pool))
            if path is not None:
                needs[path] = needs.get(path, 0.0) + size_gib * DATA_GROWTH_FRACTION
    return needs


def check_disk(facts: Facts) -> list[Check]:
    """Each filesystem holding the image or a local pool keeps DISK_RESERVE_GIB free after growth.

    Rule, per filesystem (directories on one device are summed): the reserve
    (DISK_RESERVE_GIB) plus, for the pending machines placed there, one copy
    of the base image (qcow2 + kernel + initrd) per host in its first pool,
    each root overlay's likely growth (ROOT_GROWTH_GIB, at most its diskGiB:
    cloud-init, the baseline and logs write about that much) and
    DATA_GROWTH_FRACTION of every data volume (filesystem metadata; volumes
    are sparse qcow2). When the image is not built yet, its directory also
    needs IMAGE_BUILD_GIB for the build. Below that the check fails.
    """
    needs = disk_needs(facts)
    by_device: dict[int, tuple[list[str], float, int, str]] = {}
    unknown: list[str] = []
    for path in disk_paths(facts):
        disk = facts.disks.get(path)
        if disk is None:
            unknown.append(path)
            continue
        paths, need, free_bytes, at = by_device.get(
            disk.device, ([], 0.0, disk.free_bytes, disk.measured_at)
        )
        by_device[disk.device] = ([*paths, path], need + needs.get(path, 0.0), free_bytes, at)
    checks: list[Check] = []
    for paths, need, free_bytes, at in by_device.values():
        free = float(free_bytes) / GIB
        total = need + DISK_RESERVE_GIB
        names = ", ".join(show(facts, p) for p in paths)
        what = (
            f"{free:.1f} GiB free for {names}; needs {total:.1f} GiB "
            f"({need:.1f} GiB images and planned disks + {DISK_RESERVE_GIB:.0f} GiB reserve)"
        )
        if free < total:
            checks.append(
                Check(
                    "resources",
                    "disk",
                    "fail",
                    f"not enough disk on {at}: {what}",
                    f"free {total - free:.1f} GiB on the filesystem of {at} (df -h {at})",
                )
            )
        else:
            checks.append(Check("resources", "disk", "ok", f"{at}: {what}"))
    for path in unknown:
        checks.append(Check("resources", "disk", "warn", f"{path}: free space unknown"))
    return checks


# --------------------------------------------------------------------------- network


def check_standins(facts: Facts) -> list[Check]:
    """The audit's firewall probes connect from these namespaces; without them: "not tested"."""
    missing = [ns for ns in STANDINS if f"/run/netns/{ns}" not in facts.files]
    if missing:
        return [
            Check(
                "network",
                "stand-ins",
                "warn",
                f"network namespaces missing: {', '.join(missing)} "
                "(tenancy audit reports its firewall probes as not tested)",
                FIX_STANDINS,
            )
        ]
    return [Check("network", "stand-ins", "ok", "namespaces " + ", ".join(STANDINS))]


def check_time_service(facts: Facts) -> list[Check]:
    """A site without ntpServers gives its guests this host's time (udp/123, BASE-TIME-02)."""
    site = facts.site
    if site is None or site.ntp_servers or not site.local_hosts:
        return []
    if facts.udp_ports is None:
        return [Check("network", "guest time service", "info", "cannot read /proc/net/udp")]
    if 123 not in facts.udp_ports:
        return [
            Check(
                "network",
                "guest time service",
                "fail",
                f"site {site.name} names no ntpServers, so its guests take the time from "
                "this host, and nothing listens on udp/123 (BASE-TIME-02 fails in the audit)",
                FIX_HYPERVISOR,
            )
        ]
    return [Check("network", "guest time service", "ok", "udp/123 served for the guests")]


# --------------------------------------------------------------------------- all


CHECKS: tuple[Callable[[Facts], list[Check]], ...] = (
    check_environment,
    check_site,
    check_python,
    check_engine,
    check_tools,
    check_daemons,
    check_libvirt,
    check_state_dirs,
    check_acceleration,
    check_guard,
    check_image,
    check_state,
    check_memory,
    check_disk,
    check_standins,
    check_time_service,
)


def run_checks(facts: Facts) -> list[Check]:
    """Every check, in the order of the setup steps (so the first fix is the one to run first)."""
    return [c for check in CHECKS for c in check(facts)]


def failed(checks: Iterable[Check]) -> bool:
    return any(c.status == "fail" for c in checks)


def fixes(checks: Iterable[Check]) -> list[str]:
    """The distinct fix commands of failed and warned checks, first one first."""
    return list(
        dict.fromkeys(c.fix for c in checks if c.fix and c.status in ("fail", "warn")).keys()
    )


def counts(checks: Iterable[Check]) -> Mapping[str, int]:
    out = {"ok": 0, "warn": 0, "fail": 0, "info": 0}
    for c in checks:
        out[c.status] += 1
    return out


def _first_line(text: str) -> str:
    return next((line.strip() for line in text.splitlines() if line.strip()), "")
