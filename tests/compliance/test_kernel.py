"""Kernel parameters and modules (role tenancy_kernel): BASE-KRN-01..03.

Each kernel parameter is checked twice in one item: the running value
(``sysctl``) and the value ``/etc/sysctl.d/60-tenancy.conf`` sets at boot.
"""

from __future__ import annotations

from typing import Any

from tenancy.compliance import control
from tenancy.compliance.expect import Between, Equals, Expect, expect
from tenancy.compliance.facts import key_values, read_file, run, sysctls
from tenancy.compliance.items import Item

SYSCTL_FILE = "/etc/sysctl.d/60-tenancy.conf"

NETWORK: dict[str, Expect] = {
    key: Equals(value)
    for key, value in {
        "net.ipv4.ip_forward": 0,
        "net.ipv6.conf.all.forwarding": 0,
        "net.ipv4.conf.all.send_redirects": 0,
        "net.ipv4.conf.default.send_redirects": 0,
        "net.ipv4.conf.all.accept_redirects": 0,
        "net.ipv4.conf.default.accept_redirects": 0,
        "net.ipv6.conf.all.accept_redirects": 0,
        "net.ipv6.conf.default.accept_redirects": 0,
        "net.ipv4.conf.all.secure_redirects": 0,
        "net.ipv4.conf.default.secure_redirects": 0,
        "net.ipv4.conf.all.accept_source_route": 0,
        "net.ipv4.conf.default.accept_source_route": 0,
        "net.ipv6.conf.all.accept_source_route": 0,
        "net.ipv6.conf.default.accept_source_route": 0,
        "net.ipv6.conf.all.accept_ra": 0,
        "net.ipv6.conf.default.accept_ra": 0,
        "net.ipv4.conf.all.rp_filter": 1,
        "net.ipv4.conf.default.rp_filter": 1,
        "net.ipv4.icmp_echo_ignore_broadcasts": 1,
        "net.ipv4.icmp_ignore_bogus_error_responses": 1,
        "net.ipv4.conf.all.log_martians": 1,
        "net.ipv4.conf.default.log_martians": 1,
        "net.ipv4.tcp_syncookies": 1,
    }.items()
}

SELF_PROTECTION: dict[str, Expect] = {
    "kernel.randomize_va_space": Equals(2),
    "kernel.yama.ptrace_scope": Between(1, 3),
    "kernel.kptr_restrict": Between(1, 2),
    "kernel.dmesg_restrict": Equals(1),
    "fs.suid_dumpable": Equals(0),
}

MODULES = ("cramfs", "freevxfs", "hfs", "hfsplus", "jffs2", "udf", "dccp", "tipc", "rds", "sctp")


def _check_sysctl(host: Any, item: Item, keys: list[str]) -> None:
    running = sysctls(host, keys)
    assert item.name in running, f"kernel parameter {item.name} does not exist on this kernel"
    expect(f"running {item.name}", running[item.name], item.expected)
    at_boot = key_values(read_file(host, SYSCTL_FILE)).get(item.name)
    expect(f"{item.name} in {SYSCTL_FILE}", at_boot, item.expected)


@control("BASE-KRN-01", items=NETWORK)
def sysctl_network_hardening(host: Any, item: Item) -> None:
    _check_sysctl(host, item, list(NETWORK))


@control("BASE-KRN-02", items=SELF_PROTECTION)
def sysctl_kernel_self_protection(host: Any, item: Item) -> None:
    _check_sysctl(host, item, list(SELF_PROTECTION))


@control("BASE-KRN-03", items=MODULES)
def modprobe_blacklist(host: Any, item: Item) -> None:
    # one command for all modules: their modprobe configuration and the loaded list
    pattern = "|".join(MODULES)
    out = run(
        host,
        f"modprobe --showconfig | grep -E '^(install|blacklist) ({pattern})( |$)'; "
        "echo '-- loaded:'; cut -d' ' -f1 /proc/modules",
    )
    config, _, loaded = out.stdout.partition("-- loaded:")
    lines = {" ".join(line.split()) for line in config.splitlines()}
    module = item.name
    assert any(
        line.startswith(f"install {module} ") and line.split()[-1] in ("/bin/false", "/bin/true")
        for line in lines
    ), f"modprobe would load {module}: no 'install {module} /bin/false'"
    assert f"blacklist {module}" in lines, f"{module} is not blacklisted"
    assert module not in loaded.split(), f"module {module} is loaded"
