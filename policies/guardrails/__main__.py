"""Tenancy guardrails policy pack: the rules of ``tenancy_guardrails`` as a PolicyPack.

Run with ``pulumi preview --policy-pack policies/guardrails`` (the CLI starts this file
through the language host's RunPlugin). Every rule is mandatory: a violation fails the
preview. Optional per-rule config (``--policy-pack-config FILE``):

* ``data-volume-protected``: ``{"approved": ["finance-db-1"]}`` lets the data volumes of
  approved machines go unprotected for an approved deletion;
* ``tenant-within-quota``: ``{"quotas": {"finance": {"vcpus": 8, "memoryGiB": 16,
  "storageGiB": 200}}}`` replaces the planned quota with an auditor's ceiling.
"""

from pulumi_policy import (
    EnforcementLevel,
    PolicyConfigSchema,
    PolicyPack,
    ResourceValidationPolicy,
    Severity,
    StackValidationPolicy,
)
from tenancy_guardrails import (
    DATA_VOLUME_PROTECTED,
    DOMAIN_INTERFACES_FILTERED,
    SEGMENT_UPLINK_DECLARED,
    TENANT_WITHIN_QUOTA,
    data_volume_protected,
    domain_interfaces_filtered,
    segment_uplink_declared,
    tenant_within_quota,
)

QUOTA = {
    "type": "object",
    "properties": {k: {"type": "number"} for k in ("vcpus", "memoryGiB", "storageGiB")},
}

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
        StackValidationPolicy(
            name=SEGMENT_UPLINK_DECLARED[0],
            description=SEGMENT_UPLINK_DECLARED[1],
            validate=segment_uplink_declared,
            enforcement_level=EnforcementLevel.MANDATORY,
            severity=Severity.CRITICAL,
        ),
        ResourceValidationPolicy(
            name=DATA_VOLUME_PROTECTED[0],
            description=DATA_VOLUME_PROTECTED[1],
            validate=data_volume_protected,
            enforcement_level=EnforcementLevel.MANDATORY,
            severity=Severity.HIGH,
            config_schema=PolicyConfigSchema(
                properties={"approved": {"type": "array", "items": {"type": "string"}}}
            ),
        ),
        StackValidationPolicy(
            name=TENANT_WITHIN_QUOTA[0],
            description=TENANT_WITHIN_QUOTA[1],
            validate=tenant_within_quota,
            enforcement_level=EnforcementLevel.MANDATORY,
            severity=Severity.HIGH,
            config_schema=PolicyConfigSchema(
                properties={"quotas": {"type": "object", "additionalProperties": QUOTA}}
            ),
        ),
    ],
)
