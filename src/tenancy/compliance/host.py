"""The testinfra host as the suite uses it, and the name it goes by.

testinfra ships no type stubs: :class:`Host` names the few attributes the
suite touches, so the fact readers are typed without pretending to know
testinfra's internals (its backends stay ``Any``).
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import pytest


class Host(Protocol):
    """The part of ``testinfra.host.Host`` the suite relies on."""

    backend: Any
    """The connection: ``NAME``, ``host`` (ansible), ``sudo``, ``quote()``, ``get_hostname()``."""
    run: Callable[..., Any]
    """``run(command, *args)`` -> a result with ``rc``, ``stdout``, ``stderr``; an attribute,
    so :func:`tenancy.compliance.evidence.install_recorder` can wrap it."""

    def sudo(self, user: str | None = None) -> AbstractContextManager[Any]: ...

    def __getattr__(self, name: str) -> Any: ...  # testinfra modules: host.ansible, host.file


def host_name(host: Host) -> str:
    """The inventory name of a testinfra host (the ansible backend) or its host name."""
    backend = host.backend
    if backend.NAME == "ansible":
        return str(backend.host)
    return str(backend.get_hostname())


def host_of(test: pytest.Item) -> Any:
    """The testinfra host a collected test runs on (None when it takes no host)."""
    callspec = getattr(test, "callspec", None)
    return callspec.params.get("_testinfra_host") if callspec is not None else None
