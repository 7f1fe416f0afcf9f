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
import subprocess
from datetime import date
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from tenancy.policy.catalogue import Waiver, load_catalogue
from tenancy.policy.report import build_results, render_html

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]

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


def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    pytest.fail(
        "integration prerequisite missing: chromium "
        "(apt-get install -y --no-install-recommends chromium)",
        pytrace=False,
    )


def _results() -> dict[str, Any]:
    catalogue = load_catalogue(REPO / "policies" / "catalogue.yaml")
    waiver = Waiver.model_validate(
        {
            "control": "BASE-SSH-08",
            "tenant": "hr",
            "hosts": ["hr-portal-2"],
            "justification": "Vendor deployment tool needs a local port forward until 5.2.",
            "approved_by": "security-office@example.gov",
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


class _Cells(HTMLParser):
    """The matrix cells of a DOM: (control, host) -> (result attribute, text)."""

    def __init__(self) -> None:
        super().__init__()
        self.cells: dict[tuple[str, str], list[str]] = {}
        self._current: tuple[str, str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "td" and a.get("data-control") and a.get("data-host"):
            key = (str(a["data-control"]), str(a["data-host"]))
            self.cells[key] = [str(a.get("data-result")), str(a.get("class")), ""]
            self._current = key

    def handle_endtag(self, tag: str) -> None:
        if tag == "td":
            self._current = None

    def handle_data(self, data: str) -> None:
        if self._current is not None:
            self.cells[self._current][2] += data.strip()


def test_report_renders_in_chromium_with_the_broken_controls_failed(tmp_path: Path) -> None:
    chromium = _chromium()
    page = tmp_path / "report.html"
    page.write_text(render_html(_results()), encoding="utf-8")
    profile = tmp_path / "profile"
    url = f"{page.as_uri()}#d-BASE_SSH_03-hr_portal_1"
    dom = subprocess.run(
        [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--dump-dom", url],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert dom.returncode == 0, dom.stderr[-2000:]
    parser = _Cells()
    parser.feed(dom.stdout)
    cells = parser.cells
    assert len(cells) == 45 * 3, f"matrix has {len(cells)} cells"
    for (control, host), message in BROKEN.items():
        result, css, text = cells[(control, host)]
        assert (result, text) == ("fail", "FAIL"), f"{control} on {host}: {cells[(control, host)]}"
        assert "fail" in css.split()
        assert message.replace("'", "&#39;") in dom.stdout or message in dom.stdout
    failed = sorted(k for k, v in cells.items() if v[0] == "fail")
    assert failed == sorted(BROKEN), f"only the broken controls fail: {failed}"
    assert cells[("BASE-SSH-08", "hr-portal-2")][0] == "waived"
    assert cells[("MLPS-ACC-01", "hr-portal-1")][0] == "not-applicable"
    assert cells[("MLPS-ACC-01", "finance-db-1")][0] == "pass"
    assert "FAILED: 3 required control result(s) failed" in dom.stdout
    # the script opened the drill-down the URL points at; evidence is text, not markup
    opened = re.search(r'<details id="d-BASE_SSH_03-hr_portal_1"[^>]*>', dom.stdout)
    assert opened and " open" in opened.group(0)
    assert "&lt;b&gt;not bold&lt;/b&gt;" in dom.stdout

    shot = tmp_path / "report.png"
    done = subprocess.run(
        [
            chromium,
            *CHROMIUM_FLAGS,
            f"--user-data-dir={profile}",
            "--hide-scrollbars",
            "--window-size=1400,1800",
            f"--screenshot={shot}",
            page.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0 and shot.is_file(), done.stderr[-2000:]
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000
    keep = Path(os.environ.get("TENANCY_STATE") or REPO / ".tenancy") / "reports"
    keep.mkdir(parents=True, exist_ok=True)
    shutil.copy2(shot, keep / "audit-report.png")
    shutil.copy2(page, keep / "audit-report.html")
