"""Evidence never claims what did not happen.

- a reachability probe that could not run (SSH to its source failed, ``nc``
  missing there, a listener that never started, a protocol it cannot test) is
  "not tested", never "blocked";
- a control with items not tested is not a pass: it is ``not-tested``, fails
  the audit and reads so in the report and in the summary ``tenancy audit`` prints;
- a host missing from Ansible's play recap is failed, never ok, and an
  inventory that does not parse stops the run;
- time synchronisation passes only with a usable chrony source;
- an audit of reduced scope says so in its banner and in results.json.

No host is contacted: the compliance helpers run against fake testinfra hosts
whose commands answer from a table.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import sys
from collections.abc import Callable, Iterator
from datetime import date
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import ansible
import pytest
import yaml
from tests.support.project import REPO

from tenancy.compliance import facts
from tenancy.compliance.applicability import Applicability, HostInfo
from tenancy.compliance.chrony import chrony_sync_problem, parse_chrony_sources
from tenancy.compliance.facts import Output
from tenancy.compliance.items import Item
from tenancy.compliance.probe_runner import ProbeRunner
from tenancy.compliance.probes import Endpoint, Probe
from tenancy.compliance.records import status
from tenancy.policy.ansible_env import ansible_settings
from tenancy.policy.ansible_run import run_policy
from tenancy.policy.audit import AuditOptions, AuditRun, run_audit, summary_lines
from tenancy.policy.catalogue_load import load_catalogue
from tenancy.policy.digest import PolicyFiles
from tenancy.policy.report import build_results, exit_code, failures, render_html
from tenancy.policy.results import HostResult, RunResult, parse_events
from tenancy.policy.run_request import RunRequest, new_run_id

#: The checks, as the installed package carries them (tests/compliance in a checkout).
SUITE = "tenancy._resources.compliance"

CATALOGUE = load_catalogue(REPO / "policies" / "catalogue.yaml")
TODAY = date(2026, 6, 1)

# -- fake testinfra hosts ------------------------------------------------------------------

Answer = tuple[int, str, str]


class FakeHost:
    """A testinfra host (ansible backend) whose commands answer from ``answer(command)``."""

    def __init__(self, name: str, answer: Callable[[str], Answer]) -> None:
        self.backend = SimpleNamespace(
            NAME="ansible", host=name, sudo=False, quote=lambda c, *a: " ".join([c, *a])
        )
        self.answer = answer
        self.commands: list[str] = []
        # an attribute, as on testinfra's Host: the evidence recorder wraps it
        self.run: Callable[..., Any] = self._run

    def _run(self, command: str, *args: str, **kwargs: Any) -> Any:
        self.commands.append(command)
        rc, out, err = self.answer(command)
        return SimpleNamespace(rc=rc, stdout=out, stderr=err)

    @contextlib.contextmanager
    def sudo(self, user: str | None = None) -> Iterator[None]:
        yield

    def __getattr__(self, name: str) -> Any:
        raise AttributeError(f"FakeHost has no testinfra module {name!r}")


SSH_DOWN: Answer = (255, "", "ssh: connect to host 10.40.0.10 port 22: Connection timed out")


def target(busy: bool = True, listener: Answer | None = None) -> FakeHost:
    """The host under test: sshd listens on 22 (``busy``); a listener starts unless told."""

    def answer(command: str) -> Answer:
        if command.startswith("ss "):
            return (0, "LISTEN 0 128 0.0.0.0:22 0.0.0.0:*\n" if busy else "", "")
        if "nohup" in command:
            return listener or (0, "pid=4242\n", "")
        return (0, "", "")  # collecting the listener's output: nothing arrived

    return FakeHost("hr-web-1", answer)


def source(answer: Answer) -> FakeHost:
    return FakeHost("tourism-web-1", lambda command: answer)


HR = Endpoint("hr-web-1", "10.30.0.10", "host")
TOURISM = Endpoint("tourism-web-1", "10.40.0.10", "host")
INTERNET = Endpoint("tn-internet", "10.255.3.2", "netns")


def blocked(proto: str = "tcp", port: int = 22, src: Endpoint = TOURISM) -> Probe:
    return Probe(src, HR, proto, port, False, "SSH only from the operations networks")


def connect(probe: Probe, tgt: FakeHost, src: FakeHost | None = None) -> str:
    hosts = {"tourism-web-1": src} if src is not None else {}
    return ProbeRunner(tgt, lambda name: hosts[name]).connect(probe)


@pytest.fixture(autouse=True)
def _fresh_facts() -> Iterator[None]:
    """The suite caches facts per host name; every test starts without them."""
    facts._facts.clear()
    yield
    facts._facts.clear()


@pytest.fixture(scope="module")
def suite(pytestconfig: pytest.Config) -> dict[str, ModuleType]:
    """test_firewall.py and test_time.py, imported (their markers registered as the plugin does)."""
    pytestconfig.addinivalue_line("markers", "control(id): catalogue control of a check")
    pytestconfig.addinivalue_line("markers", "items(provider): items from the inventory")
    return {
        "firewall": importlib.import_module(f"{SUITE}.test_firewall"),
        "time": importlib.import_module(f"{SUITE}.test_time"),
    }


# -- 1. probes that did not run are not tested ----------------------------------------------


@pytest.mark.parametrize(
    ("probe", "tgt", "src"),
    [
        pytest.param(blocked(), target(), source(SSH_DOWN), id="ssh-to-the-source-fails"),
        pytest.param(
            blocked(), target(), source((0, "sh: 1: nc: not found\nrc=127\n", "")), id="no-nc"
        ),
        pytest.param(
            blocked(), target(), source((0, "nc: invalid option -- 'z'\nrc=1\n", "")), id="odd-nc"
        ),
        pytest.param(blocked("udp", 514), target(busy=False), source(SSH_DOWN), id="udp-not-sent"),
        pytest.param(
            blocked("tcp", 8080),
            target(busy=False, listener=SSH_DOWN),
            source((0, "nc: connect to 10.30.0.10 port 8080 (tcp) timed out\nrc=1\n", "")),
            id="listener-never-started",
        ),
        pytest.param(
            blocked("sctp", 9000),
            target(busy=False),
            source((0, "nc: connect to 10.30.0.10 port 9000 (tcp) timed out\nrc=1\n", "")),
            id="protocol-it-cannot-test",
        ),
    ],
)
def test_a_probe_that_did_not_run_is_untestable(probe: Probe, tgt: FakeHost, src: FakeHost) -> None:
    got = connect(probe, tgt, src)
    assert got.startswith("untestable"), f"{probe}: {got!r} would read as blocked"


def test_a_probe_from_a_stand_in_that_did_not_run_is_untestable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    failed = Output(1, "", 'Cannot open network namespace "tn-internet": No such file')
    monkeypatch.setattr(ProbeRunner, "_local", staticmethod(lambda *a, **k: failed))
    got = connect(blocked(src=INTERNET), target())
    assert got.startswith("untestable") and "No such file" in got


@pytest.mark.parametrize(
    ("output", "want"),
    [
        ("Connection to 10.30.0.10 443 port [tcp/https] succeeded!\nrc=0\n", "open"),
        ("nc: connect to 10.30.0.10 port 22 (tcp) failed: Connection refused\nrc=1\n", "refused"),
        (
            "nc: connect to 10.30.0.10 port 22 (tcp) timed out: Operation now in progress\nrc=1\n",
            "timeout",
        ),
        ("nc: connect to 10.30.0.10 port 22 (tcp) failed: No route to host\nrc=1\n", "unreachable"),
    ],
)
def test_a_probe_that_ran_reports_what_the_network_did(output: str, want: str) -> None:
    assert connect(blocked(), target(), source((0, output, ""))) == want


def test_an_untestable_probe_is_recorded_not_tested(
    suite: dict[str, ModuleType], monkeypatch: pytest.MonkeyPatch
) -> None:
    firewall = suite["firewall"]
    src = source(SSH_DOWN)
    monkeypatch.setattr(firewall.testinfra, "get_host", lambda spec, **kwargs: src)
    config = SimpleNamespace(
        option=SimpleNamespace(ansible_inventory=None, ssh_identity_file=None, ssh_config=None)
    )
    item = Item("BASE-FW-03", "block-tcp-22-from-tourism-web-1", blocked(), host="hr-web-1")
    with pytest.raises(pytest.skip.Exception, match="untestable"):
        firewall._probe(target(), item, config)
    assert status("skipped", Applicability("required")) == "not-tested"
    assert status("skipped", Applicability("not-applicable")) == "not-applicable"


# -- 2. a control with items not tested is not a pass ---------------------------------------

HOST = {"hr-web-1": {"tenancy_tenant": "hr", "tenancy_profiles": ["baseline"]}}
META = {
    "site": "local",
    "tenant": None,
    "plan_digest": "ab" * 32,
    "tenants_commit": None,
    "started": "2026-06-01T10:00:00+00:00",
    "finished": "2026-06-01T10:07:00+00:00",
    "today": TODAY.isoformat(),
    "tools": {"python": "3.11.2"},
}


def rec(control: str, item: str, status: str, message: str = "") -> dict[str, Any]:
    return {
        "nodeid": f"tests/compliance/x.py::check[ansible://hr-web-1-{control}-{item}]",
        "control": control,
        "host": "hr-web-1",
        "item": item,
        "status": status,
        "message": message,
        "evidence": [],
    }


def all_passing() -> list[dict[str, Any]]:
    wanted = {c.id for c in CATALOGUE.controls_for(["baseline"])}
    return [
        rec(c.id, "item", "pass" if c.id in wanted else "not-applicable")
        for c in CATALOGUE.controls
    ]


@pytest.mark.parametrize("word", ["skipped", "not-tested"])
def test_a_partly_tested_control_is_not_tested_and_fails_the_audit(word: str) -> None:
    assert exit_code(build_results(all_passing(), CATALOGUE, [], HOST, TODAY)) == 0
    recs = [
        *all_passing(),
        rec("BASE-FW-03", "block-tcp-22-from-tourism-web-1", word, "untestable: no nc"),
    ]
    doc = build_results(recs, CATALOGUE, [], HOST, TODAY, META)
    fw03 = next(r for r in doc["results"] if r["control"] == "BASE-FW-03")
    assert fw03["result"] == "not-tested" and fw03["required"]
    assert fw03["reason"] == "1 of 2 item(s) not tested (1 passed): untestable: no nc"
    assert [r["control"] for r in failures(doc)] == ["BASE-FW-03"]
    assert doc["exit_code"] == 1 and doc["summary"]["not-tested"] == 1
    assert doc["summary"]["pass"] == len(CATALOGUE.controls_for(["baseline"])) - 1

    html = render_html(doc)
    cell = html.split('data-control="BASE-FW-03" data-host="hr-web-1"', 1)[1].split("</td>")[0]
    assert 'data-result="not-tested"' in cell and ">pass<" not in cell and ">not-tested<" in cell
    assert "FAILED:" in html

    lines = summary_lines(AuditRun(bundle=Path("/b"), exit_code=1, results=doc))
    assert any(line.split()[:2] == ["NOT-TESTED", "BASE-FW-03"] for line in lines), lines
    assert "FAILED" in lines[-1] and " 1 not-tested" in lines[-1]


# -- 3. a host missing from the play recap is failed ---------------------------------------


def events(tmp_path: Path, *stats: dict[str, Any]) -> Path:
    out = tmp_path / "job_events"
    out.mkdir()
    items = [
        {"event": "runner_on_ok", "event_data": {"host": "a", "task": "t", "res": {}}},
        *({"event": "playbook_on_stats", "event_data": s} for s in stats),
    ]
    for n, e in enumerate(items, 1):
        (out / f"{n}-x.json").write_text(json.dumps({"counter": n, **e}))
    return out


def test_a_host_missing_from_the_play_recap_is_failed(tmp_path: Path) -> None:
    got = parse_events(events(tmp_path, {"ok": {"a": 3}, "processed": {"a": 1}}), ["a", "b"])
    assert got["a"].status == "ok" and not got["a"].problem
    assert got["b"].status == "failed"
    assert "never appeared in the play recap" in got["b"].problem
    result = RunResult("r", False, "successful", 0, "/tmp/r", "2026-06-01", 1.0, got)
    assert result.failed_hosts == ["b"] and not result.ok
    assert any("never appeared in the play recap" in line for line in result.lines())
    assert RunResult.from_dict(json.loads(json.dumps(result.to_dict()))) == result
    assert result.hosts["b"].summary()["problem"] == got["b"].problem


def test_without_a_play_recap_no_host_is_ok(tmp_path: Path) -> None:
    got = parse_events(events(tmp_path), ["a", "b"])
    assert {h: r.status for h, r in got.items()} == {"a": "failed", "b": "failed"}
    assert all("never appeared in the play recap" in r.problem for r in got.values())
    assert HostResult(host="c").status == "ok", "a result built by hand is what it says"


def _ansible_env_names() -> set[str]:
    """Every ``ANSIBLE_*`` variable the installed ansible-core knows (config/base.yml)."""
    base = Path(ansible.__file__).parent / "config" / "base.yml"
    doc = yaml.safe_load(base.read_text(encoding="utf-8"))
    return {e["name"] for setting in doc.values() for e in setting.get("env") or []}


def test_inventory_parse_errors_are_fatal(tmp_path: Path) -> None:
    settings = ansible_settings(tmp_path, None)
    assert settings["ANSIBLE_INVENTORY_UNPARSED_FAILED"] == "True"
    assert settings["ANSIBLE_INVENTORY_ANY_UNPARSED_IS_FAILED"] == "True"
    fatal = {"ANSIBLE_INVENTORY_UNPARSED_FAILED", "ANSIBLE_INVENTORY_ANY_UNPARSED_IS_FAILED"}
    assert fatal <= _ansible_env_names(), "the names the installed ansible-core reads"


def test_a_run_whose_inventory_does_not_parse_fails(tmp_path: Path) -> None:
    project = tmp_path / "project"
    (project / "policies").mkdir(parents=True)
    (project / "policies" / "playbook.yml").write_text(
        "- name: Demo\n  hosts: all\n  gather_facts: false\n  tasks:\n"
        "    - name: Say hello\n      ansible.builtin.debug: {msg: hello}\n"
    )
    (project / "policies" / "catalogue.yaml").write_text("kind: PolicyCatalogue\n")
    (project / "roles").mkdir()
    # "good[1:" is no host name Ansible accepts: the YAML inventory does not parse
    local = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}
    hosts = {"good[1:": local}
    request = RunRequest(
        run_id=new_run_id("apply", "unit"),
        files=PolicyFiles.under(project),
        inventory={"all": {"children": {"t": {"children": {"t_g": {"hosts": hosts}}}}}},
        state_dir=tmp_path / "state",
        timeout=300,
    )
    result = run_policy(request)
    assert not result.ok and result.rc != 0, result.lines()
    assert "failed to parse inventory" in result.error.lower(), result.error
    assert result.hosts["good[1:"].status == "failed"


# -- 4. time synchronisation needs a usable source ------------------------------------------

SOURCES_HEADER = (
    "MS Name/IP address         Stratum Poll Reach LastRx Last sample\n"
    "===============================================================================\n"
)
SOURCES_SYNCED = SOURCES_HEADER + (
    "^* 10.255.0.1                    2   6   377    35   +123us[ +456us] +/-   12ms\n"
    "^+ 10.255.0.2                    2   6   377    34   -200us[ -200us] +/-   15ms\n"
)
SOURCES_NONE = SOURCES_HEADER
SOURCES_UNREACHABLE = SOURCES_HEADER + (
    "^? 10.255.0.1                    0   6     0     -     +0ns[   +0ns] +/-    0ns\n"
    "^? 10.255.0.2                    0   6     0     -     +0ns[   +0ns] +/-    0ns\n"
)
TRACKING_SYNCED = """\
Reference ID    : 0AFF0001 (10.255.0.1)
Stratum         : 3
Ref time (UTC)  : Mon Jun 01 09:59:01 2026
System time     : 0.000012001 seconds fast of NTP time
Last offset     : +0.000004112 seconds
RMS offset      : 0.000010331 seconds
Frequency       : 1.234 ppm slow
Residual freq   : +0.001 ppm
Skew            : 0.020 ppm
Root delay      : 0.001234567 seconds
Root dispersion : 0.000456789 seconds
Update interval : 64.2 seconds
Leap status     : Normal
"""
TRACKING_NONE = """\
Reference ID    : 00000000 ()
Stratum         : 0
Ref time (UTC)  : Thu Jan 01 00:00:00 1970
System time     : 0.000000000 seconds fast of NTP time
Last offset     : +0.000000000 seconds
RMS offset      : 0.000000000 seconds
Frequency       : 0.000 ppm slow
Residual freq   : +0.000 ppm
Skew            : 0.000 ppm
Root delay      : 1.000000000 seconds
Root dispersion : 1.000000000 seconds
Update interval : 0.0 seconds
Leap status     : Not synchronised
"""
TRACKING_LOCAL = TRACKING_SYNCED.replace("0AFF0001 (10.255.0.1)", "7F7F0101 ()").replace(
    "Stratum         : 3", "Stratum         : 10"
)


def test_chrony_sources_are_parsed() -> None:
    got = parse_chrony_sources(SOURCES_SYNCED)
    assert [(s.mode, s.state, s.address) for s in got] == [
        ("^", "*", "10.255.0.1"),
        ("^", "+", "10.255.0.2"),
    ]
    assert parse_chrony_sources(SOURCES_NONE) == []
    assert parse_chrony_sources("210 Number of sources = 0\n" + SOURCES_NONE) == []


@pytest.mark.parametrize(
    ("sources", "tracking", "problem"),
    [
        (SOURCES_SYNCED, TRACKING_SYNCED, None),
        (SOURCES_NONE, TRACKING_NONE, "chronyd has no time sources"),
        (SOURCES_UNREACHABLE, TRACKING_NONE, "no usable time source"),
        (SOURCES_UNREACHABLE, TRACKING_SYNCED, "no usable time source"),
        (SOURCES_SYNCED, TRACKING_NONE, "not synchronised"),
        (SOURCES_SYNCED, TRACKING_LOCAL, "its own local clock"),
    ],
)
def test_chrony_is_synchronised_only_with_a_usable_source(
    sources: str, tracking: str, problem: str | None
) -> None:
    got = chrony_sync_problem(sources, tracking)
    if problem is None:
        assert got is None
    else:
        assert got is not None and problem in got, got


def _time_host(sources: str, tracking: str) -> FakeHost:
    def answer(command: str) -> Answer:
        if command.startswith("cat /etc/chrony"):
            return (0, "server 10.255.0.1 iburst\nserver 10.255.0.2 iburst\n", "")
        if command == "chronyc -n sources":
            return (0, sources, "")
        if command == "chronyc tracking":
            return (0, tracking, "")
        return (1, "", f"unexpected {command}")

    return FakeHost("hr-web-1", answer)


def _time_failures(time_module: ModuleType, host: FakeHost) -> list[str]:
    """The messages of the BASE-TIME-02 items that fail on ``host``."""
    marks = [m for m in time_module.chrony_sources.pytestmark if m.name == "parametrize"]
    info = HostInfo(
        "hr-web-1", "hr", ("baseline",), {"tenancy_site_ntp_servers": ["10.255.0.1", "10.255.0.2"]}
    )
    out = []
    for item in marks[0].args[1]:
        try:
            time_module.chrony_sources(host, item, info)
        except AssertionError as exc:
            out.append(f"{item.name}: {exc}")
    return out


@pytest.mark.parametrize(
    ("sources", "tracking"),
    [(SOURCES_NONE, TRACKING_NONE), (SOURCES_UNREACHABLE, TRACKING_NONE)],
    ids=["no-sources", "all-unreachable"],
)
def test_the_time_check_fails_without_a_usable_source(
    suite: dict[str, ModuleType], sources: str, tracking: str
) -> None:
    assert _time_failures(suite["time"], _time_host(SOURCES_SYNCED, TRACKING_SYNCED)) == []
    facts._facts.clear()
    failed = _time_failures(suite["time"], _time_host(sources, tracking))
    assert failed and all(f.startswith("synchronised:") for f in failed), failed


# -- 5. a reduced audit says so -------------------------------------------------------------


def _fake_suite(monkeypatch: pytest.MonkeyPatch) -> None:
    """No pytest subprocess, no SSH: the suite writes one passing record, Lynis answers."""
    from tenancy.policy import audit

    def fake_suite(argv: list[str], cwd: Path, log: Path, stream: Any) -> int:
        records = next(a.partition("=")[2] for a in argv if a.startswith("--tenancy-records="))
        Path(records).write_text(json.dumps({"records": [rec("BASE-SSH-03", "x", "pass")]}))
        log.write_text("not run\n")
        return 0

    lynis = {"hardening_index": 70, "version": "3.0.8", "error": None}
    monkeypatch.setattr(audit, "_run_logged", fake_suite)
    monkeypatch.setattr(audit, "_close_masters", lambda ssh, hosts: None)
    monkeypatch.setattr(audit, "lynis_index", lambda *a, **k: dict(lynis))


def test_a_reduced_audit_says_so_in_the_banner_and_results(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _fake_suite(monkeypatch)
    full = run_audit(AuditOptions(root=REPO, site="local", out=tmp_path / "full"))
    assert full.results["reductions"] == []
    assert 'id="reductions"' not in (tmp_path / "full" / "report.html").read_text()

    options = AuditOptions(
        root=REPO,
        site="local",
        tenants=("hr",),
        hosts=("hr-portal-1",),
        out=tmp_path / "reduced",
        lynis=False,
        probes=False,
        today=date(2020, 1, 1),
        pytest_args=("-k", "not BASE-FW-02"),
    )
    run = run_audit(options)
    reductions = run.results["reductions"]
    assert [r["option"] for r in reductions] == [
        "--tenant hr",
        "--host hr-portal-1",
        "--no-probes",
        "--no-lynis",
        "--today 2020-01-01",
        "pytest -k 'not BASE-FW-02'",
    ]
    assert all(r["effect"] for r in reductions)
    on_disk = json.loads((tmp_path / "reduced" / "results.json").read_text())
    assert on_disk["reductions"] == reductions
    html = (tmp_path / "reduced" / "report.html").read_text()
    banner = html.split('id="reductions"', 1)[1].split("</section>", 1)[0]
    assert "Reduced scope" in banner and "--no-probes" in banner and "not BASE-FW-02" in banner
    assert "reduced scope" in summary_lines(run)[-1]
    from tenancy.policy.audit import scope_reductions  # new with the reductions

    no_standins = AuditOptions(root=REPO, site="local", standins="none")
    got = scope_reductions(no_standins, 3, 3, TODAY)
    assert [r["option"] for r in got] == ["--standins none"]
    assert scope_reductions(AuditOptions(root=REPO, site="local", today=TODAY), 3, 3, TODAY) == []
