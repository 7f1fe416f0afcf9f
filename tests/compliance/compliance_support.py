"""Shared machinery of the compliance suite: items, expectations, facts, evidence, probes.

The check modules (``test_<domain>.py``) stay short and readable for an
auditor: each check is one function named as in ``policies/catalogue.yaml``,
marked with its control ID and parametrized over :class:`Item` objects, one
per setting, rule or flow, so one failure never hides another.

Facts (``sshd -T``, ``auditctl -l``, the nftables ruleset, ...) are read once
per host and cached; every command that runs on a host, cached or not, is
recorded as evidence of the test that used it (see :func:`evidence_scope`).
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import json
import os
import re
import secrets
import shlex
import subprocess
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tenancy.policy.report import Applicability, applicability

PROJECT_ROOT = Path(__file__).resolve().parents[2]

#: Largest stdout/stderr kept per command in the evidence (characters).
EVIDENCE_LIMIT = 12000

# -- items and expectations ------------------------------------------------------------


@dataclass(frozen=True)
class Item:
    """One thing a check verifies: a setting, a rule, a flow.

    ``host`` is set for items that exist on one host only (declared flows,
    read from the inventory at collection); the suite deselects them for the
    other hosts.
    """

    control: str
    name: str
    expected: Any = None
    host: str | None = None

    def __str__(self) -> str:
        return f"{self.control}-{self.name}"


def items(control: str, expected: Mapping[str, Any] | Iterable[str]) -> list[Item]:
    """Items of ``control``: a mapping name -> expectation, or bare names."""
    if isinstance(expected, Mapping):
        return [Item(control, name, value) for name, value in expected.items()]
    return [Item(control, name) for name in expected]


def parametrize(control: str, expected: Mapping[str, Any] | Iterable[str]) -> Any:
    """``@pytest.mark.parametrize("item", ...)`` with the control ID in every test ID."""
    values = items(control, expected)
    return pytest.mark.parametrize("item", values, ids=[str(v) for v in values])


class Expect:
    """An expectation on a value read from a host; ``str()`` says it in words."""

    def ok(self, actual: Any) -> bool:  # pragma: no cover - abstract
        raise NotImplementedError


@dataclass(frozen=True)
class Equals(Expect):
    value: Any

    def ok(self, actual: Any) -> bool:
        return _norm(actual) == _norm(self.value)

    def __str__(self) -> str:
        return repr(self.value)


@dataclass(frozen=True)
class OneOf(Expect):
    values: tuple[Any, ...]

    def ok(self, actual: Any) -> bool:
        return _norm(actual) in {_norm(v) for v in self.values}

    def __str__(self) -> str:
        return "one of " + ", ".join(repr(v) for v in self.values)


@dataclass(frozen=True)
class Between(Expect):
    """An integer within ``low..high`` (inclusive; None = unbounded)."""

    low: int | None = None
    high: int | None = None

    def ok(self, actual: Any) -> bool:
        number = _int(actual)
        if number is None:
            return False
        return (self.low is None or number >= self.low) and (
            self.high is None or number <= self.high
        )

    def __str__(self) -> str:
        if self.low is not None and self.high is not None:
            return f"between {self.low} and {self.high}"
        if self.low is not None:
            return f"at least {self.low}"
        return f"at most {self.high}"


@dataclass(frozen=True)
class SubsetOf(Expect):
    """A comma-separated list whose every element is approved (and that is not empty)."""

    approved: tuple[str, ...]

    def ok(self, actual: Any) -> bool:
        got = [p for p in str(actual or "").split(",") if p]
        return bool(got) and all(p in self.approved for p in got)

    def __str__(self) -> str:
        return "only " + ",".join(self.approved)


def _norm(value: Any) -> str:
    return str(value).strip().lower() if value is not None else ""


def _int(value: Any) -> int | None:
    try:
        return int(str(value).strip())
    except (TypeError, ValueError):
        return None


def expect(what: str, actual: Any, expectation: Expect | Any) -> None:
    """Assert ``actual`` meets ``expectation`` (a plain value means Equals)."""
    __tracebackhide__ = True
    check = expectation if isinstance(expectation, Expect) else Equals(expectation)
    assert check.ok(actual), f"{what} is {actual!r}, expected {check}"


# -- evidence --------------------------------------------------------------------------

_evidence: list[dict[str, Any]] | None = None


@contextlib.contextmanager
def evidence_scope() -> Iterator[list[dict[str, Any]]]:
    """Collect every command run on any host while the block runs (one test)."""
    global _evidence
    collected: list[dict[str, Any]] = []
    previous, _evidence = _evidence, collected
    try:
        yield collected
    finally:
        _evidence = previous


def _clip(text: str) -> str:
    if len(text) <= EVIDENCE_LIMIT:
        return text
    return text[:EVIDENCE_LIMIT] + f"\n[... {len(text) - EVIDENCE_LIMIT} more characters]"


def record(
    where: str,
    command: str,
    rc: int,
    stdout: str,
    stderr: str,
    *,
    sudo: bool = False,
    seconds: float = 0.0,
    cached: bool = False,
) -> dict[str, Any]:
    """Add one command to the current test's evidence (no-op outside a test)."""
    entry = {
        "where": where,
        "command": command,
        "sudo": sudo,
        "rc": rc,
        "stdout": _clip(stdout),
        "stderr": _clip(stderr),
        "seconds": round(seconds, 3),
        "cached": cached,
    }
    if _evidence is not None:
        _evidence.append(entry)
    return entry


