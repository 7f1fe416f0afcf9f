"""Engine and host verbs of the ``tenancy`` command (up, preview, destroy, harden, audit)."""

from __future__ import annotations
