"""NwFilter: a libvirt network filter defined from a name and an XML body."""

from __future__ import annotations

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
    prop_opt_int,
    prop_str,
)
from tenancy.infra.dynamic.xml_common import check_name
from tenancy.infra.dynamic.xml_network import (
    NWFILTER_CHAINS_FIXED,
    NwFilterDef,
    nwfilter_body_elements,
    nwfilter_xml,
)


def nwfilter_spec(props: dict[str, Any], uuid: str | None = None) -> NwFilterDef:
    return NwFilterDef(
        name=prop_str(props, "name"),
        body=str(props.get("body") or ""),
        chain=prop_str(props, "chain"),
        priority=prop_opt_int(props, "priority"),
        uuid=uuid,
    )


class NwFilterProvider(LibvirtProvider):
    """Inputs: uri, name, body (the XML inside ``<filter>``: ``<rule>`` and
    ``<filterref>`` elements), chain (default ``root``), priority (optional).

    Outputs: uuid. Replaced when uri or name change; body, chain and priority
    are updated by redefining the filter with its uuid (libvirt re-applies it
    to running VMs at once).
    """

    kind: ClassVar[str] = "NwFilter"
    input_defaults: ClassVar[Mapping[str, Any]] = {
        "uri": REQUIRED,
        "name": REQUIRED,
        "body": "",
        "chain": "root",
        "priority": None,
    }
    replace_on: ClassVar[frozenset[str]] = frozenset({"uri", "name"})

    def validate(self, inputs: dict[str, Any]) -> list[tuple[str, str]]:
        problems: list[tuple[str, str]] = []
        message = check_name("nwfilter", str(inputs["name"]))
        if message:
            problems.append(("name", message))
        chain = str(inputs["chain"])
        if chain.split("-", 1)[0] not in NWFILTER_CHAINS_FIXED or chain.startswith("root-"):
            problems.append(
                ("chain", f"chain {chain!r} must be one of {NWFILTER_CHAINS_FIXED} or e.g. ipv4-x")
            )
        priority = inputs.get("priority")
        if priority is not None and not -1000 <= float(priority) <= 1000:
            problems.append(("priority", f"priority {priority} must be within -1000..1000"))
        try:
            nwfilter_body_elements(str(inputs.get("body") or ""))
        except ValueError as exc:
            problems.append(("body", str(exc)))
        return problems

    def create(self, props: dict[str, Any]) -> CreateResult:
        spec = nwfilter_spec(props)
        uri = prop_str(props, "uri")
        conn = libvirt_conn.connect(uri)
        libvirt_conn.refuse_existing(conn.nwfilterLookupByName, "nwfilter", spec.name, uri)
        nwf = conn.nwfilterDefineXML(nwfilter_xml(spec))
        return CreateResult(spec.name, self.outputs(props, uuid=nwf.UUIDString()))

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        conn = libvirt_conn.connect(prop_str(props, "uri"))
        nwf = libvirt_conn.lookup(conn.nwfilterLookupByName, id_)
        if nwf is None:
            return gone()
        return ReadResult(id_, self.outputs(props, uuid=nwf.UUIDString()))

    def update(self, id_: str, _olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        conn = libvirt_conn.connect(prop_str(news, "uri"))
        existing = libvirt_conn.lookup(conn.nwfilterLookupByName, id_)
        uuid = existing.UUIDString() if existing is not None else None
        nwf = conn.nwfilterDefineXML(nwfilter_xml(nwfilter_spec(news, uuid)))
        return UpdateResult(self.outputs(news, uuid=nwf.UUIDString()))

    def delete(self, id_: str, props: dict[str, Any]) -> None:
        conn = libvirt_conn.connect(prop_str(props, "uri"))
        nwf = libvirt_conn.lookup(conn.nwfilterLookupByName, id_)
        if nwf is None:
            return
        try:
            nwf.undefine()
        except libvirt.libvirtError as exc:
            if not libvirt_conn.is_not_found(exc):
                raise


@dataclass(frozen=True)
class NwFilterArgs:
    """Inputs of a :class:`NwFilter`."""

    uri: pulumi.Input[str]
    """libvirt URI of the hypervisor."""
    name: pulumi.Input[str]
    """Filter name, unique on the hypervisor; referenced by domain interfaces."""
    body: pulumi.Input[str] = ""
    """XML inside ``<filter>``, e.g. ``<filterref filter='clean-traffic'/><rule .../>``."""
    chain: pulumi.Input[str] = "root"
    """libvirt chain (``root``, ``ipv4``, ``arp``, ...)."""
    priority: pulumi.Input[int] | None = None
    """Chain priority (-1000..1000); libvirt's default when omitted."""


class NwFilter(Resource, module="tenancy", name="NwFilter"):
    """A libvirt nwfilter. The resource id is the filter name."""

    uri: pulumi.Output[str]
    name: pulumi.Output[str]
    body: pulumi.Output[str]
    chain: pulumi.Output[str]
    priority: pulumi.Output[int | None]
    uuid: pulumi.Output[str]
    """libvirt's UUID of the filter (kept across updates)."""

    def __init__(
        self,
        resource_name: str,
        args: NwFilterArgs,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        props = {**args_to_props(args), "uuid": None}
        super().__init__(NwFilterProvider(), resource_name, props, opts)
