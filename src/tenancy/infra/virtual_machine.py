"""VirtualMachine: root overlay, data volumes, cloud-init seed and the domain on its host."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi

from tenancy.infra.dynamic import (
    CloudInitDisk,
    CloudInitDiskArgs,
    DiskArgs,
    Domain,
    DomainArgs,
    InterfaceArgs,
    Volume,
    VolumeArgs,
)
from tenancy.infra.hypervisor import ImageOnHost
from tenancy.infra.storage_volume import GIB, StorageVolume, StorageVolumeArgs
from tenancy.plan.model import MachinePlan
from tenancy.render.cloud_init import SeedDocuments


@dataclass(frozen=True)
class VirtualMachineArgs:
    uri: str
    machine: MachinePlan
    domain_type: str
    image: ImageOnHost
    root_pool: pulumi.Input[str]
    root_pool_path: str
    """The root pool's directory on the host."""
    data_pools: dict[str, pulumi.Input[str]]
    network: pulumi.Input[str]
    nwfilter: pulumi.Input[str]
    seed: SeedDocuments
    approved: bool = False
    """Operator approval to replace/delete a protected machine (tenancy:approve)."""


class VirtualMachine(pulumi.ComponentResource):
    """One planned machine instance; protected machines refuse replacement without approval."""

    domain: Domain
    """The libvirt domain."""
    address: str
    """The planned static address."""

    def __init__(
        self, name: str, args: VirtualMachineArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("tenancy:infra:VirtualMachine", name, None, opts)
        m = args.machine
        protect = m.protect and not args.approved
        keep = pulumi.ResourceOptions(parent=self, protect=protect)
        root = Volume(
            f"{name}-root",
            VolumeArgs(
                uri=args.uri,
                pool=args.root_pool,
                name=f"{m.domain}-root.qcow2",
                backing_volume=args.image.disk,
                capacity=m.disk_gib * GIB,
            ),
            keep,
        )
        seed_name = f"{m.domain}-seed-{args.seed.identity[:8]}.iso"
        seed = CloudInitDisk(
            f"{name}-seed",
            CloudInitDiskArgs(
                uri=args.uri,
                pool=args.root_pool,
                name=seed_name,
                user_data=args.seed.user_data,
                meta_data=args.seed.meta_data,
                network_config=args.seed.network_config,
            ),
            pulumi.ResourceOptions(parent=self),
        )
        disks: list[DiskArgs] = [
            {"path": root.path, "target": "vda", "format": "qcow2"},
            # named from the plan, not from the seed's output: a seed rewritten in place
            # (new keys, a new proxy) keeps its path, and a preview can tell
            {
                "path": f"{args.root_pool_path}/{seed_name}",
                "target": "vdb",
                "format": "raw",
                "readonly": True,
            },
        ]
        for index, vol in enumerate(m.volumes):
            data = StorageVolume(
                f"{name}-{vol.name}",
                StorageVolumeArgs(
                    uri=args.uri,
                    pool=args.data_pools[vol.pool],
                    name=f"{m.domain}-{vol.name}",
                    size_gib=vol.size_gib,
                    backup=vol.backup,
                    approved_delete=args.approved,
                ),
                pulumi.ResourceOptions(parent=self),
            )
            disks.append(
                {
                    "path": data.volume.path,
                    "target": f"vd{chr(ord('c') + index)}",
                    "format": "qcow2",
                }
            )
        nic: InterfaceArgs = {
            "network": args.network,
            "mac": m.mac,
            "filter": args.nwfilter,
            "filter_parameters": {"IP": m.address},
        }
        self.domain = Domain(
            f"{name}-domain",
            DomainArgs(
                uri=args.uri,
                name=m.domain,
                domain_type=args.domain_type,
                memory_mib=m.memory_mib,
                vcpus=m.vcpus,
                disks=disks,
                interfaces=[nic],
                kernel=args.image.kernel,
                initrd=args.image.initrd,
                cmdline=args.image.cmdline,
                console_log=f"/var/log/libvirt/qemu/{m.domain}-console.log",
            ),
            pulumi.ResourceOptions(parent=self, protect=protect, depends_on=[seed]),
        )
        self.address = m.address
        self.register_outputs({"domain": self.domain.name, "address": m.address})
