"""Volume plumbing shared by Volume and CloudInitDisk: create, upload, delete."""

from __future__ import annotations

import contextlib
import hashlib
import io
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import libvirt

from tenancy.infra import libvirt_conn
from tenancy.infra.dynamic.xml_storage import VolumeDef, volume_xml

CHUNK = 256 * 1024  # libvirt's stream packets carry at most 256 KiB


def file_sha256(path: str | Path) -> str:
    """Hex sha256 of a local file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as fh:
        for chunk in iter(lambda: fh.read(1024 * 1024), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _chunks(fh: IO[bytes]) -> Iterator[bytes]:
    return iter(lambda: fh.read(CHUNK), b"")


def find_pool(conn: Any, pool_name: str) -> Any:
    pool = libvirt_conn.lookup(conn.storagePoolLookupByName, pool_name)
    if pool is None:
        raise RuntimeError(f"storage pool {pool_name!r} does not exist")
    if not pool.isActive():
        raise RuntimeError(f"storage pool {pool_name!r} is not running")
    return pool


def find_volume(conn: Any, pool_name: str, vol_name: str, *, refresh: bool = False) -> Any:
    """The volume, or ``None`` when it or its pool is gone.

    ``refresh`` first rescans the pool so that a file removed behind libvirt's
    back is noticed (a refresh can fail while another upload runs: then the
    cached view is used).
    """
    pool = libvirt_conn.lookup(conn.storagePoolLookupByName, pool_name)
    if pool is None or not pool.isActive():
        return None
    if refresh:
        with contextlib.suppress(libvirt.libvirtError):
            pool.refresh(0)
    return libvirt_conn.lookup(pool.storageVolLookupByName, vol_name)


def create_volume(uri: str, pool_name: str, spec: VolumeDef) -> Any:
    """Create an empty (or overlay) volume; fails when the name is taken."""
    conn = libvirt_conn.connect(uri)
    pool = find_pool(conn, pool_name)
    if libvirt_conn.lookup(pool.storageVolLookupByName, spec.name) is not None:
        raise RuntimeError(
            f"volume {spec.name!r} already exists in pool {pool_name!r} on {uri}; "
            "delete it or import it into the stack"
        )
    return pool.createXML(volume_xml(spec), 0)


def upload_volume(uri: str, pool_name: str, spec: VolumeDef, source: IO[bytes], length: int) -> str:
    """Create a volume and stream ``length`` bytes of ``source`` into it.

    Returns the sha256 of what was sent. On any failure the volume is deleted
    (create is transactional). Uses its own connection: a long upload must not
    hold up the other calls of the provider process.
    """
    digest = hashlib.sha256()
    with libvirt_conn.dedicated(uri) as conn:
        pool = find_pool(conn, pool_name)
        if libvirt_conn.lookup(pool.storageVolLookupByName, spec.name) is not None:
            raise RuntimeError(
                f"volume {spec.name!r} already exists in pool {pool_name!r} on {uri}; "
                "delete it or import it into the stack"
            )
        vol = pool.createXML(volume_xml(spec), 0)
        stream = conn.newStream(0)
        try:
            vol.upload(stream, 0, length, 0)
            sent = 0
            for chunk in _chunks(source):
                digest.update(chunk)
                view = memoryview(chunk)
                while view:
                    n = stream.send(bytes(view))
                    if n < 0:
                        raise RuntimeError(f"upload of {spec.name!r}: stream send failed ({n})")
                    view = view[n:]
                sent += len(chunk)
            if sent != length:
                raise RuntimeError(f"upload of {spec.name!r}: sent {sent} of {length} bytes")
            stream.finish()
        except BaseException:
            with contextlib.suppress(libvirt.libvirtError):
                stream.abort()
            with contextlib.suppress(libvirt.libvirtError):
                vol.delete(0)
            raise
    return digest.hexdigest()


def upload_bytes(uri: str, pool_name: str, spec: VolumeDef, data: bytes) -> str:
    return upload_volume(uri, pool_name, spec, io.BytesIO(data), len(data))


def delete_volume(uri: str, pool_name: str, vol_name: str) -> None:
    """Delete a volume; a missing volume or pool is success."""
    conn = libvirt_conn.connect(uri)
    vol = find_volume(conn, pool_name, vol_name)
    if vol is None:
        return
    try:
        vol.delete(0)
    except libvirt.libvirtError as exc:
        if not libvirt_conn.is_not_found(exc):
            raise


def volume_capacity(vol: Any) -> int:
    """Virtual size in bytes (``virStorageVolGetInfo``: type, capacity, allocation)."""
    return int(vol.info()[1])
