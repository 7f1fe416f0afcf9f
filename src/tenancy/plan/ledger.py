"""The committed allocation ledger: what was handed out stays put.

Adding or removing a tenant never renumbers another, because every
allocation (segment, VLAN, address, host) is read back from here first; the
recorded demand per instance tells whose edit may move a machine.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import yaml
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from tenancy.contract.errors import SpecError
from tenancy.contract.validation_errors import pydantic_errors
from tenancy.contract.yamlsource import LoadError, load_file

LEDGER_VERSION = 1
_MAC_RE = r"^52:54:00(:[0-9a-f]{2}){3}$"


class SegmentEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")

    cidr: str
    vlan: int
    addresses: dict[str, str] = Field(default_factory=dict)  # instance -> address
    hosts: dict[str, str] = Field(default_factory=dict)  # instance -> hypervisor host
    # optional (older ledgers lack them): kept so a hash collision never renames anything
    bridge: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.-]{1,15}$")] | None = None
    macs: dict[str, Annotated[str, StringConstraints(pattern=_MAC_RE)]] = Field(
        default_factory=dict
    )  # instance -> MAC
    # optional (older ledgers lack it: their hosts are kept as if nothing changed): the
    # demand each instance had when placed; only a change of its own lets it move
    demands: dict[str, str] = Field(default_factory=dict)  # instance -> demand fingerprint


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
        # explicit_start: the `---` yamllint (`make lint`) asks of every YAML file
        return header + yaml.safe_dump(
            data, sort_keys=True, allow_unicode=True, explicit_start=True
        )


def ledger_path(stacks_dir: Path, site: str) -> Path:
    return stacks_dir / f"ledger.{site}.yaml"


def load_ledger(path: Path, site: str, display: str) -> tuple[Ledger | None, list[SpecError]]:
    """Like :func:`read_ledger`, but a broken ledger gives located errors, not an exception."""
    if not path.exists():
        return Ledger(site=site), []
    try:
        doc = load_file(path, display)
    except LoadError as exc:
        return None, exc.errors
    if doc.data is None:  # pragma: no cover - load_file refuses empty documents
        return Ledger(site=site), []
    if not isinstance(doc.data, dict):
        return None, [
            SpecError(
                doc.locate(()), "", "a ledger must be a mapping", "keys version, site, tenants"
            )
        ]
    try:
        ledger = Ledger.model_validate(doc.data)
    except ValidationError as exc:
        return None, doc.problems + pydantic_errors(exc, doc, Ledger)
    if doc.problems:
        return None, doc.problems
    if ledger.site != site:
        return None, [
            SpecError(
                doc.locate(("site",)),
                "site",
                "ledger belongs to another site",
                repr(site),
                repr(ledger.site),
            )
        ]
    return ledger, []


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
