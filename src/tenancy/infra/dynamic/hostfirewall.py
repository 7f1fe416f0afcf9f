"""HostFirewall: one nftables table on a hypervisor, replaced atomically.

The table text is rendered from the plan (``tenancy.render.firewall``); this
provider only loads it. Local hosts (``qemu:///system``) run ``nft``
directly, remote ones (``qemu+ssh://user@host/system``) through ``ssh``.
Only the named table is touched: never ``flush ruleset``.
"""

from __future__ import annotations

import hashlib
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar
from urllib.parse import urlsplit

import pulumi
from pulumi.dynamic import CreateResult, ReadResult, Resource, UpdateResult

from tenancy.infra.dynamic._base import REQUIRED, LibvirtProvider, args_to_props, gone, prop_str


def host_command(uri: str, argv: list[str]) -> list[str]:
    """``argv`` to run on the hypervisor named by a libvirt URI."""
    parts = urlsplit(uri)
    if parts.scheme == "qemu" and not parts.hostname:
        return argv
    if parts.scheme == "qemu+ssh" and parts.hostname:
        target = f"{parts.username}@{parts.hostname}" if parts.username else parts.hostname
        ssh = ["ssh", "-o", "BatchMode=yes"]
        if parts.port:
            ssh += ["-p", str(parts.port)]
        return [*ssh, target, "--", *argv]
    raise ValueError(f"cannot run host commands for libvirt URI {uri!r}")


def _run(uri: str, argv: list[str], stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        host_command(uri, argv),
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


class HostFirewallProvider(LibvirtProvider):
    """Inputs: uri, table (inet family), ruleset (full nft script for that table).

    Outputs: digest of the loaded ruleset. ``read`` reports a missing table as
    gone, so ``refresh`` + ``up`` restores it.
    """

    kind: ClassVar[str] = "HostFirewall"
    input_defaults: ClassVar[Mapping[str, Any]] = {
        "uri": REQUIRED,
        "table": REQUIRED,
        "ruleset": REQUIRED,
    }
    replace_on: ClassVar[frozenset[str]] = frozenset({"uri", "table"})

    def _load(self, props: Mapping[str, Any]) -> str:
        uri, ruleset = prop_str(props, "uri"), prop_str(props, "ruleset")
        check = _run(uri, ["nft", "-c", "-f", "-"], ruleset)
        if check.returncode != 0:
            raise RuntimeError(f"nftables rejected the ruleset: {check.stderr.strip()}")
        done = _run(uri, ["nft", "-f", "-"], ruleset)
        if done.returncode != 0:
            raise RuntimeError(f"nft -f failed: {done.stderr.strip()}")
        return digest(ruleset)

    def create(self, props: dict[str, Any]) -> CreateResult:
        loaded = self._load(props)
        return CreateResult(
            f"{prop_str(props, 'uri')}#{prop_str(props, 'table')}",
            self.outputs(props, digest=loaded),
        )

    def update(self, _id: str, _olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        return UpdateResult(self.outputs(news, digest=self._load(news)))

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        listing = _run(
            prop_str(props, "uri"), ["nft", "list", "table", "inet", prop_str(props, "table")]
        )
        if listing.returncode != 0:
            return gone()
        return ReadResult(id_, dict(props))

    def delete(self, _id: str, props: dict[str, Any]) -> None:
        result = _run(
            prop_str(props, "uri"), ["nft", "delete", "table", "inet", prop_str(props, "table")]
        )
        if result.returncode != 0 and "No such file" not in result.stderr:
            raise RuntimeError(f"nft delete table failed: {result.stderr.strip()}")


@dataclass(frozen=True)
class HostFirewallArgs:
    """Inputs of a :class:`HostFirewall`."""

    uri: pulumi.Input[str]
    """libvirt URI of the hypervisor (decides local or ssh execution)."""
    table: pulumi.Input[str]
    """Name of the ``inet`` table this resource owns."""
    ruleset: pulumi.Input[str]
    """nft script that (re)creates exactly that table."""


class HostFirewall(Resource, module="tenancy", name="HostFirewall"):
    """The tenant segments' nftables table on one hypervisor."""

    uri: pulumi.Output[str]
    table: pulumi.Output[str]
    ruleset: pulumi.Output[str]
    digest: pulumi.Output[str]

    def __init__(
        self, resource_name: str, args: HostFirewallArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        props = {**args_to_props(args), "digest": None}
        super().__init__(HostFirewallProvider(), resource_name, props, opts)
