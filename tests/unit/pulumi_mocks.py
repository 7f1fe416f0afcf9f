"""Run the Pulumi program under ``pulumi.runtime.set_mocks`` and record what it registers.

No engine, no libvirt: every ``RegisterResource`` call is answered by :class:`SiteMocks`
(outputs = inputs plus the computed values a provider would fill in) and recorded with
the options the mocks API does not show (parent, protect, dependencies), so tests can
assert on URNs, properties and ``protect`` flags. A fresh monitor is configured for every
:func:`run_program` call: each test builds its own program.

Dynamic providers' ``check`` does not run here (only the engine calls it); the inputs
recorded are exactly what the program sent.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi
from pulumi.runtime import mocks as pulumi_mocks
from pulumi.runtime import rpc
from pulumi.runtime.stack import run_pulumi_func
from pulumi.runtime.sync_await import _sync_await

from tenancy.contract.loader import load_site, site_file
from tenancy.infra.hypervisor import BaseImage
from tenancy.infra.program_config import ProgramInputs
from tenancy.plan.ledger import ledger_path, read_ledger
from tenancy.plan.planner import plan_paths
from tenancy.policy.variables import load_policy_sources
from tenancy.project import Project

DYNAMIC = "pulumi-python:dynamic/tenancy:"
COMPONENT = "tenancy:infra:"
PROJECT = "tenancy"


@dataclass
class Registered:
    """One ``RegisterResource`` call as the engine would have received it."""

    urn: str
    type: str
    name: str
    parent: str
    custom: bool
    protect: bool
    dependencies: list[str]
    inputs: dict[str, Any]
    outputs: dict[str, Any] = field(default_factory=dict)
    """Custom resources: what the mocks answered; components: ``register_outputs``."""
    ignore_changes: list[str] = field(default_factory=list)

    @property
    def kind(self) -> str:
        """``Domain`` for ``pulumi-python:dynamic/tenancy:Domain``, ``VirtualMachine`` ..."""
        return self.type.rsplit(":", 1)[-1]


def _computed(kind: str, inputs: dict[str, Any]) -> dict[str, Any]:
    """The outputs a provider computes (what ``create`` adds to the inputs)."""
    name = str(inputs.get("name", ""))
    uuid = hashlib.sha256(f"{kind}/{name}".encode()).hexdigest()[:32]
    if kind in ("Volume", "CloudInitDisk"):
        path = f"/mock-pools/{inputs.get('pool')}/{name}"
        return {"path": path, "actual_capacity": inputs.get("capacity") or 0, "size": 1}
    if kind in ("Domain", "Network", "NwFilter", "StoragePool"):
        return {"uuid": uuid, "active": True}
    if kind == "HostFirewall":
        return {"digest": hashlib.sha256(str(inputs.get("ruleset")).encode()).hexdigest()}
    return {}


class SiteMocks(pulumi.runtime.Mocks):
    """Answers every resource with its inputs plus computed outputs; ids are the names."""

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        kind = args.typ.rsplit(":", 1)[-1]
        state = {k: v for k, v in args.inputs.items() if k != "__provider"}
        state.update({k: v for k, v in _computed(kind, args.inputs).items() if v is not None})
        ident = str(state.get("path") or state.get("name") or args.name)
        return ident, state

    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict[str, Any], None]:
        return {}, None


class RecordingMonitor(pulumi_mocks.MockMonitor):
    """The SDK's mock monitor, plus a record of every registration and its options."""

    def __init__(self, mocks: pulumi.runtime.Mocks) -> None:
        super().__init__(mocks)
        self.registered: dict[str, Registered] = {}

    def RegisterResource(self, request: Any) -> Any:  # noqa: N802 - gRPC method name
        # the SDK's MockMonitor is unannotated
        response = super().RegisterResource(request)  # type: ignore[no-untyped-call]
        if request.type == "pulumi:pulumi:Stack":
            return response
        state = self.resources[response.urn].state
        self.registered[response.urn] = Registered(
            urn=response.urn,
            type=request.type,
            name=request.name,
            parent=request.parent,
            custom=bool(request.custom),
            protect=bool(request.protect),
            dependencies=list(request.dependencies),
            inputs={
                k: v
                for k, v in rpc.deserialize_properties(request.object).items()
                if k != "__provider"
            },
            outputs=dict(state) if request.custom else {},
            ignore_changes=list(request.ignoreChanges),
        )
        return response

    def RegisterResourceOutputs(self, request: Any) -> Any:  # noqa: N802 - gRPC method name
        entry = self.registered.get(request.urn)
        if entry is not None:
            entry.outputs = rpc.deserialize_properties(request.outputs)
        # the SDK's MockMonitor is unannotated
        return super().RegisterResourceOutputs(request)  # type: ignore[no-untyped-call]


