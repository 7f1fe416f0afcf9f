"""One clear line for a provider failure; the traceback goes to a log file.

The dynamic provider host (``pulumi.dynamic.__main__``) aborts every failed
call with ``traceback.format_exc()`` as the error text, so a libvirt error
reached the user's terminal as a screen of Python frames. Each provider
operation is wrapped here: the original exception and its traceback are
appended to ``$TENANCY_STATE/logs/providers.log`` and the operation raises
:class:`ProviderError`, whose first line names the resource, the host, what
libvirt said and what to do. ``tenancy up`` shows only that last line of the
traceback the engine prints (see :mod:`tenancy.engine_output`).
"""

from __future__ import annotations

import functools
import os
import time
import traceback
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import libvirt

F = TypeVar("F", bound=Callable[..., Any])

#: The marker :mod:`tenancy.engine_output` recognises at the end of a traceback.
PREFIX = "tenancy: "

_HINTS: tuple[tuple[tuple[str, ...], str], ...] = (
    (("No such file or directory", "Failed to create file"), "run `tenancy doctor`"),
    (("Permission denied",), "check the host's directory permissions: run `tenancy doctor`"),
    (
        ("Failed to connect socket", "cannot connect", "Connection refused", "Connection reset"),
        "is the hypervisor up? locally `make hypervisor-up`; then `tenancy doctor`",
    ),
    (
        ("already exists", "already in use"),
        "an object of that name exists outside this stack: "
        "remove it, or `tenancy refresh` if it is this stack's",
    ),
    (
        ("Cannot allocate memory", "not enough", "No space left"),
        "the host is out of memory or disk: `tenancy doctor` shows what the site's plan needs",
    ),
)


class ProviderError(RuntimeError):
    """A provider operation failed; ``str()`` is the one line shown to the user."""


def log_path() -> Path:
    """``$TENANCY_STATE/logs/providers.log`` (``.tenancy/logs`` under the working directory)."""
    state = os.environ.get("TENANCY_STATE") or str(Path.cwd() / ".tenancy")
    return Path(state) / "logs" / "providers.log"


def hint_for(message: str) -> str:
    """The advice for a libvirt message (default: run ``tenancy doctor``)."""
    for needles, hint in _HINTS:
        if any(n.lower() in message.lower() for n in needles):
            return hint
    return "run `tenancy doctor`"


def describe(exc: BaseException) -> str:
    """What went wrong, in one line: libvirt's own message when libvirt raised."""
    if isinstance(exc, libvirt.libvirtError):
        text = f"libvirt: {exc.get_error_message() or exc}"
    else:
        text = f"{type(exc).__name__}: {exc}"
    return " ".join(text.split())


def one_line(kind: str, action: str, props: Mapping[str, Any], exc: BaseException) -> str:
    """``Domain hr-portal-1 on qemu:///system: create failed: libvirt: ...; hint: ...``."""
    name = props.get("name") or props.get("table") or props.get("tenant") or "?"
    host = props.get("uri") or "?"
    what = describe(exc)
    return f"{PREFIX}{kind} {name} on {host}: {action} failed: {what}; hint: {hint_for(what)}"


def _record(line: str, exc: BaseException) -> Path | None:
    path = log_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a", encoding="utf-8") as fh:
            fh.write(f"--- {time.strftime('%Y-%m-%dT%H:%M:%S%z')} pid {os.getpid()}\n{line}\n")
            fh.writelines(traceback.format_exception(exc))
    except OSError:
        return None
    return path


def _props_of(action: str, args: tuple[Any, ...]) -> Mapping[str, Any]:
    """The property bag among a provider method's arguments (``news`` for update)."""
    bags = [a for a in args if isinstance(a, Mapping)]
    if not bags:
        return {}
    return bags[-1] if action == "update" else bags[0]


def one_line_errors(kind: str, action: str, fn: F) -> F:
    """Wrap a provider operation so that any failure becomes a :class:`ProviderError`."""

    @functools.wraps(fn)
    def wrapper(self: Any, *args: Any) -> Any:
        try:
            return fn(self, *args)
        except ProviderError:
            raise
        except Exception as exc:
            line = one_line(kind, action, _props_of(action, args), exc)
            where = _record(line, exc)
            detail = f" (traceback in {where})" if where else ""
            raise ProviderError(line + detail) from None

    wrapper.__tenancy_one_line__ = True  # type: ignore[attr-defined]
    return wrapper  # type: ignore[return-value]
