"""Compliance records -> results.json / report.html, waivers, and the bundle's SHA256SUMS.

The last test runs the real compliance suite (tests/compliance) in a pytest
subprocess against this machine through an Ansible inventory with a local
connection, restricted to one SSH control, to show the waiver logic end to
end: a valid waiver skips with "waived until <date>: <justification>", an
expired one fails, a control outside the profiles is "not in profile".
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from datetime import date
from pathlib import Path
from typing import Any

import pytest
import yaml

from tenancy.compliance.applicability import Applicability, applicability
from tenancy.policy.catalogue_load import load_catalogue
from tenancy.policy.report import (
    build_results,
    exit_code,
    failures,
    render_html,
    verify_manifest,
    write_manifest,
)
from tenancy.policy.waivers import Waiver

REPO = Path(__file__).resolve().parents[2]
CATALOGUE = load_catalogue(REPO / "policies" / "catalogue.yaml")
TODAY = date(2026, 6, 1)

HOSTS: dict[str, dict[str, Any]] = {
    "hr-web-1": {
        "tenancy_tenant": "hr",
        "tenancy_profiles": ["baseline"],
        "ansible_host": "10.30.0.10",
    },
    "tourism-web-1": {
        "tenancy_tenant": "tourism",
        "tenancy_profiles": ["mlps-level3"],
        "ansible_host": "10.40.0.10",
        "lynis": {"hardening_index": 71, "version": "3.0.8", "error": None},
    },
}


def waiver(control: str, tenant: str, expires: str, hosts: list[str] | None = None) -> Waiver:
    return Waiver.model_validate(
        {
            "control": control,
            "tenant": tenant,
            "hosts": hosts or [],
            "justification": "Vendor agent needs it until release 5.2; egress still limited.",
            "approved_by": "security-office@example.gov",
            "approved_on": date(2026, 1, 5),
            "expires": date.fromisoformat(expires),
        }
    )


def record(control: str, host: str, item: str, status: str, **extra: Any) -> dict[str, Any]:
    outcome = {"pass": "passed", "fail": "failed"}.get(status, "skipped")
    return {
        "nodeid": f"tests/compliance/x.py::check[ansible://{host}-{control}-{item}]",
        "control": control,
        "host": host,
        "item": item,
        "outcome": outcome,
        "status": status,
        "message": extra.get("message", ""),
        "evidence": extra.get(
            "evidence",
            [{"where": host, "command": "/usr/sbin/sshd -T", "sudo": True, "rc": 0, "stdout": "x"}],
        ),
    }


META = {
    "site": "local",
    "tenant": None,
    "plan_digest": "ab" * 32,
    "tenants_commit": "c0ffee" * 6 + "beef",
    "started": "2026-06-01T10:00:00+00:00",
    "finished": "2026-06-01T10:07:00+00:00",
    "today": TODAY.isoformat(),
    "tools": {"python": "3.11.2", "pytest": "9.2.0"},
}


def results(records: list[dict[str, Any]], waivers: list[Waiver] | None = None) -> dict[str, Any]:
    return build_results(records, CATALOGUE, waivers or [], HOSTS, TODAY, META)


def cell(doc: dict[str, Any], control: str, host: str) -> dict[str, Any]:
    return next(r for r in doc["results"] if r["control"] == control and r["host"] == host)


# -- applicability -----------------------------------------------------------------------


def test_profiles_decide_what_applies() -> None:
    base = applicability(
        CATALOGUE, [], TODAY, "MLPS-SSH-01", host="hr-web-1", tenant="hr", profiles=["baseline"]
    )
    assert base.status == "not-applicable" and not base.required
    assert base.reason == "MLPS-SSH-01 not in profile baseline of hr-web-1"
    mlps = applicability(
        CATALOGUE, [], TODAY, "BASE-SSH-03", host="x-1", tenant="x", profiles=["mlps-level3"]
    )
    assert mlps.status == "required"  # mlps-level3 extends baseline
    with pytest.raises(KeyError):
        applicability(CATALOGUE, [], TODAY, "BASE-SSH-03", host="x", tenant="x", profiles=["nope"])


def test_waivers_valid_until_and_including_their_expiry_then_failing() -> None:
    def verdict(waivers: list[Waiver]) -> Applicability:
        return applicability(
            CATALOGUE,
            waivers,
            TODAY,
            "BASE-SSH-03",
            host="hr-web-1",
            tenant="hr",
            profiles=["baseline"],
        )

    valid = verdict([waiver("BASE-SSH-03", "hr", "2026-06-01")])
    assert valid.status == "waived" and not valid.required
    assert valid.reason.startswith("waived until 2026-06-01: Vendor agent needs it")
    expired = verdict([waiver("BASE-SSH-03", "hr", "2026-05-31")])
    assert expired.status == "expired" and expired.required
    assert expired.reason.startswith("waiver expired on 2026-05-31")
    both = [waiver("BASE-SSH-03", "hr", "2026-05-31"), waiver("BASE-SSH-03", "hr", "2027-01-01")]
    assert verdict(both).status == "waived"
    other_host = [waiver("BASE-SSH-03", "hr", "2027-01-01", hosts=["hr-web-2"])]
    assert verdict(other_host).status == "required"
    other_tenant = [waiver("BASE-SSH-03", "tourism", "2027-01-01")]
    assert verdict(other_tenant).status == "required"


# -- folding records ---------------------------------------------------------------------


def test_matrix_values_per_control_and_host() -> None:
    recs = [
        record(
            "BASE-SSH-03",
            "hr-web-1",
            "permitrootlogin",
            "fail",
            message="sshd permitrootlogin is 'yes', expected 'no'",
        ),
        record("BASE-SSH-02", "hr-web-1", "passwordauthentication", "pass"),
        record("BASE-SSH-02", "hr-web-1", "pubkeyauthentication", "pass"),
        record("BASE-SSH-08", "hr-web-1", "x11forwarding", "waived", evidence=[]),
        record("MLPS-SSH-01", "hr-web-1", "allowgroups", "not-applicable", evidence=[]),
        record("BASE-FW-02", "hr-web-1", "input-policy-drop", "pass"),
        record(
            "BASE-FW-02",
            "hr-web-1",
            "reach-tcp-443-from-tn-intranet",
            "skipped",
            message="stand-in tn-intranet is not up",
        ),
        record("BASE-SSH-03", "tourism-web-1", "permitrootlogin", "pass"),
        record(
            "BASE-FW-03",
            "tourism-web-1",
            "block-tcp-22-from-tn-internet",
            "skipped",
            message="stand-in down",
        ),
        record("BASE-SSH-03", "elsewhere-1", "permitrootlogin", "fail"),  # not an audited host
    ]
    doc = results(recs, [waiver("BASE-SSH-08", "hr", "2027-03-31")])
    assert cell(doc, "BASE-SSH-03", "hr-web-1")["result"] == "fail"
    assert (
        cell(doc, "BASE-SSH-03", "hr-web-1")["reason"]
        == "sshd permitrootlogin is 'yes', expected 'no'"
    )
    assert cell(doc, "BASE-SSH-02", "hr-web-1")["result"] == "pass"
    assert cell(doc, "BASE-SSH-08", "hr-web-1")["result"] == "waived"
    assert cell(doc, "BASE-SSH-08", "hr-web-1")["waiver"]["expires"] == "2027-03-31"
    assert cell(doc, "MLPS-SSH-01", "hr-web-1")["result"] == "not-applicable"
    fw02 = cell(doc, "BASE-FW-02", "hr-web-1")
    # a probe that could not run leaves the control unproven, whatever the rest found
    assert fw02["result"] == "not-tested" and "1 of 2 item(s) not tested" in fw02["reason"]
    assert cell(doc, "BASE-FW-03", "tourism-web-1")["result"] == "not-tested"
    # no record at all: decided from the catalogue, a required control is "not-tested"
    assert cell(doc, "MLPS-ACC-01", "hr-web-1")["result"] == "not-applicable"
    assert cell(doc, "MLPS-ACC-01", "tourism-web-1")["result"] == "not-tested"
    assert len(doc["results"]) == len(CATALOGUE.controls) * 2
    # evidence: one command used by two items is kept once and referenced twice
    ssh02 = cell(doc, "BASE-SSH-02", "hr-web-1")
    assert len(ssh02["evidence"]) == 1 and [i["evidence"] for i in ssh02["items"]] == [[0], [0]]
    assert doc["summary"]["fail"] == 1 and doc["summary"]["waived"] == 1
    failed = {(r["control"], r["host"]) for r in failures(doc)}
    assert ("BASE-SSH-03", "hr-web-1") in failed and ("BASE-FW-03", "tourism-web-1") in failed
    assert exit_code(doc) == 1
    refs = next(c for c in doc["controls"] if c["id"] == "BASE-SSH-03")["references"]
    assert refs == {"cis-debian12": ["5.1.20"], "gb-t-22239-2019": ["8.1.4.2 b)", "8.1.4.2 d)"]}
    json.dumps(doc)  # JSON-ready


def test_exit_code_zero_when_every_required_control_passes() -> None:
    recs = []
    for name, hv in HOSTS.items():
        wanted = {c.id for c in CATALOGUE.controls_for(hv["tenancy_profiles"])}
        for control in CATALOGUE.controls:
            status = "pass" if control.id in wanted else "not-applicable"
            recs.append(record(control.id, name, "item", status))
    doc = results(recs)
    assert exit_code(doc) == 0 and doc["exit_code"] == 0 and not failures(doc)
    baseline = len(CATALOGUE.controls_for(["baseline"]))
    assert doc["summary"]["pass"] == len(CATALOGUE.controls) + baseline
    # an expired waiver is a failure whatever the check found
    recs[0] = record(
        recs[0]["control"], "hr-web-1", "item", "fail", message="waiver expired on ..."
    )
    assert exit_code(results(recs)) == 1


# -- HTML --------------------------------------------------------------------------------


def test_html_report_shows_the_matrix_and_escapes_evidence() -> None:
    evil = [
        {
            "where": "hr-web-1",
            "command": "cat /etc/issue.net",
            "sudo": True,
            "rc": 0,
            "stdout": "<script>alert(1)</script>",
        }
    ]
    recs = [
        record(
            "BASE-SSH-03",
            "hr-web-1",
            "permitrootlogin",
            "fail",
            message="sshd permitrootlogin is 'yes'",
        ),
        record("BASE-SSH-07", "hr-web-1", "issue.net-warns", "pass", evidence=evil),
    ]
    html = render_html(results(recs, [waiver("BASE-SSH-08", "hr", "2027-03-31")]))
    assert html.startswith("<!DOCTYPE html>")
    assert (
        "<script>alert(1)</script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    )
    assert re.search(r'data-control="BASE-SSH-03" data-host="hr-web-1" data-result="fail"', html)
    assert re.search(r'data-control="BASE-SSH-08" data-host="hr-web-1" data-result="waived"', html)
    assert re.search(
        r'data-control="MLPS-SSH-01" data-host="hr-web-1" data-result="not-applicable"', html
    )
    assert 'id="d-BASE_SSH_03-hr_web_1"' in html and "FAILED:" in html
    assert "<b>71</b>" in html  # Lynis index of tourism-web-1
    assert "人事局" not in html  # no display names needed; Unicode is fine either way
    # self-contained: no external stylesheet, script or image
    assert not re.search(r"<(link|script|img)[^>]+(href|src)=", html)


# -- SHA256SUMS --------------------------------------------------------------------------


def test_manifest_detects_changed_missing_and_extra_files(tmp_path: Path) -> None:
    (tmp_path / "results.json").write_text("{}\n")
    (tmp_path / "lynis").mkdir()
    (tmp_path / "lynis" / "hr-web-1.log").write_text("hardening_index=71\n")
    manifest = write_manifest(tmp_path)
    assert manifest.read_text().splitlines()[0].endswith("  lynis/hr-web-1.log")
    assert verify_manifest(tmp_path) == []
    ok = subprocess.run(["sha256sum", "-c", "--quiet", "SHA256SUMS"], cwd=tmp_path, check=False)
    assert ok.returncode == 0, "sha256sum -c must accept the manifest"
    (tmp_path / "results.json").write_text('{"exit_code": 0}\n')
    assert verify_manifest(tmp_path) == ["results.json: changed (sha256 differs)"]
    (tmp_path / "results.json").unlink()
    (tmp_path / "extra.txt").write_text("x")
    assert verify_manifest(tmp_path) == ["results.json: missing", "extra.txt: not in SHA256SUMS"]


# -- the suite's gate, end to end ----------------------------------------------------------


def _suite(
    tmp_path: Path, waivers: list[dict[str, Any]], profiles: list[str]
) -> list[dict[str, Any]]:
    """Run the real suite's BASE-SSH-03 and MLPS-SSH-01 checks against this machine."""
    inventory = {
        "all": {
            "hosts": {
                "hr-web-1": {
                    "ansible_connection": "local",
                    "tenancy_tenant": "hr",
                    "tenancy_profiles": profiles,
                }
            }
        }
    }
    (tmp_path / "inventory.yml").write_text(yaml.safe_dump(inventory))
    wdir = tmp_path / "waivers"
    wdir.mkdir(exist_ok=True)
    (wdir / "w.yaml").write_text(
        yaml.safe_dump({"apiVersion": "tenancy/v1", "kind": "WaiverList", "waivers": waivers})
    )
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            str(REPO / "tests" / "compliance"),
            "--hosts=ansible://all",
            f"--ansible-inventory={tmp_path / 'inventory.yml'}",
            f"--tenancy-waivers={wdir}",
            "--tenancy-today=2026-06-01",
            f"--tenancy-records={tmp_path / 'records.json'}",
            "-p",
            "no:cacheprovider",
            "-k",
            "BASE-SSH-03 or MLPS-SSH-01",
            "-q",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert out.returncode in (0, 1), out.stdout + out.stderr
    records: list[dict[str, Any]] = json.loads((tmp_path / "records.json").read_text())["records"]
    return records


