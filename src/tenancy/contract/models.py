"""Pydantic models of the public contracts: Tenant v1 and Site.

Models check each document on its own (types, names, formats, unknown keys);
everything that needs several documents (site catalogues, other tenants)
lives in ``tenancy.contract.crosscheck``.
"""

from __future__ import annotations

import functools
import re
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

from tenancy.contract.types import (
    ABS_PATH_RE,
    DNS_LABEL_RE,
    EMAIL_RE,
    IMAGE_RE,
    LIBVIRT_URI_RE,
    Cidr,
    DnsLabel,
    PortSpec,
    TenantName,
    check_cidr,
)

KEYWORD_ENDPOINTS = ("intranet", "extranet", "internet")
# Words a tenant may not be called: the flow keywords, Ansible's implicit groups and
# host, the operations network and user, and the prefix of the derived libvirt names.
RESERVED_TENANT_NAMES = frozenset(
    {*KEYWORD_ENDPOINTS, "all", "ungrouped", "localhost", "ops", "tenancy"}
)
# the machine's root disk is <domain>-root.qcow2 (tenancy.infra.virtual_machine)
RESERVED_VOLUME_NAMES = frozenset({"root"})
_LABEL = r"[a-z](-?[a-z0-9]){0,31}"
_ENDPOINT_REF_RE = re.compile(rf"{_LABEL}(/{_LABEL})?")


class Strict(BaseModel):
    """Base: unknown keys are errors and values are never coerced (no "yes" -> True)."""

    model_config = ConfigDict(extra="forbid", strict=True, populate_by_name=True, frozen=True)


def _check_endpoint(value: str) -> str:
    if value in KEYWORD_ENDPOINTS or _ENDPOINT_REF_RE.fullmatch(value):
        return value
    if value[:1].isascii() and value[:1].isdigit():  # meant as a CIDR: say which form
        check_cidr(value)
        return value
    raise ValueError(
        "a tenant name (optionally tenant/group; lower-case, single '-'), intranet, extranet, "
        "internet or an IPv4 CIDR"
    )


Endpoint = Annotated[
    str,
    StringConstraints(min_length=1, max_length=65),
    Field(description="another tenant (`hr` or `hr/db`), intranet, extranet, internet, or a CIDR"),
]


class Metadata(Strict):
    name: TenantName
    display_name: Annotated[str, StringConstraints(min_length=1, max_length=128)] = Field(
        alias="displayName", description="human name, any Unicode"
    )
    owner: Annotated[str, StringConstraints(max_length=254, pattern=EMAIL_RE)] = Field(
        description="contact e-mail address of the tenant"
    )

    @field_validator("name")
    @classmethod
    def _not_reserved(cls, name: str) -> str:
        if name in RESERVED_TENANT_NAMES:
            words = ", ".join(sorted(RESERVED_TENANT_NAMES))
            raise ValueError(f"a tenant name that is not a reserved word ({words})")
        return name


class NetworkSpec(Strict):
    cidr: Cidr | None = Field(
        default=None, description="segment; omitted = allocated from the site pool (ledger)"
    )


class Quota(Strict):
    """What ops grant a tenant: ``stacks/quotas.<site>.yaml``, else the site's default."""

    vcpus: int = Field(ge=1, le=4096)
    memory_gib: int = Field(alias="memoryGiB", ge=1, le=65536)
    storage_gib: int = Field(alias="storageGiB", ge=1, le=1_048_576)
    machines: int = Field(default=16, ge=0, le=4096, description="machine instances in all")
    addresses: int | None = Field(
        default=None,
        ge=16,
        le=1 << 20,
        description="segment size in addresses; omitted: one segment of the site's segmentPrefix",
    )


class QuotaRequest(Strict):
    """What a tenant asks for: shown to reviewers next to the grant, never a limit itself."""

    vcpus: int | None = Field(default=None, ge=1, le=4096)
    memory_gib: int | None = Field(default=None, alias="memoryGiB", ge=1, le=65536)
    storage_gib: int | None = Field(default=None, alias="storageGiB", ge=1, le=1_048_576)
    machines: int | None = Field(default=None, ge=0, le=4096)
    addresses: int | None = Field(default=None, ge=16, le=1 << 20)


class VolumeSpec(Strict):
    name: DnsLabel
    size_gib: int = Field(alias="sizeGiB", ge=1, le=65536)
    pool: DnsLabel = Field(description="storage pool from the site")
    backup: DnsLabel = Field(default="none", description="backup schedule name from the site")

    @field_validator("name")
    @classmethod
    def _not_reserved(cls, name: str) -> str:
        if name in RESERVED_VOLUME_NAMES:
            raise ValueError(
                f"a volume name other than {name!r} (the root disk is <domain>-{name}.qcow2)"
            )
        return name


