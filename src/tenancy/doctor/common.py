"""What the groups of checks share: the fixes they name and how they quote a failed command.

The fixes are the setup steps of the README in their order, so the
first fix of a report is the step to run first.
"""

from __future__ import annotations

QEMU_USER = "libvirt-qemu"

FIX_ENV = "source tools/env.sh"
FIX_PYTHON = "make python-env"
FIX_ENGINE = "make engine"
FIX_HYPERVISOR = "make hypervisor-up"
FIX_IMAGE = "make image"
FIX_STATE = "make state"
FIX_STANDINS = "bash tools/standins.sh up"
FIX_TEST_DEPS = "make test-deps"


def first_line(text: str) -> str:
    """The first non-blank line of a command's output: enough to say why it failed."""
    return next((line.strip() for line in text.splitlines() if line.strip()), "")
