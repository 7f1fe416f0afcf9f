"""What the doctor knows and what it concludes, as plain frozen data.

The checks (``tenancy.doctor.checks``) read only a :class:`Facts` object, so
every verdict can be unit-tested with made-up facts; ``tenancy.doctor.gather``
is the one place that looks at the real machine.
"""

from __future__ import annotations

import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

Status = Literal["ok", "warn", "fail", "info"]
STATUSES: tuple[Status, ...] = ("ok", "warn", "fail", "info")


@dataclass(frozen=True)
class Check:
    """One verdict: what was looked at, how it stands and the one command that fixes it."""

    group: str  # tools, libvirt, engine, ... (for grouping in the report)
    name: str
    status: Status
    detail: str
    fix: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "group": self.group,
            "name": self.name,
            "status": self.status,
            "detail": self.detail,
            "fix": self.fix,
        }


FileKind = Literal["file", "dir", "char", "other"]


@dataclass(frozen=True)
class FileFact:
    """``stat`` of an existing path (symlinks followed) and where it really is."""

    kind: FileKind
    mode: int  # permission bits only (0o644)
    uid: int
    gid: int
    size: int = 0
    realpath: str = ""  # empty: the path itself

    @staticmethod
    def kind_of(st_mode: int) -> FileKind:
        if stat.S_ISREG(st_mode):
            return "file"
        if stat.S_ISDIR(st_mode):
            return "dir"
        if stat.S_ISCHR(st_mode):
            return "char"
        return "other"


@dataclass(frozen=True)
class CommandResult:
    """A command that ran (or could not): exit code None means it timed out or failed to start."""

    returncode: int | None
    stdout: str = ""
    stderr: str = ""
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.returncode == 0


@dataclass(frozen=True)
class UserFact:
    name: str
    uid: int
    gids: frozenset[int]


@dataclass(frozen=True)
class DaemonFact:
    """A libvirt daemon: the PID in its pid file, that process's name, or systemd's view."""

    name: str
    pid: int | None = None  # from /run/<name>.pid; None: no (readable) pid file
    comm: str | None = None  # /proc/<pid>/comm; None: no such process
    systemd_active: bool | None = None  # None: systemd is not init


@dataclass(frozen=True)
class DiskFact:
    """Free space of the filesystem holding ``path`` (or its nearest existing ancestor)."""

    path: str
    measured_at: str  # that filesystem's mount point
    device: int
    free_bytes: int


@dataclass(frozen=True)
class MachineNeed:
    """What one planned machine will take from the host it is placed on."""

    domain: str
    host: str
    memory_mib: int
    disk_gib: int
    root_pool: str
    volumes: tuple[tuple[str, int], ...] = ()  # (pool, size GiB)


@dataclass(frozen=True)
class SiteFacts:
    """The parts of a site and its plan that the machine must be able to carry."""

    name: str
    domain_type: str
    local_hosts: tuple[str, ...]  # hosts whose libvirt URI is this machine
    remote_hosts: tuple[str, ...]
    pool_paths: Mapping[tuple[str, str], str]  # (host, pool) -> directory
    ssh_key_files: tuple[str, ...]  # absolute paths
    image_sources: tuple[str, ...]  # sources of the images the plan uses
    machines: tuple[MachineNeed, ...] = ()
    plan_errors: tuple[str, ...] = ()
    ntp_servers: tuple[str, ...] = ()  # empty: the guests take the time from this host


@dataclass(frozen=True)
class Facts:
    """Everything the checks look at; gathered once, never re-read by a check."""

    root: str
    env: Mapping[str, str]
    which: Mapping[str, str | None] = field(default_factory=dict)
    files: Mapping[str, FileFact] = field(default_factory=dict)  # existing paths only
    users: Mapping[str, UserFact] = field(default_factory=dict)
    systemd: bool = False
    daemons: Mapping[str, DaemonFact] = field(default_factory=dict)
    virsh_version: CommandResult | None = None  # None: virsh not found
    running_domains: frozenset[str] | None = None  # None: unknown
    nft_tables: CommandResult | None = None
    pulumi_version: CommandResult | None = None
    imports: Mapping[str, str | None] = field(default_factory=dict)  # module -> error
    python_prefix: str = ""
    meminfo_kib: Mapping[str, int] = field(default_factory=dict)
    disks: Mapping[str, DiskFact] = field(default_factory=dict)
    site: SiteFacts | None = None
    site_error: str | None = None
    udp_ports: frozenset[int] | None = None  # UDP ports listening on this host; None: unknown
