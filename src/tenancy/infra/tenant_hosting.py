"""TenantHosting: everything of one tenant — segment, firewall and machines on each host."""

from __future__ import annotations

from dataclasses import dataclass, field

import pulumi

from tenancy.infra.dynamic.policyrun import PolicyRun, PolicyRunArgs
from tenancy.infra.firewall_policy import FirewallPolicy, FirewallPolicyArgs
from tenancy.infra.hypervisor import Hypervisor
from tenancy.infra.segment import Segment, SegmentArgs
from tenancy.infra.virtual_machine import VirtualMachine, VirtualMachineArgs
from tenancy.plan import names
from tenancy.plan.model import TenantPlan
from tenancy.render.cloud_init import SeedDocuments


@dataclass(frozen=True)
class TenantHostingArgs:
    tenant: TenantPlan
    hypervisors: dict[str, Hypervisor]
    host_uris: dict[str, str]
    domain_type: str
    seeds: dict[str, SeedDocuments]  # by domain name
    ops_cidrs: list[str]
    approved: frozenset[str]  # domain names the operator approved to replace/delete
    # the tenant's hardening run, built by the program from its inputs
    # (tenancy.infra.dynamic.policyrun.policy_run_args); created once the tenant has machines
    policy: PolicyRunArgs
    image_recipes: dict[str, str] = field(default_factory=dict)
    """The base image version (recipe) existing machines keep, by domain."""


class TenantHosting(pulumi.ComponentResource):
    """One per tenant; children never decide anything the plan did not."""

    machines: dict[str, VirtualMachine]
    """Machines by domain name."""

    def __init__(
        self, name: str, args: TenantHostingArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("tenancy:infra:TenantHosting", name, None, opts)
        t = args.tenant
        self.machines = {}
        for host in t.segment.hosts:
            uri = args.host_uris[host]
            hyper = args.hypervisors[host]
            on_host = pulumi.ResourceOptions(parent=self, depends_on=[hyper])
            segment = Segment(f"{t.name}-{host}-segment", SegmentArgs(uri, t.segment), on_host)
            groups = sorted({m.group for m in t.machines if m.host == host})
            policy = FirewallPolicy(
                f"{t.name}-{host}-firewall",
                FirewallPolicyArgs(uri=uri, tenant=t, groups=groups, ops_cidrs=args.ops_cidrs),
                on_host,
            )
            for m in (m for m in t.machines if m.host == host):
                self.machines[m.domain] = VirtualMachine(
                    m.domain,
                    VirtualMachineArgs(
                        uri=uri,
                        machine=m,
                        domain_type=args.domain_type,
                        image=hyper.versions.get(
                            (m.image, args.image_recipes.get(m.domain, "")), hyper.images[m.image]
                        ),
                        root_pool=hyper.pools[m.root_pool].name,
                        root_pool_path=hyper.pool_paths[m.root_pool],
                        data_pools={p: r.name for p, r in hyper.pools.items()},
                        network=segment.network.name,
                        nwfilter=policy.filters[m.group].name,
                        seed=args.seeds[m.domain],
                        approved=m.domain in args.approved,
                    ),
                    pulumi.ResourceOptions(parent=self),
                )
        # The security baseline, once every domain of the tenant exists (a replaced
        # domain has a new UUID, which makes the run apply again).
        self.policy: PolicyRun | None = None
        if self.machines:
            self.policy = PolicyRun(
                f"{t.name}-policy",
                args.policy.with_instances({d: vm.domain.uuid for d, vm in self.machines.items()}),
                pulumi.ResourceOptions(
                    parent=self, depends_on=[vm.domain for vm in self.machines.values()]
                ),
            )
        self.register_outputs(
            {
                "machines": {d: vm.address for d, vm in self.machines.items()},
                "filters": [
                    names.filter_name(t.name, g) for g in sorted({m.group for m in t.machines})
                ],
                # Visible to the guardrails policy pack (tenant-within-quota).
                "quota": dict(t.quota),
            }
        )
