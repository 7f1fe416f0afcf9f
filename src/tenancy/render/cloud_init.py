"""NoCloud seed documents for one machine: user-data, meta-data, network-config.

A seed has two parts. Its *identity* (meta-data: instance-id and hostname;
network-config: address, MAC, gateway; the ops account's name) makes the machine
this machine: cloud-init reads it once per instance, so a new identity is a new
machine. Its *bootstrap* settings in user-data (the operators' keys, the package
proxy) only have to hold at first boot: the baseline owns them afterwards
(BASE-SSH-09, BASE-UPD-01), so changing them rewrites the seed in place and
replaces nothing.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from tenancy.contract.models import Site
from tenancy.plan.model import MachinePlan, Plan, SegmentPlan
from tenancy.render.env import render


@dataclass(frozen=True)
class SeedDocuments:
    user_data: str
    meta_data: str
    network_config: str

    @property
    def identity(self) -> str:
        """Hash of what makes the machine (meta-data, network-config); new = a new machine."""
        return hashlib.sha256((self.meta_data + "\0" + self.network_config).encode()).hexdigest()


def render_seed(
    machine: MachinePlan,
    segment: SegmentPlan,
    ssh_keys: list[str],
    ops_user: str = "ops",
    package_mirror: str | None = None,
) -> SeedDocuments:
    """Static address, hostname and the ops key; no passwords anywhere."""
    if not ssh_keys:
        raise ValueError(f"{machine.domain}: no ops SSH key configured for the site")
    user_data = render(
        "cloud-init/user-data.yaml.j2",
        machine=machine,
        ssh_keys=ssh_keys,
        ops_user=ops_user,
        package_mirror=package_mirror,
    )
    network = render("cloud-init/network-config.yaml.j2", machine=machine, segment=segment)
    # a new instance-id makes cloud-init run again: only the identity may change it,
    # never the bootstrap settings the baseline keeps current
    identity = f"{machine.domain}\0{ops_user}\0{network}"
    instance_id = hashlib.sha256(identity.encode()).hexdigest()[:16]
    meta = render(
        "cloud-init/meta-data.yaml.j2",
        machine=machine,
        instance_id=f"{machine.domain}-{instance_id}",
    )
    return SeedDocuments(user_data=user_data, meta_data=meta, network_config=network)


def seed_identities(plan: Plan, site: Site) -> dict[str, str]:
    """Each domain's seed identity, as the program would render it (for plan diffs).

    Keys and the package proxy are not part of it, so any placeholder key does.
    """
    return {
        m.domain: render_seed(
            m, t.segment, ["ssh-ed25519 -"], site.ops.user, site.package_mirror
        ).identity
        for t in plan.tenants
        for m in t.machines
    }
