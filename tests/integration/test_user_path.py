"""The whole user path on one real VM: tenant file -> up with the real baseline -> audit.

What a department, ops and an auditor do, through the real ``tenancy`` CLI on
an isolated copy of the project (``tests/support/sitecopy.py``, site ``it-path``): one
tenant, one tiny TCG VM, the ``baseline`` profile with no control waived.

1. ``tenancy validate`` accepts the tenant file; ``tenancy up`` boots the VM
   and its PolicyRun applies the baseline; the output shows per-host progress
   (``task n/m``) and a per-host summary.
2. ``tenancy audit`` (the Lynis cross-check left out, and said so in the
   report's scope): every required control passes on the host, nothing is
   "not tested", the bundle's SHA256SUMS verifies.
3. A deliberate break: root login over SSH re-enabled in the guest.
4. ``tenancy audit`` fails exactly BASE-SSH-03 on that host; headless
   Chromium shows exactly that cell as FAIL in the bundle's report.html.
5. ``tenancy up --refresh`` finds the drift (a check-mode run) and repairs it;
   sshd's effective setting is back to ``no``.
6. ``tenancy audit`` passes again.
7. Routine operation: a second operator key joins the site. The preview
   replaces nothing (the seed is rewritten in place, the baseline updated);
   ``tenancy up`` keeps the same domain (UUID) and the new key logs in.
8. ``tenancy destroy`` leaves nothing of the site.

This is the scenario CI runs (``make test``); the longer ones (several
tenants, Lynis, waivers) are in ``test_policy_run.py`` (``make acceptance``).
Step timings go to ``$TENANCY_STATE/reports/test_user_path.txt``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.support.browser import dump_dom, matrix_cells, screenshot
from tests.support.guests import ssh
from tests.support.libvirt_cleanup import site_objects, sweep_site
from tests.support.locks import site_lock
from tests.support.sitecopy import SiteCopy, make_site_copy, new_workdir

from tenancy.cli.approved import preview_steps
from tenancy.policy.reachability import wait_for_ssh
from tenancy.policy.report import failures, verify_manifest
from tenancy.ssh import SshOptions

pytestmark = pytest.mark.integration

SITE = "it-path"
TENANT = "it-path"
HOST = f"{TENANT}-app-1"
BOOT_TIMEOUT = 1200.0
ENGINE_TIMEOUT = 3600.0
AUDIT_TIMEOUT = 1800.0
BREAK = (
    "sudo sed -i 's/^PermitRootLogin no$/PermitRootLogin yes/' "
    "/etc/ssh/sshd_config.d/05-tenancy-hardening.conf && sudo systemctl reload ssh"
)

TENANT_DOC: dict[str, Any] = {
    "apiVersion": "tenancy/v1",
    "kind": "Tenant",
    "metadata": {"name": TENANT, "displayName": "路径 Path", "owner": "path@example.gov"},
    "spec": {
        "site": SITE,
        "zone": "intranet",
        "network": {"cidr": "10.30.203.0/24"},
        "machines": [
            {
                "name": "app",
                "count": 1,
                "flavor": "tiny",
                "image": "debian-12",
                "diskGiB": 4,
                "role": "app",
            }
        ],
        "firewall": {"ingress": [{"from": "intranet", "to": "app", "ports": ["443/tcp"]}]},
        "policies": ["baseline"],
    },
}


@dataclass
class UserSite:
    copy: SiteCopy
    address: str
    reports: Path

    def tenancy(self, *args: str, timeout: float = ENGINE_TIMEOUT) -> Any:
        return self.copy.tenancy(*args, timeout=timeout)


@pytest.fixture(scope="module")
def site(libvirt_uri: str, pulumi_env: Any, guest_image: Any, standins: Any) -> Iterator[UserSite]:
    main = Path(os.environ["TENANCY_ROOT"])
    state = Path(os.environ.get("TENANCY_STATE") or main / ".tenancy")
    with site_lock(SITE):
        workdir = new_workdir(SITE)
        copy = make_site_copy(main, workdir / "project", SITE, {TENANT: TENANT_DOC})
        before = site_objects(libvirt_uri, copy, [TENANT])
        if any(before.values()):
            print(f"\n[{SITE}] leftovers of an earlier run, sweeping: {before}", flush=True)
            sweep_site(libvirt_uri, copy, [TENANT])
        plan = copy.plan()
        (machine,) = [m for t in plan["tenants"] for m in t["machines"]]
        assert machine["domain"] == HOST, machine
        try:
            yield UserSite(copy, machine["address"], state / "reports")
        finally:
            try:
                destroyed = copy.tenancy("destroy", "--site", SITE, timeout=1800)
            finally:
                left = sweep_site(libvirt_uri, copy, [TENANT])
                (state / "reports").mkdir(parents=True, exist_ok=True)
                shutil.copy2(copy.log, state / "reports" / "test_user_path.commands.log")
                shutil.rmtree(workdir, ignore_errors=True)
            assert destroyed.returncode == 0, destroyed.stdout[-3000:] + destroyed.stderr[-2000:]
            assert not any(left.values()), f"destroy left objects behind: {left}"


def effective_root_login(site: UserSite) -> str:
    out = ssh(site.copy, site.address, "sudo /usr/sbin/sshd -T | grep -i '^permitrootlogin'")
    assert out.returncode == 0, out.stderr
    return str(out.stdout.split()[-1])


def audit(site: UserSite, name: str) -> tuple[Any, dict[str, Any], Path]:
    """``tenancy audit`` (no Lynis) into ``<state>/audits/<name>``: process, results, bundle."""
    bundle = site.copy.state / "audits" / name
    run = site.tenancy(
        "audit", "--site", SITE, "--out", str(bundle), "--no-lynis", timeout=AUDIT_TIMEOUT
    )
    results = bundle / "results.json"
    assert results.is_file(), f"exit {run.returncode}: {run.stdout[-3000:]} {run.stderr[-3000:]}"
    doc: dict[str, Any] = json.loads(results.read_text())
    assert not verify_manifest(bundle), verify_manifest(bundle)
    return run, doc, bundle


def by_result(doc: dict[str, Any]) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for r in doc["results"]:
        out.setdefault(r["result"], set()).add(r["control"])
    return out


def assert_clean(run: Any, doc: dict[str, Any]) -> None:
    """Exit 0, every required control passes on the host, nothing unproven."""
    failed = [(r["control"], r["host"], r["reason"]) for r in failures(doc)]
    assert run.returncode == 0 and not failed, (run.returncode, failed, run.stderr[-3000:])
    results = by_result(doc)
    assert not results.get("fail") and not results.get("not-tested"), results
    assert {r["host"] for r in doc["results"]} == {HOST}
    assert "BASE-SSH-03" in results["pass"] and "BASE-FW-02" in results["pass"], results
    # required results are only pass here: no control of the baseline is waived
    required = {r["control"] for r in doc["results"] if r.get("required")}
    assert required and required <= results["pass"], required - results.get("pass", set())


def test_user_path(site: UserSite, step_timer: Any) -> None:
    copy = site.copy
    with step_timer.step("1 validate"):
        valid = site.tenancy("validate")
        assert valid.returncode == 0, valid.stdout + valid.stderr

    with step_timer.step("1 up: boot + real baseline"):
        up = site.tenancy("up", "--site", SITE)
        output = up.stdout + up.stderr
        assert up.returncode == 0, output[-5000:]
    assert "Traceback" not in output, output[-5000:]
    # progress per host while hardening, and a summary per host at the end
    assert re.search(rf"apply {TENANT} {HOST}: task \d+/\d+ \[", output), output[-5000:]
    summary = re.search(rf"apply {TENANT} {HOST}: changed (\d+), failed 0, unreachable 0", output)
    assert summary and int(summary.group(1)) > 0, output[-3000:]
    with step_timer.step("1 SSH after the baseline"):
        wait_for_ssh({HOST: site.address}, "ops", copy.key, BOOT_TIMEOUT)
    assert effective_root_login(site) == "no"

    with step_timer.step("2 audit (clean)"):
        run, doc, _bundle = audit(site, "clean")
    assert_clean(run, doc)
    clean_scope = doc.get("reductions")

    with step_timer.step("3 break: root login re-enabled"):
        broke = ssh(copy, site.address, BREAK)
        assert broke.returncode == 0, broke.stderr
    assert effective_root_login(site) == "yes"

    with step_timer.step("4 audit (broken)"):
        run, doc, bundle = audit(site, "broken")
    failed = {(r["control"], r["host"]) for r in failures(doc)}
    assert run.returncode == 1, (run.returncode, run.stderr[-2000:])
    assert failed == {("BASE-SSH-03", HOST)}, failed

    with step_timer.step("4 report.html in headless Chromium"):
        page = bundle / "report.html"
        profile = copy.state / "chromium-profile"
        anchor = "d-BASE_SSH_03-" + HOST.replace("-", "_")
        dom = dump_dom(page, profile, anchor)
        cells = matrix_cells(dom)
        shown_failed = {key for key, (result, _css, _text) in cells.items() if result == "fail"}
        assert len(cells) == len(doc["results"]), (len(cells), len(doc["results"]))
        assert shown_failed == {("BASE-SSH-03", HOST)}, shown_failed
        assert cells[("BASE-SSH-03", HOST)][2] == "FAIL", cells[("BASE-SSH-03", HOST)]
        assert "FAILED: 1 required control result(s) failed" in dom
        shot = site.reports / "test_user_path.audit-broken.png"
        site.reports.mkdir(parents=True, exist_ok=True)
        screenshot(page, profile, shot)
        shutil.copy2(page, site.reports / "test_user_path.audit-broken.html")

    with step_timer.step("5 up --refresh repairs the drift"):
        start = time.monotonic()
        repaired = site.tenancy("up", "--site", SITE, "--refresh")
        output = repaired.stdout + repaired.stderr
        assert repaired.returncode == 0, output[-5000:]
    print(f"[{SITE}] repair took {time.monotonic() - start:.0f} s", flush=True)
    assert re.search(rf"check {TENANT} {HOST}: done, changed [1-9]", output), output[-4000:]
    assert re.search(rf"apply {TENANT} {HOST}: done, changed [1-9]\d*, failed 0", output), output[
        -4000:
    ]
    assert effective_root_login(site) == "no"

    with step_timer.step("6 audit (repaired)"):
        run, doc, _bundle = audit(site, "repaired")
    assert_clean(run, doc)
    # the Lynis cross-check was left out: the evidence says so
    assert [r["option"] for r in clean_scope or []] == ["--no-lynis"], clean_scope

    rotate_in_a_second_key(site, step_timer)


def domain_uuid(site: UserSite) -> str:
    out = site.copy.run(["virsh", "-c", "qemu:///system", "domuuid", HOST], timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def rotate_in_a_second_key(site: UserSite, step_timer: Any) -> None:
    """Step 7: a key rotation is a baseline run, not a rebuild of the machine."""
    copy = site.copy
    new_key = copy.state / "ssh" / "ops2_ed25519"
    made = copy.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "ops2", "-f", str(new_key)]
    )
    assert made.returncode == 0, made.stderr
    stack_file = copy.root / "stacks" / f"Pulumi.{SITE}.yaml"
    doc = yaml.safe_load(stack_file.read_text())
    ops = doc["config"]["tenancy:site"]["ops"]
    ops["sshKeyFiles"] = [*ops["sshKeyFiles"], str(new_key) + ".pub"]
    stack_file.write_text(yaml.safe_dump(doc, sort_keys=False, allow_unicode=True))
    before = domain_uuid(site)
    with step_timer.step("7 preview of a key rotation"):
        preview = site.tenancy("preview", "--site", SITE, "--", "--json")
        assert preview.returncode == 0, preview.stdout[-3000:] + preview.stderr[-3000:]
    steps = preview_steps(preview.stdout)
    ops_by_kind = {(s["op"], s["urn"].rsplit("::", 1)[-1]) for s in steps if s["op"] != "same"}
    print(f"[{SITE}] key rotation preview: {sorted(ops_by_kind)}", flush=True)
    assert not [o for o in ops_by_kind if o[0] not in ("update",)], ops_by_kind
    assert ("update", f"{HOST}-seed") in ops_by_kind, ops_by_kind
    assert ("update", f"{TENANT}-policy") in ops_by_kind, ops_by_kind
    with step_timer.step("7 up: the baseline writes both keys"):
        up = site.tenancy("up", "--site", SITE)
        assert up.returncode == 0, (up.stdout + up.stderr)[-5000:]
    assert domain_uuid(site) == before, "the machine was rebuilt for a key rotation"
    options = SshOptions(private_key=new_key, connect_timeout=20)
    logged_in = copy.run(options.argv("ops", site.address, "cat ~/.ssh/authorized_keys"))
    assert logged_in.returncode == 0, logged_in.stderr
    keys = [line.split()[1] for line in logged_in.stdout.splitlines() if line.strip()]
    wanted = [
        Path(f).read_text().split()[1] for f in (str(copy.key) + ".pub", str(new_key) + ".pub")
    ]
    assert keys == wanted, (keys, wanted)
