"""Volume: a storage volume in a pool, in one of three shapes.

* base volume: ``source`` is a local image file (qcow2 or raw) uploaded over
  the libvirt stream API (works for remote ``qemu+ssh://`` hosts too); keyed
  by ``source_sha256``, so a changed image replaces the volume while a moved
  but identical file does not;
* overlay: ``backing_volume`` is the path of another volume; a qcow2
  copy-on-write layer on top of it (capacity defaults to the backing size);
* data volume: neither; an empty volume of ``capacity`` bytes.
"""

from __future__ import annotations

import contextlib
import os
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import libvirt
import pulumi
from pulumi.dynamic import CheckResult, CreateResult, ReadResult, Resource, UpdateResult

from tenancy.infra import libvirt_conn
from tenancy.infra.dynamic import _storage
from tenancy.infra.dynamic._base import (
    REQUIRED,
    LibvirtProvider,
    args_to_props,
    canonical,
    gone,
    is_known,
    prop_opt_int,
    prop_opt_str,
    prop_str,
)
from tenancy.infra.dynamic.xml_common import check_name
from tenancy.infra.dynamic.xml_storage import (
    VOLUME_FORMATS,
    VolumeDef,
    image_format,
    qcow2_virtual_size,
)

_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
_sha_cache: dict[tuple[str, int, int], str] = {}
_sha_lock = threading.Lock()


def source_sha256(path: str) -> str:
    """sha256 of a local image, cached per (path, size, mtime) within the process."""
    resolved = os.path.realpath(path)
    st = Path(resolved).stat()
    key = (resolved, st.st_size, st.st_mtime_ns)
    with _sha_lock:
        cached = _sha_cache.get(key)
    if cached is None:
        cached = _storage.file_sha256(resolved)
        with _sha_lock:
            _sha_cache[key] = cached
    return cached


def image_facts(path: str) -> tuple[str, int, int]:
    """(format, virtual size, file size) of a local image file."""
    with Path(path).open("rb") as fh:
        header = fh.read(512)
    size = Path(path).stat().st_size
    fmt = image_format(header)
    virtual = qcow2_virtual_size(header) if fmt == "qcow2" else size
    return fmt, virtual, size


