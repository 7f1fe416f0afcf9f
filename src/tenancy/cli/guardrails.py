"""The guardrails policy pack of every ``tenancy preview`` and ``tenancy up``, and its config.

The pack (``policies/guardrails`` of the installed package) re-checks what the engine
would deploy; what its rules must compare against comes from this run's plan, never
from a tenant file: the ops grant of each tenant, each tenant's zone and segment, the
site's zone rules, client ranges, address pools and owned ranges, and the approvals of
the run. Every rule is pinned to mandatory here, so no config can soften it. An
operator's file (``--guardrails-config``) may add only an auditor's quota ceilings and
approvals, never replace what the plan says.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tenancy.contract.errors import SpecError, describe
from tenancy.contract.loader import LoadedSite
from tenancy.contract.models import ZONES, Site
from tenancy.contract.yamlsource import LoadError, load_file
from tenancy.engine import EngineError, PolicyPack
from tenancy.plan.model import Plan
from tenancy.plan.site_ranges import client_ranges, owned_ranges
from tenancy.project import Project

PACK = "guardrails"
RULES = (
    "domain-interfaces-filtered",
    "segment-uplink-declared",
    "data-volume-protected",
    "tenant-within-quota",
    "zone-rules-respected",
    "cidr-ownership",
)
QUOTA_KEYS = ("vcpus", "memoryGiB", "storageGiB", "machines", "addresses")
OPERATOR_KEYS = {"data-volume-protected": ("approved",), "tenant-within-quota": ("ceilings",)}
"""What an operator's file may set: everything else comes from the plan."""


class GuardrailsError(Exception):
    """The operator's guardrails config is unusable: its located problems."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


def pack_dir(project: Project) -> Path:
    """The pack folder of the installed package (where ``PulumiPolicy.yaml`` lives)."""
    return project.policies_dir / PACK


def check_runtime() -> None:
    """The pack imports ``pulumi_policy`` in this interpreter's environment (the language
    host starts it with the project venv's Python): say so before the engine starts."""
    if importlib.util.find_spec("pulumi_policy") is None:
        raise EngineError(
            f"the guardrails policy pack needs pulumi-policy, which {sys.prefix} lacks: "
            "install it there (`make setup` installs the project with it)"
        )


# --------------------------------------------------------------------------- the config


def stack_approvals(site: LoadedSite) -> list[str]:
    """``tenancy:approve`` of the stack file: approvals the program honours too."""
    config = site.doc.data.get("config") if isinstance(site.doc.data, dict) else None
    approved = config.get("tenancy:approve") if isinstance(config, dict) else None
    return [a for a in approved if isinstance(a, str)] if isinstance(approved, list) else []


def pack_config(
    plan: Plan,
    site: Site,
    approved: Iterable[str] = (),
    ceilings: Mapping[str, Mapping[str, float]] | None = None,
) -> dict[str, dict[str, Any]]:
    """Every rule's config for one run (Pulumi's ``--policy-pack-config`` shape)."""
    tenants = {t.name: {"zone": t.zone, "cidr": t.segment.cidr} for t in plan.tenants}
    owned = [{"cidr": str(o.net), "what": o.what} for o in owned_ranges(site)]
    config: dict[str, dict[str, Any]] = {rule: {"enforcementLevel": "mandatory"} for rule in RULES}
    config["data-volume-protected"]["approved"] = sorted(set(approved))
    quota = config["tenant-within-quota"]
    quota["grants"] = {t.name: dict(t.quota) for t in plan.tenants}
    if ceilings:
        quota["ceilings"] = {name: dict(limits) for name, limits in ceilings.items()}
    config["zone-rules-respected"].update(
        tenants=tenants,
        zoneRules=site.zone_rules.model_dump(mode="json"),
        clients={z: [str(n) for n in nets] for z, nets in client_ranges(site).items()},
        owned=owned,
    )
    config["cidr-ownership"].update(
        tenants=tenants,
        pools={z: getattr(site.address_pools, z) for z in ZONES},
        forbidden=[o for o in owned if not o["what"].endswith("address pool")],
    )
    return config


