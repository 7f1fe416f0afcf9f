"""SSH server (role tenancy_ssh): BASE-SSH-01..09, MLPS-SSH-01.

Settings are read from the effective configuration (``sshd -T`` as root), so
a check proves what sshd really does, whichever file a value comes from.
"""

from __future__ import annotations

import shlex
from typing import Any

from tenancy.compliance import control
from tenancy.compliance.applicability import HostInfo
from tenancy.compliance.expect import Between, OneOf, SubsetOf, expect
from tenancy.compliance.facts import active_lines, read_file, run, sshd_config, stat, units
from tenancy.compliance.items import Item

DROPIN = "/etc/ssh/sshd_config.d/05-tenancy-hardening.conf"

#: Strong algorithms (CIS Debian 12 5.1.6, 5.1.12, 5.1.15): anything else fails.
CIPHERS = (
    "chacha20-poly1305@openssh.com",
    "aes256-gcm@openssh.com",
    "aes128-gcm@openssh.com",
    "aes256-ctr",
    "aes192-ctr",
    "aes128-ctr",
)
MACS = (
    "hmac-sha2-512-etm@openssh.com",
    "hmac-sha2-256-etm@openssh.com",
    "umac-128-etm@openssh.com",
)
KEX = (
    "sntrup761x25519-sha512@openssh.com",
    "curve25519-sha256",
    "curve25519-sha256@libssh.org",
    "diffie-hellman-group16-sha512",
    "diffie-hellman-group18-sha512",
    "diffie-hellman-group-exchange-sha256",
)


def _private_root_file(host: Any, path: str) -> None:
    found = stat(host, DROPIN, "/etc/ssh/sshd_config")[path]
    assert found is not None, f"{path} does not exist"
    assert (found.owner, found.group) == ("root", "root"), (
        f"{path} is owned by {found.owner}:{found.group}, expected root:root"
    )
    assert found.mode & 0o077 == 0, f"{path} has mode {found.mode:04o}, expected 0600 or stricter"


@control(
    "BASE-SSH-01",
    items={
        "managed-dropin": DROPIN,
        "sshd_config-private": "/etc/ssh/sshd_config",
        "loglevel": "VERBOSE",
        "usepam": "yes",
        "service": "ssh.service",
    },
)
def sshd_managed_config(host: Any, item: Item) -> None:
    if item.name in ("managed-dropin", "sshd_config-private"):
        _private_root_file(host, item.expected)
        if item.name == "managed-dropin":
            text = read_file(host, DROPIN) or ""
            assert "Ansible managed" in text or "managed by Ansible" in text.lower(), (
                f"{DROPIN} is not the file the baseline manages"
            )
    elif item.name == "service":
        unit = units(host, [item.expected])[item.expected]
        expect("ssh.service ActiveState", unit.get("ActiveState"), "active")
        expect("ssh.service UnitFileState", unit.get("UnitFileState"), "enabled")
    else:
        expect(f"sshd {item.name}", sshd_config(host).get(item.name), item.expected)


@control(
    "BASE-SSH-02",
    items={
        "pubkeyauthentication": "yes",
        "passwordauthentication": "no",
        "kbdinteractiveauthentication": "no",
        "permitemptypasswords": "no",
        "hostbasedauthentication": "no",
        "ignorerhosts": "yes",
        "gssapiauthentication": "no",
    },
)
def sshd_key_only_authentication(host: Any, item: Item) -> None:
    expect(f"sshd {item.name}", sshd_config(host).get(item.name), item.expected)


@control("BASE-SSH-03", items={"permitrootlogin": "no"})
def sshd_permit_root_login(host: Any, item: Item) -> None:
    expect(f"sshd {item.name}", sshd_config(host).get(item.name), item.expected)


@control(
    "BASE-SSH-04",
    items={"ciphers": SubsetOf(CIPHERS), "macs": SubsetOf(MACS), "kexalgorithms": SubsetOf(KEX)},
)
def sshd_strong_crypto(host: Any, item: Item) -> None:
    expect(f"sshd {item.name}", sshd_config(host).get(item.name), item.expected)


@control(
    "BASE-SSH-05",
    items={
        "clientaliveinterval": Between(1, 300),
        "clientalivecountmax": Between(1, 3),
        "logingracetime": Between(1, 60),
    },
)
def sshd_idle_timeout(host: Any, item: Item) -> None:
    expect(f"sshd {item.name}", sshd_config(host).get(item.name), item.expected)


def _startups_ok(value: str | None) -> bool:
    """MaxStartups start:rate:full no looser than 10:30:60 (CIS 5.1.18)."""
    parts = (value or "").split(":")
    if len(parts) != 3 or not all(p.isdigit() for p in parts):
        return False
    start, rate, full = (int(p) for p in parts)
    return 0 < start <= 10 and rate >= 30 and 0 < full <= 60


