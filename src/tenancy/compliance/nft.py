"""The loaded in-guest ruleset: ``nft -j list table inet tenancy`` reduced to chains and rules.

The firewall checks compare the ruleset the kernel enforces with the plan;
JSON output is parsed (not the text listing) so a rule reads the same
whatever nft's formatting, each reduced to its matches and verdict.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tenancy.compliance.facts import run
from tenancy.compliance.host import Host

__all__ = ["NftRule", "NftTable", "nft_table", "parse_nft"]


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
    """A table: the policy of each base chain and every rule, in order."""

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


def nft_table(host: Host, family: str = "inet", name: str = "tenancy") -> NftTable | None:
    """The loaded in-guest table (also listed as text for the evidence); None when absent."""
    run(host, f"nft -a list table {family} {name}")
    out = run(host, f"nft -j list table {family} {name}")
    if out.rc != 0 or not out.stdout.strip():
        return None
    return parse_nft(json.loads(out.stdout))
