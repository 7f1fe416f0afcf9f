"""The security baseline on real VMs: PolicyRun in ``tenancy up``, ``tenancy harden``, drift.

An isolated copy of the project (``tests/support/sitecopy.py``) gets a site
``it-policy`` derived from ``stacks/Pulumi.local.yaml`` and two tenants:
``it-gamma`` (2 tiny VMs, intranet 10.30.202.0/24, baseline) and ``it-delta``
(1 tiny VM, extranet 10.40.202.0/24, baseline + mlps-level3, MLPS-LOG-01 waived
because the site has no central syslog server). The roles, playbook and
catalogue are copied from the main tree when the test starts; the waiver is the
test's own.

Ordered steps (each timed; a failed step fails the ones that need it):

1. ``tenancy up`` with the PolicyRuns excluded: stock VMs, SSH up
2. Lynis hardening index of a stock VM (before the baseline)
3. ``tenancy up``: one PolicyRun per tenant applies the baseline (changed per host)
4. a second run (``tenancy harden``) changes nothing on any host; ``tenancy up``
   does not run the playbook again (no change to the PolicyRuns)
5. Lynis after the baseline (both profiles), remaining suggestions
6. drift: root login re-enabled over SSH on one VM; ``tenancy harden --check``
   reports it (exit 4, BASE-SSH-03), ``tenancy refresh`` records it on the
   tenant's PolicyRun only, ``tenancy up`` re-applies that tenant and fixes it
7. ``tenancy audit`` after the baseline: every required control passes on every
   host (probes from the stand-ins and the other tenant's VM, Lynis next to it),
   the bundle's SHA256SUMS verifies
8. a deliberate break on one VM (root login re-enabled, auditd stopped, a port
   opened in the guest firewall): the audit fails exactly BASE-SSH-03,
   BASE-AUD-01 and BASE-FW-02 on exactly that host, and headless Chromium shows
   exactly those cells as failed in the bundle's report.html
9. waivers: one with a future expiry turns the BASE-SSH-03 failure into
   "waived"; the same waiver expired does not
10. no run directory holds the stack's passphrase or the ops private key
11. ``tenancy destroy`` leaves nothing of the site (a sweep by name prefix runs in
    any case)

The site's machine-wide lock is held throughout (a second run waits). With
``TENANCY_IT_KEEP=1`` the site is left running at the end (for debugging; the
command to destroy it is printed); ``TENANCY_IT_REUSE=<kept project dir>`` runs
the selected steps against such a site instead of building a new one, and
``TENANCY_IT_AUDIT_LYNIS=0`` leaves Lynis out of step 7's audit (steps 2 and 5
measure it anyway; it costs 15 minutes under TCG).

The numbers go to ``$TENANCY_STATE/reports/test_policy_run.{txt,json}``.
Expect 60-120 minutes under TCG, more on a busy machine.
"""

from __future__ import annotations

import datetime
import json
import os
import re
import shutil
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from tests.support.browser import dump_dom, matrix_cells, screenshot
from tests.support.guests import ssh
from tests.support.libvirt_cleanup import site_objects, sweep_site
from tests.support.locks import site_lock
from tests.support.sitecopy import SiteCopy, make_site_copy, new_workdir, reopen_site_copy

from tenancy.policy.reachability import wait_for_ssh
from tenancy.policy.report import failures, verify_manifest

pytestmark = pytest.mark.integration

