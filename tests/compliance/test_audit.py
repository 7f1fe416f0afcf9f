"""Kernel audit (role tenancy_audit): BASE-AUD-01..07, MLPS-AUD-01..02.

Rules are checked in the kernel (``auditctl -l``, what is enforced now); one
item of BASE-AUD-01 checks that the rules on disk load the same set at boot.
"""

from __future__ import annotations

from typing import Any

from tenancy.compliance import control
from tenancy.compliance.applicability import HostInfo
from tenancy.compliance.audit_rules import Syscalls, Watch, audit_rule_missing, parse_audit_rules
from tenancy.compliance.expect import Between, OneOf, expect
from tenancy.compliance.facts import key_values, packages, read_file, run, units
from tenancy.compliance.items import Item

#: Architectures the syscall rules must cover (a 64-bit kernel also runs 32-bit code).
ARCHES = ("b64", "b32")


def _loaded(host: Any) -> list[Any]:
    out = run(host, "auditctl -l")
    assert out.rc == 0, f"auditctl -l failed: {out.stderr.strip()}"
    return parse_audit_rules(out.stdout)


def _status(host: Any) -> dict[str, str]:
    out = run(host, "auditctl -s")
    return key_values(out.stdout, sep=None)


def _check_rule(host: Any, item: Item) -> None:
    missing = audit_rule_missing(_loaded(host), item.expected)
    assert missing is None, missing


@control(
    "BASE-AUD-01",
    items=["package", "service-enabled", "service-running", "kernel-enabled", "rules-persistent"],
)
def auditd_running(host: Any, item: Item) -> None:
    if item.name == "package":
        expect("package auditd", packages(host, ["auditd"])["auditd"], "installed")
    elif item.name.startswith("service-"):
        unit = units(host, ["auditd.service"])["auditd.service"]
        if item.name == "service-enabled":
            expect("auditd.service UnitFileState", unit.get("UnitFileState"), "enabled")
        else:
            expect("auditd.service ActiveState", unit.get("ActiveState"), "active")
            status = _status(host)
            assert status.get("pid", "0") != "0", (
                "no audit daemon is registered (auditctl -s pid 0)"
            )
    elif item.name == "kernel-enabled":
        expect("auditctl -s enabled", _status(host).get("enabled"), OneOf(("1", "2")))
    else:
        out = run(host, "augenrules --check")
        assert out.rc == 0 and "no change" in (out.stdout + out.stderr).lower(), (
            f"audit.rules differs from rules.d: {out.stdout.strip()} {out.stderr.strip()}"
        )


@control(
    "BASE-AUD-02",
    items={
        "max_log_file": Between(8, None),
        "num_logs": Between(2, None),
        "max_log_file_action": OneOf(("ROTATE", "KEEP_LOGS")),
        "space_left_action": OneOf(("SYSLOG", "EMAIL", "EXEC", "SUSPEND", "SINGLE", "HALT")),
        "admin_space_left_action": OneOf(("SUSPEND", "SINGLE", "HALT")),
        "disk_full_action": OneOf(("SUSPEND", "SINGLE", "HALT")),
        "disk_error_action": OneOf(("SYSLOG", "SUSPEND", "SINGLE", "HALT")),
    },
)
def auditd_log_retention(host: Any, item: Item) -> None:
    conf = key_values(read_file(host, "/etc/audit/auditd.conf"))
    expect(f"auditd.conf {item.name}", conf.get(item.name), item.expected)


IDENTITY = [
    "/etc/group",
    "/etc/passwd",
    "/etc/gshadow",
    "/etc/shadow",
    "/etc/security/opasswd",
    "/etc/nsswitch.conf",
    "/etc/pam.conf",
    "/etc/pam.d",
]


@control("BASE-AUD-03", items={p: Watch(p, "wa", "BASE-AUD-03") for p in IDENTITY})
def audit_rules_identity(host: Any, item: Item) -> None:
    _check_rule(host, item)


