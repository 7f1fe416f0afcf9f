"""Whether a control applies to a host: the host's profiles and the waivers decide.

One implementation for both sides of an audit: the suite's gate skips (or
fails, for an expired waiver) with these words, and the report folds the
records with the same verdicts, so results.json never disagrees with what
the suite did. Imports neither pytest nor testinfra (the report renders
where the suite is not installed), nor the catalogue's loader: the policy
part of Tenancy reads the files and hands them over (:mod:`.hooks`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import TYPE_CHECKING, Any

from tenancy.compliance.host import Host, host_name
from tenancy.contract.host_vars import HostVars

if TYPE_CHECKING:
    from tenancy.policy.catalogue import Catalogue
    from tenancy.policy.waivers import Waiver

__all__ = ["Applicability", "HostInfo", "Policy", "applicability", "decide", "host_info"]


@dataclass(frozen=True)
class Applicability:
    """Whether a control applies to a host: ``required``, ``not-applicable``,
    ``waived`` (a valid waiver) or ``expired`` (only expired waivers: required, and failed)."""

    status: str
    reason: str = ""
    waiver: dict[str, Any] | None = None

    @property
    def required(self) -> bool:
        return self.status in ("required", "expired")


def _waiver_doc(w: Waiver) -> dict[str, Any]:
    return {
        "control": w.control,
        "tenant": w.tenant,
        "hosts": list(w.hosts),
        "justification": " ".join(w.justification.split()),
        "approved_by": w.approved_by,
        "expires": w.expires.isoformat(),
        "ticket": w.ticket,
    }


def applicability(
    catalogue: Catalogue,
    waivers: Iterable[Waiver],
    today: date,
    control: str,
    *,
    host: str,
    tenant: str | None,
    profiles: Sequence[str],
) -> Applicability:
    """The catalogue's verdict on checking ``control`` on ``host`` on ``today``.

    Unknown profile names raise ``KeyError`` (as :meth:`Catalogue.controls_for`).
    """
    selected = {c.id for c in catalogue.controls_for(profiles)}
    if control not in selected:
        return Applicability(
            "not-applicable", f"{control} not in profile {', '.join(profiles)} of {host}"
        )
    scoped = [
        w
        for w in waivers
        if w.control == control and tenant is not None and w.applies_to(tenant, host)
    ]
    active = [w for w in scoped if w.is_active(today)]
    if active:
        w = max(active, key=lambda x: x.expires)
        text = " ".join(w.justification.split())
        return Applicability("waived", f"waived until {w.expires}: {text}", _waiver_doc(w))
    if scoped:
        w = max(scoped, key=lambda x: x.expires)
        text = " ".join(w.justification.split())
        return Applicability("expired", f"waiver expired on {w.expires}: {text}", _waiver_doc(w))
    return Applicability("required")


# -- the suite's side: one host under test ----------------------------------------------


@dataclass(frozen=True)
class HostInfo:
    """What the inventory says about a host."""

    name: str
    tenant: str | None
    profiles: tuple[str, ...]
    variables: Mapping[str, Any] = field(default_factory=dict)

    def var(self, name: str, default: Any = None) -> Any:
        return self.variables.get(name, default)


def host_info(host: Host, default_profiles: Sequence[str]) -> HostInfo:
    """The inventory's view of ``host``; ``default_profiles`` when it names none."""
    variables: Mapping[str, Any] = {}
    if getattr(host.backend, "HAS_RUN_ANSIBLE", False):
        variables = host.ansible.get_variables()
    host_vars = HostVars.from_inventory(variables)
    return HostInfo(
        name=host_name(host),
        tenant=host_vars.tenant,
        profiles=host_vars.policy.profiles or tuple(default_profiles),
        variables=variables,
    )


@dataclass(frozen=True)
class Policy:
    """The catalogue, the waivers and the date they are judged on (one suite run)."""

    catalogue: Catalogue
    waivers: Sequence[Waiver]
    today: date


def decide(policy: Policy, control: str, info: HostInfo) -> Applicability:
    """Whether ``control`` applies to the host: required, not-applicable, waived or expired."""
    return applicability(
        policy.catalogue,
        policy.waivers,
        policy.today,
        control,
        host=info.name,
        tenant=info.tenant,
        profiles=info.profiles,
    )
