"""The compliance suite's pytest plugin: catalogue, profiles, waivers, evidence, records.

Run it like any testinfra suite (see README.md in this folder)::

    pytest tests/compliance --hosts=ansible://all --ansible-inventory=inventory.yml -n 2

What this file adds to testinfra:

- Checks are the functions ``policies/catalogue.yaml`` names (``check:
  tests/compliance/test_ssh.py::sshd_permit_root_login``); they are collected
  by those names, and each carries ``@pytest.mark.control("<ID>")``.
- Before a check runs on a host, the host's profiles (inventory variable
  ``tenancy_profiles``) and the waivers (``policies/waivers/*.yaml``) decide:
  a control outside the profiles is skipped with "not in profile", one with a
  valid waiver is skipped with "waived until <date>: <justification>", and
  one whose waiver has expired runs and fails whatever it finds.
- Every command a check runs is recorded with its output; with
  ``--tenancy-records=FILE`` one JSON record per test (control, host, item,
  outcome, evidence) is written, also under pytest-xdist.
- Items that exist on one host only (its declared flows) are deselected for
  the other hosts, and with ``-n`` the tests of one host stay on one worker.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
from compliance_support import (
    PROJECT_ROOT,
    HostInfo,
    Item,
    decide,
    evidence_scope,
    host_info,
    host_name,
    install_recorder,
)

from tenancy.policy.catalogue import CatalogueError, load_catalogue, load_waivers
from tenancy.policy.report import Applicability

DEFAULT_STANDINS = "tn-intranet=10.255.1.2,tn-extranet=10.255.2.2,tn-internet=10.255.3.2"

_POLICY = pytest.StashKey[dict[str, Any]]()
_DECISION = pytest.StashKey[tuple[Applicability, HostInfo]]()
_EVIDENCE = pytest.StashKey[list[dict[str, Any]]]()
_PHASES = pytest.StashKey[dict[str, Any]]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("tenancy", "Tenancy compliance suite")
    group.addoption(
        "--tenancy-catalogue",
        default=str(PROJECT_ROOT / "policies" / "catalogue.yaml"),
        help="policy catalogue (default: policies/catalogue.yaml of this project)",
    )
    group.addoption(
        "--tenancy-waivers",
        default=str(PROJECT_ROOT / "policies" / "waivers"),
        help="waiver file or folder of *.yaml (default: policies/waivers)",
    )
    group.addoption(
        "--tenancy-today",
        default=None,
        metavar="YYYY-MM-DD",
        help="judge waiver expiry on this date (default: today, UTC)",
    )
    group.addoption(
        "--tenancy-profiles",
        default="baseline",
        help="comma-separated profiles of hosts whose inventory names none (default: baseline)",
    )
    group.addoption(
        "--tenancy-records",
        default=None,
        metavar="FILE",
        help="write one JSON record per test (control, host, outcome, evidence) to FILE",
    )
    group.addoption(
        "--tenancy-standins",
        default=DEFAULT_STANDINS,
        help="probe sources in network namespaces, NAME=ADDRESS,...; 'none' for none "
        f"(default: {DEFAULT_STANDINS})",
    )
    group.addoption(
        "--tenancy-no-probes",
        action="store_true",
        help="leave out the reachability probes of the firewall checks",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "control(id): the policies/catalogue.yaml control this check proves"
    )
    config.addinivalue_line(
        "markers",
        "items(provider): parametrize 'item' with provider(config), for items read from the "
        "inventory at collection (one host's declared flows)",
    )
    try:
        catalogue = load_catalogue(config.getoption("tenancy_catalogue"))
        waiver_path = Path(config.getoption("tenancy_waivers"))
        waivers = load_waivers(waiver_path, catalogue=catalogue) if waiver_path.exists() else []
    except CatalogueError as exc:
        raise pytest.UsageError(f"invalid policy files:\n{exc}") from None
    today_text = config.getoption("tenancy_today")
    try:
        today = date.fromisoformat(today_text) if today_text else datetime.now(UTC).date()
    except ValueError:
        raise pytest.UsageError(f"--tenancy-today {today_text!r}: expected YYYY-MM-DD") from None
    config.stash[_POLICY] = {"catalogue": catalogue, "waivers": waivers, "today": today}
    # The checks carry the catalogue's names (sshd_permit_root_login), not test_*:
    # collect exactly those functions, in addition to the usual test_* ones.
    for control in catalogue.controls:
        config.addinivalue_line("python_functions", control.check.rpartition("::")[2])
    records = config.getoption("tenancy_records")
    if records:
        config.pluginmanager.register(RecordWriter(config, Path(records)), "tenancy-records")


# -- collection ------------------------------------------------------------------------


@pytest.hookimpl(trylast=True)
def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """``@pytest.mark.items(provider)``: items computed from the inventory.

    trylast: after testinfra's host parametrization, so test IDs read
    ``[<host>-<control>-<item>]`` like those of ``@parametrize``.
    """
    marker = metafunc.definition.get_closest_marker("items")
    if marker is None or "item" not in metafunc.fixturenames:
        return
    values = marker.args[0](metafunc.config)
    metafunc.parametrize("item", values, ids=[str(v) for v in values])


def _item_param(item: pytest.Item) -> Item | None:
    callspec = getattr(item, "callspec", None)
    value = callspec.params.get("item") if callspec is not None else None
    return value if isinstance(value, Item) else None


def _host_param(item: pytest.Item) -> Any:
    callspec = getattr(item, "callspec", None)
    return callspec.params.get("_testinfra_host") if callspec is not None else None


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Drop per-host items collected for another host."""
    keep, drop = [], []
    for item in items:
        param, host = _item_param(item), _host_param(item)
        if param is not None and param.host is not None and host is not None:
            (keep if host_name(host) == param.host else drop).append(item)
        else:
            keep.append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


