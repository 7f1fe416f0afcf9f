"""Base images are versioned by recipe: existing machines keep theirs, new ones get the current.

The program under mocks, with the versions the hosts report (``image_pins``) given
by hand; ``backing_version`` is the part that reads them from libvirt's XML.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from pulumi_mocks import Program, program_inputs, run_program
from tests.support.project import REPO

from tenancy.infra import program as tenancy_program
from tenancy.infra.image_pins import ImagePin, backing_version
from tenancy.infra.program_config import (
    ProgramInputError,
    ProgramInputs,
    kept_image,
    roll_hosts,
)

OLD = "fedcba9876543210"
CURRENT = "0123456789abcdef"  # the fake image's recipe (pulumi_mocks.fake_image)


def build(tmp_path: Path, pins: dict[str, ImagePin]) -> tuple[ProgramInputs, Program]:
    inputs = program_inputs(REPO, "local", tmp_path / "images")
    inputs = dataclasses.replace(inputs, image_pins=pins)
    return inputs, run_program(lambda: tenancy_program.build(inputs), stack="local")


def test_backing_version_reads_the_recipe_of_a_root_overlay() -> None:
    xml = (
        "<volume><name>hr-portal-1-root.qcow2</name><backingStore>"
        f"<path>/var/lib/tenancy/pools/local-root/base-debian-12-{OLD}.qcow2</path>"
        "</backingStore></volume>"
    )
    assert backing_version(xml) == ("debian-12", OLD)
    assert backing_version("<volume><name>data</name></volume>") is None
    other = "<volume><backingStore><path>/x/some-disk.qcow2</path></backingStore></volume>"
    assert backing_version(other) is None


def test_a_machine_keeps_the_version_it_runs_and_a_new_one_gets_the_current(
    tmp_path: Path,
) -> None:
    pins = {"hr-portal-1": ImagePin("debian-12", OLD, "root=/dev/vda ro console=ttyS0 old")}
    inputs, prog = build(tmp_path, pins)
    base_names = sorted(
        r.inputs["name"] for r in prog.of_kind("Volume") if r.inputs["name"].startswith("base-")
    )
    # both versions on the host: disk, kernel and initrd each
    for recipe in (OLD, CURRENT):
        for suffix in ("qcow2", "vmlinuz", "initrd"):
            assert f"base-debian-12-{recipe}.{suffix}" in base_names, base_names
    old_root = prog.named("hr-portal-1-root", "Volume")
    new_root = prog.named("tourism-web-1-root", "Volume")
    assert old_root.inputs["backing_volume"].endswith(f"base-debian-12-{OLD}.qcow2")
    assert new_root.inputs["backing_volume"].endswith(f"base-debian-12-{CURRENT}.qcow2")
    old_domain = prog.named("hr-portal-1-domain", "Domain")
    assert old_domain.inputs["kernel"].endswith(f"base-debian-12-{OLD}.vmlinuz")
    assert old_domain.inputs["cmdline"] == "root=/dev/vda ro console=ttyS0 old"
    assert prog.named("tourism-web-1-domain", "Domain").inputs["cmdline"] == (
        inputs.images["debian-12"].cmdline
    )


def test_a_rebuilt_image_never_replaces_an_uploaded_version(tmp_path: Path) -> None:
    _, prog = build(tmp_path, {})
    bases = [r for r in prog.of_kind("Volume") if r.inputs["name"].startswith("base-")]
    assert bases
    for r in bases:
        assert {"source", "source_sha256"} <= set(r.ignore_changes), r.urn


def test_without_pins_only_the_current_version_exists(tmp_path: Path) -> None:
    _, prog = build(tmp_path, {})
    names = {r.inputs["name"] for r in prog.of_kind("Volume")}
    assert not [n for n in names if OLD in n]


def test_a_roll_names_hosts_of_the_site(tmp_path: Path) -> None:
    inputs = program_inputs(REPO, "local", tmp_path / "images")
    assert roll_hosts(inputs.site, ["local"]) == ["local"]
    with pytest.raises(ProgramInputError, match="not a host of site local"):
        roll_hosts(inputs.site, ["kvm-9"])


def test_a_kept_version_uses_its_own_files_or_none(tmp_path: Path) -> None:
    inputs = program_inputs(REPO, "local", tmp_path / "images")
    project = dataclasses.replace(inputs.project, cache_dir=tmp_path / "cache")
    current = inputs.images["debian-12"]
    gone = kept_image(project, current, OLD, None)
    assert gone.recipe == OLD and gone.cmdline == current.cmdline
    assert not Path(gone.image).exists() and not Path(gone.kernel).exists()
    folder = project.cache_dir / "images" / OLD
    folder.mkdir(parents=True)
    files = {"image": "/i/old.qcow2", "kernel": "/i/old.vmlinuz", "initrd": "/i/old.initrd"}
    (folder / "build-info.json").write_text(json.dumps({"files": files}))
    kept = kept_image(project, current, OLD, "root=/dev/vda old")
    assert (kept.image, kept.kernel, kept.initrd) == tuple(files.values())
    assert kept.cmdline == "root=/dev/vda old"
