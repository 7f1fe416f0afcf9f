"""NoCloud seed documents for one machine: user-data, meta-data, network-config."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from tenancy.plan.model import MachinePlan, SegmentPlan
from tenancy.render.env import render


@dataclass(frozen=True)
class SeedDocuments:
    user_data: str
    meta_data: str
    network_config: str

    @property
    def digest(self) -> str:
        """Content hash: a new seed means a new machine (cloud-init runs once per instance)."""
        text = self.user_data + self.meta_data + self.network_config
        return hashlib.sha256(text.encode()).hexdigest()


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
    # a new instance-id makes cloud-init re-run when the seed content changes
    instance_id = hashlib.sha256((user_data + network).encode()).hexdigest()[:16]
    meta = render(
        "cloud-init/meta-data.yaml.j2",
        machine=machine,
        instance_id=f"{machine.domain}-{instance_id}",
    )
    return SeedDocuments(user_data=user_data, meta_data=meta, network_config=network)
