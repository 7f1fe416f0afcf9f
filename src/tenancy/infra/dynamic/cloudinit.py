"""CloudInitDisk: a NoCloud seed ISO (volume label ``cidata``) uploaded as a raw volume."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import pulumi
from pulumi.dynamic import CheckResult, CreateResult, ReadResult, Resource, UpdateResult

from tenancy.infra import libvirt_conn
from tenancy.infra.dynamic import _storage
from tenancy.infra.dynamic._base import (
    REQUIRED,
    LibvirtProvider,
    args_to_props,
    gone,
    is_known,
    prop_opt_str,
    prop_str,
)
from tenancy.infra.dynamic.xml_common import check_name
from tenancy.infra.dynamic.xml_storage import VolumeDef


def seed_content_sha256(user_data: str, meta_data: str, network_config: str | None) -> str:
    """The digest that identifies a seed's content (the ISO bytes carry timestamps)."""
    doc = json.dumps([user_data, meta_data, network_config], ensure_ascii=False)
    return hashlib.sha256(doc.encode("utf-8")).hexdigest()


def build_seed_iso(user_data: str, meta_data: str, network_config: str | None) -> bytes:
    """A NoCloud seed ISO (ISO 9660 + Joliet + Rock Ridge, volume id ``cidata``)."""
    genisoimage = shutil.which("genisoimage") or shutil.which("mkisofs")
    if genisoimage is None:
        raise RuntimeError("genisoimage is not installed (Debian package genisoimage)")
    with tempfile.TemporaryDirectory(prefix="tenancy-seed-") as tmp:
        root = Path(tmp)
        files = {"user-data": user_data, "meta-data": meta_data}
        if network_config is not None:
            files["network-config"] = network_config
        for name, text in files.items():
            (root / name).write_text(text, encoding="utf-8")
        out = root / "seed.iso"
        subprocess.run(
            [
                genisoimage,
                "-quiet",
                "-output",
                str(out),
                "-volid",
                "cidata",
                "-joliet",
                "-rock",
                *files,
            ],
            cwd=root,
            check=True,
            capture_output=True,
        )
        return out.read_bytes()


class CloudInitDiskProvider(LibvirtProvider):
    """Inputs: uri, pool, name, user_data, meta_data, network_config (optional).

    Outputs: path (also the id), content_sha256 (filled in by check), size.
    A changed user_data rewrites the volume under the same name (the keys and the
    proxy it carries are the baseline's after first boot; a running guest keeps the
    file it opened, a machine built later reads the new one); any other change
    replaces the disk: the identity is read once, at first boot.
    """

    kind: ClassVar[str] = "CloudInitDisk"
    input_defaults: ClassVar[Mapping[str, Any]] = {
        "uri": REQUIRED,
        "pool": REQUIRED,
        "name": REQUIRED,
        "user_data": REQUIRED,
        "meta_data": REQUIRED,
        "network_config": None,
        "content_sha256": None,
    }
    replace_on: ClassVar[frozenset[str]] = frozenset(input_defaults) - {
        "user_data",
        "content_sha256",
    }
    stable_outputs: ClassVar[frozenset[str]] = frozenset({"path"})

    def check(self, olds: dict[str, Any], news: dict[str, Any]) -> CheckResult:
        content = [news.get("user_data"), news.get("meta_data"), news.get("network_config")]
        if is_known(content) and isinstance(content[0], str) and isinstance(content[1], str):
            news = dict(news)
            news["content_sha256"] = seed_content_sha256(
                content[0], content[1], content[2] if isinstance(content[2], str) else None
            )
        return super().check(olds, news)

    def validate(self, inputs: dict[str, Any]) -> list[tuple[str, str]]:
        problems: list[tuple[str, str]] = []
        message = check_name("volume", str(inputs["name"]))
        if message:
            problems.append(("name", message))
        user_data = str(inputs["user_data"])
        if not user_data.startswith(("#cloud-config", "#!", "Content-Type:")):
            problems.append(("user_data", "user_data must start with #cloud-config or #!"))
        return problems

    def _write(self, props: dict[str, Any]) -> dict[str, Any]:
        """Build the ISO and upload it as the volume; the outputs."""
        uri = prop_str(props, "uri")
        pool_name = prop_str(props, "pool")
        name = prop_str(props, "name")
        user_data = prop_str(props, "user_data")
        meta_data = str(props.get("meta_data") or "")
        network_config = prop_opt_str(props, "network_config")
        iso = build_seed_iso(user_data, meta_data, network_config)
        spec = VolumeDef(name=name, capacity=len(iso), format="raw")
        _storage.upload_bytes(uri, pool_name, spec, iso)
        conn = libvirt_conn.connect(uri)
        vol = _storage.find_volume(conn, pool_name, name)
        if vol is None:
            raise RuntimeError(f"seed volume {name} vanished right after it was created")
        digest = seed_content_sha256(user_data, meta_data, network_config)
        return self.outputs(props, content_sha256=digest, path=str(vol.path()), size=len(iso))

    def create(self, props: dict[str, Any]) -> CreateResult:
        outs = self._write(props)
        return CreateResult(outs["path"], outs)

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        conn = libvirt_conn.connect(prop_str(props, "uri"))
        vol = _storage.find_volume(
            conn, prop_str(props, "pool"), prop_str(props, "name"), refresh=True
        )
        if vol is None:
            return gone()
        return ReadResult(id_, self.outputs(props, path=str(vol.path()), size=props.get("size")))

    def update(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        # only user_data changed (the rest replaces): the same name, new content; an
        # interrupted rewrite leaves no volume, which the next refresh/up re-creates
        _storage.delete_volume(
            prop_str(olds, "uri"), prop_str(olds, "pool"), prop_str(olds, "name")
        )
        return UpdateResult(self._write(news))

    def delete(self, _id: str, props: dict[str, Any]) -> None:
        _storage.delete_volume(
            prop_str(props, "uri"), prop_str(props, "pool"), prop_str(props, "name")
        )


@dataclass(frozen=True)
class CloudInitDiskArgs:
    """Inputs of a :class:`CloudInitDisk`."""

    uri: pulumi.Input[str]
    """libvirt URI of the hypervisor."""
    pool: pulumi.Input[str]
    """Storage pool that receives the seed volume."""
    name: pulumi.Input[str]
    """Volume name, e.g. ``app-1-seed.iso``."""
    user_data: pulumi.Input[str]
    """``#cloud-config`` document."""
    meta_data: pulumi.Input[str]
    """NoCloud meta-data (``instance-id``, ``local-hostname``)."""
    network_config: pulumi.Input[str] | None = None
    """Network config (version 2) or omitted for the image default."""


class CloudInitDisk(Resource, module="tenancy", name="CloudInitDisk"):
    """A cloud-init NoCloud seed volume. The resource id is the volume path."""

    uri: pulumi.Output[str]
    pool: pulumi.Output[str]
    name: pulumi.Output[str]
    user_data: pulumi.Output[str]
    meta_data: pulumi.Output[str]
    network_config: pulumi.Output[str | None]
    content_sha256: pulumi.Output[str]
    """sha256 over user-data, meta-data and network-config."""
    path: pulumi.Output[str]
    """Path of the seed volume on the hypervisor (attach it read-only, format raw)."""
    size: pulumi.Output[int]
    """Size of the ISO in bytes."""

    def __init__(
        self,
        resource_name: str,
        args: CloudInitDiskArgs,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        props = {**args_to_props(args), "content_sha256": None, "path": None, "size": None}
        super().__init__(CloudInitDiskProvider(), resource_name, props, opts)
