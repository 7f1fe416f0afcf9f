"""Benchmark: the Pulumi program under mocks, and a real ``pulumi preview``, per resource.

Prints, in one run:

* **mocks**: for 10, 100 and 500 generated tenants (the generator of
  ``bench_validate_plan``: about 6 machines per tenant, keyword, CIDR and two-sided
  cross-tenant flows), the time to plan and to build every resource under
  ``pulumi.runtime.set_mocks`` (fake image files, no engine, no libvirt), the time per
  registered resource and the growth ratio from the middle to the largest size;
* **preview**: for 20 and 100 generated tenants, a real ``pulumi preview`` (the real CLI,
  tenancy's Python language host, the dynamic providers' ``check`` running) in a
  temporary copy of the project with its own state backend, passphrase and site name,
  against the local hypervisor (``qemu:///system``; a preview creates nothing, no VM
  starts). Seconds per resource, and the ratio against a published anchor: a Pulumi
  preview of about 1,300 resources took about 4 minutes (~0.18 s per resource). Each
  size runs twice: as is, and with ``PULUMI_SKIP_CHECKPOINTS=true`` (see
  :func:`bench_preview` for why that matters even though a preview saves nothing).

The mocks table also times each size with the cyclic garbage collector paused: with
thousands of live Outputs and futures, collections are a large, growing share of the
program's time (the same holds inside the language host during a real preview).

Run: ``python bench/bench_program.py [--sizes 10,100,500] [--preview-sizes 20,100]``
(``--preview-sizes ''`` skips the real previews). Exit status is 0 unless something
crashed or a generated project failed to plan or preview.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pulumi
import yaml
from pulumi.runtime.stack import run_pulumi_func
from pulumi.runtime.sync_await import _sync_await

from bench_validate_plan import generate
from tenancy.infra import program as tenancy_program
from tenancy.infra.hypervisor import BaseImage
from tenancy.infra.program_config import ProgramInputs
from tenancy.plan.planner import plan_paths
from tenancy.spec.loader import load_site, site_file

REPO = Path(__file__).resolve().parents[1]
SITE = "bench"  # the generator's site name; previews rename it per run
ANCHOR_RESOURCES = 1300
ANCHOR_SECONDS = 240.0
ANCHOR = ANCHOR_SECONDS / ANCHOR_RESOURCES  # ~0.18 s per resource
BENCH_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBenchKeyForPreviewsOnly0000000000000000 bench"
GROWTH_TARGET = 1.2  # cost per resource may grow at most 1.2x from N=100 to N=500


# --- mocks --------------------------------------------------------------------------------


class CountingMocks(pulumi.runtime.Mocks):
    """Outputs = inputs plus the paths and ids a provider would compute."""

    def __init__(self) -> None:
        self.count = 0

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        self.count += 1
        state = {k: v for k, v in args.inputs.items() if k != "__provider"}
        if args.typ.endswith((":Volume", ":CloudInitDisk")):
            state["path"] = f"/pools/{args.inputs.get('pool')}/{args.inputs.get('name')}"
        return str(state.get("name") or args.name), state

    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict[str, Any], None]:
        return {}, None


def fake_image(directory: Path) -> BaseImage:
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for part in ("disk.qcow2", "vmlinuz", "initrd.img"):
        path = directory / part
        path.write_bytes(b"fake " + part.encode())
        paths.append(str(path))
    return BaseImage(
        name="debian-12",
        recipe="0123456789abcdef",
        image=paths[0],
        image_sha256=hashlib.sha256(b"fake").hexdigest(),
        kernel=paths[1],
        initrd=paths[2],
        cmdline="root=/dev/vda rw console=ttyS0",
    )


def link_shared(root: Path) -> None:
    """The project files a generated project shares with this one (policy catalogue, roles)."""
    for name in ("policies", "roles"):
        if (REPO / name).is_dir() and not (root / name).exists():
            (root / name).symlink_to(REPO / name)


def mock_inputs(root: Path) -> ProgramInputs:
    link_shared(root)
    result = plan_paths(root, None, sites=[SITE])
    if not result.ok:
        raise SystemExit("bench: generated project is invalid:\n" + str(result.problems.errors[:5]))
    site, _ = load_site(site_file(root / "stacks", SITE), SITE, root)
    assert site is not None
    return ProgramInputs(
        root=root,
        site=site.spec,
        plan=result.plans[SITE],
        ledger=result.ledgers[SITE],
        ledger_current=True,
        images={"debian-12": fake_image(root / "images")},
        ssh_keys=[BENCH_KEY],
        approved=frozenset(),
    )


def build_under_mocks(inputs: ProgramInputs, collect: bool = True) -> tuple[float, int]:
    """(seconds, resources) for one fresh program: register everything, wait for every RPC.

    ``collect=False`` pauses Python's cyclic garbage collector for the run (what a
    ``gc.disable()``/``gc.freeze()`` around the program would give): the difference is
    the collector re-walking every live Output and future, again and again.
    """
    mocks = CountingMocks()
    pulumi.runtime.set_mocks(mocks, project="tenancy", stack=SITE, preview=True)
    gc.collect()
    cwd = Path.cwd()
    os.chdir(inputs.root)  # like `pulumi preview` in the project: components may look there
    if not collect:
        gc.disable()
    try:
        start = time.perf_counter()
        _sync_await(run_pulumi_func(lambda: tenancy_program.build(inputs) and None))
        return time.perf_counter() - start, mocks.count
    finally:
        gc.enable()
        os.chdir(cwd)


def bench_mocks(sizes: list[int], workdir: Path, runs: int) -> None:
    print("== program under mocks (set_mocks; fake image; no engine) ==")
    print(
        f"{'tenants':>8} {'machines':>9} {'resources':>10} {'plan s':>7} {'build s':>8} "
        f"{'ms/res':>7} {'no-gc s':>8} {'ms/res':>7}"
    )
    per: dict[str, dict[int, float]] = {"gc": {}, "no-gc": {}}
    for n in sizes:
        root = workdir / f"mocks-{n}"
        generate(root, n)
        start = time.perf_counter()
        inputs = mock_inputs(root)
        plan_s = time.perf_counter() - start
        best, count = min(build_under_mocks(inputs) for _ in range(runs))
        quiet, _ = min(build_under_mocks(inputs, collect=False) for _ in range(runs))
        per["gc"][n], per["no-gc"][n] = best / count, quiet / count
        print(
            f"{n:>8} {len(inputs.plan.machines()):>9} {count:>10} {plan_s:>7.2f} {best:>8.2f} "
            f"{1000 * best / count:>7.2f} {quiet:>8.2f} {1000 * quiet / count:>7.2f}"
        )
        sys.stdout.flush()
    if len(sizes) >= 2:
        small, big = sizes[-2], sizes[-1]
        for mode, values in per.items():
            ratio = values[big] / values[small]
            verdict = "ok" if ratio <= GROWTH_TARGET else f"SUPERLINEAR, target {GROWTH_TARGET}x"
            print(
                f"growth per resource N={small}->{big} ({mode}): {ratio:.2f}x ({verdict}); "
                f"total {ratio * big / small:.1f}x for {big / small:g}x the tenants"
            )
    last = sizes[-1]
    print(
        f"ratio to the anchor ({ANCHOR:.3f} s/resource) at N={last}: "
        f"{per['gc'][last] / ANCHOR:.4f} (no-gc {per['no-gc'][last] / ANCHOR:.4f})"
    )


# --- real preview -------------------------------------------------------------------------


def preview_project(n: int, workdir: Path, site: str) -> Path:
    """A temp project: generated tenants on ``site``, hosts on the local hypervisor."""
    root = workdir / f"preview-{n}"
    generate(root, n)
    stack_file = root / "stacks" / f"Pulumi.{SITE}.yaml"
    doc = yaml.safe_load(stack_file.read_text(encoding="utf-8"))
    cfg = doc["config"]["tenancy:site"]
    cfg["name"] = site
    cfg["domainType"] = "qemu"
    cfg["ops"] = {"user": "ops", "sshKeys": [BENCH_KEY]}
    for host in cfg["hosts"]:
        host["uri"] = "qemu:///system"  # previews only: nothing is created
        for pool in host["pools"]:
            pool["path"] = f"/var/lib/tenancy/{site}/{host['name']}/{pool['name']}"
    stack_file.unlink()
    (root / "stacks" / f"Pulumi.{site}.yaml").write_text(
        yaml.safe_dump(doc, sort_keys=False), encoding="utf-8"
    )
    for tenant in (root / "tenants").glob("*.yaml"):
        text = tenant.read_text(encoding="utf-8")
        tenant.write_text(re.sub(r"(?m)^(\s*site:) bench$", rf"\1 {site}", text), encoding="utf-8")
    shutil.copy2(REPO / "Pulumi.yaml", root / "Pulumi.yaml")
    shutil.copy2(REPO / "stacks" / "__main__.py", root / "stacks" / "__main__.py")
    link_shared(root)
    return root


def pulumi_env(state: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("PULUMI_CONFIG_PASSPHRASE_FILE", None)
    env.update(
        PULUMI_BACKEND_URL=f"file://{state}",
        PULUMI_CONFIG_PASSPHRASE="bench-preview-only",
        TENANCY_STATE=str(state.parent),
        PULUMI_SKIP_UPDATE_CHECK="true",
    )
    return env


def run(
    cmd: list[str], cwd: Path, env: dict[str, str], what: str
) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(
            f"bench: {what} failed ({proc.returncode}):\n{(proc.stdout + proc.stderr)[-3000:]}"
        )
    return proc


def preview_once(
    pulumi_bin: str, root: Path, site: str, env: dict[str, str], what: str
) -> tuple[float, int]:
    """(seconds, resources to create) of one ``pulumi preview``."""
    start = time.perf_counter()
    proc = run(
        [
            pulumi_bin,
            "preview",
            "--stack",
            site,
            "--non-interactive",
            "--json",
            "--suppress-outputs",
        ],
        root,
        env,
        what,
    )
    seconds = time.perf_counter() - start
    steps = json.loads(proc.stdout).get("steps", [])
    return seconds, sum(1 for s in steps if s.get("op") == "create")


def bench_preview(sizes: list[int], workdir: Path) -> None:
    """Each size twice: as is, and with PULUMI_SKIP_CHECKPOINTS=true.

    Profiled (``pulumi preview --profiling``): in 3.274 the DIY backend's snapshot
    manager serializes and integrity-checks the whole in-memory snapshot after every
    step even in a preview (whose persister discards it), which is quadratic in the
    number of resources; PULUMI_SKIP_CHECKPOINTS makes it do that once, at the end.
    """
    pulumi_bin = shutil.which("pulumi")
    if pulumi_bin is None:
        print("== real preview: skipped (pulumi not on PATH: source tools/env.sh) ==")
        return
    print("== real `pulumi preview` (CLI + tenancy language host + dynamic providers' check) ==")
    print(
        f"{'tenants':>8} {'machines':>9} {'resources':>10} {'seconds':>8} {'s/resource':>11} "
        f"{'vs anchor':>10} {'skip-ckpt s':>12} {'s/resource':>11} {'vs anchor':>10}"
    )
    for n in sizes:
        site = f"bench-pv{n}-{os.getpid()}"
        root = preview_project(n, workdir, site)
        state = workdir / f"state-{n}" / "pulumi"
        state.mkdir(parents=True)
        env = pulumi_env(state)
        run([pulumi_bin, "stack", "init", site, "--non-interactive"], root, env, "stack init")
        machines = len(plan_paths(root, None, sites=[site]).plans[site].machines())
        seconds, count = preview_once(pulumi_bin, root, site, env, f"preview of {n} tenants")
        fast, _ = preview_once(
            pulumi_bin, root, site, {**env, "PULUMI_SKIP_CHECKPOINTS": "true"}, "preview (skip)"
        )
        per, per_fast = seconds / max(count, 1), fast / max(count, 1)
        print(
            f"{n:>8} {machines:>9} {count:>10} {seconds:>8.1f} {per:>11.4f} "
            f"{per / ANCHOR:>9.3f}x {fast:>12.1f} {per_fast:>11.4f} {per_fast / ANCHOR:>9.3f}x"
        )
        sys.stdout.flush()
    print(
        f"anchor: ~{ANCHOR_RESOURCES} resources in ~{ANCHOR_SECONDS / 60:g} min = "
        f"{ANCHOR:.3f} s/resource (below 1x: faster than the anchor)"
    )


def sizes_arg(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=sizes_arg, default=[10, 100, 500])
    parser.add_argument("--preview-sizes", type=sizes_arg, default=[20, 100])
    parser.add_argument("--runs", type=int, default=1, help="best of RUNS for the mocks")
    parser.add_argument("--keep", action="store_true", help="keep the temporary projects")
    args = parser.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="tenancy-bench-program-"))
    try:
        if args.sizes:
            bench_mocks(args.sizes, workdir, args.runs)
        if args.preview_sizes:
            bench_preview(args.preview_sizes, workdir)
    finally:
        if args.keep:
            print(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