def host_name(host: Any) -> str:
    """The inventory name of a testinfra host (the ansible backend) or its host name."""
    backend = host.backend
    if backend.NAME == "ansible":
        return str(backend.host)
    return str(backend.get_hostname())


def _sudo_active(host: Any) -> bool:
    # host.sudo() swaps backend.get_command for the duration of the block
    return bool(host.backend.sudo) or "get_command" in vars(host.backend)


def install_recorder(host: Any) -> None:
    """Record every ``host.run`` (testinfra modules included) as evidence; idempotent."""
    if getattr(host, "_tenancy_recorder", False):
        return
    original = host.run
    where = host_name(host)

    def run(command: str, *args: str, **kwargs: Any) -> Any:
        text = host.backend.quote(command, *args) if args else command
        sudo = _sudo_active(host)
        start = time.monotonic()
        result = original(command, *args, **kwargs)
        record(
            where,
            text,
            result.rc,
            result.stdout,
            result.stderr,
            sudo=sudo,
            seconds=time.monotonic() - start,
        )
        return result

    host.run = run
    host._tenancy_recorder = True


# -- facts: commands run once per host -------------------------------------------------


@dataclass(frozen=True)
class Output:
    rc: int
    stdout: str
    stderr: str


_facts: dict[tuple[str, str, bool], tuple[Output, dict[str, Any] | None]] = {}


def run(host: Any, command: str, *, sudo: bool = True, cache: bool = True) -> Output:
    """Run ``command`` on ``host`` (as root by default), once per host when cached.

    A cached answer is still recorded as evidence of the current test.
    """
    key = (host_name(host), command, sudo)
    if cache and key in _facts:
        out, entry = _facts[key]
        if entry is not None and _evidence is not None:
            _evidence.append({**entry, "cached": True})
        return out
    install_recorder(host)
    before = len(_evidence) if _evidence is not None else 0
    if sudo:
        with host.sudo():
            result = host.run(command)
    else:
        result = host.run(command)
    out = Output(result.rc, result.stdout, result.stderr)
    entry = _evidence[before] if _evidence is not None and len(_evidence) > before else None
    if cache:
        _facts[key] = (out, entry)
    return out


def sshd_config(host: Any) -> dict[str, str]:
    """The effective sshd configuration (``sshd -T``), keys lower-case."""
    out = run(host, "/usr/sbin/sshd -T")
    assert out.rc == 0, f"sshd -T failed (rc {out.rc}): {out.stderr.strip()}"
    config: dict[str, str] = {}
    for line in out.stdout.splitlines():
        key, _, value = line.strip().partition(" ")
        if key:
            # repeated keywords (e.g. listenaddress) are joined
            config[key] = f"{config[key]} {value}" if key in config else value
    return config


@dataclass(frozen=True)
class Stat:
    path: str
    owner: str
    group: str
    mode: int
    kind: str


def stat(host: Any, *paths: str) -> dict[str, Stat | None]:
    """Owner, group, mode and type of each path (None when it does not exist)."""
    command = "stat -c '%n|%U|%G|%a|%F' -- " + " ".join(shlex.quote(p) for p in paths)
    out = run(host, command)
    found: dict[str, Stat | None] = dict.fromkeys(paths)
    for line in out.stdout.splitlines():
        parts = line.split("|")
        if len(parts) == 5:
            found[parts[0]] = Stat(parts[0], parts[1], parts[2], int(parts[3], 8), parts[4])
    return found


def read_file(host: Any, path: str) -> str | None:
    """The content of ``path`` (read as root), or None when it cannot be read."""
    out = run(host, f"cat -- {shlex.quote(path)}")
    return out.stdout if out.rc == 0 else None


def active_lines(text: str | None, comment: str = "#") -> list[str]:
    """Lines without comments and blanks."""
    lines = []
    for raw in (text or "").splitlines():
        line = raw.split(comment, 1)[0].strip() if comment else raw.strip()
        if line:
            lines.append(line)
    return lines


def key_values(text: str | None, sep: str | None = "=") -> dict[str, str]:
    """``key = value`` (or whitespace-separated with ``sep=None``) lines; last one wins."""
    values: dict[str, str] = {}
    for line in active_lines(text):
        if sep is None:
            key, _, value = line.partition(" ")
        else:
            key, found, value = line.partition(sep)
            if not found:
                values[key.strip()] = ""
                continue
        values[key.strip()] = value.strip()
    return values


def units(host: Any, names: Sequence[str]) -> dict[str, dict[str, str]]:
    """``systemctl show`` properties of each unit (LoadState, ActiveState, UnitFileState...)."""
    command = (
        "systemctl show --no-pager -p Id,LoadState,ActiveState,SubState,UnitFileState -- "
        + " ".join(shlex.quote(n) for n in names)
    )
    out = run(host, command, sudo=False)
    blocks = [b for b in out.stdout.strip().split("\n\n")]
    found: dict[str, dict[str, str]] = {}
    for name, block in zip(names, blocks, strict=False):
        found[name] = key_values(block)
    return found


