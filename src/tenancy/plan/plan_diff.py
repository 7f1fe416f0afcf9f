"""What a change of the inputs does to a site: two plans compared, each change classified.

The classification follows what the infrastructure does with a changed input, so
the reviewer of a pull request sees the consequence, not just the edit:

* ``replace`` — the machine is rebuilt: a new host, address, MAC, image or seed
  identity (cloud-init reads its seed once), or a smaller root disk; its root disk
  starts empty;
* ``restart`` — the domain is defined again with its disks kept: vCPUs, memory, a
  data volume attached or detached;
* ``in-place`` — applied to the running machine: a root or data disk that grows,
  a backup schedule.

Site settings the baseline keeps current on every machine (the operators' SSH
keys, the package mirror) are listed once for the site: they rewrite the seeds
in place and replace nothing.

Protected machines and data volumes touched by a replace, restart or removal are
marked: applying such a change needs the operator's ``--approve``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal

from pydantic import Field

from tenancy.contract.models import Site
from tenancy.plan.model import Frozen, MachinePlan, Plan, RulePlan, TenantPlan

Change = Literal["add", "remove", "replace", "restart", "in-place"]
QUOTA_KEYS = ("vcpus", "memoryGiB", "storageGiB", "machines", "addresses")


class MachineChange(Frozen):
    tenant: str
    instance: str
    domain: str
    change: Change
    reasons: list[str]
    protected: bool

    @property
    def needs_approval(self) -> bool:
        """Replacing, restarting or removing a protected machine needs ``--approve``."""
        return self.protected and self.change in ("replace", "restart", "remove")


class VolumeChange(Frozen):
    tenant: str
    instance: str
    volume: str
    change: Literal["add", "remove", "grow", "replace", "backup"]
    detail: str
    protected: bool

    @property
    def needs_approval(self) -> bool:
        """A data volume of a protected machine is never removed or rebuilt unapproved."""
        return self.protected and self.change in ("remove", "replace")


class FlowChange(Frozen):
    tenant: str
    change: Literal["add", "remove"]
    direction: str
    machines: str
    peer: str
    ports: list[str]


class QuotaLine(Frozen):
    key: str
    used_before: int | None
    used: int
    granted_before: int | None
    granted: int
    requested: int | None


class TenantChange(Frozen):
    name: str
    zone: str
    change: Literal["add", "remove", "modify"]
    segment_before: str | None
    segment: str | None
    quota: list[QuotaLine] = Field(default_factory=list)


class PlanDiff(Frozen):
    site: str
    base_error: str | None = None
    """Why the base has no plan of this site (then everything counts as added)."""
    tenants: list[TenantChange] = Field(default_factory=list)
    machines: list[MachineChange] = Field(default_factory=list)
    volumes: list[VolumeChange] = Field(default_factory=list)
    flows: list[FlowChange] = Field(default_factory=list)
    settings: list[str] = Field(default_factory=list)
    """Site settings applied in place on every machine by the baseline (replace nothing)."""

    @property
    def empty(self) -> bool:
        return not (self.tenants or self.machines or self.volumes or self.flows or self.settings)

    def approvals(self) -> list[str]:
        """Domains whose change needs the operator's ``--approve`` (sorted, unique)."""
        domains = {m.domain for m in self.machines if m.needs_approval}
        by_instance = {(m.tenant, m.instance): m.domain for m in self.machines}
        for v in self.volumes:
            if v.needs_approval:
                domains.add(by_instance.get((v.tenant, v.instance), f"{v.tenant}-{v.instance}"))
        return sorted(domains)


def diff_plans(
    base: Plan | None,
    head: Plan,
    base_seeds: Mapping[str, str],
    head_seeds: Mapping[str, str],
    base_error: str | None = None,
    settings: Sequence[str] = (),
) -> PlanDiff:
    """Every change from ``base`` to ``head``; seeds are identity digests by domain,
    ``settings`` the in-place site settings (:func:`site_setting_changes`)."""
    before = {t.name: t for t in base.tenants} if base is not None else {}
    after = {t.name: t for t in head.tenants}
    tenants: list[TenantChange] = []
    machines: list[MachineChange] = []
    volumes: list[VolumeChange] = []
    flows: list[FlowChange] = []
    for name in sorted(before.keys() | after.keys()):
        old, new = before.get(name), after.get(name)
        machine_changes, volume_changes = _machines(old, new, base_seeds, head_seeds)
        flow_changes = _flows(name, old, new)
        change = _tenant_change(old, new, machine_changes, volume_changes, flow_changes)
        if change is not None:
            tenants.append(change)
        machines += machine_changes
        volumes += volume_changes
        flows += flow_changes
    return PlanDiff(
        site=head.site,
        base_error=base_error,
        tenants=tenants,
        machines=machines,
        volumes=volumes,
        flows=flows,
        settings=list(settings),
    )


