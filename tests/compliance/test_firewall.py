"""In-guest firewall and reachability (role tenancy_firewall): BASE-FW-01..04, MLPS-FW-01.

Two kinds of evidence:

- the loaded ruleset (``nft -j list table inet tenancy``) matches the plan:
  every flow the host declares (inventory variable ``tenancy_firewall_rules``,
  compiled by the planner) has its accept rule, and no accept rule opens
  anything else;
- probes from the outside: each declared flow really connects from a source
  inside its peer network (a stand-in namespace of tools/standins.sh or
  another tenant's VM), and a sample of undeclared ones does not (see
  ``tenancy.compliance.probes.plan_probes``). A probe starts a listener on the
  destination for its duration, so "blocked" means filtered, not closed.
  A probe that did not happen (stand-in down, SSH to its source or
  destination failed, ``nc`` missing there, an answer not understood, a
  protocol other than tcp/udp) is skipped with the reason and recorded "not
  tested", never counted as blocked (``tenancy.compliance.probe_runner.ProbeRunner.connect``).

Declared-flow and probe items exist per host: they are read from the
inventory at collection (``--hosts=ansible://...``) and named after the flow.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import pytest
import testinfra

from tenancy.compliance import control
from tenancy.compliance.applicability import HostInfo, Policy, decide
from tenancy.compliance.expect import expect
from tenancy.compliance.facts import packages, run, units
from tenancy.compliance.inventory import inventory_hosts
from tenancy.compliance.items import Item, ItemsProvider
from tenancy.compliance.network import cidr, port_text
from tenancy.compliance.nft import NftRule, NftTable, nft_table
from tenancy.compliance.probe_runner import ProbeRunner
from tenancy.compliance.probes import Probe, probe_items

DIRECTION = {"BASE-FW-02": "ingress", "BASE-FW-04": "egress"}


def _declared_items(config: pytest.Config, control: str) -> list[Item]:
    """One item per declared flow of each selected host, for BASE-FW-02 / BASE-FW-04."""
    direction = DIRECTION.get(control)
    if direction is None:
        return []
    out = []
    for name, hv in inventory_hosts(config).items():
        for rule in hv.get("tenancy_firewall_rules") or []:
            if rule.get("direction") != direction:
                continue
            side = "from" if direction == "ingress" else "to"
            label = (
                f"{rule.get('proto')}-{port_text(rule.get('port'))}-{side}-{rule.get('peer_cidr')}"
            )
            out.append(Item(control, f"declared-{label}", dict(rule), name))
    return out


def _items(*common: str) -> ItemsProvider:
    """The items of a firewall check: ``common`` ones, then the declared flows and probes per
    host (read from the inventory at collection)."""

    def provide(config: pytest.Config, control: str) -> list[Item]:
        values = [Item(control, n) for n in common]
        return values + _declared_items(config, control) + probe_items(config, control)

    return provide


# -- reading the ruleset ---------------------------------------------------------------


def _table(host: Any) -> NftTable:
    table = nft_table(host)
    assert table is not None, "the table inet tenancy is not loaded"
    return table


def _saddr(rule: NftRule) -> str | None:
    return rule.value("ip.saddr") or rule.value("ip6.saddr")


def _daddr(rule: NftRule) -> str | None:
    return rule.value("ip.daddr") or rule.value("ip6.daddr")


def _dport(rule: NftRule) -> tuple[str, str] | None:
    for proto in ("tcp", "udp"):
        port = rule.value(f"{proto}.dport")
        if port is not None:
            return proto, port
    return None


def _is_base(rule: NftRule, chain: str) -> bool:
    """Accept rules every host has: replies, loopback, ICMP, DHCP."""
    keys = set(rule.matches)
    state = rule.value("ct.state")
    if state is not None and set(state.split(",")) <= {"established", "related"}:
        return True
    iface = "iif" if chain == "input" else "oif"
    if rule.value(f"meta.{iface}") == "lo" or rule.value(f"meta.{iface}name") == "lo":
        return True
    if keys and keys <= {"icmp.type", "icmpv6.type"}:
        return True
    dhcp = {("67", "68"), ("547", "546")} if chain == "input" else {("68", "67"), ("546", "547")}
    return (rule.value("udp.sport"), rule.value("udp.dport")) in dhcp


def _same_net(a: str | None, b: str) -> bool:
    try:
        return a is not None and cidr(a) == cidr(b)
    except ValueError:
        return False


def _declared(info: HostInfo, direction: str) -> list[Mapping[str, Any]]:
    return [
        r
        for r in info.var("tenancy_firewall_rules") or []
        if isinstance(r, Mapping) and r.get("direction") == direction
    ]


def _matches_flow(rule: NftRule, flow: Mapping[str, Any], chain: str) -> bool:
    address = _saddr(rule) if chain == "input" else _daddr(rule)
    return (
        rule.verdict == "accept"
        and _same_net(address, str(flow.get("peer_cidr")))
        and _dport(rule) == (str(flow.get("proto")), port_text(flow.get("port")))
    )


def _waived_or_off(policy: Policy, info: HostInfo, control: str) -> bool:
    decision = decide(policy, control, info)
    return decision.status in ("waived", "not-applicable")


def _ops_cidrs(info: HostInfo) -> list[str]:
    return [cidr(c) for c in info.var("tenancy_site_ops_cidrs") or []]


def _ssh_port(info: HostInfo) -> str:
    return str(info.var("tenancy_firewall_ssh_port", 22))


def _undeclared_inbound(table: NftTable, info: HostInfo, ssh_open_ok: bool) -> list[str]:
    flows = _declared(info, "ingress")
    ops = _ops_cidrs(info)
    extra = []
    for rule in table.chain("input"):
        if rule.verdict != "accept" or _is_base(rule, "input"):
            continue
        if any(_matches_flow(rule, f, "input") for f in flows):
            continue
        if _dport(rule) == ("tcp", _ssh_port(info)):
            source = _saddr(rule)
            if (source is not None and cidr(source) in ops) or (source is None and ssh_open_ok):
                continue
        extra.append(rule.text)
    return extra


def _site_services(info: HostInfo) -> list[tuple[str, str, str]]:
    """(address, proto, port) the baseline lets every VM reach: DNS, NTP, syslog, apt proxy."""
    out = []
    for server in info.var("tenancy_site_dns_servers") or []:
        out += [(cidr(server), "udp", "53"), (cidr(server), "tcp", "53")]
    for server in info.var("tenancy_site_ntp_servers") or []:
        out.append((cidr(server), "udp", "123"))
    syslog = str(info.var("tenancy_site_syslog_host", "") or "")
    if syslog:
        proto = str(info.var("tenancy_site_syslog_protocol", "tcp"))
        out.append((cidr(syslog), proto, str(info.var("tenancy_site_syslog_port", 514))))
    proxy = str(info.var("tenancy_site_apt_proxy", "") or "")
    if proxy:
        parts = urlsplit(proxy)
        if parts.hostname:
            out.append((cidr(parts.hostname), "tcp", str(parts.port or 80)))
    return out


def _undeclared_outbound(table: NftTable, info: HostInfo) -> list[str]:
    flows = _declared(info, "egress")
    services = _site_services(info)
    extra = []
    for rule in table.chain("output"):
        if rule.verdict != "accept" or _is_base(rule, "output"):
            continue
        if any(_matches_flow(rule, f, "output") for f in flows):
            continue
        dest, port = _daddr(rule), _dport(rule)
        if dest is not None and port is not None and (cidr(dest), *port) in services:
            continue
        extra.append(rule.text)
    return extra


# -- probes ----------------------------------------------------------------------------


def _probe(host: Any, item: Item, config: pytest.Config) -> None:
    probe: Probe = item.expected
    for endpoint in (probe.source, probe.target):
        if endpoint.kind == "netns":
            why = ProbeRunner.netns_ready(endpoint.label)
            if why:
                pytest.skip(why)

    def other_host(name: str) -> Any:
        return testinfra.get_host(
            f"ansible://{name}",
            ansible_inventory=config.option.ansible_inventory,
            ssh_identity_file=config.option.ssh_identity_file,
            ssh_config=config.option.ssh_config,
        )

    result = ProbeRunner(host, other_host).connect(probe)
    if result.startswith("untestable"):
        pytest.skip(result)
    reachable = result in ("open", "received")
    if probe.allowed:
        assert reachable, f"{probe}: declared ({probe.reason}) but the connection got {result!r}"
    else:
        assert not reachable, f"{probe}: {probe.reason}, but the connection got {result!r}"


# -- the checks ------------------------------------------------------------------------


@control(
    "BASE-FW-01",
    items=_items("package", "service-enabled", "service-active", "config-valid", "table-loaded"),
)
def nftables_enabled(host: Any, item: Item) -> None:
    if item.name == "package":
        expect("package nftables", packages(host, ["nftables"])["nftables"], "installed")
    elif item.name.startswith("service-"):
        unit = units(host, ["nftables.service"])["nftables.service"]
        if item.name == "service-enabled":
            expect("nftables.service UnitFileState", unit.get("UnitFileState"), "enabled")
        else:
            expect("nftables.service ActiveState", unit.get("ActiveState"), "active")
    elif item.name == "config-valid":
        out = run(host, "nft -c -f /etc/nftables.conf")
        assert out.rc == 0, f"/etc/nftables.conf does not load: {out.stderr.strip()}"
    else:
        _table(host)


@control(
    "BASE-FW-02",
    items=_items(
        "input-policy-drop", "forward-policy-drop", "replies-accepted", "no-undeclared-inbound"
    ),
)
def nftables_default_deny_inbound(
    host: Any, item: Item, info: HostInfo, policy: Policy, pytestconfig: pytest.Config
) -> None:
    if isinstance(item.expected, Probe):
        _probe(host, item, pytestconfig)
        return
    table = _table(host)
    if item.name == "input-policy-drop":
        expect("input chain policy", table.policies.get("input"), "drop")
    elif item.name == "forward-policy-drop":
        expect("forward chain policy", table.policies.get("forward"), "drop")
    elif item.name == "replies-accepted":
        assert any(
            r.verdict == "accept" and r.value("ct.state") == "established,related"
            for r in table.chain("input")
        ), "no 'ct state established,related accept' in the input chain"
    elif item.name == "no-undeclared-inbound":
        ssh_open_ok = _waived_or_off(policy, info, "BASE-FW-03")
        extra = _undeclared_inbound(table, info, ssh_open_ok)
        assert not extra, f"input accepts what the plan does not declare: {extra}"
    else:
        flow = item.expected
        assert any(_matches_flow(r, flow, "input") for r in table.chain("input")), (
            f"no accept rule for the declared flow {flow.get('comment') or flow}"
        )


@control("BASE-FW-03", items=_items("ops-networks-known", "ssh-from-ops-only", "no-open-ssh"))
def nftables_ssh_from_ops_only(
    host: Any, item: Item, info: HostInfo, pytestconfig: pytest.Config
) -> None:
    if isinstance(item.expected, Probe):
        _probe(host, item, pytestconfig)
        return
    ops = _ops_cidrs(info)
    assert ops, "the inventory names no operations networks (tenancy_site_ops_cidrs)"
    if item.name == "ops-networks-known":
        return
    ssh_rules = [
        r
        for r in _table(host).chain("input")
        if r.verdict == "accept" and _dport(r) == ("tcp", _ssh_port(info))
    ]
    if item.name == "no-open-ssh":
        open_rules = [r.text for r in ssh_rules if _saddr(r) is None]
        assert not open_rules, f"SSH is accepted from anywhere: {open_rules}"
        return
    sources = sorted({cidr(s) for r in ssh_rules if (s := _saddr(r)) is not None})
    assert sources == sorted(set(ops)), (
        f"SSH is accepted from {sources}, expected only the operations networks {sorted(set(ops))}"
    )


@control("BASE-FW-04", items=_items("output-policy-drop", "no-undeclared-outbound"))
def nftables_egress_restricted(
    host: Any, item: Item, info: HostInfo, pytestconfig: pytest.Config
) -> None:
    if isinstance(item.expected, Probe):
        _probe(host, item, pytestconfig)
        return
    table = _table(host)
    if item.name == "output-policy-drop":
        expect("output chain policy", table.policies.get("output"), "drop")
    elif item.name == "no-undeclared-outbound":
        extra = _undeclared_outbound(table, info)
        assert not extra, f"output accepts what the plan does not declare: {extra}"
    else:
        flow = item.expected
        assert any(_matches_flow(r, flow, "output") for r in table.chain("output")), (
            f"no accept rule for the declared flow {flow.get('comment') or flow}"
        )


@control("MLPS-FW-01", items=_items("log-inbound-drops", "log-outbound-drops"))
def nftables_drop_logging(host: Any, item: Item) -> None:
    chain = "input" if item.name == "log-inbound-drops" else "output"
    rules = _table(host).chain(chain)
    assert rules, f"the {chain} chain is empty"
    last = rules[-1]
    assert last.log and last.limit and last.verdict is None, (
        f"the {chain} chain does not end with a rate-limited log rule (last: {last.text})"
    )