def test_suite_reports_waived_expired_and_not_in_profile(tmp_path: Path) -> None:
    entry = {
        "control": "BASE-SSH-03",
        "tenant": "hr",
        "justification": "Break-glass root access during the data centre migration.",
        "approved_by": "security-office@example.gov",
        "approved_on": date(2026, 3, 1),
    }
    valid = _suite(tmp_path, [{**entry, "expires": date(2026, 6, 1)}], ["baseline"])
    by_control = {r["control"]: r for r in valid}
    assert by_control["BASE-SSH-03"]["status"] == "waived"
    assert by_control["BASE-SSH-03"]["message"] == (
        "waived until 2026-06-01: Break-glass root access during the data centre migration."
    )
    assert by_control["MLPS-SSH-01"]["status"] == "not-applicable"
    assert by_control["MLPS-SSH-01"]["message"] == "MLPS-SSH-01 not in profile baseline of hr-web-1"

    expired = _suite(tmp_path, [{**entry, "expires": date(2026, 5, 31)}], ["baseline"])
    rec = next(r for r in expired if r["control"] == "BASE-SSH-03")
    assert rec["status"] == "fail" and rec["decision"] == "expired"
    assert rec["waiver"]["expires"] == "2026-05-31"
    assert rec["evidence"], "the check still runs and records its commands"
    assert rec["evidence"][0]["command"] == "/usr/sbin/sshd -T"


