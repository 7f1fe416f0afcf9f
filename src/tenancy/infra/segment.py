"""Segment: a tenant's isolated network on one hypervisor (the planned subnet and bridge)."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi

from tenancy.infra.dynamic import Network, NetworkArgs
from tenancy.plan.model import SegmentPlan


@dataclass(frozen=True)
class SegmentArgs:
    uri: str
    segment: SegmentPlan


class Segment(pulumi.ComponentResource):
    """Open-mode libvirt network: libvirt adds no rules; our host table and nwfilters decide."""

    network: Network
    """The libvirt network; machines attach to ``network.name``."""

    def __init__(
        self, name: str, args: SegmentArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("tenancy:infra:Segment", name, None, opts)
        seg = args.segment
        self.network = Network(
            f"{name}-net",
            NetworkArgs(
                uri=args.uri,
                name=seg.network,
                bridge=seg.bridge,
                address=seg.gateway,
                prefix=seg.prefix,
                dns=False,
            ),
            pulumi.ResourceOptions(parent=self),
        )
        self.register_outputs({"network": self.network.name, "bridge": seg.bridge})
