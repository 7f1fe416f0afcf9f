"""Benchmark: validate + plan for 10, 100 and 1000 generated tenants.

Prints, in one run:

* the wall time of ``plan_paths`` in-process (load, validate, cross-check, plan), best of 3;
* the growth ratio from N=100 to N=1000 (target: at most 12x for 10x the tenants);
* the ratio against ``check-jsonschema`` validating the same files against the exported
  JSON Schema, both as subprocesses (so both pay interpreter start-up): our CLI
  ``tenancy validate <dir>`` versus ``check-jsonschema --schemafile schema.json <files>``,
  and our in-process validate+plan versus the same ``check-jsonschema`` run.

check-jsonschema only checks the shape of each file; ``tenancy validate`` also checks
sites, references, overlaps, quotas and places every machine, so a ratio near or below 1
means the whole planner costs no more than a schema check.

Run: ``make bench`` or ``python bench/bench_validate_plan.py [--sizes 10,100,1000]``.
Exit status is 0 unless something crashed or the generated project failed to validate.
"""

from __future__ import annotations

import argparse
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import yaml

from tenancy.plan.planner import plan_paths

SITE = "bench"
GROWTH_TARGET = 12.0
FLAVORS = {
    "small": {"vcpus": 2, "memoryMiB": 4096},
    "medium": {"vcpus": 4, "memoryMiB": 8192},
    "large": {"vcpus": 8, "memoryMiB": 16384},
}


