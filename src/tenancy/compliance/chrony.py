"""``chronyc -n sources`` and ``chronyc tracking``, read: is the clock really synchronised?

A running chronyd proves nothing by itself (with every server unreachable it
free-runs): BASE-TIME-02 needs a usable source, and this module says why not.
"""

from __future__ import annotations

from dataclasses import dataclass

from tenancy.compliance.facts import key_values

__all__ = ["CHRONY_STATES", "ChronySource", "chrony_sync_problem", "parse_chrony_sources"]

#: The state column of ``chronyc -n sources``, in words.
CHRONY_STATES = {
    "*": "selected",
    "+": "combined",
    "-": "not combined",
    "?": "unreachable",
    "x": "a falseticker",
    "~": "too variable",
}


@dataclass(frozen=True)
class ChronySource:
    """One source line of ``chronyc -n sources``: mode (``^`` server, ``=`` peer,
    ``#`` reference clock), state (see :data:`CHRONY_STATES`) and address."""

    mode: str
    state: str
    address: str

    @property
    def usable(self) -> bool:
        """A server or peer chronyd synchronises to (``*``) or combines with (``+``)."""
        return self.mode in "^=" and self.state in "*+"


def parse_chrony_sources(text: str) -> list[ChronySource]:
    """The source lines of ``chronyc -n sources`` (headers and the ``====`` rule left out)."""
    out = []
    for line in text.splitlines():
        parts = line.split()
        if len(line) > 2 and line[0] in "^=#" and line[1] in CHRONY_STATES and len(parts) > 1:
            out.append(ChronySource(line[0], line[1], parts[1]))
    return out


def chrony_sync_problem(sources: str, tracking: str) -> str | None:
    """None when chronyd keeps time from a usable source, else why not.

    A running chronyd proves nothing by itself: with every server unreachable
    it free-runs. Both views must agree: ``chronyc -n sources`` lists a server
    or peer in state ``*`` or ``+``, and ``chronyc tracking`` names a reference
    that is neither none (``00000000``, "Leap status : Not synchronised") nor
    chronyd's own local clock (``127.127.x.x``, reference ID ``7F7F....``).
    """
    found = parse_chrony_sources(sources)
    if not found:
        return "chronyd has no time sources (chronyc -n sources lists none)"
    if not any(s.usable for s in found):
        states = ", ".join(f"{s.address} {CHRONY_STATES[s.state]}" for s in found)
        return f"no usable time source: {states}"
    fields = key_values(tracking, ":")
    reference = fields.get("Reference ID", "")
    leap = fields.get("Leap status", "")
    ref_id = reference.split()[0].upper() if reference else ""
    if not ref_id or ref_id == "00000000" or leap.lower() == "not synchronised":
        return (
            f"chronyd is not synchronised (Reference ID {reference or '?'}, "
            f"Leap status {leap or '?'})"
        )
    if ref_id.startswith("7F7F") or "127.127." in reference:
        return f"chronyd follows its own local clock (Reference ID {reference}), not a server"
    return None
