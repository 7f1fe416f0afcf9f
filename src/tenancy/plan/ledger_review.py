"""A pull request's ledger against the base branch's: nothing recorded may change hands.

The ledger is trusted input (allocations are read back from it first), so a pull
request that edits it could renumber another tenant or take its segment. Checked
here: every tenant the base branch records keeps its segment, VLAN, bridge and
each remaining instance's address and MAC, unless the operator released it; and no
allocation of the base branch is held by another tenant in the pull request.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterator

from tenancy.contract.errors import Location, SpecError
from tenancy.plan.ledger import Ledger, SegmentEntry

Held = tuple[str, str, str]  # what, value, instance ("" for the segment's own)
Locate = Callable[[tuple[str | int, ...]], Location]
"""Where a key path of the pull request's ledger file is (for the errors)."""


def _held(entry: SegmentEntry) -> Iterator[Held]:
    yield "segment", entry.cidr, ""
    yield "VLAN", str(entry.vlan), ""
    if entry.bridge is not None:
        yield "bridge", entry.bridge, ""
    for instance, address in entry.addresses.items():
        yield "address", address, instance
    for instance, mac in entry.macs.items():
        yield "MAC", mac, instance


def compare_with_base(
    base: Ledger, new: Ledger, locate: Locate, released: frozenset[str] = frozenset()
) -> list[SpecError]:
    """Errors for every recorded allocation the new ledger moves or gives to someone else.

    ``new`` is the ledger the pull request's files and ledger imply; ``locate`` finds
    a tenant's entry in the pull request's ledger file.
    """
    errors: list[SpecError] = []
    owner: dict[tuple[str, str], str] = {}
    for name, entry in base.tenants.items():
        for what, value, _ in _held(entry):
            owner[(what, value)] = name
    base_nets = [(ipaddress.IPv4Network(e.cidr), n) for n, e in base.tenants.items()]
    for name, entry in sorted(new.tenants.items()):
        where = locate(("tenants", name))
        for what, value, _ in _held(entry):
            holder = owner.get((what, value))
            if holder is not None and holder != name and holder in new.tenants:
                errors.append(_taken(name, what, value, holder, where))
        net = ipaddress.IPv4Network(entry.cidr)
        for other_net, holder in base_nets:
            if holder != name and net != other_net and net.overlaps(other_net):
                errors.append(_taken(name, "segment", entry.cidr, holder, where))
        before = base.tenants.get(name)
        if before is None or name in released:
            continue
        errors += _changed(name, before, entry, where)
    return errors


def _taken(name: str, what: str, value: str, holder: str, where: Location) -> SpecError:
    return SpecError(
        where,
        f"tenants.{name}",
        f"{what} {value} is recorded for tenant {holder} on the base branch",
        "allocations of the base branch kept: take its ledger and run "
        "`tenancy plan --write-ledger` again",
        value,
    )


def _changed(
    name: str, before: SegmentEntry, after: SegmentEntry, where: Location
) -> list[SpecError]:
    """A recorded tenant's allocations that differ (removed instances may go)."""
    old = {(what, inst): value for what, value, inst in _held(before)}
    new = {(what, inst): value for what, value, inst in _held(after)}
    return [
        SpecError(
            where,
            f"tenants.{name}",
            f"changes the recorded {what}{f' of {inst}' if inst else ''} of tenant {name}",
            f"{value} as on the base branch (or `--release {name}` by an operator)",
            new[(what, inst)],
        )
        for (what, inst), value in sorted(old.items())
        if (what, inst) in new and new[(what, inst)] != value
    ]
