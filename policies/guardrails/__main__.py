"""Tenancy guardrails policy pack: the rules of ``tenancy_guardrails`` as a PolicyPack.

``tenancy preview`` and ``tenancy up`` always run it (``--policy-pack`` with this folder
of the installed package); the CLI starts this file through the language host's
RunPlugin, in the project's interpreter. Every rule is mandatory: a violation fails the
preview or the update. Per-rule config (``--policy-pack-config FILE``), which tenancy
writes from the plan on every run (``tenancy.cli.guardrails``):

* ``data-volume-protected``: ``{"approved": ["finance-db-1"]}``, the machines whose data
  volumes the operator approved to go unprotected (``--approve``);
* ``tenant-within-quota``: ``{"grants": {"finance": {"vcpus": 8, "memoryGiB": 16,
  "storageGiB": 200, "machines": 4, "addresses": 256}}}``, what ops granted each tenant,
  and optionally ``"ceilings"`` of the same shape (an auditor's, ``--guardrails-config``);
* ``zone-rules-respected``: ``tenants`` (zone and segment CIDR of each), ``zoneRules``,
  ``clients`` (the intranet and extranet client ranges) and ``owned`` (the site's ranges);
* ``cidr-ownership``: ``tenants``, ``pools`` (the address pool of each zone) and
  ``forbidden`` (the site's reserved, ops and infrastructure ranges).
"""

from typing import Any

from pulumi_policy import (
    EnforcementLevel,
    PolicyConfigSchema,
    PolicyPack,
    ResourceValidationPolicy,
    Severity,
    StackValidationPolicy,
)
from tenancy_guardrails import (
    CIDR_OWNERSHIP,
    DATA_VOLUME_PROTECTED,
    DOMAIN_INTERFACES_FILTERED,
    SEGMENT_UPLINK_DECLARED,
    TENANT_WITHIN_QUOTA,
    ZONE_RULES_RESPECTED,
    cidr_ownership,
    data_volume_protected,
    domain_interfaces_filtered,
    segment_uplink_declared,
    tenant_within_quota,
    zone_rules_respected,
)

QUOTA_KEYS = ("vcpus", "memoryGiB", "storageGiB", "machines", "addresses")
QUOTA = {"type": "object", "properties": {k: {"type": "number"} for k in QUOTA_KEYS}}
STRINGS = {"type": "array", "items": {"type": "string"}}
RANGES = {
    "type": "array",
    "items": {
        "type": "object",
        "properties": {"cidr": {"type": "string"}, "what": {"type": "string"}},
        "required": ["cidr"],
    },
}
TENANTS = {
    "type": "object",
    "additionalProperties": {
        "type": "object",
        "properties": {"zone": {"type": "string"}, "cidr": {"type": "string"}},
        "required": ["zone", "cidr"],
    },
}
PORTS_OR_ANY: dict[str, Any] = {
    "oneOf": [{"type": "string", "enum": ["any"]}, {"type": "array", "items": {"type": "string"}}]
}
ZONE_RULES = {
    "type": "object",
    "additionalProperties": {"type": "object", "additionalProperties": PORTS_OR_ANY},
}


def stack_policy(
    rule: tuple[str, str], validate: Any, severity: Severity, **schema: Any
) -> StackValidationPolicy:
    """A mandatory stack rule; ``schema``: its config properties, if it takes any."""
    return StackValidationPolicy(
        name=rule[0],
        description=rule[1],
        validate=validate,
        enforcement_level=EnforcementLevel.MANDATORY,
        severity=severity,
        config_schema=PolicyConfigSchema(properties=schema) if schema else None,
    )


PolicyPack(
    name="tenancy-guardrails",
    enforcement_level=EnforcementLevel.MANDATORY,
    policies=[
        ResourceValidationPolicy(
            name=DOMAIN_INTERFACES_FILTERED[0],
            description=DOMAIN_INTERFACES_FILTERED[1],
            validate=domain_interfaces_filtered,
            enforcement_level=EnforcementLevel.MANDATORY,
            severity=Severity.CRITICAL,
        ),
        stack_policy(SEGMENT_UPLINK_DECLARED, segment_uplink_declared, Severity.CRITICAL),
        ResourceValidationPolicy(
            name=DATA_VOLUME_PROTECTED[0],
            description=DATA_VOLUME_PROTECTED[1],
            validate=data_volume_protected,
            enforcement_level=EnforcementLevel.MANDATORY,
            severity=Severity.HIGH,
            config_schema=PolicyConfigSchema(properties={"approved": STRINGS}),
        ),
        stack_policy(
            TENANT_WITHIN_QUOTA,
            tenant_within_quota,
            Severity.HIGH,
            grants={"type": "object", "additionalProperties": QUOTA},
            ceilings={"type": "object", "additionalProperties": QUOTA},
        ),
        stack_policy(
            ZONE_RULES_RESPECTED,
            zone_rules_respected,
            Severity.CRITICAL,
            tenants=TENANTS,
            zoneRules=ZONE_RULES,
            clients={"type": "object", "additionalProperties": STRINGS},
            owned=RANGES,
        ),
        stack_policy(
            CIDR_OWNERSHIP,
            cidr_ownership,
            Severity.CRITICAL,
            tenants=TENANTS,
            pools={"type": "object", "additionalProperties": {"type": "string"}},
            forbidden=RANGES,
        ),
    ],
)
