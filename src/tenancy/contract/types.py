"""Constrained value types shared by the tenant and site models."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Annotated

from pydantic import AfterValidator, Field, StringConstraints

# Single hyphens only: '--' is reserved in DNS (xn--) and ends an XML comment; the
# lengths (at most 32) are the types' max_length, this is pydantic's linear engine.
DNS_LABEL_RE = r"^[a-z](-?[a-z0-9]){0,31}$"
TENANT_NAME_RE = r"^[a-z](-?[a-z0-9]){1,31}$"
PORT_SPEC_RE = r"^\d{1,5}(-\d{1,5})?/(tcp|udp)$"
IMAGE_RE = r"^[a-z0-9][a-z0-9.-]{0,31}$"
EMAIL_RE = r"^[^@\s]+@[^@\s]+\.[^@\s]+$"
LIBVIRT_URI_RE = r"^qemu(\+ssh|\+tls|\+tcp)?://[^\s]*/system$"
ABS_PATH_RE = r"^/\S*$"
PORT_RE = re.compile(r"^(?P<lo>\d{1,5})(-(?P<hi>\d{1,5}))?/(?P<proto>tcp|udp)$")

_DNS_LABEL_TEXT = "lower-case DNS label: letters, digits and '-', starting with a letter"
_TENANT_NAME_TEXT = "tenant name: a DNS label of 2-32 characters, equal to the file name"
_PORT_TEXT = "port or range and protocol: '443/tcp', '8000-8080/tcp', '53/udp'"
# descriptions that only restate the shape of a value (errors show PATTERN_HELP instead)
TYPE_DESCRIPTIONS = {_DNS_LABEL_TEXT, _PORT_TEXT, _TENANT_NAME_TEXT}

# What a value must look like, in words, for each pattern (errors say this, not the regex).
PATTERN_HELP = {
    DNS_LABEL_RE: "a lower-case DNS label: a-z, 0-9 and single '-' (not '--', not at the end), "
    "starting with a letter",
    TENANT_NAME_RE: "a tenant name: a DNS label of 2-32 characters (a-z, 0-9 and single '-', "
    "starting with a letter; no '/', '.', '--', spaces or other scripts), equal to the file name",
    PORT_SPEC_RE: "a port like '443/tcp' or a range like '8000-8080/udp'",
    IMAGE_RE: "an image name: a-z, 0-9, '.' and '-'",
    EMAIL_RE: "an e-mail address",
    LIBVIRT_URI_RE: "a libvirt URI like qemu:///system or qemu+ssh://user@host/system",
    ABS_PATH_RE: "an absolute path",
}

DnsLabel = Annotated[
    str,
    StringConstraints(pattern=DNS_LABEL_RE, min_length=1, max_length=32),
    Field(description=_DNS_LABEL_TEXT),
]
TenantName = Annotated[
    str,
    StringConstraints(pattern=TENANT_NAME_RE, min_length=2, max_length=32),
    Field(description=_TENANT_NAME_TEXT),
]


_OCTET = r"(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_CANONICAL_CIDR = re.compile(rf"{_OCTET}(\.{_OCTET}){{3}}/(3[0-2]|[12]?[0-9])")
CIDR_TEXT = (
    "an IPv4 network in canonical CIDR form like 10.30.2.0/24: four decimal numbers 0-255 "
    "without leading zeros, '/' and a prefix length 0-32 (not a netmask like /255.255.255.0)"
)


def check_cidr(value: str) -> str:
    """``value`` when it is a canonical IPv4 CIDR (what nft and libvirt accept), else ValueError.

    ipaddress alone also takes netmask forms (``10.8.0.0/255.255.255.0``), which
    the nftables tables would then carry verbatim and refuse.
    """
    if "/" not in value:
        raise ValueError(f"{CIDR_TEXT} (prefix length missing)")
    if not _CANONICAL_CIDR.fullmatch(value):
        raise ValueError(CIDR_TEXT)
    try:
        net = ipaddress.IPv4Network(value, strict=True)
    except ValueError as exc:
        raise ValueError(f"{CIDR_TEXT} ({exc})") from None
    return str(net)


def _check_port(value: str) -> str:
    parse_port(value)
    return value


Cidr = Annotated[
    str,
    AfterValidator(check_cidr),
    Field(description="IPv4 network in CIDR form, e.g. 10.30.2.0/24", examples=["10.30.2.0/24"]),
]
PortSpec = Annotated[
    str,
    StringConstraints(pattern=PORT_SPEC_RE),
    AfterValidator(_check_port),
    Field(description=_PORT_TEXT),
]


@dataclass(frozen=True, order=True)
class PortRange:
    """A protocol and an inclusive port range."""

    proto: str
    low: int
    high: int

    def __str__(self) -> str:
        if self.low == self.high:
            return f"{self.low}/{self.proto}"
        return f"{self.low}-{self.high}/{self.proto}"

    def intersect(self, other: PortRange) -> PortRange | None:
        if self.proto != other.proto:
            return None
        low, high = max(self.low, other.low), min(self.high, other.high)
        return PortRange(self.proto, low, high) if low <= high else None


def parse_port(value: str) -> PortRange:
    """Parse ``443/tcp`` or ``8000-8080/tcp``; ValueError says what is expected."""
    match = PORT_RE.match(value)
    if not match:
        raise ValueError("a port like '443/tcp' or a range like '8000-8080/udp'")
    low = int(match["lo"])
    high = int(match["hi"] or low)
    if not 1 <= low <= 65535 or not 1 <= high <= 65535:
        raise ValueError("ports between 1 and 65535")
    if high < low:
        raise ValueError("a range whose first port is not above its last")
    return PortRange(match["proto"], low, high)