def packages(host: Any, names: Sequence[str]) -> dict[str, str]:
    """dpkg status of each package: ``installed``, ``config-files`` or ``absent``."""
    command = "dpkg-query -W -f='${Package} ${db:Status-Abbrev}\\n' -- " + " ".join(
        shlex.quote(n) for n in names
    )
    out = run(host, command, sudo=False)
    status = dict.fromkeys(names, "absent")
    for line in out.stdout.splitlines():
        name, _, abbrev = line.partition(" ")
        name = name.split(":")[0]
        if name in status:
            if abbrev.startswith("ii"):
                status[name] = "installed"
            elif abbrev.startswith("rc"):
                status[name] = "config-files"
    return status


def sysctls(host: Any, keys: Sequence[str]) -> dict[str, str]:
    """Current kernel parameters (``sysctl -e``: unknown keys are left out)."""
    out = run(host, "sysctl -e " + " ".join(keys))
    values: dict[str, str] = {}
    for line in out.stdout.splitlines():
        key, _, value = line.partition("=")
        values[key.strip()] = " ".join(value.split())
    return values


# -- time ------------------------------------------------------------------------------

#: The state column of ``chronyc -n sources``, in words.
CHRONY_STATES = {
    "*": "selected",
    "+": "combined",
    "-": "not combined",
    "?": "unreachable",
    "x": "a falseticker",
    "~": "too variable",
}


@dataclass(frozen=True)
class ChronySource:
    """One source line of ``chronyc -n sources``: mode (``^`` server, ``=`` peer,
    ``#`` reference clock), state (see :data:`CHRONY_STATES`) and address."""

    mode: str
    state: str
    address: str

    @property
    def usable(self) -> bool:
        """A server or peer chronyd synchronises to (``*``) or combines with (``+``)."""
        return self.mode in "^=" and self.state in "*+"


def parse_chrony_sources(text: str) -> list[ChronySource]:
    """The source lines of ``chronyc -n sources`` (headers and the ``====`` rule left out)."""
    out = []
    for line in text.splitlines():
        parts = line.split()
        if len(line) > 2 and line[0] in "^=#" and line[1] in CHRONY_STATES and len(parts) > 1:
            out.append(ChronySource(line[0], line[1], parts[1]))
    return out


def chrony_sync_problem(sources: str, tracking: str) -> str | None:
    """None when chronyd keeps time from a usable source, else why not.

    A running chronyd proves nothing by itself: with every server unreachable
    it free-runs. Both views must agree: ``chronyc -n sources`` lists a server
    or peer in state ``*`` or ``+``, and ``chronyc tracking`` names a reference
    that is neither none (``00000000``, "Leap status : Not synchronised") nor
    chronyd's own local clock (``127.127.x.x``, reference ID ``7F7F....``).
    """
    found = parse_chrony_sources(sources)
    if not found:
        return "chronyd has no time sources (chronyc -n sources lists none)"
    if not any(s.usable for s in found):
        states = ", ".join(f"{s.address} {CHRONY_STATES[s.state]}" for s in found)
        return f"no usable time source: {states}"
    fields = key_values(tracking, ":")
    reference = fields.get("Reference ID", "")
    leap = fields.get("Leap status", "")
    ref_id = reference.split()[0].upper() if reference else ""
    if not ref_id or ref_id == "00000000" or leap.lower() == "not synchronised":
        return (
            f"chronyd is not synchronised (Reference ID {reference or '?'}, "
            f"Leap status {leap or '?'})"
        )
    if ref_id.startswith("7F7F") or "127.127." in reference:
        return f"chronyd follows its own local clock (Reference ID {reference}), not a server"
    return None


# -- audit rules -----------------------------------------------------------------------


@dataclass(frozen=True)
class AuditRule:
    """One rule of ``auditctl -l``, normalised."""

    text: str
    path: str | None  # -w PATH, -F path=PATH or -F dir=PATH
    perm: str  # -p / -F perm=
    arch: str | None
    syscalls: frozenset[str]
    key: str | None
    compare: frozenset[str]  # -C fields, operands sorted ("euid!=uid")


def parse_audit_rules(text: str) -> list[AuditRule]:
    rules = []
    for line in text.splitlines():
        line = line.strip()
        if not line.startswith("-"):
            continue
        tokens = shlex.split(line)
        path = arch = key = None
        perm = ""
        syscalls: set[str] = set()
        compare: set[str] = set()
        i = 0
        while i < len(tokens):
            opt = tokens[i]
            arg = tokens[i + 1] if i + 1 < len(tokens) else ""
            if opt == "-w":
                path = arg
            elif opt == "-p":
                perm = arg
            elif opt == "-k":
                key = arg
            elif opt == "-S":
                syscalls.update(arg.split(","))
            elif opt == "-C":
                compare.add(_normalise_compare(arg))
            elif opt == "-F":
                name, op, value = re.split(r"(!=|>=|<=|=|>|<)", arg, maxsplit=1)
                if name in ("path", "dir") and op == "=":
                    path = value
                elif name == "perm":
                    perm = value
                elif name == "arch":
                    arch = value
                elif name == "key":
                    key = value
            i += 2 if opt in ("-w", "-p", "-k", "-S", "-C", "-F", "-a") else 1
        rules.append(
            AuditRule(
                text=line,
                path=path.rstrip("/") if path and path != "/" else path,
                perm=perm,
                arch=arch,
                syscalls=frozenset(syscalls),
                key=key,
                compare=frozenset(compare),
            )
        )
    return rules


