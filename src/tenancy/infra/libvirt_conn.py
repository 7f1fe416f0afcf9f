"""Connections to libvirt hypervisors, shared by the dynamic providers.

One cached connection per URI and process (libvirt connections are
thread-safe; the dynamic provider process serves several calls at once), and
a dedicated connection for long streams (volume uploads) so an upload does
not hold up the other calls. Lookups return ``None`` for "no such object", so
that read and delete can treat a missing object as a normal outcome.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from typing import Any, TypeVar

import libvirt

T = TypeVar("T")

# libvirt's default error handler prints every error to stderr, including the
# "not found" errors we expect during read and delete.
libvirt.registerErrorHandler(lambda _ctx, _err: None, None)

NOT_FOUND_CODES = frozenset(
    {
        libvirt.VIR_ERR_NO_DOMAIN,
        libvirt.VIR_ERR_NO_NETWORK,
        libvirt.VIR_ERR_NO_STORAGE_POOL,
        libvirt.VIR_ERR_NO_STORAGE_VOL,
        libvirt.VIR_ERR_NO_NWFILTER,
    }
)

_lock = threading.Lock()
_connections: dict[str, Any] = {}


class LibvirtUnavailableError(RuntimeError):
    """The hypervisor at a URI cannot be reached."""


def _open(uri: str) -> Any:
    try:
        return libvirt.open(uri)
    except libvirt.libvirtError as exc:
        raise LibvirtUnavailableError(
            f"cannot connect to libvirt at {uri}: {exc.get_error_message()} "
            "(is the hypervisor up? locally: `bash tools/hypervisor.sh up`)"
        ) from exc


def connect(uri: str) -> Any:
    """The process-wide connection to ``uri`` (a ``libvirt.virConnect``), reopened if dead."""
    with _lock:
        conn = _connections.get(uri)
        if conn is not None:
            try:
                if conn.isAlive():
                    return conn
            except libvirt.libvirtError:
                pass
            _connections.pop(uri, None)
        conn = _open(uri)
        _connections[uri] = conn
        return conn


@contextmanager
def dedicated(uri: str) -> Iterator[Any]:
    """A private connection to ``uri`` for the duration of a block (for streams)."""
    conn = _open(uri)
    try:
        yield conn
    finally:
        with suppress(libvirt.libvirtError):
            conn.close()


def close_all() -> None:
    """Close the cached connections (tests call this between phases)."""
    with _lock:
        for conn in _connections.values():
            with suppress(libvirt.libvirtError):
                conn.close()
        _connections.clear()


def is_not_found(exc: BaseException) -> bool:
    """True when ``exc`` is libvirt's "no such domain/network/pool/volume/filter"."""
    return isinstance(exc, libvirt.libvirtError) and exc.get_error_code() in NOT_FOUND_CODES


def lookup(fn: Callable[[str], T], key: str) -> T | None:
    """``fn(key)``, or ``None`` when libvirt says the object does not exist."""
    try:
        return fn(key)
    except libvirt.libvirtError as exc:
        if is_not_found(exc):
            return None
        raise


def refuse_existing(fn: Callable[[str], object], kind: str, name: str, uri: str) -> None:
    """Create never adopts: an object of that name already on the host is an error."""
    if lookup(fn, name) is not None:
        raise RuntimeError(
            f"{kind} {name!r} already exists on {uri}; delete it or import it into the stack"
        )


def error_message(exc: BaseException) -> str:
    """libvirt's own message for ``exc`` (without the Python wrapper's prefix)."""
    if isinstance(exc, libvirt.libvirtError):
        return str(exc.get_error_message())
    return str(exc)
