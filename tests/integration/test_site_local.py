"""A whole site through the real ``tenancy`` CLI: up, firewall matrix, drift, interrupt, destroy.

The test runs on an isolated copy of the project (``tests/support/sitecopy.py``): site
``it-local`` on this machine's libvirt, two test tenants with explicit CIDRs,
three tiny VMs, its own Pulumi file backend, passphrase and ops key. The
tenants' security baseline is waived in the copy (the PolicyRun still runs but
changes nothing in the guests), so the matrix shows exactly the host layers
(nftables table + nwfilters); ``TENANCY_IT_BASELINE=1`` keeps the baseline on
(the in-guest firewall then adds its own rules). Steps:

1. ``tenancy up`` (cold); every VM answers SSH as ops at its planned address.
2. Reachability matrix: listeners in every VM, probes from every VM, from this
   host and from the intranet/extranet/internet stand-ins (network
   namespaces); the DECLARED matrix (computed from the plan's rules) must equal
   the OBSERVED one. Host -> VM ports other than SSH are recorded, not asserted.
3. ``tenancy up --expect-no-changes``.
4. A VM deleted behind Pulumi's back: ``tenancy refresh`` + ``tenancy up`` bring it back.
5. A flow change applied by ``tenancy up`` interrupted like an operator's ^C;
   the operator's recovery (``pulumi cancel`` when locked, ``tenancy refresh``,
   ``tenancy up``) converges; ``--expect-no-changes`` holds and the matrix
   matches the new plan.
6. ``tenancy destroy`` leaves nothing of the site in libvirt or nftables.

Every step is timed, printed (pytest -s) and written to
``$TENANCY_STATE/reports/test_site_local.txt`` (+ ``.json``); the matrices and
the details of the interrupted run go to ``test_site_local.matrix.txt`` and
``test_site_local.details.json``; every command's output to
``test_site_local.engine.log``. A module fixture destroys the site and sweeps
its objects by exact name whatever happens.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import ipaddress
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import libvirt
import pytest
from tests.support.guests import ssh, wait_for_ssh
from tests.support.interrupt import interrupt_up
from tests.support.libvirt_cleanup import site_objects, sweep_site
from tests.support.locks import site_lock
from tests.support.probes import (
    probe_from_guest,
    probe_from_host,
    start_guest_listeners,
    start_host_listener,
)
from tests.support.sitecopy import SiteCopy, make_site_copy, new_workdir
from tests.support.waivers import waive_baseline

pytestmark = pytest.mark.integration
# lookups of a missing domain are expected; keep libvirt from printing them to stderr
libvirt.registerErrorHandler(lambda _ctx, _err: None, None)

SITE = os.environ.get("TENANCY_IT_SITE", "it-local")
ALPHA, BETA = "it-alpha", "it-beta"
TENANTS = [ALPHA, BETA]
ALPHA_CIDR, BETA_CIDR = "10.30.201.0/24", "10.40.201.0/24"
SSH_TIMEOUT = 600.0  # TCG, and other tests share the 2 cores
VM_PORTS = [22, 80, 443, 8080, 8443, 9000]  # probed on every VM (22: sshd, rest: listener)
LISTEN_PORTS = [p for p in VM_PORTS if p != 22]
INTERNET_PORTS = [443, 8080]  # listener in the internet stand-in
HOST_PORT = 8080  # listener on each segment gateway (this host)
OPERATION_LINES = (" updating (", " creating (", " deleting (", " replacing (")


def tenant_doc(
    name: str, zone: str, cidr: str, machines: list[dict[str, Any]], firewall: dict[str, Any]
) -> dict[str, Any]:
    return {
        "apiVersion": "tenancy/v1",
        "kind": "Tenant",
        "metadata": {
            "name": name,
            "displayName": f"Integration test tenant {name}",
            "owner": f"{name}@example.gov",
        },
        "spec": {
            "site": SITE,
            "zone": zone,
            "network": {"cidr": cidr},
            "machines": machines,
            "firewall": firewall,
            "policies": ["baseline"],
        },
    }


def machine(name: str, role: str) -> dict[str, Any]:
    return {
        "name": name,
        "count": 1,
        "flavor": "tiny",
        "image": "debian-12",
        "diskGiB": 4,
        "role": role,
    }


def alpha_doc() -> dict[str, Any]:
    return tenant_doc(
        ALPHA,
        "intranet",
        ALPHA_CIDR,
        [machine("web", "web"), machine("db", "db")],
        {
            "ingress": [
                {"from": "intranet", "to": "web", "ports": ["443/tcp"]},
                {"from": BETA, "to": "web", "ports": ["8443/tcp"]},
                # one-sided: beta declares no egress to alpha on 9000 -> stays closed
                {"from": BETA, "to": "db", "ports": ["9000/tcp"]},
            ],
            "egress": [{"from": "db", "to": "internet", "ports": ["443/tcp"]}],
        },
    )


def beta_doc(step5: bool = False) -> dict[str, Any]:
    ingress: list[dict[str, Any]] = [{"from": "extranet", "to": "web", "ports": ["80/tcp"]}]
    egress: list[dict[str, Any]] = [{"to": f"{ALPHA}/web", "ports": ["8443/tcp"]}]
    if step5:  # the change of step 5: opens the 9000 flow and extranet 443
        ingress.append({"from": "extranet", "to": "web", "ports": ["443/tcp"]})
        egress.append({"to": f"{ALPHA}/db", "ports": ["9000/tcp"]})
    return tenant_doc(
        BETA, "extranet", BETA_CIDR, [machine("web", "web")], {"ingress": ingress, "egress": egress}
    )


# --- declared vs observed ----------------------------------------------------------------


@dataclass(frozen=True)
class Endpoint:
    label: str
    kind: str  # vm | host | standin
    address: str
    tenant: str = ""
    netns: str = ""


@dataclass(frozen=True)
class Target:
    label: str  # column group
    kind: str  # vm | gateway | standin
    address: str
    port: int
    tenant: str = ""


@dataclass
class Matrix:
    sources: list[Endpoint]
    targets: list[Target]
    declared: dict[tuple[str, str, int], str] = field(default_factory=dict)
    observed: dict[tuple[str, str, int], str] = field(default_factory=dict)

    def mismatches(self) -> list[str]:
        out = []
        for key, want in sorted(self.declared.items()):
            got = self.observed.get(key, "not probed")
            if want == "n/a":
                continue
            ok = (got == "open") if want == "open" else (got == "timeout")
            if not ok:
                out.append(f"{key[0]} -> {key[1]}:{key[2]}: declared {want}, observed {got}")
        return out

    def as_json(self) -> list[dict[str, Any]]:
        return [
            {
                "source": k[0],
                "target": k[1],
                "port": k[2],
                "declared": v,
                "observed": self.observed.get(k),
            }
            for k, v in sorted(self.declared.items())
        ]


def _in(address: str, cidrs: list[str]) -> bool:
    ip = ipaddress.IPv4Address(address)
    return any(ip in ipaddress.IPv4Network(c, strict=False) for c in cidrs)


def _port_in(port: int, ports: list[str]) -> bool:
    for text in ports:
        number, _, proto = text.partition("/")
        low, _, high = number.partition("-")
        if proto == "tcp" and int(low) <= port <= int(high or low):
            return True
    return False


def _allows(
    rules: list[dict[str, Any]], direction: str, kinds: set[str], local: str, peer: str, port: int
) -> bool:
    return any(
        r["direction"] == direction
        and r["peer_kind"] in kinds
        and _in(local, r["local_cidrs"])
        and _in(peer, r["peer_cidrs"])
        and _port_in(port, r["ports"])
        for r in rules
    )


def declared(plan: dict[str, Any], src: Endpoint, dst: Target) -> str:
    """What the plan says about one probe: open | closed | n/a (not a declared property)."""
    rules = {t["name"]: t["rules"] for t in plan["tenants"]}
    if src.kind == "host":
        # ops reach SSH from the segment gateway; other host->guest ports are not declared
        return "open" if dst.port == 22 else "n/a"
    if dst.kind == "gateway":
        return "closed"  # tenants never reach the host
    if src.kind == "standin":
        ok = _allows(
            rules[dst.tenant], "ingress", {"keyword", "cidr"}, dst.address, src.address, dst.port
        )
        return "open" if ok else "closed"
    if dst.kind == "standin":
        ok = _allows(
            rules[src.tenant], "egress", {"keyword", "cidr"}, src.address, dst.address, dst.port
        )
        return "open" if ok else "closed"
    if src.tenant == dst.tenant:
        return "open"  # a tenant's own segment is open inside
    ok = _allows(
        rules[dst.tenant], "ingress", {"tenant"}, dst.address, src.address, dst.port
    ) and _allows(rules[src.tenant], "egress", {"tenant"}, src.address, dst.address, dst.port)
    return "open" if ok else "closed"


def build_matrix(plan: dict[str, Any], standin_hosts: dict[str, tuple[str, str]]) -> Matrix:
    vms = [(t, m) for t in plan["tenants"] for m in t["machines"]]
    sources = [Endpoint(m["domain"], "vm", m["address"], t["name"]) for t, m in vms]
    sources.append(Endpoint("host", "host", "", ""))
    for keyword in ("intranet", "extranet", "internet"):
        netns, address = standin_hosts[keyword]
        sources.append(Endpoint(keyword, "standin", address, netns=netns))
    targets = [
        Target(m["domain"], "vm", m["address"], p, t["name"]) for t, m in vms for p in VM_PORTS
    ]
    internet = standin_hosts["internet"][1]
    targets += [Target("internet", "standin", internet, p) for p in INTERNET_PORTS]
    matrix = Matrix(sources, targets)
    gateways = {t["name"]: t["segment"]["gateway"] for t in plan["tenants"]}
    for src in sources:
        for dst in probes_for(src, targets, gateways):
            matrix.declared[(src.label, dst.label, dst.port)] = declared(plan, src, dst)
    return matrix


def probes_for(src: Endpoint, targets: list[Target], gateways: dict[str, str]) -> list[Target]:
    """The targets probed from ``src``: every other VM port; VMs also probe their own
    gateway (this host) and the internet stand-in."""
    out = [t for t in targets if t.kind == "vm" and t.address != src.address]
    if src.kind == "vm":
        out.append(Target("gateway", "gateway", gateways[src.tenant], HOST_PORT))
        out += [t for t in targets if t.kind == "standin"]
    return out


def observe(
    copy: SiteCopy, matrix: Matrix, plan: dict[str, Any]
) -> tuple[dict[tuple[str, str, int], str], list[str]]:
    """Probe every case (3 s connect timeout); cases that differ from the declared
    matrix are probed once more with 10 s, so that a guest slowed down by the shared
    cores is not taken for a firewall. Returns the observations and the re-probed cases."""
    gateways = {t["name"]: t["segment"]["gateway"] for t in plan["tenants"]}

    def run(
        src: Endpoint, only: set[tuple[str, str, int]] | None, wait: int
    ) -> dict[tuple[str, str, int], str]:
        targets = [
            t
            for t in probes_for(src, matrix.targets, gateways)
            if only is None or (src.label, t.label, t.port) in only
        ]
        if not targets:
            return {}
        pairs = [(t.address, t.port) for t in targets]
        if src.kind == "vm":
            got = probe_from_guest(copy, src.address, pairs, wait)
        else:
            got = probe_from_host(sys.executable, src.netns or None, pairs, wait)
        return {(src.label, t.label, t.port): got[(t.address, t.port)] for t in targets}

    observed: dict[tuple[str, str, int], str] = {}
    with concurrent.futures.ThreadPoolExecutor(len(matrix.sources)) as pool:
        for part in pool.map(lambda s: run(s, None, 3), matrix.sources):
            observed.update(part)
    matrix.observed = observed
    again = {
        key
        for key, want in matrix.declared.items()
        if want != "n/a" and (observed.get(key) == "open") != (want == "open")
    }
    if again:
        with concurrent.futures.ThreadPoolExecutor(len(matrix.sources)) as pool:
            for part in pool.map(lambda s: run(s, again, 10), matrix.sources):
                observed.update(part)
    reprobed = [f"{k[0]} -> {k[1]}:{k[2]}: {observed[k]}" for k in sorted(again)]
    return observed, reprobed


SYMBOL = {"open": "O", "timeout": ".", "closed": ".", "refused": "r", "n/a": "?", "error": "E"}


def render_matrix(matrix: Matrix, which: str) -> str:
    """One table: rows = sources, column groups = targets (ports underneath)."""
    values = matrix.declared if which == "declared" else matrix.observed
    groups: list[tuple[str, str, list[int]]] = []
    for t in matrix.targets:
        if not groups or groups[-1][0] != t.label:
            groups.append((t.label, t.address, []))
        groups[-1][2].append(t.port)
    groups.append(("gateway", "", [HOST_PORT]))  # each VM's own gateway (this host)
    width = 5
    head1 = f"{'':<16}|"
    head2 = f"{'source':<16}|"
    for label, address, ports in groups:
        span = width * len(ports)
        text = f"{label} {address}" if address else "gw"
        head1 += f" {text[: span - 1]:<{span - 1}}|"
        head2 += " " + "".join(f"{p:>{width}}" for p in ports)[1:] + "|"
    lines = [head1, head2, "-" * len(head1)]
    for src in matrix.sources:
        row = f"{src.label:<16}|"
        for label, _, ports in groups:
            cells = "".join(
                f"{SYMBOL.get(values.get((src.label, label, p), ''), ' '):>{width}}" for p in ports
            )
            row += " " + cells[1:] + "|"
        lines.append(row)
    legend = "O open   . closed (dropped, timeout)   r refused   ? not declared either way"
    return "\n".join([f"{which.upper()} reachability", *lines, legend])


# --- helpers -------------------------------------------------------------------------------

SUMMARY_RE = re.compile(
    r"^\s*(?:[-+~]|\+-)?\s*(\d+) (created|updated|deleted|replaced|unchanged)", re.M
)


def summary(output: str) -> dict[str, int]:
    """The ``Resources:`` block of a pulumi run."""
    tail = output.rsplit("Resources:", 1)[-1]
    return {kind: int(n) for n, kind in SUMMARY_RE.findall(tail)}


def ok(result: subprocess.CompletedProcess[str], what: str, copy: SiteCopy) -> str:
    out = (result.stdout or "") + (result.stderr or "")
    assert result.returncode == 0, (
        f"{what} failed (exit {result.returncode}, log {copy.log}):\n{out[-4000:]}"
    )
    return out


def console_tail(domain: str, lines: int = 30) -> str:
    path = Path(f"/var/log/libvirt/qemu/{domain}-console.log")
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError as exc:
        return f"(no console log: {exc})"


def wait_all_ssh(copy: SiteCopy, machines: list[dict[str, Any]]) -> dict[str, float]:
    def one(m: dict[str, Any]) -> tuple[str, float]:
        try:
            return m["domain"], wait_for_ssh(copy, m["address"], SSH_TIMEOUT)
        except AssertionError as exc:
            raise AssertionError(
                f"{m['domain']}: {exc}\n--- console ---\n{console_tail(m['domain'])}"
            ) from exc

    with concurrent.futures.ThreadPoolExecutor(len(machines)) as pool:
        return dict(pool.map(one, machines))


def domain_state(uri: str, name: str) -> str:
    conn = libvirt.open(uri)
    try:
        try:
            dom = conn.lookupByName(name)
        except libvirt.libvirtError:
            return "missing"
        return "running" if dom.isActive() else "defined"
    finally:
        conn.close()


def landed_changes(copy: SiteCopy, uri: str) -> dict[str, bool]:
    """Which parts of the step 5 change had reached the host when the run was interrupted."""
    table = subprocess.run(
        ["nft", "list", "table", "inet", copy.table], capture_output=True, text=True, check=False
    ).stdout
    rule = [line for line in table.splitlines() if f'"{BETA} ingress extranet"' in line]
    out = {"host table: extranet -> it-beta 443/tcp": any("443" in line for line in rule)}
    for name in (f"tenancy-{ALPHA}-db", f"tenancy-{BETA}-web"):
        xml = subprocess.run(
            ["virsh", "-c", uri, "nwfilter-dumpxml", name],
            capture_output=True,
            text=True,
            check=False,
        ).stdout
        out[f"nwfilter {name}: 9000/tcp"] = "'9000'" in xml
    return out


# --- the site ------------------------------------------------------------------------------


@dataclass
class LocalSite:
    copy: SiteCopy
    uri: str
    standins: Any
    processes: list[subprocess.Popen[str]] = field(default_factory=list)
    destroyed: bool = False
    details: dict[str, Any] = field(default_factory=dict)


@pytest.fixture(scope="module")
def local_site(
    pulumi_env: Any,
    guest_image: Any,
    libvirt_uri: str,
    standins: Any,
) -> Iterator[LocalSite]:
    """The project copy; its finalizer destroys the site and sweeps it, whatever happened.

    Holds the site's machine-wide lock throughout: a concurrent run of this test (from
    another clone) waits instead of sweeping this run's machines as "leftovers".
    """
    with site_lock(SITE) as waited:
        if waited > 1:
            print(f"[{SITE}] waited {waited:.0f} s for the site lock", flush=True)
        yield from _local_site(libvirt_uri, standins)


def _local_site(libvirt_uri: str, standins: Any) -> Iterator[LocalSite]:
    main_root = Path(os.environ["TENANCY_ROOT"])
    workdir = new_workdir(SITE)
    copy = make_site_copy(
        main_root, workdir / "project", SITE, {ALPHA: alpha_doc(), BETA: beta_doc()}
    )
    if os.environ.get("TENANCY_IT_BASELINE", "") != "1":
        waive_baseline(copy, TENANTS)
    before = site_objects(libvirt_uri, copy, TENANTS)
    if any(before.values()):
        print(f"\n[{SITE}] leftovers of an earlier run, sweeping: {before}", flush=True)
        sweep_site(libvirt_uri, copy, TENANTS)
    site = LocalSite(copy=copy, uri=libvirt_uri, standins=standins)
    yield site
    for proc in site.processes:
        if proc.poll() is None:
            proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=10)
    if not site.destroyed:
        start = time.monotonic()
        if copy.locks():
            copy.pulumi("cancel", "--yes")
        result = copy.tenancy("destroy", "--site", SITE, timeout=900)
        print(
            f"\n[{SITE}] cleanup: tenancy destroy exit {result.returncode} "
            f"({time.monotonic() - start:.1f} s)",
            flush=True,
        )
    swept = sweep_site(libvirt_uri, copy, TENANTS)
    if any(swept.values()):
        print(f"[{SITE}] swept leftovers: {swept}", flush=True)
    reports = Path(os.environ.get("TENANCY_STATE") or main_root / ".tenancy") / "reports"
    reports.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(OSError):
        shutil.copy2(copy.log, reports / "test_site_local.engine.log")
    if site.destroyed and not any(swept.values()):
        shutil.rmtree(workdir, ignore_errors=True)
    else:
        print(f"[{SITE}] project copy kept for inspection: {workdir}", flush=True)


def test_site_local(local_site: LocalSite, step_timer: Any) -> None:
    site, copy, uri = local_site, local_site.copy, local_site.uri
    details = site.details
    reports = step_timer.report.parent
    matrix_file = reports / "test_site_local.matrix.txt"
    details_file = reports / "test_site_local.details.json"
    hosts = site.standins.hosts
    texts: list[str] = []

    def save() -> None:
        reports.mkdir(parents=True, exist_ok=True)
        matrix_file.write_text("\n\n".join(texts) + "\n")
        details_file.write_text(json.dumps(details, indent=2, sort_keys=True) + "\n")

    try:
        plan = copy.plan()
        machines = [m for t in plan["tenants"] for m in t["machines"]]
        assert len(machines) == 3, [m["domain"] for m in machines]
        assert any("one-sided flow stays closed" in w for w in plan["warnings"]), plan["warnings"]

        # 1. cold up ---------------------------------------------------------------------
        with step_timer.step("1 up (cold)"):
            out = ok(copy.tenancy("up", "--site", SITE), "tenancy up (cold)", copy)
        details["up_cold"] = summary(out)
        assert summary(out).get("created", 0) >= 20, summary(out)
        for m in machines:
            assert domain_state(uri, m["domain"]) == "running", m["domain"]
        with step_timer.step("1 SSH on every VM"):
            details["ssh_seconds"] = wait_all_ssh(copy, machines)
        print(f"[{SITE}] SSH after: {details['ssh_seconds']}", flush=True)
        for m in machines:  # the planned hostname and static address
            info = ssh(copy, m["address"], "hostname; ip -4 -o addr show dev eth0")
            assert info.returncode == 0, info.stderr
            assert m["domain"] in info.stdout and f"{m['address']}/" in info.stdout, info.stdout

        # 2. reachability -------------------------------------------------------------------
        with step_timer.step("2 listeners"):
            listening = {}
            with concurrent.futures.ThreadPoolExecutor(len(machines)) as pool:
                futures = {
                    m["domain"]: pool.submit(
                        start_guest_listeners, copy, m["address"], LISTEN_PORTS
                    )
                    for m in machines
                }
                listening = {d: f.result() for d, f in futures.items()}
            gateways = [t["segment"]["gateway"] for t in plan["tenants"]]
            site.processes.append(
                start_host_listener(sys.executable, None, [f"{g}:{HOST_PORT}" for g in gateways])
            )
            inet_ns, inet_addr = hosts["internet"]
            site.processes.append(
                start_host_listener(
                    sys.executable, inet_ns, [f"{inet_addr}:{p}" for p in INTERNET_PORTS]
                )
            )
        for domain, ports in listening.items():
            assert ports == LISTEN_PORTS, f"{domain} listens on {ports}, wanted {LISTEN_PORTS}"
        own = probe_from_host(sys.executable, inet_ns, [(inet_addr, p) for p in INTERNET_PORTS])
        assert set(own.values()) == {"open"}, f"internet stand-in listener: {own}"

        with step_timer.step("2 reachability matrix"):
            matrix = build_matrix(plan, hosts)
            matrix.observed, details["reprobed_step2"] = observe(copy, matrix, plan)
        texts += [render_matrix(matrix, "declared"), render_matrix(matrix, "observed")]
        details["matrix_step2"] = matrix.as_json()
        host_open = sorted(
            f"{k[1]}:{k[2]}" for k, v in matrix.observed.items() if k[0] == "host" and v == "open"
        )
        details["host_to_guest_open"] = host_open
        texts.append("host -> guest ports observed open: " + ", ".join(host_open))
        save()
        print("\n\n".join(texts), flush=True)
        wrong = matrix.mismatches()
        assert not wrong, "firewall differs from the plan:\n" + "\n".join(wrong)

        # 3. no changes ------------------------------------------------------------------------
        with step_timer.step("3 up --expect-no-changes"):
            out = ok(
                copy.tenancy("up", "--site", SITE, "--expect-no-changes"),
                "second tenancy up --expect-no-changes",
                copy,
            )
        assert set(summary(out)) == {"unchanged"}, summary(out)

        # 4. a VM deleted behind Pulumi's back ------------------------------------------------
        victim = next(m for m in machines if m["tenant"] == ALPHA and m["group"] == "db")
        with step_timer.step("4 virsh destroy+undefine"):
            for verb in ("destroy", "undefine"):
                done = subprocess.run(
                    ["virsh", "-c", uri, verb, victim["domain"]], capture_output=True, text=True
                )
                assert done.returncode == 0, done.stderr
        assert domain_state(uri, victim["domain"]) == "missing"
        with step_timer.step("4 refresh"):
            out = ok(copy.tenancy("refresh", "--site", SITE), "tenancy refresh", copy)
        details["refresh_after_delete"] = summary(out)
        assert summary(out).get("deleted") == 1, (
            f"refresh did not see the deleted VM: {summary(out)}"
        )
        with step_timer.step("4 up (recreate VM)"):
            out = ok(copy.tenancy("up", "--site", SITE), "tenancy up (recreate)", copy)
        details["up_recreate"] = summary(out)
        assert summary(out).get("created") == 1, summary(out)
        assert domain_state(uri, victim["domain"]) == "running"
        with step_timer.step("4 SSH on the recreated VM"):
            details["ssh_recreated_seconds"] = wait_for_ssh(copy, victim["address"], SSH_TIMEOUT)

        # 5. interrupted up, then the operator's recovery --------------------------------------
        copy.write_tenant(BETA, beta_doc(step5=True))
        new_plan = copy.plan()
        with step_timer.step("5 up interrupted (SIGINT)"):
            interrupted = interrupt_up(copy, OPERATION_LINES)
        locks = copy.locks()
        details["interrupt"] = {
            "trigger": interrupted.trigger,
            "exit": interrupted.returncode,
            "seconds_to_exit": round(interrupted.seconds_to_exit, 2),
            "cancelling_message": "^C received; cancelling" in interrupted.output,
            "killed_by_wrapper": "KeyboardInterrupt" in interrupted.output,
            "lock_left": [str(p.name) for p in locks],
            "survivors": interrupted.survivors,
        }
        details["interrupt"]["landed"] = landed_changes(copy, uri)
        assert interrupted.trigger, f"no resource operation started:\n{interrupted.output[-3000:]}"
        assert interrupted.returncode != 0, "the interrupted up reported success"
        recovery: list[str] = []
        with step_timer.step("5 operator recovery"):
            if locks:
                blocked = copy.tenancy("up", "--site", SITE)
                details["interrupt"]["up_while_locked"] = (blocked.stdout + blocked.stderr)[-600:]
                assert blocked.returncode != 0 and "locked" in blocked.stdout + blocked.stderr
                ok(copy.pulumi("cancel", "--yes"), "pulumi cancel", copy)
                recovery.append("pulumi cancel --yes")
                assert not copy.locks(), "pulumi cancel left the lock"
            pending = copy.pending_operations()
            details["interrupt"]["pending_operations"] = [
                {"type": p.get("type"), "urn": p.get("resource", {}).get("urn", "")}
                for p in pending
            ]
            extra = (
                ["--", "--clear-pending-creates"]
                if any(p.get("type") == "creating" for p in pending)
                else []
            )
            ok(copy.tenancy("refresh", "--site", SITE, *extra), "tenancy refresh", copy)
            recovery.append("tenancy refresh " + " ".join(extra[1:]))
        details["interrupt"]["recovery"] = recovery
        with step_timer.step("5 up (converge)"):
            out = ok(copy.tenancy("up", "--site", SITE), "tenancy up after the interrupt", copy)
        details["up_converge"] = summary(out)
        with step_timer.step("5 up --expect-no-changes"):
            out = ok(
                copy.tenancy("up", "--site", SITE, "--expect-no-changes"),
                "tenancy up --expect-no-changes after converging",
                copy,
            )
        assert set(summary(out)) == {"unchanged"}, summary(out)
        save()

        with step_timer.step("5 reachability matrix (new plan)"):
            for m in machines:  # the recreated VM lost its listener
                assert start_guest_listeners(copy, m["address"], LISTEN_PORTS) == LISTEN_PORTS
            after = build_matrix(new_plan, hosts)
            after.observed, details["reprobed_step5"] = observe(copy, after, new_plan)
        changed = [
            f"{k[0]} -> {k[1]}:{k[2]}: {matrix.declared.get(k)} -> {v}"
            for k, v in sorted(after.declared.items())
            if matrix.declared.get(k) != v
        ]
        texts.append("after step 5, declared changes:\n" + "\n".join(changed))
        texts.append(render_matrix(after, "observed"))
        details["matrix_step5"] = after.as_json()
        save()
        assert changed, "the step 5 change declared no new flow"
        wrong = after.mismatches()
        assert not wrong, (
            "after the interrupted run, firewall differs from the plan:\n" + "\n".join(wrong)
        )

        # 6. destroy --------------------------------------------------------------------------
        for proc in site.processes:
            proc.terminate()
        with step_timer.step("6 destroy"):
            out = ok(copy.tenancy("destroy", "--site", SITE, timeout=900), "tenancy destroy", copy)
        site.destroyed = True
        details["destroy"] = summary(out)
        left = site_objects(uri, copy, TENANTS)
        details["left_after_destroy"] = left
        assert not any(left.values()), f"destroy left objects of site {SITE} behind: {left}"
    finally:
        save()
