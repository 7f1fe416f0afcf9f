"""Hypervisor: what one host needs before tenants land on it (pools, base images, firewall)."""

from __future__ import annotations

from dataclasses import dataclass, field

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
    """The current version of each image (new machines get it)."""
    firewall_table: str
    firewall_ruleset: str
    kept: list[BaseImage] = field(default_factory=list)
    """Older versions existing machines on this host still run (kept while they do)."""


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
    pool_paths: dict[str, str]
    """Each pool's directory on the host (a volume's path is ``<dir>/<name>``)."""
    images: dict[str, ImageOnHost]
    """The current version of each image, by catalogue name."""
    versions: dict[tuple[str, str], ImageOnHost]
    """Every version on the host (current and kept), by (catalogue name, recipe)."""
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
        self.pool_paths = {p.name: p.path.rstrip("/") for p in host.pools}
        root_pool = self.pools[host.pools[0].name]
        self.images, self.versions = {}, {}
        current = {(img.name, img.recipe) for img in args.images}
        kept = [img for img in args.kept if (img.name, img.recipe) not in current]
        for img in [*args.images, *kept]:
            # a version's content is fixed once uploaded (overlays back onto it): a
            # rebuild of the same recipe elsewhere never replaces it under them
            on_pool = pulumi.ResourceOptions(
                parent=self, depends_on=[root_pool], ignore_changes=["source", "source_sha256"]
            )
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
            version = ImageOnHost(disk.path, kernel.path, initrd.path, img.cmdline)
            self.versions[(img.name, img.recipe)] = version
            if (img.name, img.recipe) in current:
                self.images[img.name] = version
        self.firewall = HostFirewall(
            f"{name}-firewall",
            HostFirewallArgs(
                uri=host.uri, table=args.firewall_table, ruleset=args.firewall_ruleset
            ),
            child,
        )
        self.register_outputs({"pools": {k: v.name for k, v in self.pools.items()}})