class VolumeProvider(LibvirtProvider):
    """Inputs: uri, pool, name, format (qcow2|raw, default qcow2), capacity (bytes),
    source + source_sha256 (base volume), backing_volume + backing_format (overlay).

    Outputs: path (also the id), actual_capacity. Replaced when uri, pool,
    name, format, source_sha256, backing_volume or backing_format change, or
    when capacity would shrink; growing capacity resizes in place; a changed
    ``source`` path with the same digest is only recorded.
    """

    kind: ClassVar[str] = "Volume"
    input_defaults: ClassVar[Mapping[str, Any]] = {
        "uri": REQUIRED,
        "pool": REQUIRED,
        "name": REQUIRED,
        "format": "qcow2",
        "capacity": None,
        "source": None,
        "source_sha256": None,
        "backing_volume": None,
        "backing_format": "qcow2",
    }
    replace_on: ClassVar[frozenset[str]] = frozenset(
        {"uri", "pool", "name", "format", "source_sha256", "backing_volume", "backing_format"}
    )

    def check(self, olds: dict[str, Any], news: dict[str, Any]) -> CheckResult:
        source = news.get("source")
        if news.get("source_sha256") is None and isinstance(source, str) and is_known(source):
            news = dict(news)
            with contextlib.suppress(OSError):  # validate() reports an unreadable file
                news["source_sha256"] = source_sha256(source)
        result = super().check(olds, news)
        uploaded = bool(olds) and all(
            olds.get(k) == result.inputs.get(k) for k in ("source", "source_sha256")
        )
        if source is not None and uploaded:
            # already on the host and not to be uploaded again: its file may be gone
            # (an older image version whose files were cleaned up)
            failures = [f for f in result.failures or [] if f.property not in ("source", "format")]
            result = CheckResult(result.inputs, failures)
        return result

    def validate(self, inputs: dict[str, Any]) -> list[tuple[str, str]]:
        problems: list[tuple[str, str]] = []
        message = check_name("volume", str(inputs["name"]))
        if message:
            problems.append(("name", message))
        fmt = inputs["format"]
        if fmt not in VOLUME_FORMATS:
            problems.append(("format", f"format {fmt!r} must be one of {VOLUME_FORMATS}"))
        capacity = inputs.get("capacity")
        if capacity is not None and (not isinstance(capacity, int | float) or capacity <= 0):
            problems.append(
                ("capacity", f"capacity must be a positive number of bytes: {capacity!r}")
            )
        source = inputs.get("source")
        backing = inputs.get("backing_volume")
        if source is not None and backing is not None:
            problems.append(("source", "give either source (base volume) or backing_volume"))
        if source is not None:
            if capacity is not None:
                problems.append(("capacity", "a volume uploaded from source takes its size"))
            try:
                actual_fmt, _, _ = image_facts(str(source))
            except (OSError, ValueError) as exc:
                problems.append(("source", f"cannot read image {source!r}: {exc}"))
            else:
                if actual_fmt != fmt:
                    problems.append(
                        ("format", f"{source} is a {actual_fmt} image, but format is {fmt}")
                    )
            digest = inputs.get("source_sha256")
            if digest is not None and not _SHA256_RE.match(str(digest)):
                problems.append(("source_sha256", "source_sha256 must be 64 lower-case hex digits"))
        elif backing is not None:
            if fmt != "qcow2":
                problems.append(("format", "an overlay (backing_volume) must be qcow2"))
        elif capacity is None:
            problems.append(("capacity", "a data volume (no source, no backing) needs capacity"))
        return problems

    def replacements(
        self, changed: list[str], olds: dict[str, Any], news: dict[str, Any]
    ) -> list[str]:
        replaces = super().replacements(changed, olds, news)
        if "capacity" in changed:
            new = canonical(news.get("capacity"))
            actual = canonical(olds.get("actual_capacity"))
            growable = (
                isinstance(new, int)
                and isinstance(actual, int)
                and new >= actual
                and news.get("source") is None
            )
            if not growable:
                replaces.append("capacity")
        return replaces

    def create(self, props: dict[str, Any]) -> CreateResult:
        uri = prop_str(props, "uri")
        pool_name = prop_str(props, "pool")
        name = prop_str(props, "name")
        fmt = prop_str(props, "format")
        source = prop_opt_str(props, "source")
        backing = prop_opt_str(props, "backing_volume")
        capacity = prop_opt_int(props, "capacity")
        digest = prop_opt_str(props, "source_sha256")
        if source is not None:
            _, virtual, size = image_facts(source)
            spec = VolumeDef(name=name, capacity=virtual, format=fmt)
            with Path(source).open("rb") as fh:
                sent = _storage.upload_volume(uri, pool_name, spec, fh, size)
            if digest is not None and sent != digest:
                _storage.delete_volume(uri, pool_name, name)
                raise RuntimeError(
                    f"volume {name}: {source} has sha256 {sent}, expected {digest} "
                    "(the image changed during the update?)"
                )
            digest = sent
        else:
            if backing is not None and capacity is None:
                capacity = _backing_capacity(uri, backing)
            if capacity is None:
                raise ValueError(f"volume {name}: capacity is required")
            spec = VolumeDef(
                name=name,
                capacity=capacity,
                format=fmt,
                backing_path=backing,
                backing_format=prop_str(props, "backing_format"),
            )
            _storage.create_volume(uri, pool_name, spec)
        conn = libvirt_conn.connect(uri)
        vol = _storage.find_volume(conn, pool_name, name)
        if vol is None:
            raise RuntimeError(f"volume {name} vanished right after it was created")
        path = str(vol.path())
        outs = self.outputs(
            props,
            source_sha256=digest,
            path=path,
            actual_capacity=_storage.volume_capacity(vol),
        )
        return CreateResult(path, outs)

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        conn = libvirt_conn.connect(prop_str(props, "uri"))
        vol = _storage.find_volume(
            conn, prop_str(props, "pool"), prop_str(props, "name"), refresh=True
        )
        if vol is None:
            return gone()
        try:
            capacity = _storage.volume_capacity(vol)
        except libvirt.libvirtError:
            return gone()  # listed by a stale pool view, file gone
        return ReadResult(id_, self.outputs(props, path=str(vol.path()), actual_capacity=capacity))

    def update(self, id_: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        uri = prop_str(news, "uri")
        conn = libvirt_conn.connect(uri)
        name = prop_str(news, "name")
        vol = _storage.find_volume(conn, prop_str(news, "pool"), name)
        if vol is None:
            raise RuntimeError(f"volume {name} does not exist on {uri} (run pulumi refresh)")
        capacity = prop_opt_int(news, "capacity")
        if capacity is not None and capacity > _storage.volume_capacity(vol):
            vol.resize(capacity, 0)
        outs = self.outputs(
            news,
            source_sha256=olds.get("source_sha256"),
            path=str(vol.path()),
            actual_capacity=_storage.volume_capacity(vol),
        )
        return UpdateResult(outs)

    def delete(self, _id: str, props: dict[str, Any]) -> None:
        _storage.delete_volume(
            prop_str(props, "uri"), prop_str(props, "pool"), prop_str(props, "name")
        )


def _backing_capacity(uri: str, backing_path: str) -> int:
    conn = libvirt_conn.connect(uri)
    vol = libvirt_conn.lookup(conn.storageVolLookupByPath, backing_path)
    if vol is None:
        raise RuntimeError(
            f"backing volume {backing_path} is not a libvirt volume on {uri}; give capacity"
        )
    return _storage.volume_capacity(vol)


@dataclass(frozen=True)
class VolumeArgs:
    """Inputs of a :class:`Volume` (see the module docstring for the three shapes)."""

    uri: pulumi.Input[str]
    """libvirt URI of the hypervisor."""
    pool: pulumi.Input[str]
    """Name of the storage pool."""
    name: pulumi.Input[str]
    """Volume (file) name inside the pool, e.g. ``app-1-root.qcow2``."""
    format: pulumi.Input[str] = "qcow2"
    """``qcow2`` or ``raw``; must match the source image; overlays are qcow2."""
    capacity: pulumi.Input[int] | None = None
    """Virtual size in bytes: required for data volumes, optional for overlays."""
    source: pulumi.Input[str] | None = None
    """Local image file to upload (base volume)."""
    source_sha256: pulumi.Input[str] | None = None
    """Digest of ``source``; computed from the file when omitted."""
    backing_volume: pulumi.Input[str] | None = None
    """Path of the volume this one is a copy-on-write overlay of."""
    backing_format: pulumi.Input[str] = "qcow2"
    """Format of the backing volume."""


class Volume(Resource, module="tenancy", name="Volume"):
    """A libvirt storage volume. The resource id is the volume path on the hypervisor."""

    uri: pulumi.Output[str]
    pool: pulumi.Output[str]
    name: pulumi.Output[str]
    format: pulumi.Output[str]
    capacity: pulumi.Output[int | None]
    source: pulumi.Output[str | None]
    source_sha256: pulumi.Output[str | None]
    backing_volume: pulumi.Output[str | None]
    backing_format: pulumi.Output[str]
    path: pulumi.Output[str]
    """Path of the volume on the hypervisor (use it as a disk path or backing volume)."""
    actual_capacity: pulumi.Output[int]
    """Virtual size in bytes as libvirt reports it."""

    def __init__(
        self,
        resource_name: str,
        args: VolumeArgs,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        props = args_to_props(args)
        source = props["source"]
        if props["source_sha256"] is None and isinstance(source, str) and Path(source).is_file():
            # Reading the local image here (program side, not inside an apply)
            # makes the digest an input: a changed image shows as a replace in
            # the preview.
            props["source_sha256"] = source_sha256(props["source"])
        props.update({"path": None, "actual_capacity": None})
        super().__init__(VolumeProvider(), resource_name, props, opts)