def _normalise_compare(text: str) -> str:
    left, op, right = re.split(r"(!=|=)", text, maxsplit=1)
    return op.join(sorted([left, right]))


@dataclass(frozen=True)
class Watch:
    """Expected: writes/attribute changes (or executions) of ``path`` are audited under ``key``."""

    path: str
    perm: str
    key: str

    def __str__(self) -> str:
        return f"-w {self.path} -p {self.perm} -k {self.key}"


@dataclass(frozen=True)
class Syscalls:
    """Expected: the ``syscalls`` of ``arch`` are audited under ``key`` (one or more rules)."""

    arch: str
    syscalls: tuple[str, ...]
    key: str
    compare: str | None = None

    def __str__(self) -> str:
        extra = f" -C {self.compare}" if self.compare else ""
        return (
            f"-a always,exit -F arch={self.arch} -S {','.join(self.syscalls)}{extra} -k {self.key}"
        )


def audit_rule_missing(rules: Sequence[AuditRule], want: Watch | Syscalls) -> str | None:
    """None when ``rules`` cover ``want``; otherwise what is missing."""
    if isinstance(want, Watch):
        for r in rules:
            if (
                r.path == want.path.rstrip("/")
                and r.key == want.key
                and set(want.perm) <= set(r.perm)
            ):
                return None
        return f"no loaded rule {want}"
    candidates = [r for r in rules if r.key == want.key and r.arch == want.arch]
    if want.compare:
        needed = _normalise_compare(want.compare)
        candidates = [r for r in candidates if needed in r.compare]
    covered: set[str] = set().union(*(r.syscalls for r in candidates)) if candidates else set()
    missing = [s for s in want.syscalls if s not in covered]
    if missing:
        return f"no loaded rule audits {', '.join(missing)} (wanted {want})"
    return None


# -- nftables --------------------------------------------------------------------------


@dataclass(frozen=True)
class NftRule:
    """One rule of a chain, reduced to its matches and verdict."""

    chain: str
    matches: dict[str, tuple[str, str]]  # "ip.saddr" -> (op, value)
    verdict: str | None  # accept, drop, reject, jump ..., None
    log: bool
    limit: bool
    text: str

    def value(self, key: str) -> str | None:
        found = self.matches.get(key)
        return found[1] if found and found[0] in ("==", "in") else None


@dataclass(frozen=True)
class NftTable:
    policies: dict[str, str]  # chain -> policy
    rules: list[NftRule]

    def chain(self, name: str) -> list[NftRule]:
        return [r for r in self.rules if r.chain == name]


def _nft_key(left: Any) -> str:
    if isinstance(left, dict):
        if "payload" in left:
            p = left["payload"]
            return f"{p.get('protocol', p.get('base', '?'))}.{p.get('field', p.get('offset', '?'))}"
        for kind in ("meta", "ct"):
            if kind in left:
                return f"{kind}.{left[kind].get('key')}"
    return json.dumps(left, sort_keys=True)


def _nft_value(right: Any) -> str:
    if isinstance(right, str | int | float):
        return str(right)
    if isinstance(right, list):
        return ",".join(sorted(_nft_value(v) for v in right))
    if isinstance(right, dict):
        if "prefix" in right:
            return f"{right['prefix']['addr']}/{right['prefix']['len']}"
        if "range" in right:
            low, high = right["range"]
            return f"{_nft_value(low)}-{_nft_value(high)}"
        if "set" in right:
            return _nft_value(right["set"])
    return json.dumps(right, sort_keys=True)


def parse_nft(doc: Mapping[str, Any]) -> NftTable:
    """``nft -j list table ...`` output -> chain policies and rules."""
    policies: dict[str, str] = {}
    rules: list[NftRule] = []
    for obj in doc.get("nftables", []):
        if "chain" in obj and "policy" in obj["chain"]:
            policies[obj["chain"]["name"]] = obj["chain"]["policy"]
        if "rule" not in obj:
            continue
        rule = obj["rule"]
        matches: dict[str, tuple[str, str]] = {}
        verdict = None
        log = limit = False
        parts = []
        for expr in rule.get("expr", []):
            if "match" in expr:
                m = expr["match"]
                key, value = _nft_key(m.get("left")), _nft_value(m.get("right"))
                matches[key] = (m.get("op", "=="), value)
                parts.append(f"{key} {m.get('op', '==')} {value}")
            elif "log" in expr:
                log = True
                parts.append("log")
            elif "limit" in expr:
                limit = True
                parts.append("limit")
            elif "counter" in expr:
                continue
            else:
                for v in ("accept", "drop", "reject", "jump", "goto", "return"):
                    if v in expr:
                        verdict = v
                        parts.append(v)
        rules.append(NftRule(rule.get("chain", ""), matches, verdict, log, limit, " ".join(parts)))
    return NftTable(policies, rules)


def nft_table(host: Any, family: str = "inet", name: str = "tenancy") -> NftTable | None:
    """The loaded in-guest table (also listed as text for the evidence); None when absent."""
    run(host, f"nft -a list table {family} {name}")
    out = run(host, f"nft -j list table {family} {name}")
    if out.rc != 0 or not out.stdout.strip():
        return None
    return parse_nft(json.loads(out.stdout))


