"""Plan presentations: terminal table, pull-request markdown, Graphviz dot, Mermaid."""

from __future__ import annotations

from dataclasses import dataclass

from tenancy.contract.models import KEYWORD_ENDPOINTS
from tenancy.plan.model import Plan
from tenancy.render.env import render


@dataclass(frozen=True)
class Edge:
    src: str
    dst: str
    ports: str


def _graph(plan: Plan) -> dict[str, object]:
    groups = {t.name: sorted({m.group for m in t.machines}) for t in plan.tenants}
    counts = {
        t.name: {g: sum(1 for m in t.machines if m.group == g) for g in groups[t.name]}
        for t in plan.tenants
    }
    edges: set[Edge] = set()
    keywords: set[str] = set()

    def node(tenant: str, group: str | None) -> list[str]:
        return [f"{tenant}/{g}" for g in ([group] if group else groups.get(tenant, []))]

    for t in plan.tenants:
        for r in t.rules:
            ports = ", ".join(r.ports)
            if r.peer_kind == "tenant":
                if r.direction != "ingress":
                    continue  # each tenant flow appears once, from the ingress side
                peer_tenant, _, peer_group = r.peer.partition("/")
                for s in node(peer_tenant, peer_group or None):
                    for d in node(t.name, r.local_group):
                        edges.add(Edge(s, d, ports))
                continue
            keywords.add(r.peer)
            for local in node(t.name, r.local_group):
                if r.direction == "ingress":
                    edges.add(Edge(r.peer, local, ports))
                else:
                    edges.add(Edge(local, r.peer, ports))
    kw_sorted = sorted(keywords, key=lambda k: (k not in KEYWORD_ENDPOINTS, k))
    return {
        "plan": plan,
        "groups": groups,
        "group_counts": counts,
        "edges": sorted(edges, key=lambda e: (e.src, e.dst, e.ports)),
        "keywords": kw_sorted,
    }


def to_markdown(plan: Plan) -> str:
    return render("plan/plan.md.j2", plan=plan)


def to_dot(plan: Plan) -> str:
    return render("plan/plan.dot.j2", **_graph(plan))


def to_mermaid(plan: Plan) -> str:
    ctx = _graph(plan)
    ids: dict[str, str] = {}
    names: list[str] = list(ctx["keywords"])  # type: ignore[call-overload]
    for t in plan.tenants:
        names.append(t.name)
        names.extend(f"{t.name}/{g}" for g in ctx["groups"][t.name])  # type: ignore[index]
    for i, name in enumerate(names):
        ids[name] = f"n{i}"
    return render("plan/plan.mmd.j2", ids=ids, **ctx)


def to_table(plan: Plan) -> str:
    """Plain-text overview for a terminal."""
    rows = [("TENANT", "MACHINE", "ROLE", "HOST", "ADDRESS", "FLAVOR", "PROTECT")]
    for t in plan.tenants:
        for m in t.machines:
            rows.append(
                (t.name, m.domain, m.group, m.host, m.address, m.flavor, "yes" if m.protect else "")
            )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    lines.append("")
    lines.append("SEGMENTS")
    for t in plan.tenants:
        lines.append(
            f"  {t.name:<24} {t.zone:<9} {t.segment.cidr:<18} vlan {t.segment.vlan:<5}"
            f" bridge {t.segment.bridge}"
        )
    lines.append("")
    lines.append("FLOWS (default deny; only these are open)")
    for t in plan.tenants:
        for r in t.rules:
            if r.peer_kind == "tenant" and r.direction == "egress":
                continue  # shown once, from the receiving side
            local = f"{t.name}/{r.local_group}" if r.local_group else t.name
            arrow = f"{r.peer} -> {local}" if r.direction == "ingress" else f"{local} -> {r.peer}"
            lines.append(f"  {arrow:<56} {', '.join(r.ports)}")
    if plan.moves:
        lines.append("")
        lines.append("MOVES (each machine is rebuilt on its new host with an empty root disk)")
        for mv in plan.moves:
            protect = " (protected)" if mv.protect else ""
            lines.append(
                f"  {mv.tenant}/{mv.instance}{protect}: {mv.from_host} -> {mv.to_host}: {mv.why}"
            )
    for w in plan.warnings:
        lines.append(f"warning: {w}")
    lines.append("")
    lines.append(
        f"plan {plan.digest()[:16]}: {len(plan.tenants)} tenants, "
        f"{len(plan.machines())} machines, {len(plan.hosts)} hosts"
    )
    return "\n".join(lines) + "\n"
