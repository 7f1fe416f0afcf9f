"""StorageVolume: a tenant data volume; always protected, because data outlives machines."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi

from tenancy.infra.dynamic import Volume, VolumeArgs

GIB = 1024**3


@dataclass(frozen=True)
class StorageVolumeArgs:
    uri: str
    pool: pulumi.Input[str]
    name: str
    size_gib: int
    backup: str
    approved_delete: bool = False


class StorageVolume(pulumi.ComponentResource):
    """An empty qcow2 volume of the planned size in the named pool."""

    volume: Volume
    """The libvirt volume; ``volume.path`` is what the domain attaches."""

    def __init__(
        self, name: str, args: StorageVolumeArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("tenancy:infra:StorageVolume", name, None, opts)
        self.volume = Volume(
            f"{name}-vol",
            VolumeArgs(
                uri=args.uri,
                pool=args.pool,
                name=f"{args.name}.qcow2",
                format="qcow2",
                capacity=args.size_gib * GIB,
            ),
            pulumi.ResourceOptions(parent=self, protect=not args.approved_delete),
        )
        self.register_outputs({"path": self.volume.path, "backup": args.backup})
