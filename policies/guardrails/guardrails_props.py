"""What every guardrail reads: resource kinds, wrapped property values, the owning tenant.

Resource properties arrive wrapped by pulumi-policy so that touching a value unknown
during preview raises; the helpers here read such values as :data:`UNKNOWN` instead,
and every rule says what an unknown value means for it.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, Protocol

from pulumi_policy.proxy import UnknownValueError

DYNAMIC = "pulumi-python:dynamic/tenancy:"
DOMAIN = DYNAMIC + "Domain"
NETWORK = DYNAMIC + "Network"
VOLUME = DYNAMIC + "Volume"
NWFILTER = DYNAMIC + "NwFilter"
HOST_FIREWALL = DYNAMIC + "HostFirewall"
TENANT_HOSTING = "tenancy:infra:TenantHosting"
GIB = 1024**3

Net = ipaddress.IPv4Network


class _Unknown:
    def __repr__(self) -> str:
        return "UNKNOWN"


UNKNOWN: Any = _Unknown()
"""A value the engine does not know yet (preview)."""

ReportViolation = Callable[..., None]


class _Resource(Protocol):
    """What every rule reads of a resource, in a validation or in the whole stack."""

    @property
    def resource_type(self) -> str: ...

    @property
    def props(self) -> Mapping[str, Any]: ...

    @property
    def urn(self) -> str: ...

    @property
    def name(self) -> str: ...


class ResourceArgs(_Resource, Protocol):
    """What the rules read of ``pulumi_policy.ResourceValidationArgs``."""

    @property
    def opts(self) -> Any: ...

    def get_config(self) -> Mapping[str, Any]: ...


class StackResource(_Resource, Protocol):
    """What the rules read of ``pulumi_policy.PolicyResource``."""

    @property
    def parent(self) -> Any: ...


class StackArgs(Protocol):
    """What the rules read of ``pulumi_policy.StackValidationArgs``."""

    @property
    def resources(self) -> Iterable[StackResource]: ...

    def get_config(self) -> Mapping[str, Any]: ...


def get(props: Any, key: str, default: Any = None) -> Any:
    """``props[key]``; ``default`` when absent, :data:`UNKNOWN` when not known yet."""
    if not isinstance(props, Mapping):
        return default
    try:
        return props[key]
    except KeyError:
        return default
    except UnknownValueError:
        return UNKNOWN


def items(seq: Any) -> Iterator[Any]:
    """The elements of a list property; unknown elements come out as :data:`UNKNOWN`."""
    if seq is None or seq is UNKNOWN or isinstance(seq, str | bytes | Mapping):
        return
    for index in range(len(seq)):
        try:
            yield seq[index]
        except UnknownValueError:
            yield UNKNOWN


def missing(value: Any) -> bool:
    """Absent or empty; an unknown value is present (it will be known at update time)."""
    return value is None or value == ""


def as_number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def tenant_of(resource: Any) -> str | None:
    """Name of the TenantHosting component a stack resource belongs to."""
    node = getattr(resource, "parent", None)
    while node is not None:
        if node.resource_type == TENANT_HOSTING:
            return str(node.name)
        node = getattr(node, "parent", None)
    return None


def network_cidr(props: Mapping[str, Any]) -> Net | None:
    """A Network's range from its gateway ``address`` and ``prefix``; None when not known."""
    address, prefix = get(props, "address"), as_number(get(props, "prefix"))
    if not isinstance(address, str) or prefix is None:
        return None
    try:
        return ipaddress.IPv4Network(f"{address}/{int(prefix)}", strict=False)
    except ValueError:
        return None


def config_net(value: Any) -> Net | None:
    """A CIDR of the policy config; None when it is not one (the rule then fails closed)."""
    if not isinstance(value, str):
        return None
    try:
        return ipaddress.IPv4Network(value, strict=False)
    except ValueError:
        return None
