"""Everything the Pulumi program reads from outside: stack config, files, environment.

Read once, validated, handed to components as plain values (components never
read config, files or the stack name themselves).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

from tenancy.contract.models import Site
from tenancy.infra.hypervisor import BaseImage
from tenancy.infra.image_pins import ImagePin, ImagePinError, running_images
from tenancy.plan.ledger import Ledger, ledger_path, read_ledger
from tenancy.plan.model import Plan
from tenancy.plan.placement import unknown_hosts
from tenancy.plan.planner import plan_paths
from tenancy.policy.catalogue import CatalogueError
from tenancy.policy.ops_keys import OpsKeyError, ops_public_keys
from tenancy.policy.variables import PolicySources, load_policy_sources
from tenancy.project import Project


class ProgramInputError(Exception):
    """Invalid inputs: nothing is applied; the message lists every located error."""


@dataclass(frozen=True)
class ProgramInputs:
    project: Project
    site: Site
    plan: Plan
    ledger: Ledger
    ledger_current: bool
    images: dict[str, BaseImage]
    ssh_keys: list[str]
    approved: frozenset[str]
    policy_sources: PolicySources
    """The catalogue and the waivers, read once for every tenant's PolicyRun."""
    today: date = field(default_factory=date.today)
    """The day waivers are judged on (they expire)."""
    image_pins: Mapping[str, ImagePin] = field(default_factory=dict)
    """The base image version each existing machine keeps, by domain (read from its host)."""


def _sha256_cached(path: Path) -> str:
    """sha256 of a large image, remembered next to it keyed by size and mtime."""
    st = path.stat()
    key = f"{st.st_size} {st.st_mtime_ns}"
    side = path.with_name(path.name + ".sha256")
    try:
        cached_key, _, digest = side.read_text().strip().rpartition(" ")
        if cached_key == key and len(digest) == 64:
            return digest
    except OSError:
        pass
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    with contextlib.suppress(OSError):  # a read-only image dir only costs a re-hash
        side.write_text(f"{key} {h.hexdigest()}\n")
    return h.hexdigest()


def resolve_image(project: Project, name: str, source: str) -> BaseImage:
    """``builtin:<name>`` is the image tools/guest-image.sh built; else an absolute qcow2."""
    if source.startswith("builtin:"):
        info_path = project.guest_image_info
        if not info_path.is_file():
            raise ProgramInputError(
                f"image {name!r}: {info_path} missing; run `make image` (tools/guest-image.sh)"
            )
        info = json.loads(info_path.read_text())
        files = info["files"]
        image, kernel, initrd = Path(files["image"]), files["kernel"], files["initrd"]
        recipe, cmdline = str(info["recipe"]), str(info["boot"]["kernel_cmdline"])
    else:
        image = Path(source)
        kernel, initrd = str(image.with_name("vmlinuz")), str(image.with_name("initrd.img"))
        recipe = hashlib.sha256(source.encode()).hexdigest()[:16]
        cmdline = "root=/dev/vda rw console=ttyS0 net.ifnames=0"
    for p in (image, Path(kernel), Path(initrd)):
        if not p.is_file():
            raise ProgramInputError(f"image {name!r}: file {p} is missing")
    return BaseImage(
        name=name,
        recipe=recipe[:16],
        image=str(image),
        image_sha256=_sha256_cached(image),
        kernel=kernel,
        initrd=initrd,
        cmdline=cmdline,
    )


def kept_image(project: Project, current: BaseImage, recipe: str, cmdline: str | None) -> BaseImage:
    """An older version of ``current`` that existing machines still run.

    Its files are those ``tools/guest-image.sh`` keeps per recipe when they are still
    in the cache; otherwise paths that do not exist: a version already on a host is
    never uploaded again (its source is ignored), and one that would have to be is
    refused by the volume's check rather than filled with another version's bytes.
    """
    folder = project.cache_dir / "images" / recipe
    info_path = folder / "build-info.json"
    if info_path.is_file():
        files = json.loads(info_path.read_text())["files"]
        image, kernel, initrd = str(files["image"]), str(files["kernel"]), str(files["initrd"])
    else:
        image, kernel, initrd = (
            str(folder / f"missing.{part}") for part in ("qcow2", "vmlinuz", "initrd")
        )
    return BaseImage(
        name=current.name,
        recipe=recipe,
        image=image,
        image_sha256=current.image_sha256,
        kernel=kernel,
        initrd=initrd,
        cmdline=cmdline or current.cmdline,
    )


def policy_sources(project: Project) -> PolicySources:
    """The catalogue and waivers every tenant's hardening run renders its variables from."""
    try:
        return load_policy_sources(project)
    except CatalogueError as exc:
        raise ProgramInputError(
            f"the policy catalogue or the waivers are invalid; nothing was applied:\n{exc}"
        ) from None


def roll_hosts(site: Site, hosts: list[str]) -> list[str]:
    """The hosts an operator rolls onto the current base images (must be the site's)."""
    problem = unknown_hosts(site, hosts)
    if problem:
        raise ProgramInputError(f"--roll-image {problem}")
    return hosts


def load_inputs(
    project: Project, stack: str, approve: list[str], roll: list[str] | None = None
) -> ProgramInputs:
    """Validate every input and plan the site; raise with all errors when anything is wrong.

    ``roll``: hosts whose machines move onto the current base images (default: the
    ``TENANCY_ROLL_IMAGE`` hosts); every other existing machine keeps the version
    it runs.
    """
    root = project.root
    # the moves `tenancy up --approve-moves` allowed: the program plans the site again
    moves = frozenset(m for m in os.environ.get("TENANCY_APPROVE_MOVES", "").split(",") if m)
    result = plan_paths(root, None, sites=[stack], approve_moves=moves)
    if not result.ok:
        lines = [str(e) for e in result.problems.errors]
        raise ProgramInputError(
            f"{len(lines)} error(s) in the inputs; nothing was applied:\n" + "\n".join(lines)
        )
    plan, site = result.plans[stack], result.sites[stack].model
    used = {m.image for m in plan.machines()}
    images = {n: resolve_image(project, n, site.images[n].source) for n in sorted(used)}
    try:
        keys = ops_public_keys(root, site.ops)
    except OpsKeyError as exc:
        raise ProgramInputError(str(exc)) from None
    ledger = result.ledgers[stack]
    on_disk = read_ledger(ledger_path(project.stacks_dir, stack), stack)
    if roll is None:
        roll = [h for h in os.environ.get("TENANCY_ROLL_IMAGE", "").split(",") if h]
    try:
        pins = running_images(plan, site, roll_hosts(site, roll))
    except ImagePinError as exc:
        raise ProgramInputError(f"{exc}; nothing was applied") from None
    return ProgramInputs(
        project=project,
        site=site,
        plan=plan,
        ledger=ledger,
        ledger_current=on_disk == ledger,
        images=images,
        ssh_keys=keys,
        approved=frozenset(approve),
        policy_sources=policy_sources(project),
        image_pins=pins,
    )
