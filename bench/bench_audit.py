"""Benchmark: the compliance audit of one host against N hosts in parallel (pytest-xdist).

Creates its own isolated site (a project copy with site ``bench-audit``, N
tenants of one tiny TCG VM each, explicit CIDRs 10.30.21x.0/24, a declared
cross-tenant flow so other-tenant probes run), brings it up (the baseline
waived for the bring-up unless ``--harden``; the waivers are removed before
the audits, so every check runs), then times in one run:

* an untimed warm-up audit (the guests' own start-up work would skew the first run);
* ``tenancy audit --tenant <t>`` for each tenant alone (one host, one worker);
* ``tenancy audit`` of all N hosts with ``--workers N`` (xdist, one host per worker).

Parallel efficiency = mean(one-host time) / N-host time (1.0 = N hosts cost
no more than one; target >= 0.7). Lynis is left out of the audits
(``--no-lynis``); ``--lynis`` times one run on one host, for information. Everything created is
destroyed at the end (``tenancy destroy``, then a sweep by name prefix),
unless ``--keep``.

Needs the hypervisor, the guest image and the engine (``make setup``), root,
and several minutes under TCG. Run: ``python -m bench.bench_audit [--hosts 2]``.
Exit status: 0 when the ratio meets its target, 1 when it misses, 2 when the
benchmark could not run (a missing prerequisite or a failed step; the ratio then says
"not run" and why).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from tests.support.guests import ssh, wait_for_ssh
from tests.support.libvirt_cleanup import sweep_site
from tests.support.sitecopy import SiteCopy, make_site_copy
from tests.support.waivers import waive_baseline

from bench._preflight import URI, vm_blocker
from bench._summary import NotRun, Report

SITE = "bench-audit"
METRIC = "audit parallel efficiency mean(t(1 host))/t(N hosts)"
TARGET = 0.7
REPO = Path(__file__).resolve().parents[1]


def tenant(i: int, n: int) -> tuple[str, dict[str, Any]]:
    name = f"bench-a{i}"
    spec: dict[str, Any] = {
        "site": SITE,
        "zone": "intranet",
        "network": {"cidr": f"10.30.{210 + i}.0/24"},
        "machines": [
            {"name": "app", "count": 1, "flavor": "tiny", "image": "debian-12", "diskGiB": 4}
        ],
        "firewall": {
            "ingress": [{"from": "intranet", "to": "app", "ports": ["443/tcp"]}],
            "egress": [{"to": "internet", "ports": ["443/tcp"]}],
        },
        "policies": ["baseline"],
    }
    # a two-sided cross-tenant flow: bench-a1 calls bench-a2 on 8443
    if i == 1 and n > 1:
        spec["firewall"]["egress"].append({"to": "bench-a2", "ports": ["8443/tcp"]})
    if i == 2:
        spec["firewall"]["ingress"].append({"from": "bench-a1", "ports": ["8443/tcp"]})
    doc = {
        "apiVersion": "tenancy/v1",
        "kind": "Tenant",
        "metadata": {"name": name, "displayName": f"Audit bench {i}", "owner": "bench@example.gov"},
        "spec": spec,
    }
    return name, doc


def audit(copy: SiteCopy, out: Path, *args: str) -> tuple[float, dict[str, Any]]:
    start = time.monotonic()
    done = copy.tenancy(
        "audit", "--site", SITE, "--out", str(out), "--no-lynis", "-q", *args, timeout=3600
    )
    seconds = time.monotonic() - start
    results = out / "results.json"
    doc = json.loads(results.read_text()) if results.is_file() else {}
    if not doc:
        raise SystemExit(
            f"audit {args} produced no results (exit {done.returncode}):\n{done.stderr}"
        )
    return seconds, doc


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hosts", type=int, default=2, help="hosts (tenants) audited in parallel")
    parser.add_argument("--keep", action="store_true", help="do not destroy the site at the end")
    parser.add_argument(
        "--harden",
        action="store_true",
        help="let `tenancy up` apply the baseline first (adds ~5 min of TCG per VM)",
    )
    parser.add_argument(
        "--lynis", action="store_true", help="also time one Lynis run (10-30 min under TCG)"
    )
    args = parser.parse_args(argv)
    report = Report("bench_audit")
    report.expect(METRIC, ">=", TARGET)
    return report.finish(lambda: run(args, report))


def run(args: argparse.Namespace, report: Report) -> None:
    """Bring-up, warm-up, the single-host audits and the N-host audit; the ratio to ``report``."""
    blocker = vm_blocker()
    if blocker is not None:
        raise NotRun(blocker)
    names = [tenant(i, args.hosts) for i in range(1, args.hosts + 1)]
    work = Path(tempfile.mkdtemp(prefix="tenancy-bench-audit-"))
    copy = make_site_copy(REPO, work / "project", SITE, dict(names))
    if not args.harden:
        # `tenancy up` applies the baseline (PolicyRun, ~5 min of TCG per VM): waived
        # for the bring-up, the waivers are removed before the audit, which then runs
        # every check against the stock image (the same commands, more failures).
        waive_baseline(copy, [n for n, _ in names])
    subprocess.run(["bash", str(REPO / "tools" / "standins.sh"), "up"], check=False)
    rows: list[tuple[str, float, str]] = []
    efficiency: float | None = None
    try:
        start = time.monotonic()
        up = copy.tenancy("up", "--site", SITE, timeout=1800)
        if up.returncode != 0:
            raise SystemExit(f"tenancy up failed:\n{up.stdout[-3000:]}\n{up.stderr[-3000:]}")
        plan = copy.plan()
        addresses = [m["address"] for t in plan["tenants"] for m in t["machines"]]
        for address in addresses:
            wait_for_ssh(copy, address, timeout=600)
        hardened = "baseline applied" if args.harden else "baseline waived for the bring-up"
        rows.append(("up + SSH", time.monotonic() - start, f"{len(addresses)} VMs, {hardened}"))
        for waivers in (copy.root / "policies" / "waivers").glob("integration-*.yaml"):
            waivers.unlink()

        # warm-up, not timed: the first audit after boot competes with the guests'
        # own start-up work (timers, caches) and would flatter the parallel run
        start = time.monotonic()
        audit(copy, work / "audit-warm-up", "--workers", str(args.hosts))
        rows.append(("warm-up audit (not compared)", time.monotonic() - start, ""))

        singles = []
        for name, _ in names:
            seconds, doc = audit(copy, work / f"audit-{name}", "--tenant", name, "--workers", "1")
            singles.append(seconds)
            rows.append((f"audit {name} (1 host)", seconds, _counts(doc)))
        seconds, doc = audit(copy, work / "audit-all", "--workers", str(args.hosts))
        rows.append((f"audit {args.hosts} hosts, -n {args.hosts}", seconds, _counts(doc)))
        efficiency = (sum(singles) / len(singles)) / seconds

        if args.lynis:
            start = time.monotonic()
            lynis = ssh(
                copy,
                addresses[0],
                "sudo lynis audit system --quick --no-colors >/dev/null; "
                "sudo grep ^hardening_index= /var/log/lynis-report.dat",
                timeout=1800,
            )
            rows.append(("lynis (1 host)", time.monotonic() - start, lynis.stdout.strip()))
    finally:
        if not args.keep:
            copy.tenancy("destroy", "--site", SITE, timeout=1800)
            left = sweep_site(URI, copy, [n for n, _ in names])
            if any(left.values()):
                print(f"swept leftovers: {left}")
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"kept {copy.root}; destroy with: {copy.keep_for_later()}")
        print(f"\n{'step':<34} {'seconds':>9}  result")
        for name, seconds, note in rows:
            print(f"{name:<34} {seconds:9.1f}  {note}")
    if efficiency is not None:
        report.ratio(METRIC, efficiency, f"N={args.hosts}, the same hosts alone and together")


def _counts(doc: dict[str, Any]) -> str:
    summary = doc.get("summary", {})
    return ", ".join(f"{v} {k}" for k, v in summary.items() if v) + f"; exit {doc.get('exit_code')}"


if __name__ == "__main__":
    sys.exit(main())