@control(
    "BASE-AUD-04",
    items={
        "/etc/sudoers": Watch("/etc/sudoers", "wa", "BASE-AUD-04"),
        "/etc/sudoers.d": Watch("/etc/sudoers.d", "wa", "BASE-AUD-04"),
        "sudo-log": None,
        **{
            f"execve-as-other-user-{arch}": Syscalls(arch, ("execve",), "BASE-AUD-04", "euid!=uid")
            for arch in ARCHES
        },
    },
)
def audit_rules_sudo(host: Any, item: Item, info: HostInfo) -> None:
    if item.name == "sudo-log":
        path = str(info.var("tenancy_accounts_sudo_log_file", "/var/log/sudo.log"))
        item = Item(item.control, item.name, Watch(path, "wa", "BASE-AUD-04"))
    _check_rule(host, item)


#: setuid/setgid programs of the Debian 12 image; the last item covers any others found.
PRIVILEGED = [
    "/usr/bin/chage",
    "/usr/bin/chfn",
    "/usr/bin/chsh",
    "/usr/bin/expiry",
    "/usr/bin/gpasswd",
    "/usr/bin/mount",
    "/usr/bin/newgrp",
    "/usr/bin/passwd",
    "/usr/bin/su",
    "/usr/bin/sudo",
    "/usr/bin/umount",
    "/usr/lib/openssh/ssh-keysign",
    "/usr/sbin/unix_chkpwd",
]


def _privileged_programs(host: Any) -> list[str]:
    out = run(host, "find / -xdev -type f -perm /6000")
    return sorted(out.stdout.split())


@control("BASE-AUD-05", items=[*PRIVILEGED, "every-setuid-setgid-program"])
def audit_rules_privileged_commands(host: Any, item: Item) -> None:
    present = _privileged_programs(host)
    rules = _loaded(host)
    if item.name != "every-setuid-setgid-program":
        if item.name not in present:
            return  # not installed (or no longer setuid): nothing to audit
        missing = audit_rule_missing(rules, Watch(item.name, "x", "BASE-AUD-05"))
        assert missing is None, missing
        return
    unaudited = [p for p in present if audit_rule_missing(rules, Watch(p, "x", "BASE-AUD-05"))]
    assert not unaudited, f"setuid/setgid programs without an audit rule: {', '.join(unaudited)}"


@control(
    "BASE-AUD-06",
    items={
        **{
            f"time-syscalls-{arch}": Syscalls(
                arch, ("adjtimex", "settimeofday", "clock_settime"), "BASE-AUD-06"
            )
            for arch in ARCHES
        },
        "/etc/localtime": Watch("/etc/localtime", "wa", "BASE-AUD-06"),
    },
)
def audit_rules_time_change(host: Any, item: Item) -> None:
    _check_rule(host, item)


LOGINS = [
    "/var/log/lastlog",
    "/var/run/faillock",
    "/var/run/utmp",
    "/var/log/wtmp",
    "/var/log/btmp",
]


@control("BASE-AUD-07", items={p: Watch(p, "wa", "BASE-AUD-07") for p in LOGINS})
def audit_rules_logins(host: Any, item: Item) -> None:
    _check_rule(host, item)


EXTENDED = {
    "perm-mod": ("chmod", "fchmod", "fchmodat"),
    "owner-mod": ("chown", "fchown", "lchown", "fchownat"),
    "xattr-mod": (
        "setxattr",
        "lsetxattr",
        "fsetxattr",
        "removexattr",
        "lremovexattr",
        "fremovexattr",
    ),
    "mounts": ("mount",),
    "deletions": ("unlink", "unlinkat", "rename", "renameat"),
    "kernel-modules": ("init_module", "finit_module", "delete_module"),
}


@control(
    "MLPS-AUD-01",
    items={
        **{
            f"{name}-{arch}": Syscalls(arch, calls, "MLPS-AUD-01")
            for name, calls in EXTENDED.items()
            for arch in ARCHES
        },
        "kmod": Watch("/usr/bin/kmod", "x", "MLPS-AUD-01"),
    },
)
def audit_rules_extended(host: Any, item: Item) -> None:
    _check_rule(host, item)


@control("MLPS-AUD-02", items=["kernel-immutable", "persistent"])
def audit_rules_immutable(host: Any, item: Item) -> None:
    if item.name == "kernel-immutable":
        expect("auditctl -s enabled", _status(host).get("enabled"), "2")
        return
    text = read_file(host, "/etc/audit/audit.rules") or ""
    rules = [line.strip() for line in text.splitlines() if line.strip()[:1] not in ("", "#")]
    last = rules[-1] if rules else None
    assert last == "-e 2", f"/etc/audit/audit.rules does not end with -e 2 (last rule: {last!r})"
