"""Addresses and ports as the plan and the ruleset write them, made comparable.

The inventory says ``10.0.0.5`` where nft says ``10.0.0.5/32``, and
``"443-443"`` where a rule says ``443``: both sides are normalised here.
"""

from __future__ import annotations

import ipaddress
from typing import Any

__all__ = ["cidr", "contains", "port_text"]


def cidr(text: str) -> str:
    """A normalised network: ``10.0.0.5`` -> ``10.0.0.5/32``."""
    return str(ipaddress.ip_network(str(text).strip(), strict=False))


def port_text(port: Any) -> str:
    """``443`` / ``"8000-8100"`` / ``"443-443"`` -> ``443`` / ``8000-8100`` / ``443``."""
    low, _, high = str(port).strip().partition("-")
    if not high or int(low) == int(high):
        return str(int(low))
    return f"{int(low)}-{int(high)}"


def contains(network: str, address: str) -> bool:
    """Whether ``address`` lies in ``network`` (False for anything that does not parse)."""
    try:
        return ipaddress.ip_address(address) in ipaddress.ip_network(network, strict=False)
    except ValueError:
        return False
