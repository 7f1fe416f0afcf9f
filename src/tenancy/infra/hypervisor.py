"""Hypervisor: what one host needs before tenants land on it (pools, base images, firewall)."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi

from tenancy.contract.models import HostSpec
from tenancy.infra.dynamic import StoragePool, StoragePoolArgs, Volume, VolumeArgs
from tenancy.infra.dynamic.hostfirewall import HostFirewall, HostFirewallArgs


@dataclass(frozen=True)
class BaseImage:
    """A guest image on the operator's machine, ready to upload (see program config)."""

    name: str
    recipe: str
    image: str
    image_sha256: str
    kernel: str
    initrd: str
    cmdline: str


@dataclass(frozen=True)
class HypervisorArgs:
    site: str
    host: HostSpec
    images: list[BaseImage]
    firewall_table: str
    firewall_ruleset: str


@dataclass(frozen=True)
class ImageOnHost:
    """Paths of an image's volumes on one host (outputs)."""

    disk: pulumi.Output[str]
    kernel: pulumi.Output[str]
    initrd: pulumi.Output[str]
    cmdline: str


class Hypervisor(pulumi.ComponentResource):
    """Storage pools, base image volumes and the host firewall of one hypervisor."""

    pools: dict[str, StoragePool]
    """Pool resources by pool name."""
    images: dict[str, ImageOnHost]
    """Uploaded images by catalogue name."""
    firewall: HostFirewall
    """The tenant segments' nftables table on this host."""

    def __init__(
        self, name: str, args: HypervisorArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("tenancy:infra:Hypervisor", name, None, opts)
        host = args.host
        child = pulumi.ResourceOptions(parent=self)
        self.pools = {
            p.name: StoragePool(
                f"{name}-pool-{p.name}",
                StoragePoolArgs(uri=host.uri, name=f"tenancy-{args.site}-{p.name}", path=p.path),
                child,
            )
            for p in host.pools
        }
        root_pool = self.pools[host.pools[0].name]
        self.images = {}
        for img in args.images:
            on_pool = pulumi.ResourceOptions(parent=self, depends_on=[root_pool])
            stem = f"base-{img.name}-{img.recipe}"
            disk = Volume(
                f"{name}-{stem}",
                VolumeArgs(
                    uri=host.uri,
                    pool=root_pool.name,
                    name=f"{stem}.qcow2",
                    format="qcow2",
                    source=img.image,
                    source_sha256=img.image_sha256,
                ),
                on_pool,
            )
            kernel = Volume(
                f"{name}-{stem}-kernel",
                VolumeArgs(
                    uri=host.uri,
                    pool=root_pool.name,
                    name=f"{stem}.vmlinuz",
                    format="raw",
                    source=img.kernel,
                ),
                on_pool,
            )
            initrd = Volume(
                f"{name}-{stem}-initrd",
                VolumeArgs(
                    uri=host.uri,
                    pool=root_pool.name,
                    name=f"{stem}.initrd",
                    format="raw",
                    source=img.initrd,
                ),
                on_pool,
            )
            self.images[img.name] = ImageOnHost(disk.path, kernel.path, initrd.path, img.cmdline)
        self.firewall = HostFirewall(
            f"{name}-firewall",
            HostFirewallArgs(
                uri=host.uri, table=args.firewall_table, ruleset=args.firewall_ruleset
            ),
            child,
        )
        self.register_outputs({"pools": {k: v.name for k, v in self.pools.items()}})
