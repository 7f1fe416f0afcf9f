"""``--tenancy-records``: one JSON record per test, the auditor's raw results.

Each record says which control and host a test proved, on which item, with
which outcome in the auditor's words (:func:`status`) and the commands it ran
(its evidence). ``tenancy audit`` folds them into results.json
(:mod:`tenancy.policy.report`); the schema below is that contract.
"""

from __future__ import annotations

import json
from collections.abc import Generator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tenancy.compliance.applicability import Applicability, HostInfo
from tenancy.compliance.host import host_name, host_of
from tenancy.compliance.items import control_of, item_of

__all__ = ["DECISION", "EVIDENCE", "RECORDS_SCHEMA", "RecordWriter", "status"]

RECORDS_SCHEMA = "tenancy/compliance-records/v1"

#: Set by the control gate: the catalogue's decision for the test's control and host.
DECISION = pytest.StashKey[tuple[Applicability, HostInfo]]()
#: Set by the control gate: the commands the test ran.
EVIDENCE = pytest.StashKey[list[dict[str, Any]]]()
_PHASES = pytest.StashKey[dict[str, Any]]()


def _message(report: pytest.TestReport, call: pytest.CallInfo[Any]) -> str:
    if report.skipped and isinstance(report.longrepr, tuple):
        return str(report.longrepr[2]).removeprefix("Skipped: ")
    if call.excinfo is not None:
        text = call.excinfo.exconly()
        for prefix in ("AssertionError: ", "Failed: "):
            text = text.removeprefix(prefix)
        # drop pytest's assertion introspection ("assert ... == ...") after our message
        text = text.split("\nassert ", 1)[0]
        return text[:4000]
    return ""


def status(outcome: str, decision: Applicability | None) -> str:
    """The auditor's word for a test outcome: pass, fail, waived, not-applicable, not-tested.

    A skip the catalogue did not decide (a probe that could not run, a stand-in
    that is down) is ``not-tested``: nothing was proven either way.
    """
    if outcome in ("failed", "error"):
        return "fail"
    if outcome == "passed":
        return "pass"
    if decision is not None and decision.status in ("not-applicable", "waived"):
        return decision.status
    return "not-tested"


class RecordWriter:
    """Writes ``--tenancy-records``: one JSON object per test, in a ``records`` list.

    Under pytest-xdist each worker sends its records to the controller in
    ``workeroutput``; the controller writes the file.
    """

    def __init__(self, config: pytest.Config, path: Path) -> None:
        self.config = config
        self.path = path
        self.records: list[dict[str, Any]] = []
        self.started = datetime.now(UTC).isoformat(timespec="seconds")

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(
        self, item: pytest.Item, call: pytest.CallInfo[Any]
    ) -> Generator[None, pytest.TestReport, pytest.TestReport]:
        report = yield
        phases = item.stash.setdefault(_PHASES, {})
        if report.failed:
            outcome = "failed" if call.when == "call" else "error"
        else:
            outcome = report.outcome
        if (outcome != "passed" or call.when == "call") and phases.get("outcome") in (
            None,
            "passed",
        ):
            phases["outcome"] = outcome
            if outcome != "passed":
                phases["message"] = _message(report, call)
        phases["duration"] = phases.get("duration", 0.0) + report.duration
        if call.when == "teardown":
            self.records.append(self._record(item, phases))
        return report

    def _record(self, test: pytest.Item, phases: dict[str, Any]) -> dict[str, Any]:
        decision, info = test.stash.get(DECISION, (None, None))
        param = item_of(test)
        host = host_of(test)
        outcome = phases.get("outcome", "passed")
        name = test.nodeid.partition("::")[2]
        return {
            "nodeid": test.nodeid,
            # as the catalogue names it: relative to the suite, wherever pytest ran it from
            "check": f"{test.path.name}::{name.split('[')[0]}",
            "control": control_of(test),
            "host": info.name if info else (host_name(host) if host is not None else None),
            "tenant": info.tenant if info else None,
            "item": param.name if param else None,
            "outcome": outcome,
            "status": status(outcome, decision),
            "message": phases.get("message", ""),
            "decision": decision.status if decision else None,
            "waiver": decision.waiver if decision else None,
            "duration": round(phases.get("duration", 0.0), 3),
            "evidence": test.stash.get(EVIDENCE, []),
        }

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        workeroutput = getattr(self.config, "workeroutput", None)
        if workeroutput is not None:  # an xdist worker: hand the records to the controller
            workeroutput["tenancy_records"] = self.records
            return
        doc = {
            "schema": RECORDS_SCHEMA,
            "started": self.started,
            "finished": datetime.now(UTC).isoformat(timespec="seconds"),
            "records": sorted(self.records, key=lambda r: r["nodeid"]),
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(json.dumps(doc, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
        tmp.replace(self.path)

    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodedown(self, node: Any, error: Any) -> None:
        """xdist controller: collect a finished worker's records."""
        output = getattr(node, "workeroutput", None) or {}
        self.records.extend(output.get("tenancy_records", []))