SITE = "it-policy"
TENANTS = ("it-gamma", "it-delta")
LYNIS_HOST = "it-gamma-app-1"
DRIFT_HOST = "it-gamma-app-1"
EXCLUDE_POLICY = f"urn:pulumi:{SITE}::tenancy::**::*-policy"
BOOT_TIMEOUT = 1500.0
ENGINE_TIMEOUT = 5400.0
AUDIT_TIMEOUT = 5400.0
#: The deliberate break of step 8 and the controls it must fail, on DRIFT_HOST only.
BREAK_COMMANDS = (
    "sudo sed -i 's/^PermitRootLogin no$/PermitRootLogin yes/' "
    "/etc/ssh/sshd_config.d/05-tenancy-hardening.conf && sudo systemctl reload ssh",
    # auditd refuses a manual stop (RefuseManualStop=yes): what an intruder would do
    "sudo systemctl kill --signal=SIGTERM auditd.service && sleep 3",
    "sudo nft insert rule inet tenancy input tcp dport 8080 accept",
)
BROKEN_CONTROLS = {"BASE-SSH-03", "BASE-AUD-01", "BASE-FW-02"}
TODAY = datetime.date.today().isoformat()
IN_90_DAYS = (datetime.date.today() + datetime.timedelta(days=90)).isoformat()
WAIVER = f"""\
apiVersion: tenancy/v1
kind: WaiverList
waivers:
  - control: MLPS-LOG-01
    tenant: it-delta
    justification: >-
      The it-policy test site has no central syslog collector; logs stay local and
      persistent (BASE-LOG-01) for the life of the test VM.
    approved_by: security-office@example.gov
    approved_on: {TODAY}
    expires: {IN_90_DAYS}
"""


def tenant(name: str, zone: str, cidr: str, count: int, policies: list[str], **fw: Any) -> Any:
    return {
        "apiVersion": "tenancy/v1",
        "kind": "Tenant",
        "metadata": {"name": name, "displayName": f"{name} 测试", "owner": f"{name}@example.gov"},
        "spec": {
            "site": SITE,
            "zone": zone,
            "network": {"cidr": cidr},
            "machines": [
                {
                    "name": "app",
                    "count": count,
                    "flavor": "tiny",
                    "image": "debian-12",
                    "diskGiB": 4,
                    "role": "app",
                }
            ],
            "firewall": {"ingress": fw.get("ingress", []), "egress": fw.get("egress", [])},
            "policies": policies,
        },
    }


TENANT_DOCS = {
    "it-gamma": tenant(
        "it-gamma",
        "intranet",
        "10.30.202.0/24",
        2,
        ["baseline"],
        ingress=[
            {"from": "it-delta", "to": "app", "ports": ["8443/tcp"]},
            {"from": "intranet", "to": "app", "ports": ["443/tcp", "9000-9010/tcp"]},
        ],
    ),
    "it-delta": tenant(
        "it-delta",
        "extranet",
        "10.40.202.0/24",
        1,
        ["baseline", "mlps-level3"],
        egress=[
            {"to": "it-gamma", "ports": ["8443/tcp"]},
            {"to": "internet", "ports": ["53/udp"]},
        ],
    ),
}


# --- report ---------------------------------------------------------------------------


