"""The compliance suite and the catalogue agree, and the suite's parsers read real output.

- every control of policies/catalogue.yaml has its check: a function of that
  name in the installed suite (tests/compliance in a checkout), marked with the
  control's ID, collected by pytest with the ID in every test ID, under the
  name the catalogue gives it; and no check exists without its control;
- the helpers that read ``auditctl -l``, ``nft -j`` and the inventory's flows
  (:mod:`tenancy.compliance`) are exercised on captured output.

No host is contacted: collection runs against testinfra's local backend.
"""

from __future__ import annotations

import importlib
import inspect
import os
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tenancy.compliance.applicability import HostInfo
from tenancy.compliance.audit_rules import Syscalls, Watch, audit_rule_missing, parse_audit_rules
from tenancy.compliance.expect import Between, Equals, OneOf, SubsetOf, expect
from tenancy.compliance.network import cidr
from tenancy.compliance.nft import parse_nft
from tenancy.compliance.plugin import host_scope
from tenancy.compliance.probes import parse_standins, plan_probes
from tenancy.contract.host_vars import parse_hosts
from tenancy.policy.catalogue_load import load_catalogue
from tenancy.project import shipped

REPO = Path(__file__).resolve().parents[2]
#: The checks where the installed package carries them (tests/compliance in a checkout).
SUITE = shipped("compliance")
CATALOGUE = load_catalogue(REPO / "policies" / "catalogue.yaml")


@pytest.fixture(scope="module")
def modules(pytestconfig: pytest.Config) -> dict[str, ModuleType]:
    """The suite's modules, imported (their markers registered as the plugin does)."""
    pytestconfig.addinivalue_line("markers", "control(id): catalogue control of a check")
    pytestconfig.addinivalue_line("markers", "items(provider): items from the inventory")
    return {
        path.name: importlib.import_module(f"tenancy._resources.compliance.{path.stem}")
        for path in sorted(SUITE.glob("test_*.py"))
    }


def _marked_checks(modules: dict[str, ModuleType]) -> dict[str, str]:
    """``test_x.py::function`` (as the catalogue says) -> control ID, for every marked function."""
    found: dict[str, str] = {}
    for filename, module in modules.items():
        for name, obj in vars(module).items():
            if not inspect.isfunction(obj) or obj.__module__ != module.__name__:
                continue
            marks = [m for m in getattr(obj, "pytestmark", []) if m.name == "control"]
            if marks:
                assert len(marks) == 1, f"{filename}::{name} has {len(marks)} control markers"
                found[f"{filename}::{name}"] = str(marks[0].args[0])
    return found


def test_every_control_has_its_check_and_every_check_its_control(
    modules: dict[str, ModuleType],
) -> None:
    expected = {c.check: c.id for c in CATALOGUE.controls}
    marked = _marked_checks(modules)
    missing = sorted(f"{cid}: {check}" for check, cid in expected.items() if check not in marked)
    unknown = sorted(f"{check} ({cid})" for check, cid in marked.items() if check not in expected)
    wrong = sorted(
        f"{check}: marked {marked[check]}, catalogue says {cid}"
        for check, cid in expected.items()
        if check in marked and marked[check] != cid
    )
    assert not missing, f"controls without a check function: {missing}"
    assert not unknown, f"checks that no control names: {unknown}"
    assert not wrong, f"checks marked with another control: {wrong}"


def test_one_module_per_domain(modules: dict[str, ModuleType]) -> None:
    domains = {"ssh", "accounts", "kernel", "audit", "logging", "time", "updates", "services"}
    domains.add("firewall")
    assert {f"test_{d}.py" for d in domains} == set(modules)
    for control in CATALOGUE.controls:
        assert control.check.startswith("test_"), control.check


def test_items_of_a_check_carry_its_control(modules: dict[str, ModuleType]) -> None:
    marked = _marked_checks(modules)
    for check, control in marked.items():
        filename, _, name = check.partition("::")
        function = getattr(modules[filename], name)
        for mark in getattr(function, "pytestmark", []):
            if mark.name == "parametrize" and mark.args[0] == "item":
                controls = {item.control for item in mark.args[1]}
                assert controls == {control}, f"{check}: items of {controls}, marker {control}"