def site_setting_changes(before: Site | None, after: Site) -> list[str]:
    """The site settings the baseline applies in place that differ (key files by path)."""
    if before is None:
        return []
    out = []
    keys_before = (before.ops.ssh_keys, before.ops.ssh_key_files)
    if keys_before != (after.ops.ssh_keys, after.ops.ssh_key_files):
        out.append("operators' SSH keys (BASE-SSH-09)")
    if before.package_mirror != after.package_mirror:
        out.append(
            f"package mirror {before.package_mirror or 'none'} → "
            f"{after.package_mirror or 'none'} (BASE-UPD-01)"
        )
    return out


def _tenant_change(
    old: TenantPlan | None,
    new: TenantPlan | None,
    machines: list[MachineChange],
    volumes: list[VolumeChange],
    flows: list[FlowChange],
) -> TenantChange | None:
    ref = new or old
    assert ref is not None
    kind: Literal["add", "remove", "modify"]
    if old is None:
        kind = "add"
    elif new is None:
        kind = "remove"
    else:
        kind = "modify"
    quota = _quota(old, new) if new is not None else []
    quota_changed = any(
        q.used != q.used_before or q.granted != q.granted_before for q in quota
    ) or (old is not None and new is not None and old.quota_request != new.quota_request)
    segment_changed = old is None or new is None or old.segment != new.segment
    zone_changed = old is not None and new is not None and old.zone != new.zone
    if kind == "modify" and not (
        machines or volumes or flows or quota_changed or segment_changed or zone_changed
    ):
        return None
    return TenantChange(
        name=ref.name,
        zone=ref.zone,
        change=kind,
        segment_before=old.segment.cidr if old is not None else None,
        segment=new.segment.cidr if new is not None else None,
        quota=quota,
    )


def _quota(old: TenantPlan | None, new: TenantPlan) -> list[QuotaLine]:
    return [
        QuotaLine(
            key=key,
            used_before=old.usage.get(key) if old is not None else None,
            used=new.usage.get(key, 0),
            granted_before=old.quota.get(key) if old is not None else None,
            granted=new.quota.get(key, 0),
            requested=new.quota_request.get(key),
        )
        for key in QUOTA_KEYS
    ]


def _machines(
    old: TenantPlan | None,
    new: TenantPlan | None,
    base_seeds: Mapping[str, str],
    head_seeds: Mapping[str, str],
) -> tuple[list[MachineChange], list[VolumeChange]]:
    before = {m.instance: m for m in old.machines} if old is not None else {}
    after = {m.instance: m for m in new.machines} if new is not None else {}
    machines: list[MachineChange] = []
    volumes: list[VolumeChange] = []
    for instance in sorted(before.keys() | after.keys()):
        a, b = before.get(instance), after.get(instance)
        if a is None and b is not None:
            machines.append(_machine(b, "add", ["new machine"]))
            volumes += [_volume(b, v.name, "add", f"{v.size_gib} GiB @{v.pool}") for v in b.volumes]
        elif b is None and a is not None:
            machines.append(_machine(a, "remove", ["machine removed"]))
            volumes += [_volume(a, v.name, "remove", "deleted with its data") for v in a.volumes]
        elif a is not None and b is not None:
            change, reasons = _classify(a, b, base_seeds.get(a.domain), head_seeds.get(b.domain))
            if change is not None:
                machines.append(_machine(b, change, reasons, protected=a.protect or b.protect))
            volumes += _volume_changes(a, b)
    return machines, volumes


def _machine(
    m: MachinePlan, change: Change, reasons: list[str], protected: bool | None = None
) -> MachineChange:
    return MachineChange(
        tenant=m.tenant,
        instance=m.instance,
        domain=m.domain,
        change=change,
        reasons=reasons,
        protected=m.protect if protected is None else protected,
    )


