"""The plan: every decision the infrastructure needs, as plain data (JSON-serialisable)."""

from __future__ import annotations

import hashlib
import json
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class VolumePlan(Frozen):
    name: str
    size_gib: int
    pool: str
    backup: str


class MachinePlan(Frozen):
    tenant: str
    instance: str  # app-1
    machine: str  # app
    group: str  # Ansible group / role
    domain: str  # libvirt domain name
    host: str
    address: str
    mac: str
    flavor: str
    vcpus: int
    memory_mib: int
    image: str
    disk_gib: int
    root_pool: str
    protect: bool
    volumes: list[VolumePlan] = Field(default_factory=list)


class RulePlan(Frozen):
    """One allowed flow as seen by one segment; local/peer addresses are CIDRs."""

    direction: Literal["ingress", "egress"]
    local_group: str | None  # None: every machine of the tenant
    local_cidrs: list[str]
    peer: str  # tenant, tenant/group, intranet, extranet, internet or a CIDR
    peer_kind: Literal["tenant", "keyword", "cidr"]
    peer_cidrs: list[str]
    ports: list[str]  # "443/tcp", "8000-8080/tcp"


class SegmentPlan(Frozen):
    cidr: str
    gateway: str
    prefix: int
    vlan: int
    bridge: str
    network: str
    hosts: list[str]


class TenantPlan(Frozen):
    name: str
    display_name: str
    owner: str
    zone: str
    file: str
    policies: list[str]
    segment: SegmentPlan
    machines: list[MachinePlan]
    rules: list[RulePlan]
    quota: dict[str, int]
    """What ops granted (vcpus, memoryGiB, storageGiB, machines, addresses)."""
    quota_source: str = ""
    """Where the grant is written: the site's grants file or its defaultQuota."""
    quota_request: dict[str, int] = Field(default_factory=dict)
    """What the tenant's file asks for (``spec.quotaRequest``); never a limit."""
    usage: dict[str, int]


class HostUsage(Frozen):
    name: str
    uri: str
    vcpus_used: int
    vcpus_capacity: int
    memory_mib_used: int
    memory_mib_capacity: int
    pools: dict[str, dict[str, int]]  # pool -> {used_gib, capacity_gib}


class MovePlan(Frozen):
    """An instance leaving its recorded host: rebuilt on ``to_host`` with an empty root disk."""

    tenant: str
    instance: str
    from_host: str
    to_host: str
    why: str
    protect: bool


class Plan(Frozen):
    site: str
    domain_type: str
    tenants: list[TenantPlan]
    hosts: list[HostUsage]
    warnings: list[str] = Field(default_factory=list)
    moves: list[MovePlan] = Field(default_factory=list)

    def to_json(self) -> str:
        """Canonical JSON: the same inputs give byte-identical output on any machine."""
        return (
            json.dumps(self.model_dump(mode="json"), indent=2, sort_keys=True, ensure_ascii=False)
            + "\n"
        )

    def digest(self) -> str:
        return hashlib.sha256(self.to_json().encode()).hexdigest()

    def machines(self) -> list[MachinePlan]:
        return [m for t in self.tenants for m in t.machines]
