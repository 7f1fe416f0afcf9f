"""Accounts, sudo and password policy (role tenancy_accounts): BASE-ACC-01..06, MLPS-ACC-01..04."""

from __future__ import annotations

import re
from typing import Any

from tenancy.compliance import control
from tenancy.compliance.applicability import HostInfo
from tenancy.compliance.expect import Between, OneOf, expect
from tenancy.compliance.facts import active_lines, key_values, packages, read_file, run, stat
from tenancy.compliance.items import Item

SUDOERS_DROPIN = "/etc/sudoers.d/50-tenancy"


def _sudoers(host: Any) -> list[str]:
    """Active lines of /etc/sudoers and its drop-ins, as root."""
    out = run(host, "cat /etc/sudoers /etc/sudoers.d/*")
    return active_lines(out.stdout)


@control("BASE-ACC-01", items=["sudo-installed", "ops-group", "dropin", "grant", "visudo-valid"])
def sudoers_ops_group(host: Any, item: Item, info: HostInfo) -> None:
    group = str(info.var("tenancy_accounts_ops_group", "ops"))
    if item.name == "sudo-installed":
        expect("package sudo", packages(host, ["sudo"])["sudo"], "installed")
    elif item.name == "ops-group":
        out = run(host, f"getent group {group}", sudo=False)
        assert out.rc == 0, f"group {group} does not exist"
    elif item.name == "dropin":
        found = stat(host, SUDOERS_DROPIN)[SUDOERS_DROPIN]
        assert found is not None, f"{SUDOERS_DROPIN} does not exist"
        assert (found.owner, found.group, found.mode) == ("root", "root", 0o440), (
            f"{SUDOERS_DROPIN} is {found.owner}:{found.group} {found.mode:04o}, "
            "expected root:root 0440"
        )
    elif item.name == "grant":
        text = read_file(host, SUDOERS_DROPIN) or ""
        grant = rf"^%{re.escape(group)}\s+ALL\s*=\s*\(ALL(:ALL)?\)\s+(NOPASSWD:\s*)?ALL$"
        pattern = re.compile(grant)
        assert any(pattern.match(line) for line in active_lines(text)), (
            f"{SUDOERS_DROPIN} does not grant %{group} ALL=(ALL:ALL) ALL"
        )
    else:
        out = run(host, "visudo -c")
        assert out.rc == 0, f"visudo -c failed: {out.stdout.strip()} {out.stderr.strip()}"


@control("BASE-ACC-02", items=["use_pty", "logfile"])
def sudo_use_pty_and_logfile(host: Any, item: Item, info: HostInfo) -> None:
    defaults = [line for line in _sudoers(host) if line.startswith("Defaults")]
    if item.name == "use_pty":
        assert any(re.search(r"\buse_pty\b", d) and "!use_pty" not in d for d in defaults), (
            "sudo does not run commands in a pseudo-terminal (Defaults use_pty)"
        )
        assert not any("!use_pty" in d for d in defaults), "a sudoers line disables use_pty"
    else:
        wanted = str(info.var("tenancy_accounts_sudo_log_file", "/var/log/sudo.log"))
        found = [m.group(1) for d in defaults if (m := re.search(r'logfile="?([^",\s]+)', d))]
        assert found, "sudo does not log to its own file (Defaults logfile=...)"
        expect("sudo logfile", found[-1], wanted)


@control("BASE-ACC-03", items=["shadow"])
def no_empty_passwords(host: Any, item: Item) -> None:
    # prints account names only, never a hash
    out = run(host, "awk -F: '($2 == \"\") {print $1}' /etc/shadow")
    assert out.rc == 0, f"cannot read /etc/shadow: {out.stderr.strip()}"
    empty = out.stdout.split()
    assert not empty, f"accounts with an empty password: {', '.join(empty)}"


@control(
    "BASE-ACC-04",
    items={
        "package": "libpam-pwquality",
        "pam": "pam_pwquality.so",
        "minlen": Between(14, None),
        "minclass": Between(3, 4),
        "difok": Between(2, None),
        "maxrepeat": Between(1, 3),
        "maxsequence": Between(1, 3),
        "dictcheck": Between(1, None),
        "enforce_for_root": "",
    },
)
def pwquality_policy(host: Any, item: Item) -> None:
    if item.name == "package":
        status = packages(host, [item.expected])[item.expected]
        expect("package libpam-pwquality", status, "installed")
        return
    if item.name == "pam":
        lines = active_lines(read_file(host, "/etc/pam.d/common-password"))
        assert any(line.startswith("password") and item.expected in line for line in lines), (
            "pam_pwquality is not in /etc/pam.d/common-password"
        )
        return
    settings = key_values(read_file(host, "/etc/security/pwquality.conf"))
    for path in sorted(run(host, "ls /etc/security/pwquality.conf.d/ 2>/dev/null").stdout.split()):
        settings.update(key_values(read_file(host, f"/etc/security/pwquality.conf.d/{path}")))
    assert item.name in settings, f"pwquality {item.name} is not set"
    if item.name == "enforce_for_root":
        return
    expect(f"pwquality {item.name}", settings[item.name], item.expected)