@control(
    "BASE-SSH-06",
    items={"maxauthtries": Between(1, 4), "maxsessions": Between(1, 10), "maxstartups": "10:30:60"},
)
def sshd_auth_limits(host: Any, item: Item) -> None:
    value = sshd_config(host).get(item.name)
    if item.name == "maxstartups":
        assert _startups_ok(value), f"sshd maxstartups is {value!r}, expected 10:30:60 or stricter"
    else:
        expect(f"sshd {item.name}", value, item.expected)


#: What a banner must not reveal (CIS 1.6.3): OS name, release, escapes that print them.
BANNER_LEAKS = ("debian", "ubuntu", "linux", "bookworm", r"\m", r"\r", r"\s", r"\v")


@control("BASE-SSH-07", items=["banner", "issue.net-warns", "issue.net-no-os", "issue.net-perms"])
def sshd_banner(host: Any, item: Item) -> None:
    if item.name == "banner":
        expect("sshd banner", sshd_config(host).get("banner"), "/etc/issue.net")
        return
    if item.name == "issue.net-perms":
        found = stat(host, "/etc/issue.net")["/etc/issue.net"]
        assert found is not None, "/etc/issue.net does not exist"
        assert (found.owner, found.group) == ("root", "root"), f"owner {found.owner}:{found.group}"
        assert found.mode & 0o133 == 0, f"/etc/issue.net has mode {found.mode:04o}, expected 0644"
        return
    text = read_file(host, "/etc/issue.net") or ""
    body = " ".join(line for line in text.splitlines() if not line.startswith("#"))
    if item.name == "issue.net-warns":
        assert "authori" in body.lower(), f"/etc/issue.net does not warn: {body!r}"
    else:
        leaks = [w for w in BANNER_LEAKS if w in body.lower()]
        assert not leaks, f"/etc/issue.net reveals the system: {leaks}"


@control(
    "BASE-SSH-08",
    items={
        "disableforwarding": "yes",
        "x11forwarding": "no",
        "allowagentforwarding": "no",
        "allowtcpforwarding": "no",
        "permittunnel": "no",
        "permituserenvironment": "no",
    },
)
def sshd_forwarding_disabled(host: Any, item: Item) -> None:
    expect(f"sshd {item.name}", sshd_config(host).get(item.name), item.expected)


@control("MLPS-SSH-01", items=["allowgroups"])
def sshd_allow_groups(host: Any, item: Item, info: HostInfo) -> None:
    allowed = info.var("tenancy_ssh_allow_groups") or ["ops"]
    value = sshd_config(host).get("allowgroups")
    assert value, "sshd allowgroups is not set: every account with a key may log in"
    expect("sshd allowgroups", value, OneOf((" ".join(allowed),)))


def _key_id(line: str) -> tuple[str, str] | None:
    """(type, base64 blob) of an authorized_keys line, options and comment ignored."""
    fields = line.split()
    for i, field in enumerate(fields[:-1]):
        if field.startswith(("ssh-", "ecdsa-", "sk-")):
            return field, fields[i + 1]
    return None


@control(
    "BASE-SSH-09",
    items=["site-keys-known", "authorized-keys", "keys-file-private", "one-keys-file"],
)
def ops_authorized_keys(host: Any, item: Item, info: HostInfo) -> None:
    user = str(info.var("tenancy_site_ops_user") or "")
    wanted = [str(k) for k in info.var("tenancy_site_ops_ssh_keys") or []]
    if item.name == "site-keys-known":
        assert user, "the inventory names no operations account (tenancy_site_ops_user)"
        assert wanted, "the inventory names no operator keys (tenancy_site_ops_ssh_keys)"
        return
    if item.name == "one-keys-file":
        expect(
            "sshd authorizedkeysfile",
            sshd_config(host).get("authorizedkeysfile"),
            ".ssh/authorized_keys",
        )
        return
    home = run(host, f"getent passwd {shlex.quote(user)} | cut -d: -f6").stdout.strip()
    assert home, f"account {user!r} does not exist"
    path = f"{home}/.ssh/authorized_keys"
    if item.name == "keys-file-private":
        found = stat(host, path)[path]
        assert found is not None, f"{path} does not exist"
        assert found.owner == user, f"{path} is owned by {found.owner}, expected {user}"
        assert found.mode & 0o077 == 0, f"{path} has mode {found.mode:04o}, expected 0600"
        return
    text = read_file(host, path) or ""
    present = {k for k in map(_key_id, active_lines(text)) if k is not None}
    expected = {k for k in map(_key_id, wanted) if k is not None}
    extra = sorted(f"{t} ...{b[-12:]}" for t, b in present - expected)
    missing = sorted(f"{t} ...{b[-12:]}" for t, b in expected - present)
    assert not extra, f"{path} holds keys the site does not name: {extra}"
    assert not missing, f"{path} lacks the site's keys: {missing}"
