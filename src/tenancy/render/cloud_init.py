"""NoCloud seed documents for one machine: user-data, meta-data, network-config."""

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


def seed_digests(plan: Plan, site: Site) -> dict[str, str]:
    """Each domain's seed content hash, as the program would render it (for plan diffs).

    Key files are named by path here (their content is the operator's, not the
    repository's): a changed path counts as a changed seed.
    """
    keys = list(site.ops.ssh_keys) + [f"file:{p}" for p in site.ops.ssh_key_files]
    return {
        m.domain: render_seed(
            m, t.segment, keys or ["none"], site.ops.user, site.package_mirror
        ).digest
        for t in plan.tenants
        for m in t.machines
    }