@dataclass
class Report:
    """Steps with timings plus the numbers the acceptance asks for, written after every step."""

    path: Path
    steps: list[dict[str, Any]] = field(default_factory=list)
    numbers: dict[str, Any] = field(default_factory=dict)
    failed: str = ""

    def step(self, name: str, always: bool = False) -> _Step:
        """A timed step; it refuses to start after a failed one unless ``always`` (cleanup)."""
        return _Step(self, name, always)

    def write(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        doc = {"steps": self.steps, "numbers": self.numbers, "failed_step": self.failed}
        self.path.with_suffix(".json").write_text(json.dumps(doc, indent=2, ensure_ascii=False))
        lines = [f"test_policy_run ({time.strftime('%Y-%m-%d %H:%M:%S')}), site {SITE}"]
        lines += [f"  {s['step']:<44} {s['seconds']:8.1f} s  {s['outcome']}" for s in self.steps]
        lines.append("")
        lines += [
            f"{key}: {json.dumps(value, ensure_ascii=False)}" for key, value in self.numbers.items()
        ]
        self.path.write_text("\n".join(lines) + "\n")


class _Step:
    def __init__(self, report: Report, name: str, always: bool) -> None:
        self.report, self.name, self.always, self.start = report, name, always, 0.0

    def __enter__(self) -> _Step:
        if self.report.failed and not self.always:
            pytest.fail(f"not run: step {self.report.failed!r} failed before", pytrace=False)
        self.start = time.monotonic()
        print(f"[policy] {self.name} ...", flush=True)
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        seconds = round(time.monotonic() - self.start, 1)
        outcome = "ok" if exc_type is None else f"FAILED: {exc}".splitlines()[0][:200]
        if exc_type is not None and not self.report.failed:
            self.report.failed = self.name
        self.report.steps.append({"step": self.name, "seconds": seconds, "outcome": outcome})
        print(f"[policy] {self.name}: {seconds:.1f} s ({outcome})", flush=True)
        self.report.write()


# --- fixtures -------------------------------------------------------------------------


@dataclass
class Env:
    copy: SiteCopy
    report: Report
    addresses: dict[str, str]
    uri: str

    def tenancy(self, *args: str, timeout: float = ENGINE_TIMEOUT) -> Any:
        return self.copy.tenancy(*args, timeout=timeout)

    def ssh(self, host: str, command: str, timeout: float = 120) -> Any:
        return ssh(self.copy, self.addresses[host], command, timeout=timeout)

    def policy_runs(self) -> dict[str, dict[str, Any]]:
        """Outputs of the PolicyRun resources in the stack's state, by tenant."""
        out = self.copy.run(["pulumi", "stack", "export", "--stack", SITE])
        assert out.returncode == 0, out.stderr
        state = json.loads(out.stdout)
        return {
            r["outputs"]["tenant"]: r["outputs"]
            for r in state["deployment"].get("resources", [])
            if r["type"].endswith(":PolicyRun")
        }


@pytest.fixture(scope="module")
def env(libvirt_uri: str, pulumi_env: Any, guest_image: Any, standins: Any) -> Iterator[Env]:
    main = Path(os.environ["TENANCY_ROOT"])
    state = Path(os.environ.get("TENANCY_STATE") or main / ".tenancy")
    with site_lock(SITE) as waited:
        if waited > 1:
            print(f"[{SITE}] waited {waited:.0f} s for the site lock", flush=True)
        reuse = os.environ.get("TENANCY_IT_REUSE", "")
        if reuse:
            # a site kept by an earlier run (TENANCY_IT_KEEP=1), for running later steps
            # again by node id; its VMs, state and policy trees are used as they are
            copy = reopen_site_copy(main, Path(reuse), SITE)
            workdir = copy.root.parent
        else:
            workdir = new_workdir(SITE)
            copy = make_site_copy(main, workdir / "project", SITE, TENANT_DOCS)
            # make_site_copy copied policies/ and roles/ of the main tree: add the waiver
            (copy.root / "policies" / "waivers").mkdir(exist_ok=True)
            (copy.root / "policies" / "waivers" / "it-delta.yaml").write_text(WAIVER)
            before = site_objects(libvirt_uri, copy, list(TENANTS))
            if any(before.values()):
                print(f"\n[{SITE}] leftovers of an earlier run, sweeping: {before}", flush=True)
                sweep_site(libvirt_uri, copy, list(TENANTS))
        plan = copy.plan()
        addresses = {m["domain"]: m["address"] for t in plan["tenants"] for m in t["machines"]}
        name = "test_policy_run.resumed.txt" if reuse else "test_policy_run.txt"
        report = Report(state / "reports" / name)
        report.numbers["hosts"] = addresses
        mp = pytest.MonkeyPatch()
        # one tenant's failed run must not keep the others from starting
        mp.setenv("PULUMI_CONTINUE_ON_ERROR", "true")
        try:
            yield Env(copy, report, addresses, libvirt_uri)
        finally:
            mp.undo()
            if os.environ.get("TENANCY_IT_KEEP") == "1":
                keep_site(copy)
            else:
                cleanup(copy, report, libvirt_uri, state)
                shutil.rmtree(workdir, ignore_errors=True)


def keep_site(copy: SiteCopy) -> None:
    """Leave the site running (TENANCY_IT_KEEP=1) and say how to destroy it."""
    print(f"\n[{SITE}] kept {copy.root}; destroy with: {copy.keep_for_later()}", flush=True)


def cleanup(copy: SiteCopy, report: Report, uri: str, state: Path) -> None:
    """Destroy the stack, then sweep by name prefix whatever is left; keep the evidence."""
    with report.step("destroy and sweep", always=True):
        try:
            destroyed = copy.tenancy("destroy", "--site", SITE, timeout=1800)
        finally:
            left = sweep_site(uri, copy, list(TENANTS))
            report.numbers["leftovers_after_destroy"] = {k: v for k, v in left.items() if v}
            runs = copy.state / "runs"
            report.numbers["runs_kept"] = (
                sorted(p.name for p in runs.iterdir()) if runs.is_dir() else []
            )
            kept = state / "reports" / "test_policy_run.runs"
            shutil.rmtree(kept, ignore_errors=True)
            if runs.is_dir():
                shutil.copytree(runs, kept, symlinks=False, dirs_exist_ok=True)
            shutil.copy2(copy.log, state / "reports" / "test_policy_run.commands.log")
        assert destroyed.returncode == 0, destroyed.stderr[-2000:]
        assert not any(left.values()), f"destroy left objects behind: {left}"


def lynis(env: Env, host: str) -> dict[str, Any]:
    """Run ``lynis audit system --quick`` on a VM; index, tests done, suggestions."""
    run = env.ssh(
        host,
        "sudo /usr/sbin/lynis audit system --quick --no-colors >/dev/null 2>&1; "
        "sudo cat /var/log/lynis-report.dat",
        timeout=1800,
    )
    assert run.returncode == 0, f"lynis on {host}: {run.stderr}"
    fields: dict[str, list[str]] = {}
    for line in run.stdout.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            fields.setdefault(key, []).append(value)
    assert "hardening_index" in fields, f"no hardening_index in the report of {host}"
    suggestions = [s.split("|")[:2] for s in fields.get("suggestion[]", [])]
    return {
        "hardening_index": int(fields["hardening_index"][0]),
        "tests_performed": int((fields.get("lynis_tests_done") or ["0"])[0]),
        "suggestions": len(suggestions),
        "warnings": len(fields.get("warning[]", [])),
        "top_suggestions": [f"{test}: {text}" for test, text in suggestions[:12]],
    }


def harden_json(result: Any) -> dict[str, Any]:
    try:
        doc: dict[str, Any] = json.loads(result.stdout)
    except ValueError:
        raise AssertionError(
            f"tenancy harden printed no JSON (exit {result.returncode}): {result.stderr[-3000:]}"
        ) from None
    return doc


def effective_root_login(env: Env, host: str) -> str:
    out = env.ssh(host, "sudo /usr/sbin/sshd -T | grep -i '^permitrootlogin'")
    assert out.returncode == 0, out.stderr
    return str(out.stdout.split()[-1])


# --- the steps, in order ----------------------------------------------------------------


def test_1_stock_vms(env: Env) -> None:
    with env.report.step("up without PolicyRuns (stock VMs)"):
        up = env.tenancy("up", "--site", SITE, "--", "--exclude", EXCLUDE_POLICY)
        assert up.returncode == 0, up.stdout[-3000:] + up.stderr[-3000:]
        assert env.policy_runs() == {}, "the PolicyRuns were excluded"
    with env.report.step("VMs answer SSH, cloud-init done"):
        ready = wait_for_ssh(env.addresses, "ops", env.copy.key, BOOT_TIMEOUT)
        env.report.numbers["ssh_ready_seconds"] = ready


def test_2_lynis_on_a_stock_vm(env: Env) -> None:
    with env.report.step(f"lynis on stock {LYNIS_HOST}"):
        env.report.numbers["lynis_before"] = {LYNIS_HOST: lynis(env, LYNIS_HOST)}


def test_3_up_applies_the_baseline(env: Env) -> None:
    with env.report.step("up: PolicyRun per tenant (first run)"):
        up = env.tenancy("up", "--site", SITE)
        assert up.returncode == 0, up.stdout[-4000:] + up.stderr[-4000:]
        runs = env.policy_runs()
        assert sorted(runs) == sorted(TENANTS), runs.keys()
        changed: dict[str, int] = {}
        for name, outs in runs.items():
            assert outs["drifted"] == [], name
            for host, res in outs["results"].items():
                assert res["failed"] == 0 and res["unreachable"] == 0, (host, res)
                changed[host] = int(res["changed"])
        assert sorted(changed) == sorted(env.addresses)
        assert all(n > 0 for n in changed.values()), changed
        env.report.numbers["first_run_changed"] = changed
        env.report.numbers["first_run_ids"] = {t: o["run_id"] for t, o in runs.items()}


def test_4_second_run_changes_nothing(env: Env) -> None:
    with env.report.step("harden: second run (no-op)"):
        start = time.monotonic()
        run = env.tenancy("harden", "--site", SITE, "--format", "json", "-q")
        seconds = round(time.monotonic() - start, 1)
        doc = harden_json(run)
        assert run.returncode == 0, (run.returncode, doc.get("error"), doc.get("failed_hosts"))
        changed = {h: r["changed"] for h, r in doc["hosts"].items()}
        env.report.numbers["second_run_changed"] = changed
        env.report.numbers["noop_run_seconds"] = seconds
        tasks = {h: r["ok"] + r["skipped"] for h, r in doc["hosts"].items()}
        env.report.numbers["noop_run_tasks_per_host"] = tasks
        assert sorted(changed) == sorted(env.addresses)
        not_idempotent = {
            h: [t["task"] for t in r["changed_tasks"]]
            for h, r in doc["hosts"].items()
            if r["changed"]
        }
        assert not not_idempotent, f"a second run changed something: {not_idempotent}"
    with env.report.step("preview: unchanged policy, no PolicyRun change"):
        before = {t: o["run_id"] for t, o in env.policy_runs().items()}
        preview = env.tenancy("preview", "--site", SITE, "--expect-no-changes")
        assert preview.returncode == 0, preview.stdout[-3000:]
        assert {t: o["run_id"] for t, o in env.policy_runs().items()} == before


def test_5_lynis_after_the_baseline(env: Env) -> None:
    with env.report.step("lynis after the baseline"):
        with ThreadPoolExecutor(max_workers=2) as pool:  # both VMs at once
            hosts = (LYNIS_HOST, "it-delta-app-1")
            after = dict(zip(hosts, pool.map(lambda h: lynis(env, h), hosts), strict=True))
        env.report.numbers["lynis_after"] = after
        before = env.report.numbers["lynis_before"][LYNIS_HOST]["hardening_index"]
        assert after[LYNIS_HOST]["hardening_index"] > before, (before, after)


def test_6_drift_is_reported_and_repaired(env: Env) -> None:
    with env.report.step("manual change: root login re-enabled"):
        edit = env.ssh(
            DRIFT_HOST,
            "sudo sed -i 's/^PermitRootLogin no$/PermitRootLogin yes/' "
            "/etc/ssh/sshd_config.d/05-tenancy-hardening.conf && sudo systemctl reload ssh",
        )
        assert edit.returncode == 0, edit.stderr
        assert effective_root_login(env, DRIFT_HOST) == "yes"

    with env.report.step("harden --check reports the drift"):
        check = env.tenancy("harden", "--site", SITE, "--tenant", "it-gamma", "--check", "-q")
        env.report.numbers["check_exit_code"] = check.returncode
        env.report.numbers["check_output"] = check.stdout.strip().splitlines()
        doc = summary_of(env, check)
        drift = {
            h: sorted({c for t in r["changed_tasks"] for c in t["controls"]})
            for h, r in doc["hosts"].items()
            if r["changed"]
        }
        env.report.numbers["check_drift"] = drift
        assert check.returncode == 4, (check.returncode, check.stdout[-2000:], doc.get("error"))
        assert list(drift) == [DRIFT_HOST], drift
        assert "BASE-SSH-03" in drift[DRIFT_HOST], drift
        assert "would change:" in check.stdout and "BASE-SSH-03" in check.stdout
        assert effective_root_login(env, DRIFT_HOST) == "yes", "check mode changed nothing"

    with env.report.step("refresh records the drift"):
        refresh = env.tenancy("refresh", "--site", SITE)
        assert refresh.returncode == 0, refresh.stdout[-3000:] + refresh.stderr[-2000:]
        runs = env.policy_runs()
        env.report.numbers["refresh_drifted"] = {t: o.get("drifted") for t, o in runs.items()}
        env.report.numbers["refresh_drift"] = {t: o.get("drift") for t, o in runs.items()}
        assert runs["it-gamma"]["drifted"] == [DRIFT_HOST]
        assert "BASE-SSH-03" in runs["it-gamma"]["drift"][DRIFT_HOST]
        assert runs["it-delta"]["drifted"] == []

    with env.report.step("preview shows the re-apply of that tenant only"):
        preview = env.tenancy("preview", "--site", SITE)
        assert preview.returncode == 0, preview.stdout[-3000:]
        updates = re.findall(r"~\s+\S+PolicyRun (\S+) update", preview.stdout)
        env.report.numbers["preview_policy_updates"] = updates
        assert updates == ["it-gamma-policy"], preview.stdout[-3000:]

    with env.report.step("up re-applies and fixes the drift"):
        up = env.tenancy("up", "--site", SITE)
        assert up.returncode == 0, up.stdout[-4000:] + up.stderr[-3000:]
        runs = env.policy_runs()
        assert runs["it-gamma"]["drifted"] == []
        fixed = runs["it-gamma"]["results"][DRIFT_HOST]
        env.report.numbers["repair_changed"] = {
            h: r["changed"] for h, r in runs["it-gamma"]["results"].items()
        }
        assert fixed["changed"] > 0 and fixed["failed"] == 0, fixed
        assert effective_root_login(env, DRIFT_HOST) == "no"


def test_7_audit_after_the_baseline(env: Env) -> None:
    lynis_too = os.environ.get("TENANCY_IT_AUDIT_LYNIS", "1") != "0"
    label = "all hosts, Lynis" if lynis_too else "all hosts"
    with env.report.step(f"audit after the baseline ({label})"):
        run, doc, bundle, seconds = audit(
            env, "after-baseline", *(() if lynis_too else ("--no-lynis",))
        )
        env.report.numbers["audit_clean"] = audit_numbers(doc, run, seconds)
        assert not verify_manifest(bundle), verify_manifest(bundle)
        assert (bundle / "junit.xml").is_file() and (bundle / "report.html").is_file()
        failed = [(r["control"], r["host"], r["reason"]) for r in failures(doc)]
        assert run.returncode == 0 and not failed, (run.returncode, failed, run.stderr[-2000:])
        hosts = {r["host"] for r in doc["results"]}
        assert hosts == set(env.addresses), hosts
        passed = {(r["control"], r["host"]) for r in doc["results"] if r["result"] == "pass"}
        assert ("BASE-SSH-03", DRIFT_HOST) in passed and ("BASE-FW-02", DRIFT_HOST) in passed
        if lynis_too:
            lynis_seen = env.report.numbers["audit_clean"]["lynis"]
            assert all(isinstance(v, int) for v in lynis_seen.values()), lynis_seen


def test_8_a_broken_vm_fails_exactly_its_controls(env: Env) -> None:
    with env.report.step(f"break {DRIFT_HOST}: root login, auditd, open port"):
        for command in BREAK_COMMANDS:
            done = env.ssh(DRIFT_HOST, command)
            assert done.returncode == 0, (command, done.stderr)
        assert effective_root_login(env, DRIFT_HOST) == "yes"
        active = env.ssh(DRIFT_HOST, "systemctl is-active auditd.service")
        assert active.stdout.strip() != "active", active.stdout
        rules = env.ssh(DRIFT_HOST, "sudo nft list chain inet tenancy input")
        assert "tcp dport 8080 accept" in rules.stdout, rules.stdout

    with env.report.step("audit finds exactly the break"):
        run, doc, bundle, seconds = audit(env, "after-break", "--no-lynis")
        env.report.numbers["audit_broken"] = audit_numbers(doc, run, seconds)
        failed = {(r["control"], r["host"]) for r in failures(doc)}
        assert run.returncode == 1, (run.returncode, run.stderr[-2000:])
        assert failed == {(c, DRIFT_HOST) for c in BROKEN_CONTROLS}, failed
        assert not verify_manifest(bundle), verify_manifest(bundle)

    with env.report.step("report.html in headless Chromium shows the break"):
        page = bundle / "report.html"
        profile = env.copy.state / "chromium-profile"
        anchor = "d-BASE_SSH_03-" + DRIFT_HOST.replace("-", "_")
        dom = dump_dom(page, profile, anchor)
        cells = matrix_cells(dom)
        shown_failed = {key for key, (result, _css, _text) in cells.items() if result == "fail"}
        env.report.numbers["report_cells"] = {
            "cells": len(cells),
            "failed": sorted(f"{c}@{h}" for c, h in shown_failed),
            "by_result": count_cells(cells),
        }
        assert len(cells) == len(doc["results"]), (len(cells), len(doc["results"]))
        assert shown_failed == {(c, DRIFT_HOST) for c in BROKEN_CONTROLS}, shown_failed
        for control in BROKEN_CONTROLS:
            assert cells[(control, DRIFT_HOST)][2] == "FAIL", cells[(control, DRIFT_HOST)]
        assert "FAILED: 3 required control result(s) failed" in dom
        opened = re.search(rf'<details id="{anchor}"[^>]*>', dom)
        assert opened and " open" in opened.group(0), "the drill-down was not opened"
        shot = env.copy.state / "audit-after-break.png"
        screenshot(page, profile, shot)
        kept = Path(os.environ.get("TENANCY_STATE") or env.copy.root / ".tenancy") / "reports"
        kept.mkdir(parents=True, exist_ok=True)
        shutil.copy2(shot, kept / "test_policy_run.audit-after-break.png")
        shutil.copy2(page, kept / "test_policy_run.audit-after-break.html")


def test_9_waivers_future_and_expired(env: Env) -> None:
    waiver_file = env.copy.root / "policies" / "waivers" / "it-gamma.yaml"
    try:
        with env.report.step("a waiver with a future expiry: waived"):
            result, failed = audit_with_waiver(env, waiver_file, IN_90_DAYS, "waiver_future")
            assert (result["result"], result["required"]) == ("waived", False), result
            assert failed == {(c, DRIFT_HOST) for c in BROKEN_CONTROLS - {"BASE-SSH-03"}}, failed

        with env.report.step("the same waiver expired: fail"):
            result, failed = audit_with_waiver(env, waiver_file, "2026-01-31", "waiver_expired")
            assert (result["result"], result["required"]) == ("fail", True), result
            assert "expired" in result["reason"], result["reason"]
            assert failed == {(c, DRIFT_HOST) for c in BROKEN_CONTROLS}, failed
    finally:
        waiver_file.unlink(missing_ok=True)


def audit_with_waiver(
    env: Env, waiver_file: Path, expires: str, name: str
) -> tuple[dict[str, Any], set[tuple[str, str]]]:
    """Waive BASE-SSH-03 on the broken host until ``expires``, audit its tenant:
    (that control's result there, the failed (control, host) pairs)."""
    waiver_file.write_text(break_waiver(expires))
    run, doc, _bundle, seconds = audit(env, name, "--tenant", "it-gamma", "--no-lynis")
    result = result_of(doc, "BASE-SSH-03", DRIFT_HOST)
    env.report.numbers[name] = {
        "result": result["result"],
        "required": result["required"],
        "reason": result["reason"],
        "exit": run.returncode,
        "seconds": seconds,
    }
    assert run.returncode == 1, "the other broken controls still fail the audit"
    return result, {(r["control"], r["host"]) for r in failures(doc)}


def test_10_no_secrets_in_the_run_directories(env: Env) -> None:
    with env.report.step("no secrets in the run directories", always=True):
        key_body = "".join(
            line
            for line in env.copy.key.read_text().splitlines()
            if line and not line.startswith("-----")
        )
        secrets = {"passphrase": env.copy.passphrase, "private key": key_body[:64]}
        runs = sorted((env.copy.state / "runs").iterdir())
        assert runs, "no run directories"
        leaks = [
            f"{name} in {path}"
            for path in (env.copy.state / "runs").rglob("*")
            if path.is_file()
            for name, secret in secrets.items()
            if secret.encode() in path.read_bytes()
        ]
        env.report.numbers["secret_scan"] = {"run_dirs": len(runs), "leaks": leaks}
        assert not leaks, leaks


def summary_of(env: Env, result: Any) -> dict[str, Any]:
    """The run's summary.json, found from the "run dir ..." line of the text report."""
    found = re.search(r"run dir (\S+)\s*$", result.stdout)
    assert found, f"no run dir in the output (exit {result.returncode}): {result.stderr[-2000:]}"
    run_dir = Path(found.group(1))
    doc: dict[str, Any] = json.loads((env.copy.root / run_dir / "summary.json").read_text())
    return doc


def audit(env: Env, name: str, *args: str) -> tuple[Any, dict[str, Any], Path, float]:
    """``tenancy audit`` into ``$state/audits/<name>``: (process, results.json, bundle, s)."""
    bundle = env.copy.state / "audits" / name
    shutil.rmtree(bundle, ignore_errors=True)  # a kept site's earlier run (TENANCY_IT_REUSE)
    start = time.monotonic()
    run = env.tenancy(
        "audit", "--site", SITE, "--out", str(bundle), "-q", *args, timeout=AUDIT_TIMEOUT
    )
    seconds = round(time.monotonic() - start, 1)
    results = bundle / "results.json"
    assert results.is_file(), f"exit {run.returncode}: {run.stdout[-3000:]} {run.stderr[-3000:]}"
    doc: dict[str, Any] = json.loads(results.read_text())
    return run, doc, bundle, seconds


def audit_numbers(doc: dict[str, Any], run: Any, seconds: float) -> dict[str, Any]:
    return {
        "exit": run.returncode,
        "seconds": seconds,
        "summary": doc.get("summary"),
        "lynis": {h["name"]: (h.get("lynis") or {}).get("hardening_index") for h in doc["hosts"]},
        "failed": [f"{r['control']}@{r['host']}: {r['reason']}" for r in failures(doc)],
        "stdout_tail": run.stdout.strip().splitlines()[-8:],
    }


def result_of(doc: dict[str, Any], control: str, host: str) -> dict[str, Any]:
    found = [r for r in doc["results"] if r["control"] == control and r["host"] == host]
    assert len(found) == 1, (control, host, len(found))
    return dict(found[0])


def count_cells(cells: dict[tuple[str, str], list[str]]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for result, _css, _text in cells.values():
        counts[result] = counts.get(result, 0) + 1
    return counts


def break_waiver(expires: str) -> str:
    """A waiver approved 30 days before ``expires`` (or today, for one in the future)."""
    end = datetime.date.fromisoformat(expires)
    approved = min(end - datetime.timedelta(days=30), datetime.date.today())
    return f"""\
apiVersion: tenancy/v1
kind: WaiverList
waivers:
  - control: BASE-SSH-03
    tenant: it-gamma
    hosts: [{DRIFT_HOST}]
    justification: >-
      Vendor support needs a root console on this host during the migration window.
    approved_by: security-office@example.gov
    approved_on: {approved.isoformat()}
    expires: {expires}
"""