class MachineSpec(Strict):
    name: DnsLabel
    count: int = Field(default=1, ge=1, le=64)
    flavor: DnsLabel = Field(description="flavor from the site's catalogue")
    image: Annotated[str, StringConstraints(pattern=IMAGE_RE)] = Field(
        description="image from the site's catalogue"
    )
    disk_gib: int = Field(default=10, alias="diskGiB", ge=3, le=4096)
    role: DnsLabel | None = Field(default=None, description="Ansible group; default: the name")
    protect: bool = Field(default=False, description="no replace/delete without approval")
    volumes: list[VolumeSpec] = Field(default_factory=list, max_length=16)

    @property
    def group(self) -> str:
        return self.role or self.name

    def instance_names(self) -> list[str]:
        return [f"{self.name}-{i}" for i in range(1, self.count + 1)]

    @field_validator("volumes")
    @classmethod
    def _unique_volumes(cls, volumes: list[VolumeSpec]) -> list[VolumeSpec]:
        seen: set[str] = set()
        for vol in volumes:
            if vol.name in seen:
                raise ValueError(f"unique volume names; {vol.name!r} appears twice")
            seen.add(vol.name)
        return volumes


class IngressRule(Strict):
    source: Endpoint = Field(alias="from")
    to: DnsLabel | None = Field(default=None, description="machine group; default: all")
    ports: list[PortSpec] = Field(min_length=1, max_length=64)

    _v_source = field_validator("source")(classmethod(lambda cls, v: _check_endpoint(v)))


class EgressRule(Strict):
    to: Endpoint
    source: DnsLabel | None = Field(default=None, alias="from", description="machine group")
    ports: list[PortSpec] = Field(min_length=1, max_length=64)

    _v_to = field_validator("to")(classmethod(lambda cls, v: _check_endpoint(v)))


class FirewallSpec(Strict):
    ingress: list[IngressRule] = Field(default_factory=list, max_length=256)
    egress: list[EgressRule] = Field(default_factory=list, max_length=256)


class TenantBody(Strict):
    site: DnsLabel
    zone: Literal["intranet", "extranet"]
    network: NetworkSpec = Field(default_factory=NetworkSpec)
    quota_request: QuotaRequest | None = Field(
        default=None,
        alias="quotaRequest",
        description="what you ask ops to grant (stacks/quotas.<site>.yaml holds the grant)",
    )
    machines: list[MachineSpec] = Field(default_factory=list, max_length=128)
    firewall: FirewallSpec = Field(default_factory=FirewallSpec)
    policies: list[DnsLabel] = Field(default_factory=lambda: ["baseline"])

    @field_validator("machines")
    @classmethod
    def _unique_machines(cls, machines: list[MachineSpec]) -> list[MachineSpec]:
        seen: set[str] = set()
        for machine in machines:
            if machine.name in seen:
                raise ValueError(f"unique machine names; {machine.name!r} appears twice")
            seen.add(machine.name)
        return machines


class Tenant(Strict):
    """One department's hosting request (``tenants/<name>.yaml``)."""

    api_version: Literal["tenancy/v1"] = Field(alias="apiVersion")
    kind: Literal["Tenant"]
    metadata: Metadata
    spec: TenantBody

    @property
    def name(self) -> str:
        return self.metadata.name

    def groups(self) -> set[str]:
        return {m.group for m in self.spec.machines}


# --------------------------------------------------------------------------- site


class PoolSpec(Strict):
    name: DnsLabel
    capacity_gib: int = Field(alias="capacityGiB", ge=1)
    path: Annotated[str, StringConstraints(pattern=ABS_PATH_RE)] = Field(
        description="absolute directory of the libvirt dir pool"
    )


class HostSpec(Strict):
    name: DnsLabel
    uri: Annotated[str, StringConstraints(pattern=LIBVIRT_URI_RE)]
    vcpus: int = Field(ge=1)
    memory_gib: int = Field(alias="memoryGiB", ge=1)
    pools: list[PoolSpec] = Field(min_length=1)


class FlavorSpec(Strict):
    vcpus: int = Field(ge=1, le=256)
    memory_mib: int = Field(alias="memoryMiB", ge=128)


class ImageSpec(Strict):
    os: str
    source: str = Field(
        description="'builtin:debian-12' (built by tools/) or an absolute qcow2 path"
    )


class Overcommit(Strict):
    cpu: float = Field(default=4.0, ge=1.0, le=32.0)
    memory: float = Field(default=1.0, ge=1.0, le=4.0)


class AddressPools(Strict):
    intranet: Cidr
    extranet: Cidr
    segment_prefix: int = Field(default=24, alias="segmentPrefix", ge=16, le=28)
    explicit_prefixes: list[int] | None = Field(
        default=None,
        alias="explicitPrefixes",
        min_length=2,
        max_length=2,
        description="[shortest, longest] prefix of a tenant's own network.cidr; "
        "default [segmentPrefix - 2, 28]",
    )

    @model_validator(mode="after")
    def _prefix_range(self) -> AddressPools:
        if self.explicit_prefixes is not None:
            lo, hi = self.explicit_prefixes
            if not 16 <= lo <= hi <= 28:
                raise ValueError("explicitPrefixes as [shortest, longest] within 16..28")
        return self

    @property
    def prefix_range(self) -> tuple[int, int]:
        """The prefix lengths an explicit tenant segment may have."""
        if self.explicit_prefixes is not None:
            return self.explicit_prefixes[0], self.explicit_prefixes[1]
        return max(16, self.segment_prefix - 2), 28


