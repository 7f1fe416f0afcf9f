"""One place that says how Tenancy talks SSH to guests: the option list every caller uses.

Guests are recreated with the same address, so their host keys are never
recorded or checked; every connection is non-interactive (a missing key is an
error, not a password prompt). Ansible runs, readiness probes, the audit's
suite and Lynis, and the tests all build their ``ssh`` argv or option string
here, so a change (a timeout, multiplexing) reaches all of them at once.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

#: Seconds an idle multiplexed connection stays open after its last user.
PERSIST = "120s"


@dataclass(frozen=True)
class SshOptions:
    """What varies between callers; the rest of the option list is fixed."""

    private_key: Path | None = None
    """Offer only this key (``IdentitiesOnly``); None: ssh's defaults and the agent."""
    connect_timeout: int | None = None
    multiplex: bool = False
    """Share one connection per host (``ControlMaster=auto``, ``ControlPersist``)."""
    control_dir: Path | None = None
    """Where the multiplexing sockets live (``ControlPath``); None: Ansible chooses."""
    keepalive: bool = False
    """Notice a dead peer within about two minutes (long Ansible tasks)."""
    compress: bool = False
    quiet: bool = True
    """``LogLevel=ERROR``: no "Warning: Permanently added" lines in captured output."""

    def options(self) -> list[str]:
        """``-o`` options (and ``-C``) in a stable order."""
        opts = ["BatchMode=yes", "StrictHostKeyChecking=no", "UserKnownHostsFile=/dev/null"]
        if self.quiet:
            opts.append("LogLevel=ERROR")
        if self.connect_timeout is not None:
            opts.append(f"ConnectTimeout={self.connect_timeout}")
        if self.multiplex:
            opts += ["ControlMaster=auto", f"ControlPersist={PERSIST}"]
            if self.control_dir is not None:
                opts.append(f"ControlPath={self.control_dir}/%C")
        if self.keepalive:
            opts += ["ServerAliveInterval=15", "ServerAliveCountMax=8"]
        if self.private_key is not None:
            opts.append("IdentitiesOnly=yes")
        argv = ["-C"] if self.compress else []
        for opt in opts:
            argv += ["-o", opt]
        return argv

    def common_args(self) -> str:
        """The options as one string (``ansible_ssh_common_args``, ``ANSIBLE_SSH_ARGS``)."""
        return shlex.join(self.options())

    def argv(self, user: str, address: str, command: Sequence[str] | str = ()) -> list[str]:
        """``ssh <options> [-i key] user@address [command]``."""
        argv = ["ssh", *self.options()]
        if self.private_key is not None:
            argv += ["-i", str(self.private_key)]
        argv.append(f"{user}@{address}")
        argv += [command] if isinstance(command, str) else list(command)
        return argv

    def control(self, user: str, address: str, operation: str) -> list[str]:
        """``ssh <options> -O <operation> user@address``: ask the multiplexing master
        (``check``, ``exit``) for that destination."""
        return ["ssh", *self.options(), "-O", operation, f"{user}@{address}"]
