"""Firewall compilation: declared rules -> allowed flows per segment (default deny).

A flow between two tenants opens only when the source declares the egress
and the destination declares the ingress; the open ports are the
intersection of both declarations. Flows to keyword endpoints (intranet,
extranet, internet) and CIDRs need only this tenant's declaration.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Literal

from tenancy.contract.errors import SpecError
from tenancy.contract.loader import LoadedTenant
from tenancy.contract.models import KEYWORD_ENDPOINTS, EgressRule, ExternalNetworks
from tenancy.contract.types import PortRange, parse_port
from tenancy.plan.model import RulePlan


@dataclass(frozen=True)
class Addressing:
    """Where a tenant's machines live, for turning names into CIDRs."""

    cidr: str
    groups: dict[str, list[str]]  # group -> sorted /32 CIDRs

    def cidrs(self, group: str | None) -> list[str]:
        return [self.cidr] if group is None else list(self.groups.get(group, []))


def split_ref(ref: str) -> tuple[str, str | None]:
    tenant, _, group = ref.partition("/")
    return tenant, group or None


def is_cidr(ref: str) -> bool:
    return "/" in ref and ref[0].isdigit()


@dataclass(frozen=True)
class Declared:
    """One rule a tenant declares, either direction, with where it was written."""

    direction: Literal["ingress", "egress"]
    index: int
    peer_key: str  # "from" for ingress, "to" for egress
    peer: str
    local_group: str | None
    ports: list[str]

    @property
    def field(self) -> str:
        return f"spec.firewall.{self.direction}[{self.index}]"


def declared_rules(t: LoadedTenant) -> list[Declared]:
    """Every rule of a tenant's firewall, ingress first (the checks' common walk)."""
    fw = t.model.spec.firewall
    rules = [
        Declared("ingress", i, "from", r.source, r.to, r.ports) for i, r in enumerate(fw.ingress)
    ]
    rules += [Declared("egress", j, "to", r.to, r.source, r.ports) for j, r in enumerate(fw.egress)]
    return rules


def _ports(specs: list[str]) -> list[PortRange]:
    return sorted({parse_port(p) for p in specs})


def _intersect(a: list[PortRange], b: list[PortRange]) -> list[PortRange]:
    out = {x.intersect(y) for x in a for y in b}
    return sorted(p for p in out if p is not None)


def _narrow(declared: str | None, other: str | None) -> tuple[bool, str | None]:
    """Combine two group constraints on one side: (compatible, effective group)."""
    if declared is None or other is None:
        return True, declared or other
    return declared == other, declared


