"""A plan diff for its readers: the pull-request comment (markdown + Mermaid), a terminal, JSON."""

from __future__ import annotations

import json

from tenancy.plan.plan_diff import PlanDiff
from tenancy.render.env import render

_SIGN = {"add": "+", "remove": "-"}


def _diagram(diff: PlanDiff) -> dict[str, object]:
    """Nodes (changed tenants and the peers of changed flows) and one edge per changed flow."""
    names: list[str] = [t.name for t in diff.tenants]
    edges: list[tuple[str, str, str, str]] = []  # src, dst, label, change
    for f in diff.flows:
        peer = f.peer.partition("/")[0] if "/" in f.peer else f.peer
        if peer not in names:
            names.append(peer)
        src, dst = (peer, f.tenant) if f.direction == "ingress" else (f.tenant, peer)
        edges.append((src, dst, f"{_SIGN[f.change]} {', '.join(f.ports)}", f.change))
    changes = {t.name: t.change for t in diff.tenants}
    return {
        "ids": {n: f"n{i}" for i, n in enumerate(names)},
        "nodes": names,
        "changes": changes,
        "edges": sorted(set(edges)),
    }


def to_markdown(diff: PlanDiff) -> str:
    return render("plan/diff.md.j2", diff=diff, approvals=diff.approvals(), **_diagram(diff))


def to_json(diff: PlanDiff) -> str:
    data = diff.model_dump(mode="json")
    data["approvals"] = diff.approvals()
    return json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def to_table(diff: PlanDiff) -> str:
    """Plain text for a terminal: one line per change, the approvals last."""
    lines = [f"changes on site {diff.site}"]
    if diff.base_error:
        lines.append(f"  (the base has no plan of this site: {diff.base_error})")
    if diff.empty:
        lines.append("  none: the site stays as it is")
    for t in diff.tenants:
        segment = t.segment or t.segment_before or ""
        if t.change == "modify" and t.segment_before != t.segment:
            segment = f"{t.segment_before} -> {t.segment}"
        lines.append(f"  tenant {t.name}: {t.change} ({t.zone}, {segment})")
    for m in diff.machines:
        mark = "  [needs --approve]" if m.needs_approval else ""
        lines.append(f"  machine {m.domain}: {m.change}: {'; '.join(m.reasons)}{mark}")
    for v in diff.volumes:
        mark = "  [needs --approve]" if v.needs_approval else ""
        lines.append(f"  volume {v.tenant}/{v.instance}/{v.volume}: {v.change}: {v.detail}{mark}")
    for f in diff.flows:
        lines.append(
            f"  flow {_SIGN[f.change]} {f.tenant} {f.direction} {f.machines} "
            f"{'from' if f.direction == 'ingress' else 'to'} {f.peer}: {', '.join(f.ports)}"
        )
    for setting in diff.settings:
        lines.append(f"  site setting {setting}: in place on every machine (baseline)")
    approvals = diff.approvals()
    if approvals:
        lines.append(f"needs --approve: {', '.join(approvals)}")
    return "\n".join(lines) + "\n"