ZONES = ("intranet", "extranet")
ZonePeer = Literal["intranet", "extranet", "internet"]
ZonePorts = Literal["any"] | list[PortSpec]


def _zone_default(zone: str) -> dict[ZonePeer, ZonePorts]:
    """Without zoneRules: each zone talks freely to itself, the intranet to extranet
    clients too; nothing reaches from the extranet into the intranet, and the
    intranet never exchanges traffic with the internet."""
    if zone == "intranet":
        return {"intranet": "any", "extranet": "any"}
    return {"extranet": "any", "internet": "any"}


class ZoneRules(Strict):
    """Per zone of a tenant: the peers (a keyword endpoint, or a tenant of that zone) it may
    exchange traffic with, and on which ports at most ("any"; a peer left out: none)."""

    intranet: dict[ZonePeer, ZonePorts] = Field(default_factory=lambda: _zone_default("intranet"))
    extranet: dict[ZonePeer, ZonePorts] = Field(default_factory=lambda: _zone_default("extranet"))

    def allowed(self, zone: str, peer: str) -> ZonePorts | None:
        """The ports a ``zone`` tenant may use with ``peer``; None: no traffic at all."""
        rules: dict[str, ZonePorts] = dict(getattr(self, zone))
        return rules.get(peer)


class ExternalNetworks(Strict):
    """Where traffic of the keyword endpoints comes from / goes to."""

    intranet: list[Cidr] = Field(min_length=1)
    extranet: list[Cidr] = Field(min_length=1)
    internet: list[Cidr] = Field(min_length=1)


class OpsSpec(Strict):
    ssh_keys: list[str] = Field(alias="sshKeys", default_factory=list)
    ssh_key_files: list[str] = Field(alias="sshKeyFiles", default_factory=list)
    cidrs: list[Cidr] = Field(default_factory=list, description="where ops reach VMs from")
    user: DnsLabel = "ops"


class Site(Strict):
    """A machine room: hypervisors, address pools and catalogues (``stacks/Pulumi.<site>.yaml``)."""

    name: DnsLabel
    description: str = ""
    domain_type: Literal["kvm", "qemu"] = Field(alias="domainType")
    hosts: list[HostSpec] = Field(min_length=1, max_length=256)
    address_pools: AddressPools = Field(alias="addressPools")
    external: ExternalNetworks
    reserved: list[Cidr] = Field(default_factory=list)
    infrastructure: list[Cidr] = Field(
        default_factory=list,
        description="hypervisor, storage and management networks: no tenant may name them",
    )
    zone_rules: ZoneRules = Field(default_factory=ZoneRules, alias="zoneRules")
    # a list, not a tuple: strict mode refuses YAML's lists for tuple fields
    vlan_range: list[int] = Field(
        default_factory=lambda: [100, 3999], alias="vlanRange", min_length=2, max_length=2
    )
    flavors: dict[str, FlavorSpec] = Field(min_length=1)
    images: dict[str, ImageSpec] = Field(min_length=1)
    overcommit: Overcommit = Field(default_factory=Overcommit)
    default_quota: Quota | None = Field(
        default=None,
        alias="defaultQuota",
        description="the grant of a tenant stacks/quotas.<site>.yaml does not list; omitted: none",
    )
    backup_schedules: list[DnsLabel] = Field(
        default_factory=lambda: ["none", "daily", "weekly"], alias="backupSchedules"
    )
    ops: OpsSpec = Field(default_factory=OpsSpec)
    package_mirror: str | None = Field(default=None, alias="packageMirror")
    ntp_servers: list[str] = Field(default_factory=list, alias="ntpServers")

    @field_validator("flavors", "images")
    @classmethod
    def _catalogue_names(cls, value: dict[str, object]) -> dict[str, object]:
        for key in value:
            if not re.match(DNS_LABEL_RE, key) and not re.match(r"^[a-z0-9][a-z0-9.-]{0,31}$", key):
                raise ValueError(f"catalogue names as DNS labels; found {key!r}")
        return value

    @model_validator(mode="after")
    def _unique_hosts(self) -> Site:
        names = [h.name for h in self.hosts]
        if len(set(names)) != len(names):
            raise ValueError("unique host names")
        lo, hi = self.vlan_range
        if not 1 <= lo <= hi <= 4094:
            raise ValueError("vlanRange as [low, high] within 1..4094")
        return self

    @functools.cached_property
    def pool_set(self) -> frozenset[str]:
        """Storage pool names of all hosts (computed once: checked for every volume)."""
        return frozenset(p.name for h in self.hosts for p in h.pools)

    def pool_names(self) -> set[str]:
        return set(self.pool_set)