def cidr(text: str) -> str:
    """A normalised network: ``10.0.0.5`` -> ``10.0.0.5/32``."""
    return str(ipaddress.ip_network(str(text).strip(), strict=False))


def port_text(port: Any) -> str:
    """``443`` / ``"8000-8100"`` / ``"443-443"`` -> ``443`` / ``8000-8100`` / ``443``."""
    low, _, high = str(port).strip().partition("-")
    if not high or int(low) == int(high):
        return str(int(low))
    return f"{int(low)}-{int(high)}"


# -- host context ----------------------------------------------------------------------


@dataclass(frozen=True)
class HostInfo:
    """What the inventory says about a host."""

    name: str
    tenant: str | None
    profiles: tuple[str, ...]
    variables: Mapping[str, Any] = field(default_factory=dict)

    def var(self, name: str, default: Any = None) -> Any:
        return self.variables.get(name, default)


def host_info(host: Any, default_profiles: Sequence[str]) -> HostInfo:
    variables: Mapping[str, Any] = {}
    if getattr(host.backend, "HAS_RUN_ANSIBLE", False):
        variables = host.ansible.get_variables()
    profiles = variables.get("tenancy_profiles") or list(default_profiles)
    if isinstance(profiles, str):
        profiles = [profiles]
    return HostInfo(
        name=host_name(host),
        tenant=variables.get("tenancy_tenant"),
        profiles=tuple(str(p) for p in profiles),
        variables=variables,
    )


def decide(policy: Mapping[str, Any], control: str, info: HostInfo) -> Applicability:
    """Whether ``control`` applies to the host: required, not-applicable, waived or expired."""
    return applicability(
        policy["catalogue"],
        policy["waivers"],
        policy["today"],
        control,
        host=info.name,
        tenant=info.tenant,
        profiles=info.profiles,
    )


# -- inventory at collection time ------------------------------------------------------


def inventory_hosts(config: pytest.Config) -> dict[str, dict[str, Any]]:
    """Selected inventory hosts (``--hosts=ansible://...``) with their variables.

    Empty when the hosts do not come from an Ansible inventory: checks whose
    items depend on a host's declared flows then have only their common items.
    """
    specs = [s for s in (config.option.hosts or "").split(",") if s.startswith("ansible://")]
    if not specs:
        return {}
    from testinfra.utils.ansible_runner import AnsibleRunner

    runner = AnsibleRunner.get_runner(config.option.ansible_inventory)
    names: set[str] = set()
    for spec in specs:
        pattern = spec.split("://", 1)[1].split("?", 1)[0] or "all"
        names.update(runner.get_hosts(pattern))
    return {name: dict(runner.get_variables(name)) for name in sorted(names)}


def all_inventory_hosts(config: pytest.Config) -> dict[str, dict[str, Any]]:
    """Every host of the inventory (probe sources may be outside the selection)."""
    if not config.option.ansible_inventory:
        return {}
    from testinfra.utils.ansible_runner import AnsibleRunner

    runner = AnsibleRunner.get_runner(config.option.ansible_inventory)
    return {name: dict(runner.get_variables(name)) for name in runner.get_hosts("all")}


# -- reachability probes ---------------------------------------------------------------


@dataclass(frozen=True)
class Endpoint:
    """A probe source or destination: a network-namespace stand-in or an inventory host."""

    label: str
    address: str
    kind: str  # "netns" | "host"

    def __str__(self) -> str:
        return self.label


@dataclass(frozen=True)
class Probe:
    """Connect from ``source`` to ``target`` on proto/port; ``allowed`` is what the plan says."""

    source: Endpoint
    target: Endpoint
    proto: str
    port: int
    allowed: bool
    reason: str

    def __str__(self) -> str:
        verdict = "reachable" if self.allowed else "blocked"
        return f"{self.source} -> {self.target} {self.port}/{self.proto} {verdict}"


def parse_standins(text: str) -> list[Endpoint]:
    """``tn-intranet=10.255.1.2,...`` -> endpoints; ``none`` or empty -> []."""
    if not text or text.strip().lower() == "none":
        return []
    out = []
    for part in text.split(","):
        name, _, address = part.strip().partition("=")
        if name and address:
            out.append(Endpoint(name, address, "netns"))
    return out


def _in(address: str, network: str) -> bool:
    try:
        return ipaddress.ip_address(address) in ipaddress.ip_network(network, strict=False)
    except ValueError:
        return False


def endpoint_in(
    network: str, standins: Sequence[Endpoint], hosts: Mapping[str, Mapping[str, Any]], exclude: str
) -> Endpoint | None:
    """A stand-in, else an inventory host other than ``exclude``, with an address in ``network``."""
    for s in standins:
        if _in(s.address, network):
            return s
    for name, hv in sorted(hosts.items()):
        address = str(hv.get("ansible_host", ""))
        if name != exclude and address and _in(address, network):
            return Endpoint(name, address, "host")
    return None


def _allowed_from(rules: Sequence[Mapping[str, Any]], direction: str, address: str) -> set[str]:
    """``proto/port`` strings the rules open towards/from ``address``."""
    out = set()
    for r in rules:
        if r.get("direction") == direction and _in(address, str(r.get("peer_cidr", ""))):
            out.add(f"{r.get('proto')}/{port_text(r.get('port'))}")
    return out