@dataclass
class Program:
    """What one run of the program registered, with lookups that name URNs on failure."""

    resources: dict[str, Registered]

    def of_kind(self, kind: str) -> list[Registered]:
        return [r for r in self.resources.values() if r.kind == kind]

    def named(self, name: str, kind: str | None = None) -> Registered:
        hits = [
            r
            for r in self.resources.values()
            if r.name == name and (kind is None or r.kind == kind)
        ]
        assert len(hits) == 1, f"expected one resource named {name!r} ({kind}), got " + str(
            [r.urn for r in hits]
        )
        return hits[0]

    def parent_of(self, res: Registered) -> Registered | None:
        return self.resources.get(res.parent)

    def ancestors(self, res: Registered) -> Iterator[Registered]:
        parent = self.parent_of(res)
        while parent is not None:
            yield parent
            parent = self.parent_of(parent)

    def children(self, res: Registered) -> list[Registered]:
        return [r for r in self.resources.values() if r.parent == res.urn]

    def descendants(self, res: Registered, kind: str | None = None) -> list[Registered]:
        out: list[Registered] = []
        for child in self.children(res):
            if kind is None or child.kind == kind:
                out.append(child)
            out.extend(self.descendants(child, kind))
        return out

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for r in self.resources.values():
            out[r.kind] = out.get(r.kind, 0) + 1
        return dict(sorted(out.items()))


def run_program(build: Callable[[], object], stack: str = "test", preview: bool = False) -> Program:
    """Configure fresh mocks, run ``build`` like the language host would, wait for every RPC."""
    monitor = RecordingMonitor(SiteMocks())
    pulumi.runtime.set_mocks(
        monitor.mocks, project=PROJECT, stack=stack, preview=preview, monitor=monitor
    )

    def body() -> None:
        build()

    _sync_await(run_pulumi_func(body))
    return Program(dict(monitor.registered))


# --- inputs without libvirt --------------------------------------------------------------


def fake_image(directory: Path, name: str = "debian-12") -> BaseImage:
    """A BaseImage whose files exist but are tiny (the Volume resource stats its sources)."""
    directory.mkdir(parents=True, exist_ok=True)
    files = {}
    for part in ("disk.qcow2", "vmlinuz", "initrd.img"):
        path = directory / f"{name}-{part}"
        path.write_bytes(f"fake {name} {part}\n".encode())
        files[part] = str(path)
    return BaseImage(
        name=name,
        recipe="0123456789abcdef",
        image=files["disk.qcow2"],
        image_sha256=hashlib.sha256(b"fake image").hexdigest(),
        kernel=files["vmlinuz"],
        initrd=files["initrd.img"],
        cmdline="root=/dev/vda rw console=ttyS0",
    )


def program_inputs(
    root: Path,
    site_name: str,
    image_dir: Path,
    approve: frozenset[str] = frozenset(),
    ssh_keys: tuple[str, ...] = ("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFake ops@test",),
) -> ProgramInputs:
    """ProgramInputs like ``load_inputs`` builds them, with fake images and keys (no libvirt)."""
    result = plan_paths(root, None, sites=[site_name])
    assert result.ok, "\n".join(str(e) for e in result.problems.errors)
    plan = result.plans[site_name]
    site, _ = load_site(site_file(root / "stacks", site_name), site_name, root)
    assert site is not None
    images = {n: fake_image(image_dir, n) for n in sorted({m.image for m in plan.machines()})}
    ledger = result.ledgers[site_name]
    on_disk = read_ledger(ledger_path(root / "stacks", site_name), site_name)
    project = Project.at(root)
    return ProgramInputs(
        project=project,
        site=site.model,
        plan=plan,
        ledger=ledger,
        ledger_current=on_disk == ledger,
        images=images,
        ssh_keys=list(ssh_keys),
        approved=approve,
        policy_sources=load_policy_sources(project),
    )
