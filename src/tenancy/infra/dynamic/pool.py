"""StoragePool: a libvirt directory pool (define, build, start, autostart)."""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import libvirt
import pulumi
from pulumi.dynamic import CreateResult, ReadResult, Resource, UpdateResult

from tenancy.infra import libvirt_conn
from tenancy.infra.dynamic._base import (
    REQUIRED,
    LibvirtProvider,
    args_to_props,
    gone,
    prop_bool,
    prop_str,
)
from tenancy.infra.dynamic.xml_common import check_name
from tenancy.infra.dynamic.xml_storage import PoolDef, pool_xml


def pool_spec(props: dict[str, Any]) -> PoolDef:
    return PoolDef(name=prop_str(props, "name"), path=prop_str(props, "path"))


class StoragePoolProvider(LibvirtProvider):
    """Inputs: uri, name, path (absolute, on the hypervisor), autostart (default true).

    Outputs: uuid, active. Replaced when uri, name or path change; autostart
    is updated in place; a pool found stopped by ``refresh`` is started again.
    """

    kind: ClassVar[str] = "StoragePool"
    input_defaults: ClassVar[Mapping[str, Any]] = {
        "uri": REQUIRED,
        "name": REQUIRED,
        "path": REQUIRED,
        "autostart": True,
    }
    replace_on: ClassVar[frozenset[str]] = frozenset({"uri", "name", "path"})

    def validate(self, inputs: dict[str, Any]) -> list[tuple[str, str]]:
        problems: list[tuple[str, str]] = []
        message = check_name("pool", str(inputs["name"]))
        if message:
            problems.append(("name", message))
        if not str(inputs["path"]).startswith("/"):
            problems.append(("path", f"path {inputs['path']!r} must be absolute"))
        return problems

    def drift(self, olds: dict[str, Any]) -> list[str]:
        return ["active"] if olds.get("active") is False else []

    def create(self, props: dict[str, Any]) -> CreateResult:
        spec = pool_spec(props)
        uri = prop_str(props, "uri")
        conn = libvirt_conn.connect(uri)
        libvirt_conn.refuse_existing(conn.storagePoolLookupByName, "storage pool", spec.name, uri)
        pool = conn.storagePoolDefineXML(pool_xml(spec), 0)
        try:
            pool.build(0)
            pool.create(0)
            pool.setAutostart(1 if prop_bool(props, "autostart", True) else 0)
        except libvirt.libvirtError:
            _remove(pool)
            raise
        return CreateResult(spec.name, self.outputs(props, uuid=pool.UUIDString(), active=True))

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        conn = libvirt_conn.connect(prop_str(props, "uri"))
        pool = libvirt_conn.lookup(conn.storagePoolLookupByName, id_)
        if pool is None:
            return gone()
        observed = dict(props)
        observed["autostart"] = bool(pool.autostart())
        return ReadResult(
            id_, self.outputs(observed, uuid=pool.UUIDString(), active=bool(pool.isActive()))
        )

    def update(self, id_: str, _olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        conn = libvirt_conn.connect(prop_str(news, "uri"))
        pool = conn.storagePoolLookupByName(id_)
        if not pool.isActive():
            pool.create(0)
        pool.setAutostart(1 if prop_bool(news, "autostart", True) else 0)
        return UpdateResult(self.outputs(news, uuid=pool.UUIDString(), active=True))

    def delete(self, id_: str, props: dict[str, Any]) -> None:
        conn = libvirt_conn.connect(prop_str(props, "uri"))
        pool = libvirt_conn.lookup(conn.storagePoolLookupByName, id_)
        if pool is not None:
            _remove(pool)


def _remove(pool: Any) -> None:
    """Stop, remove the (empty) directory, undefine; each step tolerates "already done"."""
    try:
        if pool.isActive():
            pool.destroy()
    except libvirt.libvirtError as exc:
        if not libvirt_conn.is_not_found(exc):
            raise
    # Removes the directory only when empty: leftovers we did not create stay.
    with contextlib.suppress(libvirt.libvirtError):
        pool.delete(0)
    try:
        pool.undefine()
    except libvirt.libvirtError as exc:
        if not libvirt_conn.is_not_found(exc):
            raise


@dataclass(frozen=True)
class StoragePoolArgs:
    """Inputs of a :class:`StoragePool`."""

    uri: pulumi.Input[str]
    """libvirt URI of the hypervisor, e.g. ``qemu:///system``."""
    name: pulumi.Input[str]
    """Pool name, unique on the hypervisor."""
    path: pulumi.Input[str]
    """Absolute directory on the hypervisor; created when missing."""
    autostart: pulumi.Input[bool] = True
    """Start the pool with libvirtd."""


class StoragePool(Resource, module="tenancy", name="StoragePool"):
    """A libvirt directory storage pool. The resource id is the pool name."""

    uri: pulumi.Output[str]
    name: pulumi.Output[str]
    path: pulumi.Output[str]
    autostart: pulumi.Output[bool]
    uuid: pulumi.Output[str]
    """libvirt's UUID of the pool."""
    active: pulumi.Output[bool]
    """Whether the pool was running when last created, updated or refreshed."""

    def __init__(
        self,
        resource_name: str,
        args: StoragePoolArgs,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        props = {**args_to_props(args), "uuid": None, "active": None}
        super().__init__(StoragePoolProvider(), resource_name, props, opts)