def guardrails(
    project: Project,
    plan: Plan,
    site: LoadedSite,
    approved: Iterable[str] = (),
    operator_file: Path | None = None,
) -> PolicyPack:
    """The pack and its config for one preview or update of ``plan``'s site."""
    check_runtime()
    extra = OperatorConfig()
    if operator_file is not None:
        extra = load_operator_config(operator_file, project.root)
    approvals = [*approved, *stack_approvals(site), *extra.approved]
    config = pack_config(plan, site.model, approvals, extra.ceilings)
    return PolicyPack(pack_dir(project), config)


# --------------------------------------------------------------------------- operator file


@dataclass
class OperatorConfig:
    """What an operator added: approvals and an auditor's quota ceilings per tenant."""

    approved: list[str] = field(default_factory=list)
    ceilings: dict[str, dict[str, float]] = field(default_factory=dict)


Report = Callable[[tuple[str | int, ...], str, str, Any], None]
"""Record a located problem: (path in the file, message, expected, found value)."""


def _display(path: Path, root: Path) -> str:
    try:
        return str(path.resolve().relative_to(root))
    except ValueError:
        return str(path)


def load_operator_config(path: Path, root: Path) -> OperatorConfig:
    """Read ``--guardrails-config`` (YAML or JSON); every problem located, none fixed up.

    The shape is Pulumi's policy config: ``{rule: {key: value}}``, limited to
    ``data-volume-protected.approved`` (domain names) and ``tenant-within-quota.ceilings``
    (``{tenant: {vcpus, memoryGiB, storageGiB, machines, addresses}}``, numbers >= 0).
    """
    try:
        doc = load_file(path, _display(path, root))
    except LoadError as exc:
        raise GuardrailsError([str(e) for e in exc.errors]) from None
    errors = list(doc.problems)
    out = OperatorConfig()
    allowed = ", ".join(f"{r}.{k}" for r, keys in OPERATOR_KEYS.items() for k in keys)

    def error(where: tuple[str | int, ...], message: str, expected: str, found: Any) -> None:
        field = ".".join(str(p) for p in where)
        errors.append(SpecError(doc.locate(where), field, message, expected, describe(found)))

    data = doc.data
    if not isinstance(data, dict):
        error((), "the guardrails config must be a mapping", f"keys among {allowed}", data)
        raise GuardrailsError([str(e) for e in errors])
    for rule, body in data.items():
        keys = OPERATOR_KEYS.get(str(rule))
        if keys is None or not isinstance(body, dict):
            error((rule,), "not an operator setting of the guardrails", allowed, body)
            continue
        for key, value in body.items():
            if key not in keys:  # enforcementLevel included: every rule stays mandatory
                error((rule, key), "set by the plan, not by an operator", allowed, value)
            elif key == "approved":
                out.approved += _approvals(value, (rule, key), error)
            else:
                out.ceilings.update(_ceilings(value, (rule, key), error))
    if errors:
        raise GuardrailsError([str(e) for e in errors])
    return out


def _approvals(value: Any, where: tuple[str, str], error: Report) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        error(where, "approvals must be machine names", "a list of domain names", value)
        return []
    return list(value)


def _ceilings(value: Any, where: tuple[str, str], error: Report) -> dict[str, dict[str, float]]:
    if not isinstance(value, dict):
        error(where, "ceilings must be given per tenant", "{tenant: {vcpus: N, ...}}", value)
        return {}
    out: dict[str, dict[str, float]] = {}
    for tenant, limits in value.items():
        if not isinstance(limits, dict):
            error((*where, tenant), "a tenant's ceiling must be a mapping", "{vcpus: N}", limits)
            continue
        for key, limit in limits.items():
            number = isinstance(limit, int | float) and not isinstance(limit, bool)
            if key not in QUOTA_KEYS or not number or limit < 0:
                error(
                    (*where, tenant, key),
                    "not a quota ceiling",
                    f"one of {', '.join(QUOTA_KEYS)} with a number >= 0",
                    limit if key in QUOTA_KEYS else key,
                )
                continue
            out.setdefault(str(tenant), {})[str(key)] = float(limit)
    return out