def compile_flows(
    tenants: dict[str, LoadedTenant],
    addressing: dict[str, Addressing],
    external: ExternalNetworks,
) -> tuple[dict[str, list[RulePlan]], list[SpecError]]:
    """Rules per tenant (ingress and egress), plus one-sided declaration warnings."""
    rules: dict[str, list[RulePlan]] = {name: [] for name in tenants}
    problems: list[SpecError] = []
    matched_egress: set[tuple[str, int]] = set()

    def external_rule(
        direction: Literal["ingress", "egress"],
        group: str | None,
        local: list[str],
        peer: str,
        ports: list[str],
    ) -> RulePlan:
        """A flow to/from a keyword endpoint or CIDR: this tenant's declaration suffices."""
        keyword = peer in KEYWORD_ENDPOINTS
        return RulePlan(
            direction=direction,
            local_group=group,
            local_cidrs=local,
            peer=peer,
            peer_kind="keyword" if keyword else "cidr",
            peer_cidrs=list(getattr(external, peer)) if keyword else [peer],
            ports=[str(p) for p in _ports(ports)],
        )

    # each tenant's egress rules by the tenant they name: matching stays linear in the
    # number of rules (a hostile file with hundreds of rules against another's hundreds)
    egress_to: dict[tuple[str, str], list[tuple[int, EgressRule]]] = {}
    for sender_name, sender in tenants.items():
        for j, eg in enumerate(sender.model.spec.firewall.egress):
            if eg.to not in KEYWORD_ENDPOINTS and not is_cidr(eg.to):
                egress_to.setdefault((sender_name, split_ref(eg.to)[0]), []).append((j, eg))

    for dst_name, dst in sorted(tenants.items()):
        for i, ing in enumerate(dst.model.spec.firewall.ingress):
            local = addressing[dst_name].cidrs(ing.to)
            if ing.source in KEYWORD_ENDPOINTS or is_cidr(ing.source):
                rules[dst_name].append(
                    external_rule("ingress", ing.to, local, ing.source, ing.ports)
                )
                continue
            src_name, src_group = split_ref(ing.source)
            src = tenants.get(src_name)
            if src is None:
                continue  # reported by cross-checks
            opened = False
            for j, eg in egress_to.get((src_name, dst_name), []):
                _, eg_group = split_ref(eg.to)
                ok_dst, dst_group = _narrow(ing.to, eg_group)
                ok_src, eff_src = _narrow(src_group, eg.source)
                if not (ok_dst and ok_src):
                    continue
                ports = _intersect(_ports(ing.ports), _ports(eg.ports))
                if not ports:
                    continue
                matched_egress.add((src_name, j))
                opened = True
                port_text = [str(p) for p in ports]
                peer_ref = f"{src_name}/{eff_src}" if eff_src else src_name
                dst_ref = f"{dst_name}/{dst_group}" if dst_group else dst_name
                rules[dst_name].append(
                    RulePlan(
                        direction="ingress",
                        local_group=dst_group,
                        local_cidrs=addressing[dst_name].cidrs(dst_group),
                        peer=peer_ref,
                        peer_kind="tenant",
                        peer_cidrs=addressing[src_name].cidrs(eff_src),
                        ports=port_text,
                    )
                )
                rules[src_name].append(
                    RulePlan(
                        direction="egress",
                        local_group=eff_src,
                        local_cidrs=addressing[src_name].cidrs(eff_src),
                        peer=dst_ref,
                        peer_kind="tenant",
                        peer_cidrs=addressing[dst_name].cidrs(dst_group),
                        ports=port_text,
                    )
                )
            if not opened:
                problems.append(
                    SpecError(
                        dst.locate("spec", "firewall", "ingress", i, "from"),
                        f"spec.firewall.ingress[{i}].from",
                        f"one-sided flow stays closed: {src_name} declares no matching egress "
                        f"to {dst_name} on {', '.join(ing.ports)}",
                        expected=f"an egress rule in {src.file} with to: {dst_name}",
                        severity="warning",
                        related=(src.locate("spec", "firewall"),),
                    )
                )

    for src_name, src in sorted(tenants.items()):
        for j, eg in enumerate(src.model.spec.firewall.egress):
            local = addressing[src_name].cidrs(eg.source)
            if eg.to in KEYWORD_ENDPOINTS or is_cidr(eg.to):
                rules[src_name].append(external_rule("egress", eg.source, local, eg.to, eg.ports))
                continue
            if (src_name, j) in matched_egress:
                continue
            dst_name, _ = split_ref(eg.to)
            receiver = tenants.get(dst_name)
            if receiver is None:
                continue
            problems.append(
                SpecError(
                    src.locate("spec", "firewall", "egress", j, "to"),
                    f"spec.firewall.egress[{j}].to",
                    f"one-sided flow stays closed: {dst_name} declares no matching ingress "
                    f"from {src_name} on {', '.join(eg.ports)}",
                    expected=f"an ingress rule in {receiver.file} with from: {src_name}",
                    severity="warning",
                    related=(receiver.locate("spec", "firewall"),),
                )
            )

    for name in rules:
        unique = {json.dumps(r.model_dump(), sort_keys=True): r for r in rules[name]}
        rules[name] = [unique[k] for k in sorted(unique)]
    return rules, problems