def site_config(n: int) -> dict[str, object]:
    """A site big enough for ``n`` tenants of up to 12 machines each."""
    host_count = max(4, n // 6)
    hosts = [
        {
            "name": f"kvm-{i:04d}",
            "uri": f"qemu+ssh://tenancy@kvm-{i:04d}.dc.example.gov/system",
            "vcpus": 128,
            "memoryGiB": 1024,
            "pools": [
                {"name": "ssd", "capacityGiB": 20000, "path": "/srv/libvirt/ssd"},
                {"name": "bulk", "capacityGiB": 200000, "path": "/srv/libvirt/bulk"},
            ],
        }
        for i in range(host_count)
    ]
    return {
        "name": SITE,
        "description": f"generated site for {n} tenants",
        "domainType": "kvm",
        "hosts": hosts,
        "addressPools": {
            "intranet": "10.64.0.0/10",
            "extranet": "172.16.0.0/12",
            "segmentPrefix": 26,
        },
        "external": {
            "intranet": ["10.0.0.0/16"],
            "extranet": ["192.168.0.0/16"],
            "internet": ["0.0.0.0/0"],
        },
        "reserved": ["10.64.0.0/24", "172.16.0.0/24"],
        "flavors": FLAVORS,
        "images": {"debian-12": {"os": "debian-12", "source": "builtin:debian-12"}},
        "overcommit": {"cpu": 4.0, "memory": 1.0},
        "defaultQuota": {"vcpus": 64, "memoryGiB": 128, "storageGiB": 4000},
        "backupSchedules": ["none", "daily", "weekly"],
    }


def tenant_name(i: int) -> str:
    return f"dept-{i:04d}"


def tenant_doc(i: int, n: int, rng: random.Random) -> dict[str, object]:
    """Tenant ``i``: 2-4 machine groups of 1-3 instances, keyword, CIDR and tenant flows.

    Even tenants call ``web`` of the next tenant on 8443/tcp and the next tenant
    declares the matching ingress, so every cross-tenant flow is two-sided.
    """
    groups = ["web", "app", "db", "cache"][: rng.randint(2, 4)]
    machines = []
    for g in groups:
        machine: dict[str, object] = {
            "name": g,
            "count": rng.randint(1, 3),
            "flavor": rng.choice(["small", "medium"]),
            "image": "debian-12",
            "diskGiB": rng.choice([10, 20, 40]),
            "role": g,
        }
        if g == "db":
            machine["protect"] = True
            machine["volumes"] = [
                {
                    "name": "data",
                    "sizeGiB": rng.choice([50, 100]),
                    "pool": "bulk",
                    "backup": "daily",
                }
            ]
        machines.append(machine)
    ingress: list[dict[str, object]] = [{"from": "intranet", "to": "web", "ports": ["443/tcp"]}]
    egress: list[dict[str, object]] = [
        {"to": "internet", "ports": ["443/tcp"]},
        {"from": "app", "to": "10.8.0.0/24", "ports": ["873/tcp", "5000-5100/tcp"]},
    ]
    if i % 2 == 0 and i + 1 < n:
        egress.append({"from": "app", "to": f"{tenant_name(i + 1)}/web", "ports": ["8443/tcp"]})
    if i % 2 == 1:
        ingress.append(
            {"from": f"{tenant_name(i - 1)}/app", "to": "web", "ports": ["8000-9000/tcp"]}
        )
    spec: dict[str, object] = {
        "site": SITE,
        "zone": "intranet" if i % 3 else "extranet",
        "machines": machines,
        "firewall": {"ingress": ingress, "egress": egress},
        "policies": ["baseline"],
    }
    if i % 5 == 0:  # some tenants bring their own segment (outside the pools)
        spec["network"] = {"cidr": f"10.200.{i // 4}.{(i % 4) * 64}/26"}
    return {
        "apiVersion": "tenancy/v1",
        "kind": "Tenant",
        "metadata": {
            "name": tenant_name(i),
            "displayName": f"部门 {i} Department {i}",
            "owner": f"it-{i}@example.gov",
        },
        "spec": spec,
    }


def generate(root: Path, n: int, seed: int = 1) -> None:
    """Write a complete project (Pulumi.yaml, stack file, n tenant files) under ``root``."""
    rng = random.Random(seed)
    (root / "tenants").mkdir(parents=True)
    (root / "stacks").mkdir()
    (root / "Pulumi.yaml").write_text(
        "name: tenancy-bench\nruntime: python\nmain: stacks/\nstackConfigDir: stacks\n",
        encoding="utf-8",
    )
    stack = {"config": {"tenancy:site": site_config(n)}}
    (root / "stacks" / f"Pulumi.{SITE}.yaml").write_text(
        yaml.safe_dump(stack, sort_keys=False), encoding="utf-8"
    )
    for i in range(n):
        text = yaml.safe_dump(tenant_doc(i, n, rng), sort_keys=False, allow_unicode=True)
        (root / "tenants" / f"{tenant_name(i)}.yaml").write_text(text, encoding="utf-8")


def best_of(runs: int, fn: Callable[[], object]) -> float:
    best = float("inf")
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def venv_tool(name: str) -> str:
    """A console script of the running interpreter's environment (else from PATH)."""
    candidate = Path(sys.executable).parent / name
    if candidate.exists():
        return str(candidate)
    found = shutil.which(name)
    if found is None:
        raise SystemExit(f"bench: {name} not found; run `make python-env` first")
    return found


def run_checked(cmd: list[str], what: str) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        tail = (proc.stdout + proc.stderr)[-2000:]
        raise SystemExit(f"bench: {what} failed (exit {proc.returncode}):\n{tail}")


def bench_size(n: int, workdir: Path, runs: int) -> dict[str, float]:
    root = workdir / f"n{n}"
    generate(root, n)
    # sanity: the generated project must be valid, or we would time the error path
    result = plan_paths(root)
    if not result.ok or SITE not in result.plans:
        first = "\n".join(str(e) for e in result.problems.errors[:10])
        raise SystemExit(f"bench: generated project with {n} tenants is invalid:\n{first}")
    machines = len(result.plans[SITE].machines())
    inproc = best_of(runs, lambda: plan_paths(root))

    tenancy = venv_tool("tenancy")
    schema = workdir / "schema.json"
    if not schema.exists():
        out = subprocess.run(
            [tenancy, "--root", str(root), "schema"], capture_output=True, text=True, check=True
        )
        schema.write_text(out.stdout, encoding="utf-8")
    files = sorted(str(p) for p in (root / "tenants").glob("*.yaml"))
    cli = best_of(
        runs,
        lambda: run_checked(
            [tenancy, "--root", str(root), "validate", str(root / "tenants")], "tenancy validate"
        ),
    )
    check = venv_tool("check-jsonschema")
    cjs = best_of(
        runs,
        lambda: run_checked([check, "--schemafile", str(schema), *files], "check-jsonschema"),
    )
    return {"n": n, "machines": machines, "inproc": inproc, "cli": cli, "cjs": cjs}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10,100,1000", help="comma-separated tenant counts")
    parser.add_argument("--runs", type=int, default=3, help="best of this many runs")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]

    rows: list[dict[str, float]] = []
    with tempfile.TemporaryDirectory(prefix="tenancy-bench-") as tmp:
        for n in sizes:
            rows.append(bench_size(n, Path(tmp), args.runs))

    print(
        "bench_validate_plan: validate + plan (in-process plan_paths, best of "
        f"{args.runs}) vs check-jsonschema (subprocess)"
    )
    header = (
        f"{'tenants':>8} {'machines':>9} {'plan_paths':>11} {'tenancy validate':>17} "
        f"{'check-jsonschema':>17} {'cli/cjs':>8} {'inproc/cjs':>11}"
    )
    print(header)
    print("-" * len(header))
    for r in rows:
        print(
            f"{int(r['n']):>8} {int(r['machines']):>9} {r['inproc']:>10.3f}s "
            f"{r['cli']:>16.3f}s {r['cjs']:>16.3f}s {r['cli'] / r['cjs']:>7.2f}x "
            f"{r['inproc'] / r['cjs']:>10.2f}x"
        )
    by_n = {int(r["n"]): r for r in rows}
    if 100 in by_n and 1000 in by_n:
        growth = by_n[1000]["inproc"] / by_n[100]["inproc"]
        verdict = "ok" if growth <= GROWTH_TARGET else "TOO SLOW"
        print(
            f"growth N=100 -> N=1000 (plan_paths): {growth:.1f}x "
            f"(target <= {GROWTH_TARGET:.0f}x for 10x tenants): {verdict}"
        )
        cli_growth = by_n[1000]["cli"] / by_n[100]["cli"]
        print(f"growth N=100 -> N=1000 (tenancy validate CLI): {cli_growth:.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