# -- host selection ----------------------------------------------------------------------


def _fake_suite(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """Replace the pytest subprocess of an audit; return the argv list it would run."""
    from tenancy.policy import audit

    calls: list[list[str]] = []

    def fake(argv: list[str], cwd: Path, log: Path, stream: Any) -> int:
        calls.append(argv)
        log.write_text("not run\n")
        return 0

    monkeypatch.setattr(audit, "_run_logged", fake)
    monkeypatch.setattr(audit, "_close_masters", lambda ssh, hosts: None)
    return calls


def test_audit_of_one_host_selects_only_that_host(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from tenancy.policy.audit import AuditOptions, run_audit

    calls = _fake_suite(monkeypatch)
    options = AuditOptions(
        root=REPO, site="local", hosts=("tourism-web-1",), out=tmp_path / "b", lynis=False
    )
    run = run_audit(options)
    assert [a for a in calls[0] if a.startswith("--hosts=")] == ["--hosts=ansible://tourism-web-1"]
    assert {r["host"] for r in run.results["results"]} == {"tourism-web-1"}
    assert run.results["host_filter"] == ["tourism-web-1"]
    assert "host(s) tourism-web-1" in (tmp_path / "b" / "report.html").read_text()


def test_audit_of_an_unknown_host_names_the_known_ones(tmp_path: Path) -> None:
    from tenancy.policy.audit import AuditError, AuditOptions, run_audit

    options = AuditOptions(
        root=REPO, site="local", tenants=("hr",), hosts=("tourism-web-1",), out=tmp_path / "b"
    )
    with pytest.raises(AuditError) as err:
        run_audit(options)
    assert str(err.value) == ("host(s) tourism-web-1 not among the machines selected (hr-portal-1)")
    assert not (tmp_path / "b").exists(), "nothing written for an invalid selection"


def test_audit_of_several_tenants_selects_their_hosts(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from tenancy.policy.audit import AuditOptions, run_audit

    calls = _fake_suite(monkeypatch)
    options = AuditOptions(
        root=REPO, site="local", tenants=("tourism", "hr"), out=tmp_path / "b", lynis=False
    )
    run = run_audit(options)
    assert [a for a in calls[0] if a.startswith("--hosts=")] == [
        "--hosts=ansible://tourism,ansible://hr"
    ]
    assert {r["host"] for r in run.results["results"]} == {"tourism-web-1", "hr-portal-1"}
    assert run.results["tenant"] == "tourism, hr"


def test_audit_of_an_unknown_tenant_names_the_planned_ones(tmp_path: Path) -> None:
    from tenancy.policy.audit import AuditError, AuditOptions, run_audit

    options = AuditOptions(root=REPO, site="local", tenants=("hr", "payroll"), out=tmp_path / "b")
    with pytest.raises(AuditError) as err:
        run_audit(options)
    assert str(err.value) == "tenant 'payroll' is not planned on local (hr, tourism)"
