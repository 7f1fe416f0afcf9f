"""Benchmark: the Pulumi program under mocks; ``tenancy preview`` against ``pulumi preview``.

Prints, in one run:

* **mocks**: for 10, 100 and 500 generated tenants (the generator of
  ``bench_validate_plan``: about 6 machines per tenant, keyword, CIDR and two-sided
  cross-tenant flows), the time to plan and to build every resource under
  ``pulumi.runtime.set_mocks`` (fake image files, no engine, no libvirt) and the time
  per registered resource, with the cyclic garbage collector running (as the program
  runs) and paused (for information: what the collector costs). The ratio is against
  the same program at the next smaller size: cost per resource from the second
  largest to the largest size, target <= 1.2 (the program stays close to linear).
* **preview**: for 20 and 100 generated tenants, one temporary project and stack per
  size (its own file backend and passphrase, hosts on the local hypervisor
  ``qemu:///system``; a preview creates nothing and starts no VM). On that same stack
  and the same resources, in the same run:

  - baseline: plain ``pulumi preview --stack <site>`` in the project, with the
    engine's default settings: what a user gets without Tenancy's tuning;
  - ours: ``tenancy --root <project> preview --site <site>``, which plans and checks
    the inputs, prepares the stack's config copy and runs the same ``pulumi preview``
    with ``PULUMI_SKIP_CHECKPOINTS=true`` (see :func:`bench_preview` for why).

  Both get ``--non-interactive --json --suppress-outputs`` and must report the same
  number of resources to create. The ratio is ``tenancy preview`` time / plain
  ``pulumi preview`` time, target <= 1 at every size (the tuned path, its planning
  included, is never slower than the plain one). An untimed preview of a one-tenant
  project first warms the caches both sides share (binaries, imports, libvirt).
  Without a built guest image (``make image``) the previews use a tiny qcow2 made with
  ``qemu-img``: a preview only reads its header and checksum.

Run: ``python -m bench.bench_program [--sizes 10,100,500] [--preview-sizes 20,100]``
(``--preview-sizes ''`` skips the real previews, which then say "not run"). Exit
status: 0 when every measured ratio meets its target, 1 when one misses, 2 when the
benchmark could not run.
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

from bench._preflight import URI, engine_blocker, libvirt_blocker
from bench._summary import Report
from bench.bench_validate_plan import generate, positive, sizes_arg
from tenancy.contract.loader import load_site, site_file
from tenancy.infra import program as tenancy_program
from tenancy.infra.hypervisor import BaseImage
from tenancy.infra.program_config import ProgramInputs
from tenancy.plan.planner import plan_paths
from tenancy.policy.variables import load_policy_sources
from tenancy.project import Project

REPO = Path(__file__).resolve().parents[1]
SITE = "bench"  # the generator's site name; previews rename it per run
BENCH_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBenchKeyForPreviewsOnly0000000000000000 bench"
GROWTH_TARGET = 1.2  # cost per resource may grow at most 1.2x between the two largest sizes
PREVIEW_TARGET = 1.0  # tenancy preview / plain pulumi preview, at every size
PREVIEW_ARGS = ["--non-interactive", "--json", "--suppress-outputs"]
# what `tenancy preview` sets (src/tenancy/cli/engine.py): removed from the baseline's env
TENANCY_TUNING = ("PULUMI_SKIP_CHECKPOINTS", "TENANCY_APPROVE")


def growth_metric(sizes: list[int]) -> str:
    if len(sizes) < 2:
        return "mocks: cost/resource growth"
    return f"mocks: cost/resource growth N={sizes[-2]}->{sizes[-1]}"


def preview_metric(n: int) -> str:
    return f"preview N={n}: tenancy / plain pulumi"


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
    project = Project.at(root)
    return ProgramInputs(
        project=project,
        site=site.model,
        plan=result.plans[SITE],
        ledger=result.ledgers[SITE],
        ledger_current=True,
        images={"debian-12": fake_image(root / "images")},
        ssh_keys=[BENCH_KEY],
        approved=frozenset(),
        policy_sources=load_policy_sources(project),
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
    os.chdir(inputs.project.root)  # like `pulumi preview`, started in the project

    def program() -> None:
        tenancy_program.build(inputs)

    if not collect:
        gc.disable()
    try:
        start = time.perf_counter()
        _sync_await(run_pulumi_func(program))
        return time.perf_counter() - start, mocks.count
    finally:
        gc.enable()
        os.chdir(cwd)


def bench_mocks(sizes: list[int], workdir: Path, runs: int, report: Report) -> None:
    print("== program under mocks (set_mocks; fake image; no engine) ==")
    print("  plan s   plan_paths + site load; build s: register every resource, GC running")
    print("  no-gc s  the same build with the cyclic GC paused (for information)")
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
    metric = growth_metric(sizes)
    if len(sizes) < 2:
        report.not_run(metric, "needs two --sizes")
        return
    small, big = sizes[-2], sizes[-1]
    quiet_growth = per["no-gc"][big] / per["no-gc"][small]
    report.ratio(
        metric,
        per["gc"][big] / per["gc"][small],
        f"{big / small:g}x the tenants; GC paused: {quiet_growth:.2f}x",
    )


# --- real preview -------------------------------------------------------------------------


def base_image_source(workdir: Path) -> str:
    """``builtin:debian-12`` when the guest image is built, else a tiny qcow2 of our own."""
    if Project.find().guest_image_info.is_file():
        return "builtin:debian-12"
    directory = workdir / "fake-image"
    disk = directory / "disk.qcow2"
    if not disk.exists():
        qemu_img = shutil.which("qemu-img")
        if qemu_img is None:
            raise RuntimeError("no guest image (make image) and no qemu-img to make a stand-in")
        directory.mkdir(parents=True)
        subprocess.run(
            [qemu_img, "create", "-q", "-f", "qcow2", str(disk), "1G"], check=True, timeout=60
        )
        for part in ("vmlinuz", "initrd.img"):
            (directory / part).write_bytes(b"stand-in for a preview: " + part.encode())
    return str(disk)


def preview_project(n: int, workdir: Path, site: str, label: str) -> Path:
    """A temp project: ``n`` generated tenants on ``site``, hosts on the local hypervisor."""
    root = workdir / label
    generate(root, n)
    stack_file = root / "stacks" / f"Pulumi.{SITE}.yaml"
    doc = yaml.safe_load(stack_file.read_text(encoding="utf-8"))
    cfg = doc["config"]["tenancy:site"]
    cfg["name"] = site
    cfg["domainType"] = "qemu"
    cfg["ops"] = {"user": "ops", "sshKeys": [BENCH_KEY]}
    cfg["images"]["debian-12"]["source"] = base_image_source(workdir)
    for host in cfg["hosts"]:
        host["uri"] = URI  # previews only: nothing is created
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
    """The environment of both sides: our own backend, none of Tenancy's tuning."""
    env = {k: v for k, v in os.environ.items() if k not in TENANCY_TUNING}
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


