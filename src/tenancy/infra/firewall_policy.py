"""FirewallPolicy: a tenant's nwfilters (one per machine group) on one hypervisor."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi

from tenancy.infra.dynamic import NwFilter, NwFilterArgs
from tenancy.plan import names
from tenancy.plan.model import TenantPlan
from tenancy.render.firewall import render_nwfilter_body


@dataclass(frozen=True)
class FirewallPolicyArgs:
    uri: str
    tenant: TenantPlan
    groups: list[str]
    ops_cidrs: list[str]


class FirewallPolicy(pulumi.ComponentResource):
    """Default deny on every interface: anti-spoofing plus exactly the declared flows."""

    filters: dict[str, NwFilter]
    """Filter resources by machine group."""

    def __init__(
        self, name: str, args: FirewallPolicyArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("tenancy:infra:FirewallPolicy", name, None, opts)
        self.filters = {
            group: NwFilter(
                f"{name}-{group}",
                NwFilterArgs(
                    uri=args.uri,
                    name=names.filter_name(args.tenant.name, group),
                    body=render_nwfilter_body(args.tenant, group, args.ops_cidrs),
                ),
                pulumi.ResourceOptions(parent=self),
            )
            for group in sorted(args.groups)
        }
        self.register_outputs({"filters": {g: f.name for g, f in self.filters.items()}})