@pytest.fixture(scope="module")
def collected(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """``pytest --collect-only`` of the installed suite as ``tenancy audit`` runs it: from
    another directory, rooted at the suite, no ini file (testinfra's local backend: no
    host contacted)."""
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            str(SUITE),
            f"--rootdir={SUITE}",
            "-c",
            os.devnull,
            "--collect-only",
            "-q",
            "-p",
            "no:cacheprovider",
        ],
        cwd=tmp_path_factory.mktemp("elsewhere"),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert out.returncode == 0, f"collection failed:\n{out.stdout}\n{out.stderr}"
    return [line for line in out.stdout.splitlines() if "::" in line]


def test_pytest_collects_every_check_with_the_control_in_each_test_id(
    collected: list[str],
) -> None:
    by_check: dict[str, list[str]] = {}
    for nodeid in collected:
        check = nodeid.split("[")[0]
        by_check.setdefault(check, []).append(nodeid)
    for control in CATALOGUE.controls:
        ids = by_check.get(control.check, [])
        assert ids, f"pytest collects nothing for {control.id} ({control.check})"
        for nodeid in ids:
            assert f"-{control.id}-" in nodeid, f"{nodeid} does not name {control.id}"
    assert set(by_check) == {c.check for c in CATALOGUE.controls}


def test_checks_are_parametrized_per_item(collected: list[str]) -> None:
    """One test per setting/rule: the big checks are not one test with a loop."""
    counts: dict[str, int] = {}
    for nodeid in collected:
        counts[nodeid.split("[")[0]] = counts.get(nodeid.split("[")[0], 0) + 1
    assert counts["test_kernel.py::sysctl_network_hardening"] >= 20
    assert counts["test_ssh.py::sshd_key_only_authentication"] == 7
    assert counts["test_audit.py::audit_rules_identity"] == 8


# -- the parsers, on captured output -------------------------------------------------------

AUDITCTL = """\
-w /etc/group -p wa -k BASE-AUD-03
-w /etc/pam.d/ -p wa -k BASE-AUD-03
-a always,exit -F arch=b64 -S execve -C uid!=euid -F auid!=-1 -F key=BASE-AUD-04
-a always,exit -S all -F path=/usr/bin/sudo -F perm=x -F auid>=1000 -F auid!=-1 -F key=BASE-AUD-05
-a always,exit -F arch=b64 -S adjtimex,settimeofday -F key=BASE-AUD-06
-a always,exit -F arch=b64 -S clock_settime -F key=BASE-AUD-06
"""


def test_audit_rules_are_matched_by_meaning_not_text() -> None:
    rules = parse_audit_rules(AUDITCTL)
    assert audit_rule_missing(rules, Watch("/etc/group", "wa", "BASE-AUD-03")) is None
    assert audit_rule_missing(rules, Watch("/etc/pam.d", "wa", "BASE-AUD-03")) is None
    assert audit_rule_missing(rules, Watch("/usr/bin/sudo", "x", "BASE-AUD-05")) is None
    execve = Syscalls("b64", ("execve",), "BASE-AUD-04", "euid!=uid")
    assert audit_rule_missing(rules, execve) is None
    # spread over two rules still counts; a missing arch or syscall does not
    time_b64 = Syscalls("b64", ("adjtimex", "settimeofday", "clock_settime"), "BASE-AUD-06")
    assert audit_rule_missing(rules, time_b64) is None
    time_b32 = Syscalls("b32", ("adjtimex",), "BASE-AUD-06")
    assert "adjtimex" in str(audit_rule_missing(rules, time_b32))
    wrong_key = Watch("/etc/group", "wa", "BASE-AUD-99")
    assert audit_rule_missing(rules, wrong_key) is not None
    read_only = Watch("/etc/shadow", "wa", "BASE-AUD-03")
    assert (
        audit_rule_missing(rules, read_only) == "no loaded rule -w /etc/shadow -p wa -k BASE-AUD-03"
    )


