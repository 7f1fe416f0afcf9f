"""The committed allocation ledger: what was handed out stays put.

Adding or removing a tenant never renumbers another, because every
allocation (segment, VLAN, address, host) is read back from here first; the
recorded demand per instance tells whose edit may move a machine.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Annotated

import yaml
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from tenancy.contract.errors import SpecError
from tenancy.contract.validation_errors import pydantic_errors
from tenancy.contract.yamldoc import Document, format_path
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
    """Allocations of one site; written as YAML next to the stack file.

    ``segments`` and ``vlans`` index the tenants' entries one line per allocation,
    keyed by what is allocated: two branches that hand out the same segment or VLAN
    to different tenants then change the same line, which git reports as a conflict
    instead of merging both into a duplicate. They are rewritten on every dump and
    must agree with ``tenants`` when read.
    """

    model_config = ConfigDict(extra="forbid")

    version: int = LEDGER_VERSION
    site: str
    tenants: dict[str, SegmentEntry] = Field(default_factory=dict)
    segments: dict[str, str] = Field(default_factory=dict)  # cidr -> tenant
    vlans: dict[int, str] = Field(default_factory=dict)  # VLAN ID -> tenant

    def indexed(self) -> Ledger:
        """This ledger with its index rebuilt from the tenants' entries."""
        return self.model_copy(
            update={
                "segments": {e.cidr: n for n, e in sorted(self.tenants.items())},
                "vlans": {e.vlan: n for n, e in sorted(self.tenants.items())},
            }
        )

    def without(self, released: frozenset[str]) -> Ledger:
        """This ledger minus the entries of ``released`` tenants (they are allocated anew)."""
        kept = {n: e for n, e in self.tenants.items() if n not in released}
        return Ledger(site=self.site, tenants=kept).indexed()

    def dump(self) -> str:
        header = (
            "# Allocation ledger: written by `tenancy plan --write-ledger` / `tenancy up`.\n"
            "# Commit it: it keeps every tenant's addresses and hosts stable. `segments` and\n"
            "# `vlans` repeat each allocation on a line of its own, so two branches that\n"
            "# allocate the same one conflict in git; never merge such a conflict by hand:\n"
            "# take the base branch's ledger and run `tenancy plan --write-ledger` again.\n"
        )
        data = self.indexed().model_dump()
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
    problems = ledger_problems(ledger, doc)
    if problems:
        return None, problems
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


def ledger_problems(ledger: Ledger, doc: Document) -> list[SpecError]:
    """Allocations held twice (a merge of two branches, a hand edit), or an index that
    disagrees with the entries: each one an error at the later entry, naming the first."""
    errors: list[SpecError] = []
    holders: dict[tuple[str, str], tuple[str, tuple[str | int, ...]]] = {}
    nets: list[tuple[ipaddress.IPv4Network, str]] = []
    for name, entry in sorted(ledger.tenants.items()):
        base: tuple[str | int, ...] = ("tenants", name)
        net = ipaddress.IPv4Network(entry.cidr)
        for other_net, other in nets:
            if net.overlaps(other_net):
                errors.append(
                    _twice(
                        doc,
                        "segment",
                        entry.cidr,
                        (*base, "cidr"),
                        other,
                        ("tenants", other, "cidr"),
                    )
                )
        nets.append((net, name))
        keys: list[tuple[str, str, tuple[str | int, ...]]] = [
            ("VLAN", str(entry.vlan), (*base, "vlan")),
            *(("MAC", mac, (*base, "macs", i)) for i, mac in entry.macs.items()),
            *(("address", a, (*base, "addresses", i)) for i, a in entry.addresses.items()),
        ]
        if entry.bridge is not None:
            keys.append(("bridge", entry.bridge, (*base, "bridge")))
        for what, value, path in keys:
            first = holders.setdefault((what, value), (name, path))
            if first[1] != path:
                errors.append(_twice(doc, what, value, path, first[0], first[1]))
    index = ledger.indexed()
    for key, field, want in (
        ("segments", ledger.segments, index.segments),
        ("vlans", ledger.vlans, index.vlans),
    ):
        if field and field != want:
            errors.append(
                SpecError(
                    doc.locate((key,)),
                    key,
                    "the index disagrees with the tenants' entries (a merged conflict?)",
                    f"{key} as `tenancy plan --write-ledger` writes it from tenants",
                    f"{len(field)} entries, {len(set(field.items()) ^ set(want.items()))} differ",
                )
            )
    return errors


def _twice(
    doc: Document,
    what: str,
    value: str,
    path: tuple[str | int, ...],
    first: str,
    first_path: tuple[str | int, ...],
) -> SpecError:
    """``value`` allocated at ``path`` although ``first`` holds it (or part of it)."""
    holder = f"tenant {first}" if first != path[1] else "another instance of this tenant"
    return SpecError(
        doc.locate(path),
        format_path(path),
        f"{what} {value} is allocated twice: {holder} holds it too",
        "every allocation held once: take the base branch's ledger and run "
        "`tenancy plan --write-ledger` again",
        value,
        related=(doc.locate(first_path),),
    )


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