def _opens(opened: set[str], proto: str, port: int) -> bool:
    for spec in opened:
        p, _, ports = spec.partition("/")
        low, _, high = ports.partition("-")
        if p == proto and int(low) <= port <= int(high or low):
            return True
    return False


#: A port no baseline rule opens, probed when a host declares no flow of its own.
UNDECLARED_PORT = 8080


def plan_probes(
    target_name: str,
    target_vars: Mapping[str, Any],
    standins: Sequence[Endpoint],
    hosts: Mapping[str, Mapping[str, Any]],
    other_tenant_sources: int = 2,
) -> dict[str, list[Probe]]:
    """The reachability probes of one host, by control.

    BASE-FW-02: every declared ingress flow from a source inside its peer
    network is reachable; from each stand-in and from one host of up to
    ``other_tenant_sources`` other tenants, a port the host serves to others
    (or :data:`UNDECLARED_PORT`) is not, unless declared for that source.
    BASE-FW-03: SSH is blocked from every stand-in and other-tenant source
    outside the operations networks. BASE-FW-04: every declared egress flow to
    a destination inside its peer network is reachable; a sample of other
    destinations (each stand-in on 443, or :data:`UNDECLARED_PORT`) is not.
    """
    address = str(target_vars.get("ansible_host", target_name))
    target = Endpoint(target_name, address, "host")
    rules = [r for r in target_vars.get("tenancy_firewall_rules") or [] if isinstance(r, Mapping)]
    tenant = target_vars.get("tenancy_tenant")
    ops = [str(c) for c in target_vars.get("tenancy_site_ops_cidrs") or []]
    probes: dict[str, list[Probe]] = {"BASE-FW-02": [], "BASE-FW-03": [], "BASE-FW-04": []}

    for r in rules:
        proto, port = str(r.get("proto")), int(port_text(r.get("port")).split("-")[0])
        peer = str(r.get("peer_cidr"))
        source = endpoint_in(peer, standins, hosts, exclude=target_name)
        if source is None:
            continue
        if r.get("direction") == "ingress":
            probes["BASE-FW-02"].append(
                Probe(source, target, proto, port, True, f"declared: {r.get('comment', peer)}")
            )
        elif r.get("direction") == "egress":
            probes["BASE-FW-04"].append(
                Probe(target, source, proto, port, True, f"declared: {r.get('comment', peer)}")
            )

    others: list[Endpoint] = []
    seen_tenants: set[str] = set()
    for name, hv in sorted(hosts.items()):
        other = hv.get("tenancy_tenant")
        if name == target_name or other == tenant or other in seen_tenants or not other:
            continue
        if len(seen_tenants) >= other_tenant_sources:
            break
        seen_tenants.add(str(other))
        others.append(Endpoint(name, str(hv.get("ansible_host", name)), "host"))

    served = sorted(
        {
            int(port_text(r.get("port")).split("-")[0])
            for r in rules
            if r.get("direction") == "ingress" and r.get("proto") == "tcp"
        }
    )
    for source in [*standins, *others]:
        opened = _allowed_from(rules, "ingress", source.address)
        candidates = [p for p in [*served, UNDECLARED_PORT] if not _opens(opened, "tcp", p)]
        if candidates:
            probes["BASE-FW-02"].append(
                Probe(source, target, "tcp", candidates[0], False, "not declared for this source")
            )
        if not any(_in(source.address, c) for c in ops) and not _opens(opened, "tcp", 22):
            probes["BASE-FW-03"].append(
                Probe(source, target, "tcp", 22, False, "SSH only from the operations networks")
            )
    for dest in standins:
        opened = _allowed_from(rules, "egress", dest.address)
        port = next(p for p in (443, UNDECLARED_PORT, 8081) if not _opens(opened, "tcp", p))
        probes["BASE-FW-04"].append(
            Probe(target, dest, "tcp", port, False, "not declared for this destination")
        )
    return probes


def probe_items(config: pytest.Config, control: str) -> list[Item]:
    """Per-host reachability items of ``control`` for the selected inventory hosts."""
    if config.getoption("tenancy_no_probes"):
        return []
    standins = parse_standins(config.getoption("tenancy_standins"))
    every = all_inventory_hosts(config)
    out = []
    for name, hv in inventory_hosts(config).items():
        for p in plan_probes(name, hv, standins, every).get(control, []):
            verdict = "reach" if p.allowed else "block"
            source = p.source.label if p.target.label == name else p.target.label
            direction = "from" if p.target.label == name else "to"
            out.append(
                Item(control, f"{verdict}-{p.proto}-{p.port}-{direction}-{source}", p, host=name)
            )
    return out