def _classify(
    a: MachinePlan, b: MachinePlan, seed_a: str | None, seed_b: str | None
) -> tuple[Change | None, list[str]]:
    """The strongest consequence of the differences between ``a`` and ``b``, and all of them."""
    replace: list[str] = []
    restart: list[str] = []
    in_place: list[str] = []
    for what, x, y in (
        ("host", a.host, b.host),
        ("address", a.address, b.address),
        ("MAC", a.mac, b.mac),
        ("image", a.image, b.image),
        ("root pool", a.root_pool, b.root_pool),
    ):
        if x != y:
            replace.append(f"{what} {x} → {y}")
    if seed_a != seed_b and not replace:
        replace.append("cloud-init identity changed (hostname, network or ops account)")
    if b.disk_gib < a.disk_gib:
        replace.append(f"root disk shrinks {a.disk_gib} → {b.disk_gib} GiB")
    elif b.disk_gib > a.disk_gib:
        in_place.append(f"root disk grows {a.disk_gib} → {b.disk_gib} GiB")
    if (a.vcpus, a.memory_mib) != (b.vcpus, b.memory_mib):
        restart.append(
            f"flavor {a.flavor} ({a.vcpus} vCPU, {a.memory_mib} MiB) → "
            f"{b.flavor} ({b.vcpus} vCPU, {b.memory_mib} MiB)"
        )
    attached = {v.name for v in b.volumes} ^ {v.name for v in a.volumes}
    if attached:
        restart.append(f"volumes attached or detached: {', '.join(sorted(attached))}")
    if a.protect != b.protect:
        in_place.append(f"protect {str(a.protect).lower()} → {str(b.protect).lower()}")
    reasons = replace + restart + in_place
    if replace:
        return "replace", reasons
    if restart:
        return "restart", reasons
    if in_place:
        return "in-place", reasons
    return None, []


def _volume(m: MachinePlan, name: str, change: str, detail: str) -> VolumeChange:
    return VolumeChange.model_validate(
        {
            "tenant": m.tenant,
            "instance": m.instance,
            "volume": name,
            "change": change,
            "detail": detail,
            "protected": m.protect,
        }
    )


def _volume_changes(a: MachinePlan, b: MachinePlan) -> list[VolumeChange]:
    before = {v.name: v for v in a.volumes}
    after = {v.name: v for v in b.volumes}
    out: list[VolumeChange] = []
    for name in sorted(before.keys() | after.keys()):
        old, new = before.get(name), after.get(name)
        if old is None and new is not None:
            out.append(_volume(b, name, "add", f"{new.size_gib} GiB @{new.pool}"))
        elif new is None and old is not None:
            out.append(_volume(a, name, "remove", "deleted with its data"))
        elif old is not None and new is not None:
            if a.host != b.host:
                detail = f"moves with its machine to {b.host}: rebuilt empty there"
                out.append(_volume(b, name, "replace", detail))
            elif old.pool != new.pool or new.size_gib < old.size_gib:
                detail = (
                    f"pool {old.pool} → {new.pool}"
                    if old.pool != new.pool
                    else f"shrinks {old.size_gib} → {new.size_gib} GiB"
                )
                out.append(_volume(b, name, "replace", detail + ": rebuilt empty"))
            elif new.size_gib > old.size_gib:
                out.append(_volume(b, name, "grow", f"{old.size_gib} → {new.size_gib} GiB"))
            if old.backup != new.backup:
                out.append(_volume(b, name, "backup", f"{old.backup} → {new.backup}"))
    return out


def _rule_key(r: RulePlan) -> tuple[str, str, str, tuple[str, ...]]:
    return (r.direction, r.local_group or "all", r.peer, tuple(r.ports))


def _flows(name: str, old: TenantPlan | None, new: TenantPlan | None) -> list[FlowChange]:
    before = {_rule_key(r) for r in old.rules} if old is not None else set()
    after = {_rule_key(r) for r in new.rules} if new is not None else set()
    out: list[FlowChange] = []
    for change, keys in (("remove", before - after), ("add", after - before)):
        for direction, machines, peer, ports in sorted(keys):
            out.append(
                FlowChange.model_validate(
                    {
                        "tenant": name,
                        "change": change,
                        "direction": direction,
                        "machines": machines,
                        "peer": peer,
                        "ports": list(ports),
                    }
                )
            )
    return out
