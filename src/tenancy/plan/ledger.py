"""The committed allocation ledger: what was handed out stays put.

Adding or removing a tenant never renumbers another, because every
allocation (segment, VLAN, address, host) is read back from here first.
"""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field

LEDGER_VERSION = 1


class SegmentEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")

    cidr: str
    vlan: int
    addresses: dict[str, str] = Field(default_factory=dict)  # instance -> address
    hosts: dict[str, str] = Field(default_factory=dict)  # instance -> hypervisor host


class Ledger(BaseModel):
    """Allocations of one site; written as YAML next to the stack file."""

    model_config = ConfigDict(extra="forbid")

    version: int = LEDGER_VERSION
    site: str
    tenants: dict[str, SegmentEntry] = Field(default_factory=dict)

    def dump(self) -> str:
        header = (
            "# Allocation ledger: written by `tenancy plan --write-ledger` / `tenancy up`.\n"
            "# Commit it: it keeps every tenant's addresses and hosts stable.\n"
        )
        data = self.model_dump(mode="json")
        return header + yaml.safe_dump(data, sort_keys=True, allow_unicode=True)


def ledger_path(stacks_dir: Path, site: str) -> Path:
    return stacks_dir / f"ledger.{site}.yaml"


def read_ledger(path: Path, site: str) -> Ledger:
    """Read the ledger, or an empty one when the file does not exist yet."""
    if not path.exists():
        return Ledger(site=site)
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    return Ledger.model_validate(data)


def write_ledger(path: Path, ledger: Ledger) -> bool:
    """Write the ledger when it changed; returns whether the file was written."""
    text = ledger.dump()
    if path.exists() and path.read_text(encoding="utf-8") == text:
        return False
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
    return True