class ProbeRunner:
    """Runs a :class:`Probe`: a listener on the destination, a connection from the source."""

    TIMEOUT = 3

    def __init__(self, target_host: Any, host_factory: Callable[[str], Any]) -> None:
        self.target_host = target_host
        self.host_factory = host_factory
        self._received: str | None = ""  # what the last listener got; None: unknown

    # endpoints ---------------------------------------------------------------------

    def _host(self, endpoint: Endpoint) -> Any:
        if endpoint.label == host_name(self.target_host):
            return self.target_host
        return self.host_factory(endpoint.label)

    def _remote(self, endpoint: Endpoint, command: str, sudo: bool = False) -> Output:
        return run(self._host(endpoint), command, sudo=sudo, cache=False)

    @staticmethod
    def _local(argv: list[str], timeout: float = 30, shown: str | None = None) -> Output:
        start = time.monotonic()
        try:
            done = subprocess.run(
                argv, capture_output=True, text=True, timeout=timeout, check=False
            )
            out = Output(done.returncode, done.stdout, done.stderr)
        except subprocess.TimeoutExpired:
            out = Output(124, "", f"timed out after {timeout} s")
        record(
            "auditor",
            shown or shlex.join(argv),
            out.rc,
            out.stdout,
            out.stderr,
            seconds=time.monotonic() - start,
        )
        return out

    @staticmethod
    def netns_ready(name: str) -> str | None:
        """None when the stand-in namespace can be used, else why not."""
        if os.geteuid() != 0:
            return "probing from a stand-in needs root on the auditor's machine (ip netns exec)"
        listed = subprocess.run(
            ["ip", "netns", "list"], capture_output=True, text=True, check=False
        )
        names = {line.split()[0] for line in listed.stdout.splitlines() if line.strip()}
        if name not in names:
            return f"stand-in {name} is not up (tools/standins.sh up)"
        return None

    # listeners ---------------------------------------------------------------------

    @contextlib.contextmanager
    def listening(self, endpoint: Endpoint, proto: str, port: int) -> Iterator[str]:
        """A listener on ``endpoint`` for the duration of the block; yields a handle."""
        if endpoint.kind == "netns":
            with self._netns_listener(endpoint, proto, port) as handle:
                yield handle
        else:
            with self._guest_listener(endpoint, proto, port) as handle:
                yield handle

    @contextlib.contextmanager
    def _netns_listener(self, endpoint: Endpoint, proto: str, port: int) -> Iterator[str]:
        lock_path = Path("/tmp") / f"tenancy-probe-{endpoint.label}-{proto}-{port}.lock"
        with lock_path.open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            argv = [
                "ip",
                "netns",
                "exec",
                endpoint.label,
                "python3",
                "-c",
                _LISTENER,
                proto,
                str(port),
            ]
            proc = subprocess.Popen(
                argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
            )
            assert proc.stdout is not None
            first = proc.stdout.readline().strip()
            shown = shlex.join([*argv[:5], "<listener>", proto, str(port)])
            record("auditor", shown, 0, first, "")
            try:
                yield "netns" if first.startswith("listening") else f"failed: {first}"
            finally:
                proc.terminate()
                try:
                    rest, _ = proc.communicate(timeout=5)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    rest, _ = proc.communicate()
                self._received = rest

    @contextlib.contextmanager
    def _guest_listener(self, endpoint: Endpoint, proto: str, port: int) -> Iterator[str]:
        flag = "-Hlun" if proto == "udp" else "-Hltn"
        busy = self._remote(endpoint, f"ss {flag} 'sport = :{port}'")
        if busy.stdout.strip():
            yield "existing"
            return
        out_file = f"/tmp/tenancy-probe-{secrets.token_hex(4)}"
        nc = "nc -lu" if proto == "udp" else "nc -lk"
        start = (
            f"nohup timeout 60 {nc} -p {port} >{out_file} 2>&1 </dev/null & pid=$!; "
            f"for i in $(seq 50); do ss {flag} 'sport = :{port}' | grep -q . && break; "
            f"sleep 0.1; done; ss {flag} 'sport = :{port}' | grep -q . || echo failed; "
            "echo pid=$pid"
        )
        started = self._remote(endpoint, f"sh -c {shlex.quote(start)}", sudo=True)
        ran = started.rc == 0 and "pid=" in started.stdout
        pid = started.stdout.strip().rpartition("pid=")[2]
        try:
            if not ran:  # SSH to the destination failed: nothing listens there
                yield f"failed: the listener command did not run ({_why(started)})"
            elif "failed" in started.stdout:
                yield "failed: nc did not listen"
            else:
                yield out_file
        finally:
            self._received = None
            if ran:
                collect = f"kill {pid} 2>/dev/null; cat {out_file}; rm -f {out_file}; true"
                got = self._remote(endpoint, f"sh -c {shlex.quote(collect)}", sudo=True)
                # unread output is unknown, not "nothing arrived"
                self._received = got.stdout if got.rc == 0 else None

    # connections -------------------------------------------------------------------

    def connect(self, probe: Probe) -> str:
        """``open``, ``refused``, ``timeout`` or ``unreachable``; for UDP ``received``/``lost``.

        ``untestable: <why>`` when the probe did not happen (no listener, the
        source could not send, a protocol it cannot test): never a verdict.
        """
        if probe.proto not in PROBE_PROTOCOLS:
            return f"untestable: a probe cannot test {probe.proto} (only tcp and udp)"
        self._received = ""
        token = f"tenancy-probe-{secrets.token_hex(6)}"
        with self.listening(probe.target, probe.proto, probe.port) as handle:
            if probe.proto == "udp" and handle == "existing":
                return "untestable: a service already listens on that UDP port"
            if handle.startswith("failed"):
                return f"untestable: the listener on {probe.target} did not start ({handle})"
            result = self._send(probe, token)
        if result.startswith("untestable") or probe.proto != "udp":
            return result
        if self._received is None:
            return f"untestable: what the listener on {probe.target} received could not be read"
        return "received" if token in self._received else "lost"

    def _send(self, probe: Probe, token: str) -> str:
        source, address, port = probe.source, probe.target.address, probe.port
        if source.kind == "netns":
            argv = ["ip", "netns", "exec", source.label, "python3", "-c", _CONNECT]
            args = [probe.proto, address, str(port), token, str(self.TIMEOUT)]
            shown = shlex.join([*argv[:5], "<connect>", *args])
            return connect_result(self._local([*argv, *args], shown=shown))
        if probe.proto == "udp":
            send = f"printf %s {token} | nc -u -w 1 {address} {port} 2>&1"
            cmd = f"{send}; {send}; echo rc=$?"
            out = self._remote(source, f"sh -c {shlex.quote(cmd)}")
            return source_problem(out) or "sent"
        cmd = f"nc -zv -w {self.TIMEOUT} {address} {port} 2>&1; echo rc=$?"
        return nc_result(self._remote(source, f"sh -c {shlex.quote(cmd)}"))


