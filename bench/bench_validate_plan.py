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

* **hostile files** (the ratio with a target): 100 tenant files of about 200 KB each,
  as a hostile pull request would write them (numbers of 50,000 digits in hex, binary,
  base 60 and float; 256 rules of 64 ports towards 4 groups), every one refused with a
  located error. Baseline: the 100 generated valid tenants planned in the same run.
  Target: seconds per MB refused / seconds per MB planned <= 1 (refusing costs no
  more per byte than accepting: nothing is converted or built before it is bounded).
  Printed beside it: the total time to refuse the 100 files (the acceptance figure of
  the hostile-input work: under 5 s for 100 x 200 KB) and its ratio to the valid run.

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
ZONE_PEERS = ("intranet", "extranet", "internet")
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
        # every zone may reach every peer class: the flows below are the planner's work
        "zoneRules": {zone: dict.fromkeys(ZONE_PEERS, "any") for zone in ("intranet", "extranet")},
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
    if i % 5 == 0:  # some tenants bring their own segment (the top of their zone's pool)
        top = "10.127" if spec["zone"] == "intranet" else "172.31"
        spec["network"] = {"cidr": f"{top}.{i // 4}.{(i % 4) * 64}/26"}
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
HOSTILE_METRIC = "hostile files refused / valid planned, s per MB"
HOSTILE_KB = 200
HOSTILE_RULES, HOSTILE_PORTS, HOSTILE_GROUPS = 256, 64, ("web", "app", "db", "cache")