def _rule(chain: str, *exprs: dict[str, Any]) -> dict[str, Any]:
    return {"rule": {"family": "inet", "table": "tenancy", "chain": chain, "expr": list(exprs)}}


def _match(left: dict[str, Any], right: Any, op: str = "==") -> dict[str, Any]:
    return {"match": {"op": op, "left": left, "right": right}}


def _payload(proto: str, field: str) -> dict[str, Any]:
    return {"payload": {"protocol": proto, "field": field}}


NFT = {
    "nftables": [
        {"metainfo": {"version": "1.0.6"}},
        {"table": {"family": "inet", "name": "tenancy"}},
        {"chain": {"family": "inet", "table": "tenancy", "name": "input", "policy": "drop"}},
        {"chain": {"family": "inet", "table": "tenancy", "name": "output", "policy": "drop"}},
        _rule(
            "input",
            _match({"ct": {"key": "state"}}, ["established", "related"], "in"),
            {"accept": None},
        ),
        _rule("input", _match({"meta": {"key": "iif"}}, "lo"), {"accept": None}),
        _rule(
            "input",
            _match(_payload("ip", "saddr"), {"prefix": {"addr": "10.30.0.1", "len": 32}}),
            _match(_payload("tcp", "dport"), 22),
            {"accept": None},
        ),
        _rule(
            "input",
            _match(_payload("ip", "saddr"), {"prefix": {"addr": "10.255.1.0", "len": 24}}),
            _match(_payload("tcp", "dport"), 443),
            {"accept": None},
        ),
        _rule("input", _match(_payload("tcp", "dport"), {"range": [8000, 8100]}), {"accept": None}),
        _rule("input", {"limit": {"rate": 10, "per": "minute"}}, {"log": {"prefix": "drop"}}),
        _rule(
            "output",
            _match(_payload("ip", "daddr"), "10.255.3.7"),
            _match(_payload("tcp", "dport"), 443),
            {"accept": None},
        ),
    ]
}


def test_nft_json_is_reduced_to_matches_and_verdicts() -> None:
    table = parse_nft(NFT)
    assert table.policies == {"input": "drop", "output": "drop"}
    inputs = table.chain("input")
    assert inputs[0].value("ct.state") == "established,related"
    assert inputs[2].value("ip.saddr") == "10.30.0.1/32" and inputs[2].value("tcp.dport") == "22"
    assert inputs[4].value("tcp.dport") == "8000-8100" and inputs[4].value("ip.saddr") is None
    assert inputs[5].log and inputs[5].limit and inputs[5].verdict is None
    assert cidr(str(table.chain("output")[0].value("ip.daddr"))) == "10.255.3.7/32"


def test_firewall_check_finds_the_undeclared_inbound_rule(modules: dict[str, ModuleType]) -> None:
    firewall = modules["test_firewall.py"]
    info = HostInfo(
        "hr-web-1",
        "hr",
        ("baseline",),
        {
            "tenancy_site_ops_cidrs": ["10.30.0.1/32"],
            "tenancy_firewall_rules": [
                {"direction": "ingress", "peer_cidr": "10.255.1.0/24", "proto": "tcp", "port": 443},
                {"direction": "egress", "peer_cidr": "10.255.3.7", "proto": "tcp", "port": "443"},
            ],
        },
    )
    table = parse_nft(NFT)
    extra = firewall._undeclared_inbound(table, info, ssh_open_ok=False)
    assert extra == ["tcp.dport == 8000-8100 accept"]
    assert firewall._undeclared_outbound(table, info) == []
    flow = info.var("tenancy_firewall_rules")[0]
    assert any(firewall._matches_flow(r, flow, "input") for r in table.chain("input"))


