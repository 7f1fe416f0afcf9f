"""``tenancy up --expect-diff FILE``: apply only what the reviewers approved.

``FILE`` is the ``tenancy diff --format json`` the pull request's reviewers read.
Before anything is applied, ``pulumi preview --json`` says what the stack would
really do; every machine part it would replace or delete (domain, root disk, seed,
data volume) must be one the approved diff announced (a machine replaced,
restarted or removed; a data volume rebuilt or removed), else nothing is applied.
A guest image rebuilt behind the reviewers' back, a hand edit or a provider's
surprise is caught here instead of replacing machines.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from tenancy.plan.plan_diff import PlanDiff

DESTRUCTIVE = frozenset({"replace", "create-replacement", "delete-replaced", "delete", "discard"})
_PARTS = ("domain", "root", "seed")


class ApprovalError(Exception):
    """The approved diff cannot be read."""


def load_expected(path: Path) -> PlanDiff:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        data.pop("approvals", None)
        return PlanDiff.model_validate(data)
    except (OSError, ValueError, ValidationError) as exc:
        raise ApprovalError(f"{path}: not a `tenancy diff --format json` document: {exc}") from exc


def preview_steps(text: str) -> list[Mapping[str, Any]]:
    """The steps of ``pulumi preview --json`` output (lines before the document ignored)."""
    start = text.find("\n{")
    start = 0 if text.startswith("{") else start + 1
    if start < 0 or not text[start:].startswith("{"):
        raise ApprovalError("pulumi preview printed no JSON document")
    doc, _ = json.JSONDecoder().raw_decode(text[start:])
    steps = doc.get("steps") if isinstance(doc, dict) else None
    return [s for s in steps or [] if isinstance(s, dict)]


def _part(urn: str, domains: Iterable[str]) -> tuple[str, str] | None:
    """``(domain, part)`` of a machine's resource URN (``<domain>-root`` ...), else None."""
    name = urn.rsplit("::", 1)[-1]
    for domain in sorted(domains, key=len, reverse=True):
        if name.startswith(f"{domain}-"):
            # a data volume's resource is <domain>-<volume>-vol (its component: <domain>-<volume>)
            return domain, name[len(domain) + 1 :].removesuffix("-vol")
    return None


def unexpected(
    steps: Iterable[Mapping[str, Any]], approved: PlanDiff, domains: Iterable[str]
) -> list[str]:
    """What the stack would replace or delete that the approved diff does not announce."""
    machines = {m.domain: m.change for m in approved.machines}
    by_instance = {(m.tenant, m.instance): m.domain for m in approved.machines}
    volumes = {
        (by_instance.get((v.tenant, v.instance), ""), v.volume)
        for v in approved.volumes
        if v.change in ("replace", "remove")
    }
    known = set(domains) | set(machines)
    found: list[str] = []
    for step in steps:
        op, urn = str(step.get("op", "")), str(step.get("urn", ""))
        if op not in DESTRUCTIVE:
            continue
        hit = _part(urn, known)
        if hit is None:
            continue  # networks, filters, firewalls, runs: no data of a tenant
        domain, part = hit
        change = machines.get(domain)
        if change == "remove":
            continue
        if part == "domain" and change in ("replace", "restart"):
            continue
        if part in ("root", "seed") and change == "replace":
            continue
        if part not in _PARTS and (domain, part) in volumes:
            continue
        what = "data volume " + part if part not in _PARTS else part
        found.append(f"{domain}: {op} of its {what} (the approved diff says {change or 'nothing'})")
    return sorted(set(found))
