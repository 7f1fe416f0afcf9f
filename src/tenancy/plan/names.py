"""Deterministic names and identifiers derived from site, tenant and machine names."""

from __future__ import annotations

import hashlib


def _digest(*parts: str) -> bytes:
    return hashlib.sha256("/".join(parts).encode()).digest()


def bridge_name(site: str, tenant: str, salt: int = 0) -> str:
    """Linux interface name (at most 15 chars), readable; ``salt`` resolves a collision."""
    d = _digest(site, tenant, str(salt)) if salt else _digest(site, tenant)
    return f"tn{tenant.replace('-', '')[:8]}-{d.hex()[:4]}"


def network_name(tenant: str) -> str:
    return f"tenancy-{tenant}"


def domain_name(tenant: str, instance: str) -> str:
    return f"{tenant}-{instance}"


def filter_name(tenant: str, group: str) -> str:
    return f"tenancy-{tenant}-{group}"


def mac_address(site: str, tenant: str, instance: str, salt: int = 0) -> str:
    """A locally administered QEMU-range MAC; ``salt`` resolves the rare collision."""
    d = _digest(site, tenant, instance, str(salt)) if salt else _digest(site, tenant, instance)
    return f"52:54:00:{d[0]:02x}:{d[1]:02x}:{d[2]:02x}"


def group_name(*parts: str) -> str:
    """Ansible group of a tenant or a tenant's role: ``hr``, ``hr_web`` (no '-' allowed).

    Not injective on its own (``hr-web`` and ``hr`` + ``web`` meet):
    :mod:`tenancy.plan.name_clash` refuses the sites where two groups would.
    """
    return "_".join(p.replace("-", "_") for p in parts)