@control(
    "BASE-ACC-05",
    items={
        "PASS_MAX_DAYS": Between(1, 90),
        "PASS_MIN_DAYS": Between(1, None),
        "PASS_WARN_AGE": Between(7, None),
        "ENCRYPT_METHOD": OneOf(("SHA512", "YESCRYPT")),
    },
)
def login_defs_password_ageing(host: Any, item: Item) -> None:
    values = key_values(read_file(host, "/etc/login.defs"), sep=None)
    expect(f"login.defs {item.name}", values.get(item.name), item.expected)


def _umask_ok(value: str | None) -> bool:
    """027 or stricter: group may not write, others get nothing."""
    try:
        mask = int(str(value), 8)
    except (TypeError, ValueError):
        return False
    return mask & 0o027 == 0o027


@control("BASE-ACC-06", items=["login.defs", "login-shell"])
def default_umask(host: Any, item: Item, info: HostInfo) -> None:
    if item.name == "login.defs":
        value = key_values(read_file(host, "/etc/login.defs"), sep=None).get("UMASK")
        assert _umask_ok(value), f"login.defs UMASK is {value!r}, expected 027 or stricter"
        return
    # what a login shell of the connecting (operations) account really gets
    out = run(host, "bash -lc umask", sudo=False)
    assert _umask_ok(out.stdout.strip()), (
        f"a login shell gets umask {out.stdout.strip()!r}, expected 027 or stricter"
    )


@control(
    "MLPS-ACC-01",
    items={
        "deny": Between(1, 5),
        "unlock_time": Between(900, None),
        "fail_interval": Between(900, None),
        "pam-auth-preauth": "pam_faillock.so preauth",
        "pam-auth-authfail": "pam_faillock.so authfail",
        "pam-account": "pam_faillock.so",
    },
)
def faillock_policy(host: Any, item: Item) -> None:
    if item.name.startswith("pam-"):
        stack = "account" if item.name == "pam-account" else "auth"
        lines = active_lines(read_file(host, f"/etc/pam.d/common-{stack}"))
        assert any(item.expected in line for line in lines), (
            f"/etc/pam.d/common-{stack} has no {item.expected}"
        )
        return
    settings = key_values(read_file(host, "/etc/security/faillock.conf"))
    value = settings.get(item.name)
    if item.name == "unlock_time" and value == "0":
        return  # 0: locked until an administrator unlocks it
    expect(f"faillock {item.name}", value, item.expected)


@control("MLPS-ACC-02", items={"remember": Between(5, None)})
def pwhistory_policy(host: Any, item: Item) -> None:
    lines = [
        line
        for line in active_lines(read_file(host, "/etc/pam.d/common-password"))
        if "pam_pwhistory.so" in line
    ]
    assert lines, "pam_pwhistory is not in /etc/pam.d/common-password"
    found = re.search(r"\bremember=(\d+)", lines[0])
    expect("pam_pwhistory remember", found.group(1) if found else None, item.expected)


@control("MLPS-ACC-03", items={"TMOUT": Between(1, 900), "readonly": "TMOUT"})
def shell_timeout(host: Any, item: Item) -> None:
    # a login shell of the connecting account: what a real session gets
    out = run(host, "bash -lc 'echo \"TMOUT=$TMOUT\"; readonly -p'", sudo=False)
    if item.name == "TMOUT":
        value = out.stdout.splitlines()[0].partition("=")[2] if out.stdout else ""
        expect("login shell TMOUT", value, item.expected)
    else:
        assert re.search(r"declare -[a-z]*r[a-z]* TMOUT=", out.stdout), (
            "TMOUT is not read-only in a login shell"
        )


@control("MLPS-ACC-04", items=["pam_wheel", "group-empty"])
def su_restricted(host: Any, item: Item, info: HostInfo) -> None:
    group = str(info.var("tenancy_accounts_su_group", "sugroup"))
    if item.name == "pam_wheel":
        lines = active_lines(read_file(host, "/etc/pam.d/su"))
        wanted = re.compile(rf"^auth\s+required\s+pam_wheel\.so\b.*\buse_uid\b.*\bgroup={group}\b")
        assert any(wanted.match(line) for line in lines), (
            f"/etc/pam.d/su does not restrict su to {group} (pam_wheel.so use_uid group={group})"
        )
        return
    out = run(host, f"getent group {group}", sudo=False)
    assert out.rc == 0, f"group {group} does not exist"
    members = out.stdout.strip().split(":")[3] if out.stdout.count(":") >= 3 else ""
    assert not members, f"group {group} must stay empty, has {members}"
