"""Stopping a guest: ACPI first, repeated, destroy at the deadline (slow guests under TCG)."""

from __future__ import annotations

import time
from typing import Any

import libvirt

from tenancy.infra import libvirt_conn


def _is_active(dom: Any) -> bool:
    try:
        return bool(dom.isActive())
    except libvirt.libvirtError as exc:
        if libvirt_conn.is_not_found(exc):
            return False
        raise


def stop_gracefully(dom: Any, timeout: float, poll: float = 1.0, resend: float = 10.0) -> bool:
    """ACPI shutdown, repeated every ``resend`` s; destroy after ``timeout`` s.

    Returns True when the guest shut down by itself. A guest still booting
    (common under TCG) ignores the first ACPI request, hence the repeats.
    """
    deadline = time.monotonic() + timeout
    next_request = 0.0
    while _is_active(dom):
        now = time.monotonic()
        if now >= deadline:
            try:
                dom.destroy()
            except libvirt.libvirtError:
                if _is_active(dom):
                    raise
            return False
        if now >= next_request:
            try:
                dom.shutdown()
            except libvirt.libvirtError as exc:
                # An active guest that is not running (already "in shutdown" after an
                # earlier request, slow under TCG; or paused) makes libvirt refuse
                # another request with "domain is not running": keep waiting, the
                # deadline still destroys it. Failing here failed whole destroys.
                still_active = _is_active(dom)
                if still_active and exc.get_error_code() != libvirt.VIR_ERR_OPERATION_INVALID:
                    raise
            next_request = now + resend
        time.sleep(poll)
    return True