def timed_preview(cmd: list[str], root: Path, env: dict[str, str], what: str) -> tuple[float, int]:
    """(seconds, resources to create) of one preview whose stdout is pulumi's JSON."""
    start = time.perf_counter()
    proc = run(cmd, root, env, what)
    seconds = time.perf_counter() - start
    steps = preview_json(proc.stdout, what).get("steps", [])
    return seconds, sum(1 for s in steps if s.get("op") == "create")


def preview_json(stdout: str, what: str) -> dict[str, Any]:
    """Pulumi's ``--json`` document, even with lines a wrapper printed around it."""
    match = re.search(r"(?m)^\{", stdout)
    if match is not None:
        try:
            doc, _ = json.JSONDecoder().raw_decode(stdout, match.start())
        except json.JSONDecodeError:
            pass
        else:
            if isinstance(doc, dict):
                return doc
    raise SystemExit(f"bench: {what}: no JSON document in its output:\n{stdout[-2000:]}")


class PreviewStack:
    """One generated project and its stack, previewed both ways."""

    def __init__(
        self, pulumi_bin: str, tenancy_bin: str, n: int, workdir: Path, label: str
    ) -> None:
        self.pulumi, self.tenancy, self.n = pulumi_bin, tenancy_bin, n
        self.site = f"bench-{label}-{os.getpid()}"
        self.root = preview_project(n, workdir, self.site, label)
        state = workdir / f"state-{label}" / "pulumi"
        state.mkdir(parents=True)
        self.env = pulumi_env(state)
        run(
            [pulumi_bin, "stack", "init", self.site, "--non-interactive"],
            self.root,
            self.env,
            "init",
        )
        plan = plan_paths(self.root, None, sites=[self.site]).plans[self.site]
        self.machines = len(plan.machines())

    def plain(self) -> tuple[float, int]:
        """Baseline: plain ``pulumi preview``, the engine's defaults."""
        cmd = [self.pulumi, "preview", "--stack", self.site, *PREVIEW_ARGS]
        return timed_preview(cmd, self.root, self.env, f"pulumi preview of {self.n} tenants")

    def ours(self) -> tuple[float, int]:
        """``tenancy preview``: plan + checks, then pulumi preview with Tenancy's settings."""
        cmd = [self.tenancy, "--root", str(self.root), "preview", "--site", self.site, "--"]
        cmd += PREVIEW_ARGS
        return timed_preview(cmd, self.root, self.env, f"tenancy preview of {self.n} tenants")