def hostile_numbers(i: int, rng: random.Random) -> str:
    """Tenant ``i`` with four numbers of HOSTILE_KB/4 characters (refused while reading)."""
    doc = tenant_doc(i, 2, rng)
    spec: dict[str, Any] = doc["spec"]  # type: ignore[assignment]
    spec["machines"][0]["count"] = "@hex"
    spec["quotaRequest"] = {"vcpus": "@bin", "memoryGiB": "@float", "storageGiB": "@b60"}
    chars = HOSTILE_KB * 1024 // 4
    values = {
        "@hex": "0x" + "f" * chars,
        "@bin": "0b" + "1" * chars,
        "@float": "1." + "7" * chars,
        "@b60": "1:" * (chars // 2) + "1",
    }
    text = yaml.safe_dump(doc, sort_keys=False, allow_unicode=True)
    for token, value in values.items():
        text = text.replace(f"'{token}'", value)
    return text


def hostile_rules(i: int, rng: random.Random) -> str:
    """Tenant ``i`` whose valid firewall expands into 256 x 64 x 4 rules (over budget)."""
    doc = tenant_doc(i, 2, rng)
    spec: dict[str, Any] = doc["spec"]  # type: ignore[assignment]
    spec["machines"] = [
        {"name": g, "flavor": "small", "image": "debian-12", "diskGiB": 10} for g in HOSTILE_GROUPS
    ]
    spec["firewall"] = "@firewall"
    lines = ["  firewall:", "    ingress:"]
    for r in range(HOSTILE_RULES):
        ports = ", ".join(f"{10000 + HOSTILE_PORTS * r + k}/tcp" for k in range(HOSTILE_PORTS))
        lines.append(f"    - {{from: intranet, ports: [{ports}]}}")
    text = yaml.safe_dump(doc, sort_keys=False, allow_unicode=True)
    return text.replace("  firewall: '@firewall'", "\n".join(lines))


def generate_hostile(root: Path, n: int) -> None:
    """A project of ``n`` hostile tenant files: even ones long numbers, odd ones rules."""
    generate(root, 0)
    (root / "stacks" / f"Pulumi.{SITE}.yaml").write_text(
        yaml.safe_dump({"config": {"tenancy:site": site_config(n)}}, sort_keys=False),
        encoding="utf-8",
    )
    rng = random.Random(2)
    for i in range(n):
        text = hostile_rules(i, rng) if i % 2 else hostile_numbers(i, rng)
        (root / "tenants" / f"{tenant_name(i)}.yaml").write_text(text, encoding="utf-8")


def tenant_bytes(root: Path) -> int:
    return sum(p.stat().st_size for p in (root / "tenants").glob("*.yaml"))


def bench_hostile(n: int, workdir: Path, runs: int) -> dict[str, float]:
    """Time refusing ``n`` hostile files against planning ``n`` valid ones, same run."""
    valid, hostile = workdir / f"valid{n}", workdir / f"hostile{n}"
    generate(valid, n)
    generate_hostile(hostile, n)
    start = time.perf_counter()
    if not plan_paths(valid).ok:
        raise SystemExit("bench: the valid baseline project is invalid")
    first_valid = time.perf_counter() - start
    start = time.perf_counter()
    result = plan_paths(hostile)
    first_hostile = time.perf_counter() - start  # the checked run counts as the first
    by_file: dict[str, list[str]] = {}
    for e in result.problems.errors:
        if e.location.line >= 1:
            by_file.setdefault(Path(e.location.file).name, []).append(e.message)
    for i in range(n):
        want = "firewall expands into" if i % 2 else "number too long"
        if not any(want in m for m in by_file.get(f"{tenant_name(i)}.yaml", [])):
            raise SystemExit(f"bench: hostile file {tenant_name(i)}.yaml not refused ({want})")
    if result.plans:
        raise SystemExit("bench: a hostile project was planned")
    return {
        "n": n,
        "valid_mb": tenant_bytes(valid) / 2**20,
        "hostile_mb": tenant_bytes(hostile) / 2**20,
        "valid": min(first_valid, best_of(runs - 1, lambda: plan_paths(valid))),
        "hostile": min(first_hostile, best_of(runs - 1, lambda: plan_paths(hostile))),
        "rules": (n // 2) * HOSTILE_RULES * HOSTILE_PORTS * len(HOSTILE_GROUPS),
    }


HOSTILE_TOTAL_S = 5.0  # acceptance: 100 files of 200 KB refused in under 5 s in total


def print_hostile(row: dict[str, float], runs: int) -> float:
    """The hostile table and total; returns the ratio (seconds per MB, hostile / valid)."""
    n = int(row["n"])
    print(f"\n== hostile files, refused (plan_paths, best of {runs}) ==")
    print("  valid    the generated tenants, planned (the baseline)")
    print(f"  hostile  ~{HOSTILE_KB} KB each: 50,000-digit numbers, or a firewall over budget")
    print(f"{'side':>8} {'files':>6} {'MB':>7} {'seconds':>8} {'ms/file':>8} {'s/MB':>7}")
    per_mb = {}
    for side in ("valid", "hostile"):
        mb = row[f"{side}_mb"]
        per_mb[side] = row[side] / mb
        print(
            f"{side:>8} {n:>6} {mb:>7.2f} {row[side]:>7.3f}s "
            f"{1000 * row[side] / n:>8.1f} {per_mb[side]:>7.3f}"
        )
    kb = row["hostile_mb"] * 1024 / n
    if n < 100:
        verdict = f"not judged with {n} files"
    else:
        verdict = "ok" if row["hostile"] < HOSTILE_TOTAL_S else "MISSED"
    print(
        f"  total: {n} hostile files of {kb:.0f} KB on average refused in {row['hostile']:.2f} s "
        f"(target < {HOSTILE_TOTAL_S:.0f} s for 100: {verdict}); "
        f"{row['hostile'] / row['valid']:.1f}x the time of planning the {n} valid ones, "
        f"{per_mb['hostile'] / per_mb['valid']:.3f}x per MB"
    )
    print(f"  refused before building {int(row['rules']):,} nwfilter rules (estimated)\n")
    return per_mb["hostile"] / per_mb["valid"]


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
    parser.add_argument(
        "--hostile", type=int, default=100, help="hostile tenant files (0: not run)"
    )
    args = parser.parse_args(argv)
    sizes: list[int] = args.sizes
    report = Report("bench_validate_plan")
    report.expect(SCHEMA_METRIC, "<=", 1.0)
    report.expect(GROWTH_METRIC, "<=", 12.0)
    report.expect(HOSTILE_METRIC, "<=", 1.0)

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
        if args.hostile < 2:
            report.not_run(HOSTILE_METRIC, "--hostile must be at least 2")
            return
        with tempfile.TemporaryDirectory(prefix="tenancy-bench-") as tmp:
            row = bench_hostile(args.hostile, Path(tmp), args.runs)
        ratio = print_hostile(row, args.runs)
        report.ratio(
            HOSTILE_METRIC,
            ratio,
            f"{args.hostile} files refused in {row['hostile']:.2f} s, "
            f"{row['hostile'] / row['valid']:.1f}x the valid run's time",
        )

    return report.finish(body)


if __name__ == "__main__":
    sys.exit(main())
