"""The audit report in a real browser: headless Chromium renders it, the DOM shows the failures.

A synthetic results set (two tenants, three hosts, some controls failed, one
waived, the mlps-level3 ones not applicable to baseline hosts) is rendered
with :func:`tenancy.policy.report.render_html`; Chromium loads the file
(``--dump-dom``, scripts run) and takes a screenshot, kept under
``$TENANCY_STATE/reports/audit-report.png`` for a human to look at.
"""

from __future__ import annotations

import os
import re
import shutil
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from tests.support.browser import dump_dom, matrix_cells, screenshot

from tenancy.policy.catalogue_load import load_catalogue
from tenancy.policy.report import build_results, render_html
from tenancy.policy.waivers import Waiver

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
HOSTS: dict[str, dict[str, Any]] = {
    "hr-portal-1": {
        "tenancy_tenant": "hr",
        "tenancy_profiles": ["baseline"],
        "ansible_host": "10.30.0.10",
    },
    "hr-portal-2": {
        "tenancy_tenant": "hr",
        "tenancy_profiles": ["baseline"],
        "ansible_host": "10.30.0.11",
    },
    "finance-db-1": {
        "tenancy_tenant": "finance",
        "tenancy_profiles": ["mlps-level3"],
        "ansible_host": "10.30.2.10",
    },
}
BROKEN = {
    ("BASE-SSH-03", "hr-portal-1"): "sshd permitrootlogin is 'yes', expected 'no'",
    ("BASE-AUD-01", "hr-portal-2"): "auditd.service ActiveState is 'inactive', expected 'active'",
    (
        "BASE-FW-02",
        "finance-db-1",
    ): "input accepts what the plan does not declare: ['tcp.dport == 8080 accept']",
}


def _results() -> dict[str, Any]:
    catalogue = load_catalogue(REPO / "policies" / "catalogue.yaml")
    waiver = Waiver.model_validate(
        {
            "control": "BASE-SSH-08",
            "tenant": "hr",
            "hosts": ["hr-portal-2"],
            "justification": "Vendor deployment tool needs a local port forward until 5.2.",
            "approved_by": "security-office@example.gov",
            "approved_on": date(2026, 10, 15),
            "expires": date(2027, 3, 31),
        }
    )
    records = []
    for host, hv in HOSTS.items():
        wanted = {c.id for c in catalogue.controls_for(hv["tenancy_profiles"])}
        for control in catalogue.controls:
            if control.id not in wanted:
                status, message = "not-applicable", f"{control.id} not in profile"
            elif control.id == "BASE-SSH-08" and host == "hr-portal-2":
                status, message = "waived", "waived until 2027-03-31: vendor tool"
            elif (control.id, host) in BROKEN:
                status, message = "fail", BROKEN[(control.id, host)]
            else:
                status, message = "pass", ""
            records.append(
                {
                    "nodeid": f"tests/compliance/x.py::c[ansible://{host}-{control.id}-item]",
                    "control": control.id,
                    "host": host,
                    "item": "item",
                    "status": status,
                    "message": message,
                    "evidence": [
                        {
                            "where": host,
                            "command": "/usr/sbin/sshd -T",
                            "sudo": True,
                            "rc": 0,
                            "stdout": "permitrootlogin yes\n<b>not bold</b>\n",
                            "stderr": "",
                        }
                    ],
                }
            )
    hosts = {
        h: {**v, "lynis": {"hardening_index": 70 + i, "version": "3.0.8", "error": None}}
        for i, (h, v) in enumerate(HOSTS.items())
    }
    meta = {
        "site": "local",
        "tenant": None,
        "plan_digest": "4e83cbb1b86f567d3da1e5eb0f7531ee37584c6c1414a8f886efdbfcf824ef7f",
        "tenants_commit": "628c3e6f" * 5,
        "started": "2026-06-01T10:00:00+00:00",
        "finished": "2026-06-01T10:09:00+00:00",
        "today": "2026-06-01",
        "tools": {"python": "3.11.2", "pytest": "9.2.0", "pytest-testinfra": "10.2.2"},
    }
    return build_results(records, catalogue, [waiver], hosts, date(2026, 6, 1), meta)


def test_report_renders_in_chromium_with_the_broken_controls_failed(tmp_path: Path) -> None:
    page = tmp_path / "report.html"
    page.write_text(render_html(_results()), encoding="utf-8")
    profile = tmp_path / "profile"
    dom = dump_dom(page, profile, "d-BASE_SSH_03-hr_portal_1")
    cells = matrix_cells(dom)
    controls = load_catalogue(REPO / "policies" / "catalogue.yaml").controls
    assert len(cells) == len(controls) * 3, f"matrix has {len(cells)} cells"
    for (control, host), message in BROKEN.items():
        result, css, text = cells[(control, host)]
        assert (result, text) == ("fail", "FAIL"), f"{control} on {host}: {cells[(control, host)]}"
        assert "fail" in css.split()
        assert message.replace("'", "&#39;") in dom or message in dom
    failed = sorted(k for k, v in cells.items() if v[0] == "fail")
    assert failed == sorted(BROKEN), f"only the broken controls fail: {failed}"
    assert cells[("BASE-SSH-08", "hr-portal-2")][0] == "waived"
    assert cells[("MLPS-ACC-01", "hr-portal-1")][0] == "not-applicable"
    assert cells[("MLPS-ACC-01", "finance-db-1")][0] == "pass"
    assert "FAILED: 3 required control result(s) failed" in dom
    # the script opened the drill-down the URL points at; evidence is text, not markup
    opened = re.search(r'<details id="d-BASE_SSH_03-hr_portal_1"[^>]*>', dom)
    assert opened and " open" in opened.group(0)
    assert "&lt;b&gt;not bold&lt;/b&gt;" in dom

    shot = tmp_path / "report.png"
    screenshot(page, profile, shot)
    keep = Path(os.environ.get("TENANCY_STATE") or REPO / ".tenancy") / "reports"
    keep.mkdir(parents=True, exist_ok=True)
    shutil.copy2(shot, keep / "audit-report.png")
    shutil.copy2(page, keep / "audit-report.html")