def bench_preview(sizes: list[int], workdir: Path, report: Report) -> None:
    """Each size: plain ``pulumi preview``, then ``tenancy preview``, same stack.

    Why PULUMI_SKIP_CHECKPOINTS matters even though a preview saves nothing: profiled
    (``pulumi preview --profiling``), in 3.274 the DIY backend's snapshot manager
    serializes and integrity-checks the whole in-memory snapshot after every step even
    in a preview (whose persister discards it), which is quadratic in the number of
    resources; PULUMI_SKIP_CHECKPOINTS makes it do that once, at the end.
    """
    blocker = engine_blocker() or libvirt_blocker(URI)
    if blocker is not None:
        for n in sizes:
            report.not_run(preview_metric(n), blocker)
        return
    pulumi_bin = shutil.which("pulumi")
    tenancy_bin = str(Path(sys.executable).parent / "tenancy")
    if pulumi_bin is None or not Path(tenancy_bin).exists():
        raise SystemExit(f"bench: pulumi or {tenancy_bin} missing")
    warm = PreviewStack(pulumi_bin, tenancy_bin, 1, workdir, "warm")
    warm.ours()  # untimed: first start of the binaries, imports and libvirt connection
    print("\n== real previews, same stack and resources per size (one run each) ==")
    print("  plain    `pulumi preview --stack <site>`, engine defaults (the baseline)")
    print("  tenancy  `tenancy preview --site <site>`: plan + checks + tuned pulumi preview")
    print(
        f"{'tenants':>8} {'machines':>9} {'resources':>10} {'plain s':>8} {'s/res':>7} "
        f"{'tenancy s':>10} {'s/res':>7} {'tenancy/plain':>14}"
    )
    results: list[tuple[int, float]] = []
    for n in sizes:
        stack = PreviewStack(pulumi_bin, tenancy_bin, n, workdir, f"pv{n}")
        plain, count = stack.plain()
        ours, count_ours = stack.ours()
        if count != count_ours or count == 0:
            raise SystemExit(
                f"bench: previews of {n} tenants disagree: plain {count}, tenancy {count_ours}"
            )
        print(
            f"{n:>8} {stack.machines:>9} {count:>10} {plain:>8.1f} {plain / count:>7.3f} "
            f"{ours:>10.1f} {ours / count:>7.3f} {ours / plain:>13.2f}x"
        )
        sys.stdout.flush()
        results.append((n, ours / plain))
    print()
    for n, ratio in results:
        report.ratio(preview_metric(n), ratio)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=sizes_arg, default=[10, 100, 500])
    parser.add_argument("--preview-sizes", type=sizes_arg, default=[20, 100])
    parser.add_argument("--runs", type=positive, default=1, help="best of RUNS for the mocks")
    parser.add_argument("--keep", action="store_true", help="keep the temporary projects")
    args = parser.parse_args(argv)
    report = Report("bench_program")
    report.expect(growth_metric(args.sizes), "<=", GROWTH_TARGET)
    for n in args.preview_sizes or [20, 100]:
        report.expect(preview_metric(n), "<=", PREVIEW_TARGET)

    def body() -> None:
        workdir = Path(tempfile.mkdtemp(prefix="tenancy-bench-program-"))
        try:
            if args.sizes:
                bench_mocks(args.sizes, workdir, args.runs, report)
            else:
                report.not_run(growth_metric(args.sizes), "skipped: --sizes ''")
            if args.preview_sizes:
                bench_preview(args.preview_sizes, workdir, report)
            else:
                for metric in report.pending():
                    if metric.startswith("preview"):
                        report.not_run(metric, "skipped: --preview-sizes ''")
        finally:
            if args.keep:
                print(f"kept {workdir}")
            else:
                shutil.rmtree(workdir, ignore_errors=True)

    return report.finish(body)


if __name__ == "__main__":
    sys.exit(main())