#: Protocols a probe can test: a TCP connection, a UDP datagram.
PROBE_PROTOCOLS = ("tcp", "udp")
#: What the network answered, as :func:`connect_result` reads the stand-in's output.
_CONNECT_RESULTS = ("open", "refused", "timeout", "unreachable", "sent")


def _why(out: Output) -> str:
    lines = out.stderr.strip().splitlines() or out.stdout.strip().splitlines()
    return lines[-1] if lines else f"exit {out.rc}"


def source_problem(out: Output) -> str | None:
    """Why a probe command ending in ``echo rc=$?`` did not run on its source, or None.

    No ``rc=`` line: the command never ran (SSH to the source failed); rc 127:
    nc is not installed there. Either way nothing was sent, so nothing is proven.
    """
    before, found, after = out.stdout.rpartition("rc=")
    if not found:
        return f"untestable: the probe did not run on the source ({_why(out)})"
    if after.strip() == "127" or "not found" in before.lower():
        return "untestable: nc is not installed on the source"
    return None


def nc_result(out: Output) -> str:
    """``nc -zv ... 2>&1; echo rc=$?`` on a probe source -> ``open``, ``refused``,
    ``timeout`` or ``unreachable``; ``untestable: ...`` when nc did not run or
    said something else (an answer not understood is no evidence of a block)."""
    problem = source_problem(out)
    if problem is not None:
        return problem
    said = out.stdout.rpartition("rc=")[0]
    text = said.lower()
    if "succeeded" in text or any(re.search(r"\bopen$", x.strip()) for x in text.splitlines()):
        return "open"
    if "refused" in text:
        return "refused"
    if "timed out" in text or "operation now in progress" in text:
        return "timeout"
    if "no route to host" in text or "unreachable" in text:
        return "unreachable"
    shown = " ".join(said.split())[:200] or "no output"
    return f"untestable: nc's answer is not a connection result ({shown})"


def connect_result(out: Output) -> str:
    """The stand-in's connect script output -> its result; ``untestable: ...`` when the
    script did not run (namespace missing, no python3) or failed on the auditor's side."""
    lines = out.stdout.strip().splitlines()
    last = lines[-1].strip() if lines else ""
    if out.rc == 0 and last.partition(":")[0] in _CONNECT_RESULTS:
        return last
    return f"untestable: the probe did not run from the stand-in ({_why(out)})"


_LISTENER = r"""
import socket, sys, time
proto, port = sys.argv[1], int(sys.argv[2])
kind = socket.SOCK_DGRAM if proto == "udp" else socket.SOCK_STREAM
s = socket.socket(socket.AF_INET, kind)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", port))
if kind == socket.SOCK_STREAM:
    s.listen(8)
print("listening", proto, port, flush=True)
s.settimeout(1.0)
deadline = time.time() + 60
while time.time() < deadline:
    try:
        if kind == socket.SOCK_STREAM:
            c, peer = s.accept()
            c.settimeout(1.0)
            try:
                data = c.recv(256)
            except OSError:
                data = b""
            print("accepted", peer[0], data.decode(errors="replace"), flush=True)
            c.close()
        else:
            data, peer = s.recvfrom(256)
            print("datagram", peer[0], data.decode(errors="replace"), flush=True)
    except socket.timeout:
        continue
"""

_CONNECT = r"""
import errno, socket, sys
proto, host, port, token = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
timeout = float(sys.argv[5])
if proto == "udp":
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    for _ in range(3):
        s.sendto(token.encode(), (host, port))
    print("sent")
    sys.exit(0)
try:
    c = socket.create_connection((host, port), timeout=timeout)
    try:
        c.sendall(token.encode())
    except OSError:
        pass
    c.close()
    print("open")
except ConnectionRefusedError:
    print("refused")
except socket.timeout:
    print("timeout")
except OSError as exc:
    # only an answer of the network is a result; a local error proves nothing
    answered = exc.errno in (errno.EHOSTUNREACH, errno.ENETUNREACH)
    print("unreachable:" if answered else "error:", exc)
    sys.exit(0 if answered else 1)
"""