#: ``...[ansible://host-name-BASE-SSH-03-item]``: the host part of a compliance test ID.
_HOST_IN_ID = re.compile(r"\[(?P<host>[a-z][a-z0-9+.-]*://.*?)-[A-Z][A-Z0-9]*-[A-Z]+-\d{2}-")


def host_scope(nodeid: str) -> str:
    """The xdist work unit of a test: its host (all checks of one host on one worker)."""
    match = _HOST_IN_ID.search(nodeid)
    return match.group("host") if match else nodeid.rsplit("::", 1)[0]


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """With ``-n`` (plain ``--dist load``), spread hosts over the workers, not single tests."""
    if config.getoption("dist", None) != "load":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class HostScheduling(LoadScopeScheduling):  # type: ignore[misc]
        def _split_scope(self, nodeid: str) -> str:
            return host_scope(nodeid)

    return HostScheduling(config, log)


# -- the gate: profile, waiver, evidence -----------------------------------------------


def _control_of(item: pytest.Item) -> str | None:
    marker = item.get_closest_marker("control")
    return str(marker.args[0]) if marker and marker.args else None


@pytest.fixture(autouse=True)
def _control_gate(request: pytest.FixtureRequest) -> Iterator[None]:
    """Skip controls outside the host's profiles or under a valid waiver; record evidence."""
    node = request.node
    control = _control_of(node)
    if control is None or "host" not in request.fixturenames:
        yield
        return
    install_recorder(request.getfixturevalue("host"))
    info: HostInfo = request.getfixturevalue("info")
    try:
        decision = decide(request.config.stash[_POLICY], control, info)
    except KeyError as exc:
        pytest.fail(f"{info.name}: {exc.args[0]} (inventory variable tenancy_profiles)")
    node.stash[_DECISION] = (decision, info)
    if decision.status in ("not-applicable", "waived"):
        pytest.skip(decision.reason)
    with evidence_scope() as collected:
        node.stash[_EVIDENCE] = collected
        yield


@pytest.hookimpl(wrapper=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> Iterator[None]:
    """An expired waiver fails its control even when the check itself passes."""
    found = pyfuncitem.stash.get(_DECISION, None)
    result = yield
    if found is not None and found[0].status == "expired":
        decision = found[0]
        pytest.fail(
            f"{decision.reason} (the check itself passed: renew the waiver or remove it "
            "from policies/waivers)",
            pytrace=False,
        )
    return result


# -- records ---------------------------------------------------------------------------


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


def _status(outcome: str, decision: Applicability | None) -> str:
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
    ) -> Iterator[None]:
        report: pytest.TestReport = yield
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

    def _record(self, item: pytest.Item, phases: dict[str, Any]) -> dict[str, Any]:
        decision, info = item.stash.get(_DECISION, (None, None))
        param = _item_param(item)
        host = _host_param(item)
        outcome = phases.get("outcome", "passed")
        path, _, name = item.nodeid.partition("::")
        return {
            "nodeid": item.nodeid,
            "check": f"{path}::{name.split('[')[0]}",
            "control": _control_of(item),
            "host": info.name if info else (host_name(host) if host is not None else None),
            "tenant": info.tenant if info else None,
            "item": param.name if param else None,
            "outcome": outcome,
            "status": _status(outcome, decision),
            "message": phases.get("message", ""),
            "decision": decision.status if decision else None,
            "waiver": decision.waiver if decision else None,
            "duration": round(phases.get("duration", 0.0), 3),
            "evidence": item.stash.get(_EVIDENCE, []),
        }

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        workeroutput = getattr(self.config, "workeroutput", None)
        if workeroutput is not None:  # an xdist worker: hand the records to the controller
            workeroutput["tenancy_records"] = self.records
            return
        doc = {
            "schema": "tenancy/compliance-records/v1",
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


@pytest.fixture(scope="session")
def policy(pytestconfig: pytest.Config) -> dict[str, Any]:
    """The catalogue, the waivers and the date they are judged on."""
    return pytestconfig.stash[_POLICY]


@pytest.fixture
def info(host: Any, pytestconfig: pytest.Config) -> HostInfo:
    """What the inventory says about the host under test."""
    defaults = [p for p in pytestconfig.getoption("tenancy_profiles").split(",") if p]
    return host_info(host, defaults)
