"""The Ansible inventory a plan implies: groups per tenant and per tenant role."""

from __future__ import annotations

from typing import Any

from tenancy.contract import host_vars as hv
from tenancy.plan.model import Plan, RulePlan, TenantPlan
from tenancy.plan.names import group_name as group_name  # the planner checks them unique


def firewall_rules_for(tenant: TenantPlan, group: str) -> list[dict[str, Any]]:
    """The declared flows that concern machines of ``group``, for the in-guest firewall."""
    out: list[dict[str, Any]] = []
    for rule in tenant.rules:
        if rule.local_group not in (None, group):
            continue
        out.extend(_rule_entries(rule))
    return out


def _rule_entries(rule: RulePlan) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = []
    for port in rule.ports:
        number, _, proto = port.partition("/")
        for peer in rule.peer_cidrs:
            entries.append(
                {
                    "direction": rule.direction,
                    "peer_cidr": peer,
                    "proto": proto,
                    "port": number,
                    "comment": f"{rule.direction} {rule.peer} {port}",
                }
            )
    return entries


def inventory(plan: Plan, ops_user: str = "ops") -> dict[str, Any]:
    """YAML-ready inventory: ``all.children.<tenant>.children.<tenant>_<role>.hosts``."""
    children: dict[str, Any] = {}
    for tenant in plan.tenants:
        roles: dict[str, Any] = {}
        for m in tenant.machines:
            role_group = roles.setdefault(group_name(tenant.name, m.group), {"hosts": {}})
            role_group["hosts"][m.domain] = {
                hv.ANSIBLE_HOST: m.address,
                hv.ANSIBLE_USER: ops_user,
                hv.TENANT: tenant.name,
                hv.GROUP: m.group,
                hv.HYPERVISOR: m.host,
                hv.PROFILES: list(tenant.policies),
                hv.FIREWALL_RULES: firewall_rules_for(tenant, m.group),
            }
        children[group_name(tenant.name)] = {
            "children": dict(sorted(roles.items())),
            "vars": {hv.ZONE: tenant.zone, hv.SEGMENT: tenant.segment.cidr},
        }
    return {"all": {"children": children, "vars": {hv.SITE: plan.site}}}
