"""Checks of libvirt itself: its daemons, its answer on qemu:///system, its state directories.

Each of these turns into an opaque libvirt error in ``tenancy up``; here
they get a cause and ``make hypervisor-up`` as the fix.
"""

from __future__ import annotations

from tenancy.doctor.common import FIX_HYPERVISOR, QEMU_USER, first_line
from tenancy.doctor.hypervisor import KVM
from tenancy.doctor.model import Check, DaemonFact, Facts, Status

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
SLOW_LIBVIRT_SECONDS = 3.0


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
                f"not answering: {first_line(result.stderr) or f'exit {result.returncode}'}",
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