def test_probes_follow_the_declared_flows() -> None:
    standins = parse_standins(
        "tn-intranet=10.255.1.2,tn-extranet=10.255.2.2,tn-internet=10.255.3.2"
    )
    hosts: dict[str, dict[str, Any]] = {
        "hr-web-1": {
            "ansible_host": "10.30.0.10",
            "tenancy_tenant": "hr",
            "tenancy_site_ops_cidrs": ["10.30.0.1/32"],
            "tenancy_firewall_rules": [
                {"direction": "ingress", "peer_cidr": "10.255.1.0/24", "proto": "tcp", "port": 443},
                {
                    "direction": "ingress",
                    "peer_cidr": "10.40.0.10/32",
                    "proto": "tcp",
                    "port": 8443,
                },
            ],
        },
        "tourism-web-1": {
            "ansible_host": "10.40.0.10",
            "tenancy_tenant": "tourism",
            "tenancy_firewall_rules": [
                {"direction": "egress", "peer_cidr": "10.30.0.10/32", "proto": "tcp", "port": 8443},
                {
                    "direction": "egress",
                    "peer_cidr": "10.255.3.0/24",
                    "proto": "tcp",
                    "port": "443",
                },
            ],
        },
        "family-db-1": {"ansible_host": "10.30.1.10", "tenancy_tenant": "family"},
    }
    typed = parse_hosts(hosts)
    hr = plan_probes("hr-web-1", typed["hr-web-1"], standins, typed)
    shown = {str(p) for p in hr["BASE-FW-02"]}
    assert "tn-intranet -> hr-web-1 443/tcp reachable" in shown
    assert "tourism-web-1 -> hr-web-1 8443/tcp reachable" in shown  # another tenant's VM
    assert "tn-extranet -> hr-web-1 443/tcp blocked" in shown  # declared for the intranet only
    assert "tn-intranet -> hr-web-1 8443/tcp blocked" in shown
    assert "family-db-1 -> hr-web-1 443/tcp blocked" in shown
    assert "tourism-web-1 -> hr-web-1 443/tcp blocked" in shown
    assert {str(p) for p in hr["BASE-FW-03"]} >= {"tn-internet -> hr-web-1 22/tcp blocked"}
    tourism = plan_probes("tourism-web-1", typed["tourism-web-1"], standins, typed)
    egress = {str(p) for p in tourism["BASE-FW-04"]}
    assert "tourism-web-1 -> hr-web-1 8443/tcp reachable" in egress
    assert "tourism-web-1 -> tn-internet 443/tcp reachable" in egress
    assert "tourism-web-1 -> tn-internet 8080/tcp blocked" in egress
    assert "tourism-web-1 -> tn-intranet 443/tcp blocked" in egress


def test_expectations_say_what_they_expect() -> None:
    assert Between(1, 4).ok("4") and not Between(1, 4).ok("5") and not Between(1).ok("x")
    assert str(Between(14, None)) == "at least 14"
    assert SubsetOf(("a", "b")).ok("b,a") and not SubsetOf(("a",)).ok("a,c")
    assert not SubsetOf(("a",)).ok("")
    assert Equals("no").ok("No") and OneOf(("SHA512", "YESCRYPT")).ok("yescrypt")
    with pytest.raises(AssertionError, match=r"sshd permitrootlogin is 'yes', expected 'no'"):
        expect("sshd permitrootlogin", "yes", "no")


def test_host_scope_groups_a_hosts_tests() -> None:
    a = "tests/compliance/test_ssh.py::sshd_banner[ansible://hr-web-1-BASE-SSH-07-banner]"
    b = "tests/compliance/test_firewall.py::nftables_enabled[ansible://hr-web-1-BASE-FW-01-package]"
    c = "tests/compliance/test_ssh.py::sshd_banner[ansible://hr-web-2-BASE-SSH-07-banner]"
    audited = "test_ssh.py::sshd_banner[ansible://hr-web-1-BASE-SSH-07-banner]"  # tenancy audit
    assert host_scope(a) == host_scope(b) == host_scope(audited) == "ansible://hr-web-1"
    assert host_scope(c) == "ansible://hr-web-2"
    assert re.match(
        r"tests/compliance/test_ssh\.py",
        host_scope("tests/compliance/test_ssh.py::x[local-BASE-SSH-07-y]"),
    )
