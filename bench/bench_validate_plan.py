"""Benchmark: validating tenant files, against a baseline doing the same work.

Two comparisons for 10, 100 and 1000 generated tenants, each side measured in the
same run on the same files:

* **schema only, equal work** (the ratio with a target): every tenant file read by
  the same YAML loader (``tenancy.contract.yamlsource.load_file``, the one ``tenancy
  validate`` uses), then checked against the tenant v1 contract, in-process,
  best of 3, the cyclic GC paused on both sides as ``plan_paths`` does:

  - ours: ``Tenant.model_validate`` (the pydantic models: shape, types, patterns,
    and the custom checks of endpoints, ports and CIDRs the JSON Schema cannot say);
  - baseline: ``jsonschema.Draft202012Validator`` with the exported JSON Schema
    (``tenancy schema``), every error collected (``iter_errors``), compiled once.
    That is the library ``check-jsonschema`` runs; calling it in-process with our
    parser leaves out check-jsonschema's own start-up and its ruamel.yaml parser, so
    both sides do the same work. Target: ours / baseline <= 1.

* **full validation** (for information, no ratio: no other tool cross-checks sites,
  references, overlaps and quotas, allocates segments and addresses, places machines
  and compiles flows): ``plan_paths`` in-process and ``tenancy validate`` as a
  subprocess (interpreter start-up and imports included). Its ratio is against
  itself: the growth ``plan_paths(N=1000) / plan_paths(N=100)``, target <= 12 for 10x
  the tenants (the planner stays close to linear).

Run: ``make bench`` or ``python -m bench.bench_validate_plan [--sizes 10,100,1000]``.
Exit status: 0 when every measured ratio meets its target, 1 when one misses, 2 when
the benchmark could not run (then every ratio it did not measure says "not run").
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from bench._summary import Report
from tenancy.contract.models import Tenant
from tenancy.contract.yamldoc import Document
from tenancy.contract.yamlsource import load_file
from tenancy.gcpause import cyclic_gc_paused
from tenancy.plan.planner import plan_paths

SITE = "bench"
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


SCHEMA_METRIC = "schema check, pydantic / jsonschema"
GROWTH_METRIC = "plan_paths growth N=100->1000"
GROWTH_SIZES = (100, 1000)


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


def tenant_schema() -> dict[str, Any]:
    """The JSON Schema ``tenancy schema`` prints (the same call, without a subprocess)."""
    schema = Tenant.model_json_schema(by_alias=True, mode="validation")
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    return schema


def parse_all(files: list[Path]) -> list[Document]:
    return [load_file(f) for f in files]


def check_pydantic(files: list[Path]) -> int:
    """Ours: parse, then the pydantic models; returns the number of invalid files."""
    bad = 0
    for f in files:
        try:
            Tenant.model_validate(load_file(f).data)
        except ValidationError:
            bad += 1
    return bad


def check_jsonschema(files: list[Path], validator: Any) -> int:
    """Baseline: parse (same loader), then every JSON Schema error; invalid files."""
    return sum(1 for f in files if list(validator.iter_errors(load_file(f).data)))


def bench_size(n: int, workdir: Path, runs: int) -> dict[str, float]:
    from jsonschema import Draft202012Validator  # type: ignore[import-untyped,unused-ignore]

    root = workdir / f"n{n}"
    generate(root, n)
    # sanity: the generated project must be valid, or we would time the error path
    result = plan_paths(root)
    if not result.ok or SITE not in result.plans:
        first = "\n".join(str(e) for e in result.problems.errors[:10])
        raise SystemExit(f"bench: generated project with {n} tenants is invalid:\n{first}")
    files = sorted((root / "tenants").glob("*.yaml"))
    schema = tenant_schema()
    Draft202012Validator.check_schema(schema)
    validator = Draft202012Validator(schema)
    (workdir / "schema.json").write_text(json.dumps(schema), encoding="utf-8")
    with cyclic_gc_paused():
        bad = (check_pydantic(files), check_jsonschema(files, validator))
    if bad != (0, 0):
        raise SystemExit(f"bench: invalid generated files (pydantic, jsonschema): {bad}")

    with cyclic_gc_paused():
        parse = best_of(runs, lambda: parse_all(files))
        ours = best_of(runs, lambda: check_pydantic(files))
        base = best_of(runs, lambda: check_jsonschema(files, validator))
    inproc = best_of(runs, lambda: plan_paths(root))
    tenancy = venv_tool("tenancy")
    cli = best_of(
        runs,
        lambda: run_checked(
            [tenancy, "--root", str(root), "validate", str(root / "tenants")], "tenancy validate"
        ),
    )
    return {
        "n": n,
        "machines": len(result.plans[SITE].machines()),
        "parse": parse,
        "pydantic": ours,
        "jsonschema": base,
        "inproc": inproc,
        "cli": cli,
    }


def print_tables(rows: list[dict[str, float]], runs: int) -> None:
    print(f"\n== schema only, equal work (in-process, same YAML loader, best of {runs}) ==")
    print("  parse       our YAML loader alone: the part both sides share")
    print("  pydantic    parse + Tenant.model_validate (ours)")
    print("  jsonschema  parse + Draft202012Validator(tenancy schema).iter_errors (baseline)")
    head = f"{'tenants':>8} {'parse':>9} {'pydantic':>9} {'jsonschema':>11} {'pyd/js':>7}"
    print(head + f" {'pyd/js w/o parse':>17}")
    for r in rows:
        own, base = r["pydantic"] - r["parse"], r["jsonschema"] - r["parse"]
        alone = f"{own / base:>16.2f}x" if base > 0 and own > 0 else f"{'-':>17}"
        print(
            f"{int(r['n']):>8} {r['parse']:>8.3f}s {r['pydantic']:>8.3f}s "
            f"{r['jsonschema']:>10.3f}s {r['pydantic'] / r['jsonschema']:>6.2f}x {alone}"
        )
    print(f"\n== full validation (no equal-work baseline exists; best of {runs}) ==")
    print("  plan_paths        in-process: load, validate, cross-check, allocate, place, flows")
    print("  tenancy validate  the CLI as a subprocess (start-up and imports included)")
    print(f"{'tenants':>8} {'machines':>9} {'plan_paths':>11} {'tenancy validate':>17}")
    for r in rows:
        print(f"{int(r['n']):>8} {int(r['machines']):>9} {r['inproc']:>10.3f}s {r['cli']:>16.3f}s")
    print()


def positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive number: {text!r}")
    return value


def sizes_arg(text: str) -> list[int]:
    return [positive(x) for x in text.split(",") if x.strip()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sizes", type=sizes_arg, default=[10, 100, 1000], help="comma-separated tenant counts"
    )
    parser.add_argument("--runs", type=positive, default=3, help="best of this many runs")
    args = parser.parse_args(argv)
    sizes: list[int] = args.sizes
    report = Report("bench_validate_plan")
    report.expect(SCHEMA_METRIC, "<=", 1.0)
    report.expect(GROWTH_METRIC, "<=", 12.0)

    def body() -> None:
        rows: list[dict[str, float]] = []
        with tempfile.TemporaryDirectory(prefix="tenancy-bench-") as tmp:
            for n in sizes:
                rows.append(bench_size(n, Path(tmp), args.runs))
                print(f"bench_validate_plan: N={n} done", flush=True)
        print_tables(rows, args.runs)
        if rows:
            big = rows[-1]
            report.ratio(
                SCHEMA_METRIC,
                big["pydantic"] / big["jsonschema"],
                f"N={int(big['n'])}, parse included on both sides",
            )
        by_n = {int(r["n"]): r for r in rows}
        small, large = GROWTH_SIZES
        if small in by_n and large in by_n:
            cli_growth = by_n[large]["cli"] / by_n[small]["cli"]
            report.ratio(
                GROWTH_METRIC,
                by_n[large]["inproc"] / by_n[small]["inproc"],
                f"10x the tenants; the CLI grew {cli_growth:.1f}x",
            )
        else:
            report.not_run(GROWTH_METRIC, f"--sizes must include {small} and {large}")

    return report.finish(body)


if __name__ == "__main__":
    sys.exit(main())
