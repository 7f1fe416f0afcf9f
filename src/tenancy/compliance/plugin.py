"""The compliance suite's pytest plugin: catalogue, profiles, waivers, evidence, records.

Registered by the suite's ``conftest.py`` (``pytest_plugins``, next to
:mod:`tenancy.policy.suite_policy`, which answers :mod:`.hooks` with the
catalogue and the waivers), so the suite runs like any testinfra suite, from
a checkout or an installed wheel::

    pytest tests/compliance --hosts=ansible://all --ansible-inventory=inventory.yml -n 2

What it adds to testinfra:

- Checks are the functions the catalogue names (``check: test_ssh.py::
  sshd_permit_root_login``); they are collected by those names, and each
  carries ``@control("<ID>")`` (:func:`tenancy.compliance.items.control`).
- Before a check runs on a host, the host's profiles (inventory variable
  ``tenancy_profiles``) and the waivers decide (:mod:`.applicability`): a
  control outside the profiles is skipped with "not in profile", one with a
  valid waiver is skipped with "waived until <date>: <justification>", and
  one whose waiver has expired runs and fails whatever it finds.
- Every command a check runs is recorded with its output; with
  ``--tenancy-records=FILE`` one JSON record per test is written, also under
  pytest-xdist (:mod:`.records`).
- Items that exist on one host only (its declared flows) are deselected for
  the other hosts, and with ``-n`` the tests of one host stay on one worker.
"""

from __future__ import annotations

import re
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import Any

import pytest

from tenancy.compliance import hooks
from tenancy.compliance.applicability import HostInfo, Policy, decide, host_info
from tenancy.compliance.evidence import evidence_scope, install_recorder
from tenancy.compliance.host import host_name, host_of
from tenancy.compliance.items import control_of, item_of
from tenancy.compliance.records import DECISION, EVIDENCE, RecordWriter
from tenancy.contract.host_vars import PROFILES

DEFAULT_STANDINS = "tn-intranet=10.255.1.2,tn-extranet=10.255.2.2,tn-internet=10.255.3.2"

_POLICY = pytest.StashKey[Policy]()


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    pluginmanager.add_hookspecs(hooks)


def pytest_addoption(parser: pytest.Parser) -> None:
    # the same group as the policy's options (tenancy.policy.suite_policy)
    group = parser.getgroup("tenancy", "Tenancy compliance suite")
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
        "items(provider): parametrize 'item' with provider(config, control), for items read from "
        "the inventory at collection (one host's declared flows)",
    )
    policy = config.hook.pytest_tenancy_policy(config=config)
    if policy is None:
        raise pytest.UsageError(
            "no plugin provides the policy: register tenancy.policy.suite_policy "
            "(the suite's conftest.py does)"
        )
    config.stash[_POLICY] = policy
    # The checks carry the catalogue's names (sshd_permit_root_login), not test_*:
    # collect exactly those functions, in addition to the usual test_* ones.
    for control in policy.catalogue.controls:
        config.addinivalue_line("python_functions", control.check.rpartition("::")[2])
    records = config.getoption("tenancy_records")
    if records:
        config.pluginmanager.register(RecordWriter(config, Path(records)), "tenancy-records")


# -- collection ------------------------------------------------------------------------


@pytest.hookimpl(trylast=True)
def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """``@control(ID, items=provider)``: items computed from the inventory at collection.

    trylast: after testinfra's host parametrization, so test IDs read
    ``[<host>-<control>-<item>]`` like those of items given as a list.
    """
    marker = metafunc.definition.get_closest_marker("items")
    control = control_of(metafunc.definition)
    if marker is None or control is None or "item" not in metafunc.fixturenames:
        return
    values = marker.args[0](metafunc.config, control)
    metafunc.parametrize("item", values, ids=[str(v) for v in values])


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Drop per-host items collected for another host."""
    keep: list[pytest.Item] = []
    drop: list[pytest.Item] = []
    for test in items:
        param, host = item_of(test), host_of(test)
        if param is not None and param.host is not None and host is not None:
            (keep if host_name(host) == param.host else drop).append(test)
        else:
            keep.append(test)
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
    # pytest-xdist ships no type information: its scheduler is Any here
    from xdist.scheduler import LoadScopeScheduling  # type: ignore[import-untyped]

    class HostScheduling(LoadScopeScheduling):  # type: ignore[misc]
        def _split_scope(self, nodeid: str) -> str:
            return host_scope(nodeid)

    return HostScheduling(config, log)


# -- the gate: profile, waiver, evidence -----------------------------------------------


@pytest.fixture(autouse=True)
def _control_gate(request: pytest.FixtureRequest) -> Iterator[None]:
    """Skip controls outside the host's profiles or under a valid waiver; record evidence."""
    node = request.node
    control = control_of(node)
    if control is None or "host" not in request.fixturenames:
        yield
        return
    install_recorder(request.getfixturevalue("host"))
    info: HostInfo = request.getfixturevalue("info")
    try:
        decision = decide(request.config.stash[_POLICY], control, info)
    except KeyError as exc:
        pytest.fail(f"{info.name}: {exc.args[0]} (inventory variable {PROFILES})")
    node.stash[DECISION] = (decision, info)
    if decision.status in ("not-applicable", "waived"):
        pytest.skip(decision.reason)
    with evidence_scope() as collected:
        node.stash[EVIDENCE] = collected
        yield


@pytest.hookimpl(wrapper=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> Generator[None, object, object]:
    """An expired waiver fails its control even when the check itself passes."""
    found = pyfuncitem.stash.get(DECISION, None)
    result = yield
    if found is not None and found[0].status == "expired":
        decision = found[0]
        pytest.fail(
            f"{decision.reason} (the check itself passed: renew the waiver or remove it "
            "from policies/waivers)",
            pytrace=False,
        )
    return result


@pytest.fixture(scope="session")
def policy(pytestconfig: pytest.Config) -> Policy:
    """The catalogue, the waivers and the date they are judged on."""
    return pytestconfig.stash[_POLICY]


@pytest.fixture
def info(host: Any, pytestconfig: pytest.Config) -> HostInfo:
    """What the inventory says about the host under test."""
    defaults = [p for p in pytestconfig.getoption("tenancy_profiles").split(",") if p]
    return host_info(host, defaults)
